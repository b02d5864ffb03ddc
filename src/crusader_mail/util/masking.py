"""Addresses and secrets never leak: every log line, progress bar and report shows them masked.

Contract::

    mask_email(address) -> str      ``jane.doe@example.com`` -> ``j•••@example.com``
    mask_addresses(text) -> str     every address-like ``x@y`` inside free text masked the same way
                                    (for messages that quote input: library errors, API bodies)
    mask_url(url) -> str            ``https://u:pw@host/f?key=abc&p=2``
                                    -> ``https://•••@host/f?key=•••&p=2``
    mask_urls(text) -> str          every URL inside free text masked the same way
    without_credentials(url) -> str ``url`` with those parts left out (a base for relative links)
    mask_message_id(value) -> str   ``<jane.doe.123@mail.example>`` -> ``<j•••@mail.example>``
    mask_message_ids(report) -> dict an inbox report's JSON with each action's Message-ID masked

A URL's user and password are masked whole; so is the value of every query (or fragment)
parameter whose name ends in ``key``, ``token``, ``secret``, ``password``, ``pass``, ``pwd``,
``sig``, ``signature``, ``auth``, ``credential(s)`` or ``session`` (``api_key``, ``apikey``,
``access_token``, ``X-Amz-Signature``). Masking is for showing: the real URL is still the one used. A Message-ID's left part
may be built from the sender's address, so it is masked like an address's local part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "•••"
_ADDRESS = re.compile(r"[^\s<>\"'\[\]():,;]+@[^\s<>\"'\[\]():,;]+")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]]", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"<([^<>]*)@([^<>@]*)>")
_SECRET_NAME = re.compile(
    r"(key|token|secret|password|pass|pwd|sig|signature|auth|credentials?|session)$"
)


def mask_email(address: str) -> str:
    """``jane.doe@example.com`` -> ``j•••@example.com``; anything odd is masked whole."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return MASK
    return f"{local[0]}{MASK}@{domain}"


def mask_addresses(text: str) -> str:
    """Mask every address in ``text`` (error messages of libraries and APIs may quote one)."""
    return _ADDRESS.sub(lambda match: mask_email(match.group(0)), text)


def _parameters(parameters: str, *, drop: bool) -> str:
    kept = []
    for pair in parameters.split("&"):
        name, equals, _value = pair.partition("=")
        if not (equals and _SECRET_NAME.search(re.sub(r"[^a-z0-9]", "", name.lower()))):
            kept.append(pair)
        elif not drop:
            kept.append(f"{name}={MASK}")
    return "&".join(kept)


def _rewrite(url: str, *, drop: bool) -> str:
    """``url`` with its userinfo and secret parameter values masked, or dropped."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        host = authority.rpartition("@")[2]
        authority = host if drop else f"{MASK}@{host}"
    tail, hash_mark, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    if question:
        query = _parameters(query, drop=drop)
        question = question if query or not drop else ""
    if hash_mark and "=" in fragment:
        fragment = _parameters(fragment, drop=drop)
    return f"{scheme}://{authority}{path}{question}{query}{hash_mark}{fragment}"


def mask_url(url: str) -> str:
    """``url`` with its user, password and secret-looking parameter values masked."""
    return _rewrite(url, drop=False)


def without_credentials(url: str) -> str:
    """``url`` without its user, password and secret-looking parameters: the base of the links
    in a feed fetched with them, so that no post carries them to readers."""
    return _rewrite(url, drop=True)


def mask_urls(text: str) -> str:
    """Mask every URL in ``text`` (:func:`mask_url`): reports and errors may quote one."""
    return _URL.sub(lambda match: mask_url(match.group(0)), text)


def mask_message_id(message_id: str) -> str:
    """``<jane.doe.123@mail.example>`` -> ``<j•••@mail.example>`` (all before the last ``@``
    masked), and any other address in the value as :func:`mask_addresses` does."""
    masked = mask_addresses(message_id)
    return _MESSAGE_ID.sub(lambda found: f"<{found[1][:1]}{MASK}@{found[2]}>", masked)


def mask_message_ids(report: Mapping[str, Any]) -> dict[str, Any]:
    """An inbox report's JSON (``{"actions": [{"message_id": ...}, ...], ...}``) with each
    action's Message-ID masked, for printing or answering."""
    shown = dict(report)
    actions = report.get("actions")
    if isinstance(actions, list):
        shown["actions"] = [
            {**action, "message_id": mask_message_id(str(action.get("message_id", "")))}
            if isinstance(action, Mapping)
            else action
            for action in actions
        ]
    return shown
