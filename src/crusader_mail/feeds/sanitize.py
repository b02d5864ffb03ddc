"""Feed HTML made safe for email: an nh3 (ammonia) allowlist, every URL absolute.

Contract::

    sanitize_html(markup, base) -> str     # safe HTML; relative URLs resolved against ``base``
    absolute_url(url, base) -> str | None  # http(s) (or mailto) URL, or None when unusable
    first_image(safe_html) -> Image | None # the first <img> of already-sanitized HTML

Kept: headings, paragraphs, lists, links, images (src, alt, width, height), tables, code and
pre, blockquote, emphasis, br, hr, figure/figcaption. Dropped: script, style, iframe, form,
object, embed (with their contents where they have any), every event handler and style
attribute, and any URL that is not http, https or mailto (so ``javascript:`` and ``data:`` go).
Relative URLs are resolved against ``base`` *before* the scheme is judged, so a relative URL can
never turn into something else afterwards. Links get ``rel="noopener"``.
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urljoin, urlsplit

import nh3

from crusader_mail.models import Image

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
URL_ATTRIBUTES = {"href", "src", "cite"}
LINK_SCHEMES = {"http", "https", "mailto"}
HTTP_SCHEMES = {"http", "https"}
_SIZE = re.compile(r"^\s*(\d{1,5})(?:px)?\s*$", re.IGNORECASE)
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'\b(src|alt)="([^"]*)"')


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


def sanitize_html(markup: str, base: str | None) -> str:
    """Safe HTML for an email: the allowlist above, URLs absolute against ``base``."""
    if not markup or not markup.strip():
        return ""

    def attribute(tag: str, name: str, value: str) -> str | None:
        if name in URL_ATTRIBUTES:
            schemes = LINK_SCHEMES if tag == "a" else HTTP_SCHEMES
            return absolute_url(value, base, schemes)
        if name in ("width", "height"):
            match = _SIZE.match(value)
            return match.group(1) if match else None
        return value

    return nh3.clean(
        markup,
        tags=TAGS,
        clean_content_tags=DROP_WITH_CONTENT,
        attributes=ATTRIBUTES,
        attribute_filter=attribute,
        url_schemes=LINK_SCHEMES,
        link_rel="noopener",
        strip_comments=True,
    ).strip()


def first_image(safe_html: str) -> Image | None:
    """The first image of sanitized HTML (its ``src`` is already absolute http(s))."""
    for tag in _IMG.finditer(safe_html):
        attrs = dict(_ATTR.findall(tag.group(0)))
        src = unescape(attrs.get("src", ""))
        if is_http(src):
            return Image(url=src, alt=unescape(attrs.get("alt", "")))
    return None
