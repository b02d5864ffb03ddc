"""Defusing a feed's XML before it is parsed: no entity expansion, no file or network read.

``defuse(source, body, limit) -> (body, warning)`` removes a DOCTYPE that declares an external,
parameter or nested entity, or one that would expand past the size limit (XXE, "billion
laughs"), and says so in the warning. A UTF-16/32 document that declares any entity is refused
(:class:`FeedError`). Plain literal entities are left for feedparser, which keeps exactly those.
"""

from __future__ import annotations

import re

from crusader_mail.errors import FeedError

_ENTITY = re.compile(rb"<!ENTITY\s+(%\s*)?([^\s\"'>]+)\s*(\"[^\"]*\"|'[^']*'|SYSTEM|PUBLIC)?")
_CHAR_REF = re.compile(rb"&#(?:\d+|x[0-9a-fA-F]+);")
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")


def defuse(source: str, body: bytes, limit: int) -> tuple[bytes, str | None]:
    """Remove a DOCTYPE whose entities could expand hugely or read files/URLs (XXE).

    Literal entities (plain text, or one character reference) that cannot expand past the size
    limit are left for feedparser, which keeps exactly those. Returns the bytes and a warning.
    """
    head = body[:4]
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00")) or b"\x00" in head:
        text = body[:4096].decode("utf-16" if b"\x00\x00" not in head else "utf-32", "replace")
        if "<!ENTITY" in text:
            raise FeedError(source, "refused: its DOCTYPE declares entities (UTF-16/32 document)")
        return body, None
    root = _FIRST_ELEMENT.search(body)
    start = body.find(b"<!DOCTYPE", 0, root.start() if root else len(body))
    if start < 0:
        return body, None
    end = _doctype_end(body, start)
    doctype = body[start:end]
    unsafe = []
    for percent, name, value in _ENTITY.findall(doctype):
        if percent or value in (b"SYSTEM", b"PUBLIC") or not value:
            unsafe.append("an external or parameter entity")
        elif b"&" in _CHAR_REF.sub(b"", value[1:-1]) or b"%" in value:
            unsafe.append("a nested entity")
        elif body.count(b"&" + name + b";", end) * len(value) > limit:
            unsafe.append("an entity expanding past the size limit")
    if not unsafe:
        return body, None
    warning = (
        f"ignored the DOCTYPE: it declares {sorted(set(unsafe))[0]} "
        "(possible XXE or entity-expansion attack); nothing was expanded"
    )
    return body[:start] + body[end:], warning


def _doctype_end(body: bytes, start: int) -> int:
    depth = 0
    quote = 0
    for index in range(start + 9, len(body)):
        char = body[index]
        if quote:
            if char == quote:
                quote = 0
        elif char in (0x22, 0x27):  # " '
            quote = char
        elif char == 0x5B:  # [
            depth += 1
        elif char == 0x5D:  # ]
            depth = max(0, depth - 1)
        elif char == 0x3E and depth == 0:  # >
            return index + 1
    return len(body)
