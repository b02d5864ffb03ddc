"""Feed documents the tests serve."""

from __future__ import annotations

from typing import Any

from crusader_mail.settings import FetchSettings


def page(number: int, next_href: str | None = None) -> bytes:
    link = f'<atom:link rel="next" href="{next_href}"/>' if next_href else ""
    items = "".join(
        f"<item><title>Post {number}-{i}</title><link>https://paged.example/{number}/{i}</link>"
        f"<pubDate>Mon, {number:02d} Nov 2026 0{i}:00:00 GMT</pubDate></item>"
        for i in range(3)
    )
    return (
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>P</title>'
        f"<link>https://paged.example/</link>{link}{items}</channel></rss>"
    ).encode()


# The loopback feed server is a private address: tests allow it by name, as an intranet would.
FEED_SERVER_HOSTS = ("127.0.0.1",)
FEED_SERVER_TOML = '\n[fetch]\nallow_hosts = ["127.0.0.1"]\n'


def loopback_fetch(**options: Any) -> FetchSettings:
    """Fetch settings that allow the loopback feed server (and ``options``)."""
    return FetchSettings(allow_hosts=FEED_SERVER_HOSTS, **options)
