"""Finding a blog's feed from its web page. No I/O.

::

    feed_links(page, base) -> list[str]      the RSS and Atom feeds the page links, best first

A blog's home page names its feed in its head: ``<link rel="alternate"
type="application/rss+xml" href="/feed/">`` (``application/atom+xml`` and
``application/rdf+xml`` too). The links come back absolute (against the page's URL and its
``<base href>``), http(s) only, once each, in page order with comment feeds last (WordPress
links "Comments Feed" beside the posts' feed). The caller fetches the one it uses exactly as it
fetches a configured feed: the same address rules apply (:mod:`crusader_mail.feeds.network`).
"""

from __future__ import annotations

from html.parser import HTMLParser

from crusader_mail.feeds.sanitize import HTTP_SCHEMES, absolute_url

FEED_TYPES = {"application/rss+xml", "application/atom+xml", "application/rdf+xml"}
_READ = 512 * 1024  # the head of a page is near its start; a feed link is no further than this


class _FeedLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[tuple[str, str]] = []  # (href, title)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        if tag != "link" or not values.get("href"):
            return
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").split(";")[0].strip().lower()
        if "alternate" in rels and kind in FEED_TYPES:
            self.links.append((values["href"], values.get("title", "")))


def feed_links(page: bytes, base: str) -> list[str]:
    """The feeds ``page`` (fetched from ``base``) links, absolute, best first (see above)."""
    parser = _FeedLinks()
    parser.feed(page[:_READ].decode("utf-8", "replace"))
    parser.close()
    root = absolute_url(parser.base, base, HTTP_SCHEMES) if parser.base else None
    found: list[tuple[bool, str]] = []
    for href, title in parser.links:
        url = absolute_url(href, root or base, HTTP_SCHEMES)
        if url is not None and url not in (seen for _, seen in found):
            found.append(("comment" in f"{title} {href}".lower(), url))
    return [url for _, url in sorted(found, key=lambda pair: pair[0])]  # stable: page order
