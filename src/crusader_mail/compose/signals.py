"""What posts link to: the pages two related posts tend to share, and links between posts.

::

    page_key(url) -> str | None                  an http(s) URL written one way
    LinkIndex(posts)                             built once
    index.shared(i) -> dict[int, float]          the posts sharing links with post i, and how much

A post's keys are the pages its HTML links to (every ``<a href>``; feed HTML is sanitized, so
attributes are double-quoted), each written one way by :func:`page_key`. A link to another
post of the same posts becomes that post's own key, which every post holds: a post that links
to another shares a key with it, and so do two posts that link to the same third post or to the
same page elsewhere. A link finds a post by its address (``link``, or ``id`` when it is a URL),
or, for feeds served through a redirector (FeedBurner's ``feedproxy`` addresses), by the last
segment of its path when exactly one post's address ends with it and it has a ``-`` or ``_``
(a slug such as ``flaky-tests.html``, not ``/about`` or ``/2016``).

Each shared key weighs like a label (``ln(N / df) / ln(N)`` over the N posts, df the posts
holding it: a page every post links to, such as the blog's home, weighs 0), times
``post_weight`` for a post's own key and ``page_weight`` for a page elsewhere.

Speed: one regular expression over each post's HTML, each distinct address written once;
:meth:`LinkIndex.shared` is one pass over the posts' key sets.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Sequence
from itertools import chain

from crusader_mail.models import Post

__all__ = ["LinkIndex", "page_key"]

_HREF = re.compile(r'<a\b[^>]*?\shref="([^"]*)"', re.I)
_INDEX = re.compile(r"/index\.html?$", re.I)
_TRACKING = re.compile(r"(?:utm_[a-z]+|fbclid|gclid|mc_[a-z]+)=", re.I)


def page_key(url: str) -> str | None:
    """``url`` written one way, None when it is no http(s) URL: scheme, ``www.``, port, user,
    fragment, tracking parameters (``utm_*``, ``fbclid``...), a trailing ``/`` and a final
    ``index.html`` left out, the host lower-cased; the rest of the query kept
    (``watch?v=...`` names a page)."""
    if "&" in url:
        url = html.unescape(url)
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    rest, _, query = rest.partition("#")[0].partition("?")
    host, _, path = rest.partition("/")
    host = host.rpartition("@")[2].partition(":")[0].lower().removeprefix("www.")
    if not host:
        return None
    path = _INDEX.sub("", "/" + path).rstrip("/")
    kept = "&".join(p for p in query.split("&") if p and not _TRACKING.match(p))
    return f"{host}{path}?{kept}" if kept else host + path


def _slug(key: str) -> str | None:
    """The last segment of a page key's path when it reads like a post's slug."""
    path = key.partition("?")[0].partition("/")[2]
    last = path.rpartition("/")[2]
    return last if "-" in last or "_" in last else None


class LinkIndex:
    """The posts' link keys (see the module doc) and their weights."""

    def __init__(
        self, posts: Sequence[Post], *, post_weight: float = 1.0, page_weight: float = 1.0
    ) -> None:
        n = len(posts)
        own: dict[str, int] = {}
        slugs: dict[str, int] = {}
        clashes: set[str] = set()
        for i, post in enumerate(posts):
            for address in {post.link, post.id}:
                key = page_key(address)
                if key is None or own.setdefault(key, i) != i:
                    continue
                slug = _slug(key)
                if slug is not None and slugs.setdefault(slug, i) != i:
                    clashes.add(slug)  # two posts end with it: it finds neither
        for slug in clashes:
            del slugs[slug]
        written: dict[str, str | int] = {}  # href -> its key, the post it finds, or "" (none)
        self.keys: list[frozenset[str | int]] = []
        for i, post in enumerate(posts):
            hrefs = _HREF.findall(post.content_html or post.summary_html)
            for href in set(hrefs).difference(written):
                written[href] = _target(href, own, slugs)
            mine = set(map(written.__getitem__, hrefs))
            mine.discard("")
            mine.add(i)
            self.keys.append(frozenset(mine))
        scale = math.log(n) if n > 1 else 1.0
        df = Counter(chain.from_iterable(self.keys))
        self.weight = {
            key: (post_weight if isinstance(key, int) else page_weight) * math.log(n / k) / scale
            for key, k in df.items()
            if k > 1
        }

    def shared(self, i: int) -> dict[int, float]:
        """The other posts that share a key with post ``i``, each with the sum of the shared
        keys' weights."""
        mine = self.keys[i] & self.weight.keys()
        out: dict[int, float] = {}
        if mine:
            for j, theirs in enumerate(self.keys):
                if j != i and not mine.isdisjoint(theirs):
                    out[j] = sum(sorted(self.weight[key] for key in mine & theirs))
        return out


def _target(href: str, own: dict[str, int], slugs: dict[str, int]) -> str | int:
    """What a link points at: a post's position, a page's key, or "" (no web page)."""
    key = page_key(href)
    if key is None:
        return ""
    if key in own:
        return own[key]
    slug = _slug(key)
    return slugs.get(slug, key) if slug is not None else key
