"""A guard for tests that name outside addresses: nothing may leave 127.0.0.0/8 (or ::1).

``loopback_only`` (a fixture) refuses, before anything is sent, every socket connection to an
address that is not loopback and every name lookup but ``localhost`` and loopback literals,
and records each attempt in ``Guard.outside``: a test asserts that list stays empty. The guard
blocks instead of watching, so even code that tries (today's code, a regression) sends nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest


def _is_loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass
class Guard:
    outside: list[str] = field(default_factory=list)  # each refused connection or lookup


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Guard:
    guard = Guard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if not _is_loopback(host):
            guard.outside.append(f"connect {address!r}")
            raise ConnectionRefusedError(f"test guard: no connection to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name != "localhost" and not _is_loopback(name):
            guard.outside.append(f"lookup {name!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no lookup of {name!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return guard


class FakeDNS:
    """A resolver for ``make_client(resolve=...)``: names to addresses, every lookup counted.

    A name with several answers gives them one lookup after another (the last one repeats):
    that is how a rebinding DNS server answers."""

    def __init__(self, answers: dict[str, Sequence[Sequence[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def __call__(self, host: str) -> Sequence[str]:
        self.lookups.append(host)
        turns = self.answers.get(host)
        if not turns:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: no such name")
        return turns[min(self.lookups.count(host), len(turns)) - 1]
