"""Fetching a feed's bytes: over HTTP with httpx, or from a local file.

::

    make_client(settings, resolve=system_resolver) -> httpx.Client
    fetch(source, url, client, settings, cache) -> Fetched    # raises FeedError, one line
    is_local(url) -> bool                                     # a path or a file:// URL

HTTP, with a client from :func:`make_client` (its connections go through
:mod:`crusader_mail.feeds.network`): only to public addresses unless ``fetch.allow_private`` or
``fetch.allow_hosts`` says otherwise, checked on the first URL and on every redirect before any
connection, and connected to the very address that was checked; one wall-clock deadline
(``fetch.timeout``) for the whole exchange: connect, headers, body and every redirect, however
slowly the server sends them; a size cap on the decoded bytes, checked while streaming;
redirects followed by hand (at most ``max_redirects``) so that a permanent one (301/308 from the
start of the chain) is reported and remembered; a conditional GET with the remembered ETag and
Last-Modified (a 304 comes back as ``not_modified``). gzip bytes without a Content-Encoding (a
``.gz`` file, a misconfigured server) are inflated within the same cap. A local file is read with
the same cap. Proxy settings from the environment are not used: a proxy would resolve the names
itself, past the address check.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from crusader_mail import USER_AGENT
from crusader_mail.errors import FeedError
from crusader_mail.feeds.network import (
    AddressPolicy,
    GuardedBackend,
    RefusedAddress,
    Resolver,
    deadline,
    ip_literal,
    system_resolver,
)
from crusader_mail.feeds.sanitize import HTTP_SCHEMES, absolute_url
from crusader_mail.models import FeedCache
from crusader_mail.settings import FetchSettings
from crusader_mail.util.masking import without_credentials
from crusader_mail.util.text import one_line

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport over :class:`GuardedBackend` (httpx has no public hook for the
    network backend, so the connection pool is replaced)."""

    def __init__(self, backend: GuardedBackend) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=16,
            max_keepalive_connections=8,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


def make_client(settings: FetchSettings, *, resolve: Resolver = system_resolver) -> httpx.Client:
    """An HTTP client for feeds: our User-Agent, timeouts from the settings, no auto-redirects,
    connections only to addresses the settings allow (``resolve`` finds a host's addresses)."""
    backend = GuardedBackend(AddressPolicy.from_settings(settings), resolve)
    return httpx.Client(
        transport=_GuardedTransport(backend),  # and so no proxy from the environment
        timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
        follow_redirects=False,  # followed by hand: permanent redirects are reported
        headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
    )


@dataclass
class Fetched:
    """What a fetch brought: the body and headers, or ``not_modified``, and what to remember."""

    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    url: str = ""  # where the bytes came from (final URL, credentials left out), "" for a file
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    permanent_redirect: str | None = None


def is_local(url: str) -> bool:
    return "://" not in url or url.lower().startswith("file://")


def fetch(
    source: str, url: str, client: httpx.Client, settings: FetchSettings, cache: FeedCache | None
) -> Fetched:
    """The bytes at ``url`` (read for the feed ``source``, which names it in errors)."""
    if is_local(url):
        return _read_local(source, url, settings)
    request_headers: dict[str, str] = {}
    if cache is not None and cache.etag:
        request_headers["If-None-Match"] = cache.etag
    if cache is not None and cache.last_modified:
        request_headers["If-Modified-Since"] = cache.last_modified
    try:
        with deadline(settings.timeout):
            return _exchange(source, url, client, settings, request_headers, cache)
    except RefusedAddress as refused:
        raise FeedError(source, str(refused)) from None
    except httpx.TimeoutException:
        raise FeedError(source, f"timed out after {settings.timeout:g} s (fetch.timeout)") from None
    except httpx.DecodingError as error:
        raise FeedError(source, f"the body could not be decoded: {one_line(error)}") from None
    except httpx.ConnectError as error:
        raise FeedError(source, f"cannot connect: {one_line(error)}") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        kind = type(error).__name__
        raise FeedError(source, f"HTTP request failed ({kind}): {one_line(error)}") from None


def _exchange(
    source: str,
    url: str,
    client: httpx.Client,
    settings: FetchSettings,
    request_headers: dict[str, str],
    cache: FeedCache | None,
) -> Fetched:
    """The requests of one fetch, redirects followed by hand (within the caller's deadline)."""
    permanent = cache.permanent_redirect if cache else None
    chain_permanent = True
    policy = AddressPolicy.from_settings(settings)
    for _hop in range(settings.max_redirects + 1):
        _refuse_address_literal(source, url, policy)
        with client.stream("GET", url, headers=request_headers) as response:
            status = response.status_code
            location = response.headers.get("location")
            if status in (301, 302, 303, 307, 308) and location:
                target = absolute_url(location, str(response.url), HTTP_SCHEMES)
                if target is None:
                    raise FeedError(source, f"HTTP {status} redirects to an unusable URL")
                chain_permanent = chain_permanent and status in (301, 308)
                if chain_permanent:
                    permanent = target
                url = target
                continue
            if status == 304:
                return Fetched(not_modified=True, url=url, permanent_redirect=permanent)
            if status >= 400 or status < 200:
                reason = response.reason_phrase or "error"
                raise FeedError(source, f"HTTP {status} {reason} from {url}")
            body = _read_capped(source, response, settings)
            headers = {k.lower(): v for k, v in response.headers.items()}
            headers.pop("content-encoding", None)  # httpx has decoded the body already
            base = without_credentials(str(response.url))  # never copied into a post's links
            headers["content-location"] = base  # the base of relative URLs
            return Fetched(
                body=_maybe_gunzip(source, body, settings.max_bytes),
                headers=headers,
                url=base,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                permanent_redirect=permanent,
            )
    raise FeedError(source, f"more than {settings.max_redirects} redirects (fetch.max_redirects)")


def _refuse_address_literal(source: str, url: str, policy: AddressPolicy) -> None:
    """A URL whose host is an address (in any spelling, some of which httpx would not even
    parse) is judged before the request; names are judged when the client connects."""
    host = urlsplit(url).hostname or ""
    address = ip_literal(host)
    reason = policy.refusal(host, address) if address is not None else None
    if reason is not None:
        raise FeedError(source, reason)


def _read_capped(source: str, response: httpx.Response, settings: FetchSettings) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > settings.max_bytes:
            raise FeedError(source, _too_big(settings.max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(limit: int) -> str:
    return f"larger than the size limit of {limit:,} bytes (fetch.max_bytes)"


def _maybe_gunzip(source: str, body: bytes, limit: int) -> bytes:
    """gzip bytes without a Content-Encoding (a ``.gz`` file, a misconfigured server)."""
    if not body.startswith(b"\x1f\x8b"):
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise FeedError(source, f"looks gzip-compressed but does not inflate: {error}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise FeedError(source, _too_big(limit) + " once decompressed")
    return data


def _read_local(source: str, url: str, settings: FetchSettings) -> Fetched:
    path = Path(unquote(urlsplit(url).path)) if url.lower().startswith("file://") else Path(url)
    try:
        with path.open("rb") as handle:
            body = handle.read(settings.max_bytes + 1)
    except FileNotFoundError:
        raise FeedError(source, "file not found") from None
    except IsADirectoryError:
        raise FeedError(source, "is a folder, not a feed file") from None
    except OSError as error:
        raise FeedError(source, f"cannot read: {error.strerror}") from None
    if len(body) > settings.max_bytes:
        raise FeedError(source, _too_big(settings.max_bytes))
    return Fetched(body=_maybe_gunzip(source, body, settings.max_bytes))
