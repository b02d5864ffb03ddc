"""A feed's HTTP memory between runs (:class:`FeedCache`), kept in the archive."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeedCache:
    """Per-feed HTTP memory, kept in the archive."""

    etag: str | None = None
    last_modified: str | None = None
    permanent_redirect: str | None = None
