"""The feed client's network layer: checked addresses, one deadline per exchange.

::

    AddressPolicy.from_settings(settings)            fetch.allow_private, fetch.allow_hosts
    policy.refusal(host, address) -> str | None      why a connection there is refused
    GuardedBackend(policy, resolve)                  the httpcore backend make_client uses
    deadline(seconds)                                a context: every connect, read and write
                                                     of this thread ends by then
    system_resolver(host) -> list[str]               getaddrinfo's addresses, in order
    ip_literal(host) -> address | None               the address a host spells, if it is one

Every connection a feed client opens goes through :class:`GuardedBackend`: it resolves the host
once (within the deadline), refuses the connection when any address is loopback, private,
link-local, multicast, reserved, unspecified or otherwise not global (an IPv4 address inside
IPv6, ``::ffff:10.0.0.1``, 6to4, Teredo or NAT64, is judged by that IPv4 address; ``2130706433``
and ``0177.0.0.1`` are the IPv4 addresses they spell) unless ``fetch.allow_private`` is set or
the host or address is in ``fetch.allow_hosts``, and then connects to exactly the address it
checked: nothing resolves the name again, so DNS rebinding cannot swap it. The URL keeps the
name: the Host header and TLS (SNI, certificate) use it. The refusal happens before any socket
is opened, on the first URL and on every redirect.

:func:`deadline` bounds a whole exchange (connect, TLS, request, headers, body, redirects)
instead of each read: every read and write waits at most until the deadline, so a server
trickling bytes within the read timeout still runs out of time; the read or write then fails
with a timeout and httpcore closes the connection.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore

from crusader_mail.settings import FetchSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Sequence[str]]

_DEADLINE: ContextVar[float | None] = ContextVar("crusader_mail_fetch_deadline", default=None)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class RefusedAddress(Exception):
    """A connection the address policy refuses (raised before any socket is opened)."""


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Within this block every connect, read and write of this thread ends ``seconds`` from now
    (the monotonic time it yields)."""
    until = time.monotonic() + seconds
    token = _DEADLINE.set(until)
    try:
        yield until
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of this thread's deadline; ``expired`` once it passed."""
    until = _DEADLINE.get()
    if until is None:
        return timeout
    left = until - time.monotonic()
    if left <= 0:
        raise expired("the fetch deadline passed")
    return left if timeout is None else min(timeout, left)


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form ``getaddrinfo`` accepts (``[::1]``,
    ``2130706433``, ``0177.0.0.1``, ``127.1``, ``0x7f.1``), or None for a name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not bare or not all(ch.isalnum() or ch == "." for ch in bare):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public(address: IPAddress) -> str | None:
    """What kind of non-public address ``address`` is (``"a private address"``), or None."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        return non_public(inner)
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "a non-public address"),
    )
    return next((kind for bad, kind in checks if bad), None)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses feeds may come from (see the module doc)."""

    allow_private: bool = False
    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: FetchSettings) -> AddressPolicy:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in settings.allow_hosts:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        return cls(settings.allow_private, frozenset(names), tuple(networks))

    def allows_name(self, host: str) -> bool:
        return self.allow_private or host.lower().rstrip(".") in self.names

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why ``host`` may not be fetched from ``address``; None when it may."""
        if self.allows_name(host) or any(address in net for net in self.networks):
            return None
        kind = non_public(address)
        if kind is None:
            return None
        where = f"{address} is" if ip_literal(host) == address else f"{host} resolves to {address},"
        return (
            f"refused: {where} {kind} (a feed there needs fetch.allow_private "
            "or the host in fetch.allow_hosts)"
        )


def system_resolver(host: str) -> list[str]:
    """The addresses ``getaddrinfo`` gives for ``host``, in its order, each once."""
    found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def _resolve_in_time(resolve: Resolver, host: str, timeout: float | None) -> Sequence[str]:
    """``resolve(host)``, given up (ConnectTimeout) after ``timeout`` seconds: a stuck lookup
    is left to finish in its own daemon thread."""
    result: list[Sequence[str]] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(resolve(host))
        except BaseException as error:  # handed to the caller below
            failure.append(error)

    worker = threading.Thread(target=run, name="feed-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if failure:
        raise httpcore.ConnectError(f"cannot resolve {host}: {failure[0]}")
    if not result:
        raise httpcore.ConnectTimeout(f"resolving {host} took too long")
    return result[0]


class GuardedStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the thread's :func:`deadline`."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return GuardedStream(self.inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows, to exactly the address it checked."""

    def __init__(
        self,
        policy: AddressPolicy,
        resolve: Resolver = system_resolver,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.resolve = resolve
        self.inner = inner or httpcore.SyncBackend()

    def addresses(self, host: str, timeout: float | None) -> list[IPAddress]:
        """The checked addresses of ``host``; raises :class:`RefusedAddress` when any is not
        allowed (a name resolving to a public and a private address is refused)."""
        literal = ip_literal(host)
        if literal is not None:
            found: list[IPAddress] = [literal]
        else:
            names = _resolve_in_time(self.resolve, host, timeout)
            found = [ipaddress.ip_address(name) for name in names]
            if not found:
                raise httpcore.ConnectError(f"{host} has no address")
        for address in found:
            reason = self.policy.refusal(host, address)
            if reason is not None:
                raise RefusedAddress(reason)
        return found

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception = httpcore.ConnectError(f"cannot connect to {host}")
        for address in self.addresses(host, _bounded(timeout, httpcore.ConnectTimeout)):
            bounded = _bounded(timeout, httpcore.ConnectTimeout)
            try:
                stream = self.inner.connect_tcp(
                    str(address), port, bounded, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
                continue
            return GuardedStream(stream)
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise RefusedAddress("refused: feeds are not read over Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
