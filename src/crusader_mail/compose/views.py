"""What the templates are given of a post (:class:`PostView`): its sanitized content fitted to
the 600 px column (headings lowered under the issue's one ``h1``, pictures never upscaled,
alt text kept), its lead image (:class:`ImageView`) and its media as Listen/Watch cards
(:class:`MediaView`, at most ``MAX_MEDIA_CARDS``), and dates as the reader reads them."""

from __future__ import annotations

import html as html_lib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from markupsafe import Markup

from crusader_mail.feeds.sanitize import CARD_CLASS
from crusader_mail.models import Image, Media, MediaKind, Post

WORD_JOINER = "\u2060"
_FORGEABLE = re.compile(r"([\[{])(?=[\[{%#])")
COLUMN_WIDTH = 552  # the 600 px column less the post's padding
MAX_MEDIA_CARDS = 3
_FORMATS = {
    "audio/mpeg": "MP3", "audio/mp3": "MP3", "audio/mp4": "M4A", "audio/x-m4a": "M4A",
    "audio/aac": "AAC", "audio/ogg": "Ogg", "audio/opus": "Opus", "audio/wav": "WAV",
    "video/mp4": "MP4", "video/quicktime": "MOV", "video/webm": "WebM",
}  # fmt: skip
_NBSP = "\u00a0"
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{2,4})$")
_HEADING = re.compile(r"<(/?)h([1-6])(?=[\s>])")
_IMG = re.compile(r"<img\s[^>]*>")
_SIZE = re.compile(r'\s(width|height)="(\d+)"')
_SRC = re.compile(r'\ssrc="[^"]')
_ALT = re.compile(r'\salt="')


def date_text(when: datetime) -> str:
    """``23 November 2026``."""
    return f"{when.day} {when:%B %Y}"


def defuse(text: str) -> str:
    """Make ``[[``, ``{{``, ``{%``, ``{#`` from a feed inert (invisible U+2060 in between)."""
    return _FORGEABLE.sub(lambda m: m.group(1) + WORD_JOINER, text)


def _direction(text: str) -> str:
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return "rtl"
        if kind == "L":
            return "ltr"
    return "ltr"


@dataclass(frozen=True)
class ImageView:
    """A picture as the templates place it: ``width`` is the ``width`` attribute to write
    (the column's when the picture is known to be at least that wide, else its own known
    width; ``None`` when unknown: the stylesheet's ``max-width:100%`` alone, never upscaled)."""

    url: str
    alt: str
    width: int | None


@dataclass(frozen=True)
class MediaView:
    """A "Listen" or "Watch" card: ``label`` is the action, ``details`` one line such as
    "2 h 55 min · MP3 · 105 MB" (or the site of a hosted video)."""

    kind: MediaKind
    label: str
    url: str
    title: str
    details: str
    thumbnail: ImageView | None


@dataclass(frozen=True)
class PostView:
    """What the templates see of a post (every text field defused; ``content`` is Markup)."""

    id: str
    title: str
    link: str
    published: datetime
    date: str
    author: str
    image: ImageView | None
    media: tuple[MediaView, ...]
    excerpt: str
    content: Markup
    full: bool
    show_image: bool
    dir: str
    categories: tuple[str, ...]
    tags: tuple[str, ...]


def image_view(image: Image) -> ImageView:
    width = min(image.width, COLUMN_WIDTH) if image.width else None
    return ImageView(url=defuse(image.url), alt=defuse(image.alt), width=width)


def _duration_text(seconds: int) -> str:
    """``2 h 55 min``, ``29 min``, ``45 s`` (no-break spaces: a line never breaks inside)."""
    if seconds < 60:
        return f"{seconds}{_NBSP}s"
    hours, minutes = divmod(round(seconds / 60), 60)
    if hours:
        return f"{hours}{_NBSP}h{_NBSP}{minutes:02d}{_NBSP}min"
    return f"{minutes}{_NBSP}min"


def _size_text(length: int) -> str:
    """``28 MB``, ``1.4 GB`` (decimal units, a no-break space)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if length >= size:
            amount = length / size
            number = f"{amount:.1f}" if amount < 10 else f"{round(amount)}"
            return f"{number}{_NBSP}{unit}"
    return f"{length}{_NBSP}bytes"


def _media_details(media: Media) -> str:
    if media.type == "text/html":  # a hosted video: its site
        host = urlsplit(media.url).hostname or ""
        return host.removeprefix("www.")
    parts = [_duration_text(media.duration)] if media.duration else []
    extension = _EXTENSION.search(urlsplit(media.url).path)
    kind = _FORMATS.get(media.type) or (extension.group(1).upper() if extension else "")
    parts += [kind] if kind else []
    parts += [_size_text(media.length)] if media.length else []
    return " · ".join(parts)


def _in_content(url: str, content: str) -> bool:
    """Whether the content already holds a card for ``url``: for the very URL, or for the same
    file with a query added (a player's ``a.mp4?_=1`` for the feed's ``a.mp4``)."""
    card = f'class="{CARD_CLASS}" href="{html_lib.escape(url)}'
    return card + '"' in content or ("?" not in url and card + "?" in content)


def media_view(media: Media, post_title: str) -> MediaView:
    label = "Listen" if media.kind == "audio" else "Watch"
    thumbnail = image_view(media.thumbnail) if media.thumbnail is not None else None
    return MediaView(
        kind=media.kind,
        label=label,
        url=defuse(media.url),
        title=defuse(media.title or post_title),
        details=defuse(_media_details(media)),
        thumbnail=thumbnail,
    )


def _lower_heading(match: re.Match[str]) -> str:
    return f"<{match.group(1)}h{min(int(match.group(2)) + 1, 6)}"


def _fit_image(match: re.Match[str]) -> str:
    tag = match.group()
    if _SRC.search(tag) is None:
        return ""  # its address could not be kept: an empty box
    if _ALT.search(tag) is None:
        tag = tag[:-1] + ' alt="">'
    sizes = {name: int(value) for name, value in _SIZE.findall(tag)}
    width = sizes.get("width", 0)
    if width <= COLUMN_WIDTH:
        return tag
    fitted = {"width": COLUMN_WIDTH}
    if "height" in sizes:
        fitted["height"] = max(1, round(sizes["height"] * COLUMN_WIDTH / width))
    return _SIZE.sub(lambda m: f' {m.group(1)}="{fitted[m.group(1)]}"', tag)


def fit_content(content: str) -> str:
    """A post's sanitized HTML fitted to the issue: each heading one level down (``h6`` stays);
    each picture declared wider than the column declared :data:`COLUMN_WIDTH` wide, its height
    in proportion; a picture without alt text gets ``alt=""`` (read as decoration, not as its
    file name) and one without an address (the reader could not resolve it) is left out.
    The reader's sanitizer wrote the markup, so tags are canonical: lowercase names,
    double-quoted attributes, ``<`` and ``"`` in values escaped."""
    return _IMG.sub(_fit_image, _HEADING.sub(_lower_heading, content))


def post_view(post: Post, full: bool) -> PostView:
    content = fit_content(defuse(post.content_html or post.summary_html))
    full = full and bool(content.strip())
    image = image_view(post.image) if post.image is not None else None
    shown = image is not None and (image.url in content or html_lib.escape(image.url) in content)
    show_image = image is not None and not (full and shown)
    media = tuple(
        media_view(m, post.title) for m in post.media if not (full and _in_content(m.url, content))
    )[:MAX_MEDIA_CARDS]
    return PostView(
        id=post.id,
        title=defuse(post.title),
        link=defuse(post.link),
        published=post.published,
        date=date_text(post.published),
        author=defuse(post.author),
        image=image,
        media=media,
        excerpt=defuse(post.excerpt),
        content=Markup(content),  # noqa: S704 - sanitized by the reader (nh3)
        full=full,
        show_image=show_image,
        dir=_direction(post.title + post.excerpt),
        categories=tuple(defuse(c) for c in post.categories),
        tags=tuple(defuse(t) for t in post.tags),
    )
