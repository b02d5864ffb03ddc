"""A post's media and lead image, from feedparser's entry and the sanitized content.

Media: audio and video enclosures and ``media:content`` (one per file, by URL; the kind from
the MIME type, else the medium, else the file's extension), with ``itunes:duration`` (or the
``duration`` attribute), the size in bytes, and a picture: the episode's ``itunes:image`` for
audio, a ``media:thumbnail`` (else the ``itunes:image``) for video; then the players and
YouTube/Vimeo embeds the sanitizer turned into links (:func:`post_media`).

Lead image candidates (:func:`lead_candidates`), in order: ``media:content`` images, image
enclosures, the content's images, ``media:thumbnail``; trackers, avatars, a media's own picture
and pictures known to be small (:func:`is_small`, :func:`hinted_size`) are skipped.
:mod:`.parse` picks the first that is not the feed's own signature.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from crusader_mail.feeds.sanitize import (
    HTTP_SCHEMES,
    absolute_url,
    content_images,
    is_tracker,
    on_domain,
)
from crusader_mail.models import Image, Media, MediaKind

MIN_LEAD_WIDTH = 300  # narrower pictures are icons, badges, avatars and thumbnails
MIN_LEAD_HEIGHT = 100  # lower ones are rules, buttons and strips
_AUDIO_EXTENSIONS = {"mp3", "m4a", "aac", "oga", "ogg", "opus", "wav", "flac"}
_VIDEO_EXTENSIONS = {"mp4", "m4v", "mov", "webm", "ogv", "mkv"}
_AVATAR_HOSTS = ("gravatar.com",)
_GOOGLE_IMAGE_HOSTS = ("blogspot.com", "googleusercontent.com", "ggpht.com")
_GOOGLE_SIZE = re.compile(r"^[swh]\d+(?:-[a-z]+\d*)*$")  # a path segment: s72-c, w640-h302
_GOOGLE_SIZE_SUFFIX = re.compile(r"=([swh]\d+(?:-[a-z]+\d*)*)$")  # at the end: =s72-c, =w400-h300
_GOOGLE_SIZE_PART = re.compile(r"(?:^|-)([swh])(\d+)")
_FILE_SIZE = re.compile(r"-(\d+)x(\d+)\.(?:jpe?g|png|gif|webp)$", re.IGNORECASE)  # -150x150.jpg
_YOUTUBE_STILL = re.compile(r"/vi/[^/]+/(?:default|[0-3]|mqdefault)\.jpg$")  # 120x90, 320x180
_QUERY_WIDTH = re.compile(r"(?:^|&)(?:w|width|resize)=(\d+)")  # ?w=150, ?resize=150,150


def _number(value: object) -> int | None:
    """A positive whole number from a feed attribute (``"640"``, ``"640px"``), else ``None``."""
    text = str(value or "").strip().lower().removesuffix("px")
    return int(text) if text.isdigit() and 0 < int(text) < 10**12 else None


def _seconds(value: object) -> int | None:
    """``itunes:duration`` (``"5547"``, ``"54:09"``, ``"01:54:09"``, ``"1:02:03.5"``) in seconds."""
    parts = str(value or "").strip().split(":")
    if not 1 <= len(parts) <= 3:
        return None
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        return None
    total = 0.0
    for number in numbers:
        if not 0 <= number < 10**7:
            return None
        total = total * 60 + number
    return round(total) or None


def _image(
    url: object, base: str | None, width: object = None, height: object = None
) -> Image | None:
    absolute = absolute_url(str(url or ""), base, HTTP_SCHEMES) if url else None
    if not absolute:
        return None
    return Image(url=absolute, width=_number(width), height=_number(height))


def hinted_size(url: str) -> tuple[int | None, int | None]:
    """The width and height a picture's URL says it was scaled to at most (Blogger's
    ``/s72-c/`` and ``=w400-h300``, ``?w=150``, WordPress's ``-150x150.jpg``, YouTube's small
    stills)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None, None
    host = (parts.hostname or "").lower()
    width = height = None
    if any(on_domain(host, domain) for domain in _GOOGLE_IMAGE_HOSTS):
        segments = [t for t in parts.path.split("/")[:-1] if _GOOGLE_SIZE.match(t)]
        for token in (*segments, *_GOOGLE_SIZE_SUFFIX.findall(parts.path)):
            for letter, number in _GOOGLE_SIZE_PART.findall(token):
                if letter in "sw":
                    width = int(number)
                if letter in "sh":
                    height = int(number)
    if host in ("img.youtube.com", "i.ytimg.com") and (match := _YOUTUBE_STILL.search(parts.path)):
        width, height = (320, 180) if "mq" in match.group(0) else (120, 90)
    if match := _FILE_SIZE.search(parts.path):
        width, height = int(match.group(1)), int(match.group(2))
    if match := _QUERY_WIDTH.search(parts.query):
        width = int(match.group(1))
    return width, height


def is_small(image: Image) -> bool:
    """Known to be too small to lead a post (see the module doc)."""
    hinted_width, hinted_height = hinted_size(image.url)
    widths = [w for w in (image.width, hinted_width) if w is not None]
    heights = [h for h in (image.height, hinted_height) if h is not None]
    return any(w < MIN_LEAD_WIDTH for w in widths) or any(h < MIN_LEAD_HEIGHT for h in heights)


def is_avatar(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(on_domain(host, domain) for domain in _AVATAR_HOSTS)


def lead_candidates(
    entry: Any, base: str | None, content_html: str, media: Iterable[Media]
) -> list[Image]:
    """The pictures that could lead the post, best first (see the module doc)."""
    found: list[Image | None] = []
    for item in entry.get("media_content") or []:
        kind = (item.get("type") or "").lower()
        if item.get("medium") == "image" or kind.startswith("image/"):
            found.append(_image(item.get("url"), base, item.get("width"), item.get("height")))
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and (link.get("type") or "").startswith("image/"):
            found.append(_image(link.get("href"), base))
    found.extend(content_images(content_html))
    for thumb in entry.get("media_thumbnail") or []:
        found.append(_image(thumb.get("url"), base, thumb.get("width"), thumb.get("height")))
    taken = {m.thumbnail.url for m in media if m.thumbnail is not None}
    candidates: list[Image] = []
    for image in found:
        if image is None or image.url in taken:
            continue
        taken.add(image.url)
        if is_tracker(image.url, image.width, image.height):
            continue
        if not is_avatar(image.url) and not is_small(image):
            candidates.append(image)
    return candidates


def media_kind(mime: str, medium: str, url: str) -> MediaKind | None:
    major = mime.split("/")[0]
    if major in ("audio", "video"):
        return "audio" if major == "audio" else "video"
    if medium in ("audio", "video"):
        return "audio" if medium == "audio" else "video"
    if mime and mime not in ("application/octet-stream", "binary/octet-stream"):
        return None
    extension = urlsplit(url).path.rsplit(".", 1)[-1].lower()
    if extension in _AUDIO_EXTENSIONS:
        return "audio"
    return "video" if extension in _VIDEO_EXTENSIONS else None


def feed_media(entry: Any, base: str | None) -> list[Media]:
    """The audio and video files of an entry: enclosures and ``media:content``, one per URL."""
    files = [
        (link.get("href"), link.get("type"), "", link.get("length"), None)
        for link in entry.get("links") or []
        if link.get("rel") == "enclosure"
    ]
    files += [
        (
            m.get("url"),
            m.get("type"),
            m.get("medium"),
            m.get("filesize") or m.get("length"),
            m.get("duration"),
        )
        for m in entry.get("media_content") or []
    ]
    if not files:
        return []
    art = _image((entry.get("image") or {}).get("href"), base)  # the episode's itunes:image
    stills = [
        _image(t.get("url"), base, t.get("width"), t.get("height"))
        for t in entry.get("media_thumbnail") or []
    ]
    still = next((s for s in stills if s is not None and not is_small(s)), None)
    duration = _seconds(entry.get("itunes_duration"))
    found: dict[str, Media] = {}
    for raw_url, raw_type, medium, length, seconds in files:
        url = absolute_url(str(raw_url or ""), base, HTTP_SCHEMES) if raw_url else None
        mime = str(raw_type or "").split(";")[0].strip().lower()
        kind = media_kind(mime, str(medium or "").lower(), url) if url else None
        if url is None or kind is None:
            continue
        known = found.get(url)
        found[url] = Media(
            kind=kind,
            url=url,
            duration=(known and known.duration) or _seconds(seconds) or duration,
            type=(known and known.type) or mime,
            length=(known and known.length) or _number(length),
            thumbnail=(still or art) if kind == "video" else art,
        )
    return list(found.values())


def post_media(feed_media: list[Media], embedded: Iterable[Media], title: str) -> tuple[Media, ...]:
    """The feed's media, then the players' and embeds' not already among them (a player's
    ``a.mp4?_=1`` is the feed's ``a.mp4``), each titled (the post's title unless it has one)."""
    out = list(feed_media)
    known = {media.url for media in out}
    for media in embedded:
        if media.url not in known and media.url.split("?")[0] not in known:
            known.add(media.url)
            out.append(media)
    return tuple(m if m.title else m.model_copy(update={"title": title}) for m in out)
