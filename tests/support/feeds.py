"""Feed documents the tests serve."""

from __future__ import annotations


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
