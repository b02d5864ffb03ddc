"""Addresses never leak: every log line, progress bar and report shows them masked.

Contract::

    mask_email(address) -> str      ``jane.doe@example.com`` -> ``j•••@example.com``
    mask_addresses(text) -> str     every address-like ``x@y`` inside free text masked the same way
                                    (for messages that quote input: library errors, API bodies)
"""

from __future__ import annotations

import re

MASK = "•••"
_ADDRESS = re.compile(r"[^\s<>\"'\[\]():,;]+@[^\s<>\"'\[\]():,;]+")


def mask_email(address: str) -> str:
    """``jane.doe@example.com`` -> ``j•••@example.com``; anything odd is masked whole."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return MASK
    return f"{local[0]}{MASK}@{domain}"


def mask_addresses(text: str) -> str:
    """Mask every address in ``text`` (error messages of libraries and APIs may quote one)."""
    return _ADDRESS.sub(lambda match: mask_email(match.group(0)), text)
