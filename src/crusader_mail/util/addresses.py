"""Small address helpers every stage shares (validation lives in ``storage.rules.normalize_email``).

Contract::

    lower_domain(address) -> str          ``Jane@EXAMPLE.com`` -> ``Jane@example.com``: the form
                                          addresses are keyed and compared in (the local part may
                                          be case-sensitive, the domain is not)
    plus_address(address, tag) -> str     ``news@example.com`` + ``subscribe`` ->
                                          ``news+subscribe@example.com``
"""

from __future__ import annotations


def lower_domain(address: str) -> str:
    local, _, domain = address.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


def plus_address(address: str, tag: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}+{tag}@{domain}"
