"""Small address helpers every stage shares (validation lives in ``storage.rules.normalize_email``).

Contract::

    lower_domain(address) -> str          ``Jane@EXAMPLE.com`` -> ``Jane@example.com``: the
                                          domain lowercased, the local part as given (readers are
                                          compared by ``storage.rules.mailbox_key``; old tokens
                                          and version 1 ledgers keyed this form)
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
