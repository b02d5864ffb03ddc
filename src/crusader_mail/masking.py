"""Addresses never leak: every log line, progress bar and report shows them masked."""

from __future__ import annotations

MASK = "•••"


def mask_email(address: str) -> str:
    """``jane.doe@example.com`` -> ``j•••@example.com``; anything odd is masked whole."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return MASK
    return f"{local[0]}{MASK}@{domain}"
