"""Feed HTML made safe for email: an nh3 (ammonia) allowlist, every URL absolute.

Contract::

    sanitize(markup, base) -> Sanitized       # .html: safe HTML, relative URLs resolved against
                                              # base; .media: what its players became links to
    sanitize_html(markup, base) -> str        # sanitize(markup, base).html
    absolute_url(url, base) -> str | None     # http(s) (or mailto) URL, or None when unusable
    content_images(safe_html) -> list[Image]  # the <img> of already-sanitized HTML, in order
    is_tracker(url, width, height) -> bool    # a tracking pixel or a feed service's badge
    on_domain(host, domain) -> bool           # host is domain or one of its subdomains

Kept: headings, paragraphs, lists, links, images (src, alt, width, height), tables, code and
pre, blockquote, emphasis, br, hr, figure/figcaption. Dropped: script, style, form, object,
embed (with their contents where they have any), every event handler and style attribute, and
any URL that is not http, https or mailto (so ``javascript:`` and ``data:`` go). Relative URLs
are resolved against ``base`` *before* the scheme is judged, so a relative URL can never turn
into something else afterwards. Links get ``rel="noopener"``.

Media become links, never players: a YouTube or Vimeo ``iframe`` becomes a link card to the
video (YouTube's with its still, ``i.ytimg.com/vi/<id>/hqdefault.jpg``, 480x360; Vimeo has no
still without an API call), any other iframe goes with its content; an ``audio`` or ``video``
element becomes a "Listen"/"Watch the video" link to its file (a video's poster as its picture)
and its fallback content is never shown. A card is ``<a class="media-card" ...>``, the only
class the output ever carries.

Tracking pixels go: an image declared 2 px or less either way, and any image from a known
tracking path (FeedBurner and Feedsportal badges and pixels, WordPress stats, Mailchimp,
Medium, FeedBlitz, ad pixels), with the link around it when it held nothing else.

How: nh3 cleans once with ``iframe``, ``audio``, ``video`` and ``source`` allowed (so their URLs
are resolved and judged like any other); in that output every ``<`` is a real tag (nh3 escapes
it in text and attribute values, and the only raw-text element it keeps is ``iframe``, whose
text is thrown away), so those elements and the trackers are replaced by plain string work, and
whatever was replaced is cleaned once more by the final allowlist, which has none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape, unescape
from urllib.parse import parse_qs, urljoin, urlsplit

import nh3

from crusader_mail.models import Image, Media, MediaKind

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd",
    "del", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small",
    "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
    "time", "tr", "u", "ul", "var",
}  # fmt: skip
# Removed together with everything inside them.
DROP_WITH_CONTENT = {
    "script", "style", "iframe", "object", "embed", "applet", "template", "title", "head",
    "textarea", "select", "button", "svg", "math", "frameset", "frame", "noembed",
}  # fmt: skip
ATTRIBUTES = {
    "*": {"dir", "lang", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "ol": {"start", "reversed", "type"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite"},
    "ins": {"cite"},
    "abbr": {"title"},
    "time": {"datetime"},
}
# Kept by the first pass only, to be turned into link cards.
EMBEDS = {"iframe", "audio", "video", "source"}
_EMBED_ATTRIBUTES = {
    "iframe": {"src"},
    "audio": {"src"},
    "video": {"src", "poster", "width", "height"},
    "source": {"src"},
}
CARD_CLASS = "media-card"
URL_ATTRIBUTES = {"href", "src", "cite", "poster"}
LINK_SCHEMES = {"http", "https", "mailto"}
HTTP_SCHEMES = {"http", "https"}
_SIZE = re.compile(r"^\s*(\d{1,5})(?:px)?\s*$", re.IGNORECASE)
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'\s([a-z][a-z0-9-]*)="([^"]*)"')
# In nh3's output (see the module doc): an iframe and its raw text; an audio or video element
# with no other audio or video inside (the innermost first); a source tag.
_IFRAME = re.compile(r"<iframe\b([^>]*)>.*?</iframe>", re.DOTALL)
_PLAYER = re.compile(r"<(audio|video)\b([^>]*)>((?:(?!<(?:audio|video)\b).)*?)</\1>", re.DOTALL)
_SOURCE = re.compile(r"<source\b([^>]*)>")
# Marks in the rewritten text (nh3's output never holds a NUL): where a tracker was; where a
# card starts, with the index of its media (only the cards that survive count).
_GONE = "\x00"
_CARD_MARK = re.compile(r"\x00(\d+)\x00")
_MARKED_CARD = re.compile(r"\x00\d+\x00<a\b[^>]*>.*?</a>", re.DOTALL)
_EMPTIED_LINK = re.compile(r"<a\b[^>]*>[\s\x00]*\x00[\s\x00]*</a>")
_TRACKER_HOSTS = (
    "feedsportal.com", "feedblitz.com", "pixel.wp.com", "stats.wordpress.com",
    "pixel.quantserve.com", "scorecardresearch.com", "doubleclick.net", "google-analytics.com",
)  # fmt: skip
_TRACKER_PATHS = (  # (host, path prefix); "" matches any host
    ("feeds.feedburner.com", "/~"), ("feedproxy.google.com", "/~"),
    ("feeds.wordpress.com", "/1.0/"), ("list-manage.com", "/track/"), ("", "/_/stat"),
    ("amazon-adsystem.com", "/e/ir"), ("assoc-amazon.com", "/e/ir"),
)  # fmt: skip
_YOUTUBE_HOSTS = ("youtube.com", "youtube-nocookie.com")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_GENERIC_TITLES = {"youtube video player", "youtube player", "vimeo video player", "vimeo-player"}


@dataclass(frozen=True)
class Sanitized:
    html: str  # safe for email
    media: tuple[Media, ...] = ()  # what its iframes, audio and video became links to, in order


def is_http(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(("http://", "https://"))


def absolute_url(url: str, base: str | None, schemes: set[str] = LINK_SCHEMES) -> str | None:
    """``url`` resolved against ``base``; ``None`` unless the result uses one of ``schemes``.

    ``base`` counts only when it is itself an absolute http(s) URL (an ``xml:base`` of
    ``javascript:`` never lends its scheme). Control characters and surrounding spaces, which
    browsers ignore, are taken out before the scheme is judged.
    """
    cleaned = "".join(ch for ch in url.strip() if ch >= " " and ch != "\x7f")
    if not cleaned:
        return None
    try:
        scheme = urlsplit(cleaned).scheme.lower()
        if not scheme and cleaned.startswith("//") and not is_http(base):
            cleaned, scheme = "https:" + cleaned, "https"
        if not scheme:
            if not is_http(base):
                return None
            cleaned = urljoin(str(base), cleaned)
            scheme = urlsplit(cleaned).scheme.lower()
        if scheme in ("http", "https") and not urlsplit(cleaned).netloc:
            return None
    except ValueError:  # e.g. a malformed IPv6 host
        return None
    return cleaned if scheme in schemes else None


def on_domain(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def is_tracker(url: str, width: int | None = None, height: int | None = None) -> bool:
    """An image that only counts readers: declared 2 px or less either way, or served from a
    known tracking path (see the module doc)."""
    if (width is not None and width <= 2) or (height is not None and height <= 2):
        return True
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    if any(on_domain(host, domain) for domain in _TRACKER_HOSTS):
        return True
    return any(
        (not domain or on_domain(host, domain)) and parts.path.startswith(prefix)
        for domain, prefix in _TRACKER_PATHS
    )


def _size(value: str | None) -> int | None:
    match = _SIZE.match(value or "")
    return int(match.group(1)) if match else None


def _attributes(tag_text: str) -> dict[str, str]:
    """The attributes of one tag of nh3's output (double-quoted, entity-escaped)."""
    return {name: unescape(value) for name, value in _ATTR.findall(tag_text)}


def _clean(markup: str, base: str | None, *, first: bool) -> str:
    def attribute(tag: str, name: str, value: str) -> str | None:
        if name in URL_ATTRIBUTES:
            schemes = LINK_SCHEMES if tag == "a" else HTTP_SCHEMES
            return absolute_url(value, base, schemes)
        if name in ("width", "height"):
            match = _SIZE.match(value)
            return match.group(1) if match else None
        return value

    tags, drop, attributes = TAGS, DROP_WITH_CONTENT, ATTRIBUTES
    if first:
        tags, drop = TAGS | EMBEDS, DROP_WITH_CONTENT - EMBEDS
        attributes = {**ATTRIBUTES, **_EMBED_ATTRIBUTES}
    return nh3.clean(
        markup,
        tags=tags,
        clean_content_tags=drop,
        attributes=attributes,
        attribute_filter=attribute,
        url_schemes=LINK_SCHEMES,
        link_rel="noopener",
        strip_comments=True,
        allowed_classes=None if first else {"a": {CARD_CLASS}},
    ).strip()


def sanitize(markup: str, base: str | None) -> Sanitized:
    """Safe HTML for an email (the allowlist above, URLs absolute against ``base``), and the
    media whose players became links."""
    if not markup or not markup.strip():
        return Sanitized("")
    out = _clean(markup, base, first=True)
    cards: list[Media] = []
    rewritten = out
    if "<iframe" in rewritten:
        rewritten = _IFRAME.sub(lambda m: _iframe_card(m, cards), rewritten)
    while "<audio" in rewritten or "<video" in rewritten:
        players = _PLAYER.sub(lambda m: _player_card(m, cards), rewritten)
        if players == rewritten:
            break  # left to the final pass
        rewritten = players
    media = tuple(cards[int(n)] for n in _CARD_MARK.findall(rewritten))
    rewritten = _CARD_MARK.sub("", rewritten)
    if "<img" in rewritten:
        rewritten = _IMG.sub(_drop_tracker, rewritten)
        if _GONE in rewritten:
            rewritten = _EMPTIED_LINK.sub("", rewritten).replace(_GONE, "")
    if rewritten != out:
        out = _clean(rewritten, base, first=False)
    return Sanitized(out, media)


def sanitize_html(markup: str, base: str | None) -> str:
    """Safe HTML for an email: the allowlist above, URLs absolute against ``base``."""
    return sanitize(markup, base).html


def _drop_tracker(match: re.Match[str]) -> str:
    attrs = _attributes(match.group(0))
    src = attrs.get("src", "")
    gone = src and is_tracker(src, _size(attrs.get("width")), _size(attrs.get("height")))
    return _GONE if gone else match.group(0)


def _card(media: Media, label: str, cards: list[Media]) -> str:
    """A link card, marked with the index of its media: the picture (if any) and a line
    saying what the link does."""
    cards.append(media)
    picture = ""
    if media.thumbnail is not None:
        thumb = media.thumbnail
        size = "".join(
            f' {name}="{value}"'
            for name, value in (("width", thumb.width), ("height", thumb.height))
            if value
        )
        picture = f'<img src="{escape(thumb.url)}" alt=""{size}><br>'
    link = f'<a class="{CARD_CLASS}" href="{escape(media.url)}">{picture}{escape(label)}</a>'
    return f"\x00{len(cards) - 1}\x00{link}"


def _titled(label: str, title: str) -> str:
    return f"{label}: {title}" if title else label


def _title(attrs: dict[str, str]) -> str:
    title = " ".join(attrs.get("title", "").split())
    return "" if title.casefold() in _GENERIC_TITLES else title


def _iframe_card(match: re.Match[str], cards: list[Media]) -> str:
    attrs = _attributes(match.group(1))
    hosted = hosted_video(attrs.get("src", ""))
    if hosted is None:
        return ""
    media, site = hosted
    media = media.model_copy(update={"title": _title(attrs)})
    return _card(media, _titled(f"Watch the video on {site}", media.title), cards)


def _player_card(match: re.Match[str], cards: list[Media]) -> str:
    tag, attrs = match.group(1), _attributes(match.group(2))
    src = attrs.get("src") or next(
        (s for s in (_attributes(t).get("src") for t in _SOURCE.findall(match.group(3))) if s), ""
    )
    if not src:  # nothing to link to: only the cards of the players inside, if any
        return "".join(_MARKED_CARD.findall(match.group(3)))
    kind: MediaKind = "audio" if tag == "audio" else "video"
    poster = attrs.get("poster")
    thumbnail = None
    if kind == "video" and poster:
        width, height = _size(attrs.get("width")), _size(attrs.get("height"))
        thumbnail = Image(url=poster, width=width, height=height)
    media = Media(kind=kind, url=src, title=_title(attrs), thumbnail=thumbnail)
    label = "Listen to the audio" if kind == "audio" else "Watch the video"
    return _card(media, _titled(label, media.title), cards)


def hosted_video(url: str) -> tuple[Media, str] | None:
    """A YouTube or Vimeo player URL as the video's own page (and its still, for YouTube), with
    the site's name; ``None`` for any other URL."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme not in HTTP_SCHEMES:
        return None
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    if any(on_domain(host, domain) for domain in _YOUTUBE_HOSTS) or host == "youtu.be":
        video_id = ""
        if host == "youtu.be" and segments:
            video_id = segments[0]
        elif len(segments) >= 2 and segments[0] in ("embed", "v", "shorts", "live"):
            video_id = segments[1]
        elif segments[:1] == ["watch"]:
            video_id = (query.get("v") or [""])[0]
        if not _YOUTUBE_ID.match(video_id):
            return None
        still = Image(url=f"https://i.ytimg.com/vi/{video_id}/hqdefault.jpg", width=480, height=360)
        page = f"https://www.youtube.com/watch?v={video_id}"
        return Media(kind="video", url=page, type="text/html", thumbnail=still), "YouTube"
    if on_domain(host, "vimeo.com"):
        numbers = [s for s in segments if s.isdigit()]
        if not numbers:
            return None
        private = (query.get("h") or [""])[0]
        page = f"https://vimeo.com/{numbers[0]}" + (f"/{private}" if private.isalnum() else "")
        return Media(kind="video", url=page, type="text/html"), "Vimeo"
    return None


def content_images(safe_html: str) -> list[Image]:
    """The images of sanitized HTML, in order (each ``src`` already absolute http(s)), with the
    size each declares."""
    images = []
    for tag in _IMG.finditer(safe_html):
        attrs = _attributes(tag.group(0))
        src = attrs.get("src", "")
        if is_http(src):
            width, height = _size(attrs.get("width")), _size(attrs.get("height"))
            images.append(Image(url=src, alt=attrs.get("alt", ""), width=width, height=height))
    return images
