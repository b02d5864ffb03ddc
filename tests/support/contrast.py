"""WCAG 2 contrast: relative luminance of sRGB colours and the ratio of two.

``contrast("#5f6b7a", "#ffffff")`` is 5.43; body text needs at least :data:`AA_TEXT` (4.5).
Colours come as CSS writes them (``#abc``, ``#aabbcc``) or as a browser computes them
(``rgb(1, 2, 3)``, ``rgba(1, 2, 3, 0.5)``: a translucent colour is laid over the background).
"""

from __future__ import annotations

import re
from typing import Any

AA_TEXT = 4.5
RGB = tuple[float, float, float]
_FUNCTION = re.compile(r"rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:[\s,/]+([\d.]+%?))?\s*\)")


def parse_color(value: str) -> tuple[RGB, float]:
    """(red, green, blue) in 0..255 and alpha in 0..1."""
    text = value.strip().lower()
    if text.startswith("#"):
        digits = text[1:]
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        if len(digits) != 6:
            raise ValueError(f"not a colour: {value!r}")
        red, green, blue = (float(int(digits[i : i + 2], 16)) for i in (0, 2, 4))
        return (red, green, blue), 1.0
    match = _FUNCTION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a colour: {value!r}")
    red, green, blue = (float(match.group(i)) for i in (1, 2, 3))
    alpha_text = match.group(4)
    if alpha_text is None:
        alpha = 1.0
    elif alpha_text.endswith("%"):
        alpha = float(alpha_text[:-1]) / 100
    else:
        alpha = float(alpha_text)
    return (red, green, blue), alpha


def luminance(rgb: RGB) -> float:
    """WCAG relative luminance (0 black .. 1 white)."""

    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(v) for v in rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(foreground: str, background: str) -> float:
    """The contrast ratio (1..21) of text in ``foreground`` on an opaque ``background``."""
    back, back_alpha = parse_color(background)
    if back_alpha < 1:
        raise ValueError(f"background {background!r} is not opaque")
    fore, alpha = parse_color(foreground)
    seen: RGB = (
        fore[0] * alpha + back[0] * (1 - alpha),
        fore[1] * alpha + back[1] * (1 - alpha),
        fore[2] * alpha + back[2] * (1 - alpha),
    )
    lighter, darker = sorted((luminance(seen), luminance(back)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# --- colours of a stylesheet -------------------------------------------------------------------

Declarations = dict[str, str]  # property -> value, without !important
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


def css_rules(css: str) -> list[tuple[str, str, Declarations]]:
    """(at-rule, selector, declarations) of each rule of ``css``, one per selector of a group;
    the at-rule is ``""`` at the top level, else its prelude (``@media (…)``). No nesting
    beyond one at-rule level, as in the templates."""
    rules: list[tuple[str, str, Declarations]] = []
    text = _COMMENT.sub("", css)
    position = 0
    while True:
        brace = text.find("{", position)
        if brace < 0:
            return rules
        prelude = text[position:brace].strip()
        if prelude.startswith("@"):
            depth, end = 1, brace + 1
            while depth:
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            for _, selector, inner in css_rules(text[brace + 1 : end - 1]):
                rules.append((prelude, selector, inner))
            position = end
            continue
        end = text.index("}", brace)
        declarations: Declarations = {}
        for declaration in text[brace + 1 : end].split(";"):
            name, colon, value = declaration.partition(":")
            if colon:
                declarations[name.strip()] = value.replace("!important", "").strip()
        for selector in prelude.split(","):
            rules.append(("", " ".join(selector.split()), declarations))
        position = end + 1


def unreadable(texts: list[dict[str, Any]]) -> list[tuple[float, str, str]]:
    """(contrast, tag, text) of each visible text below :data:`AA_TEXT` (the ``texts`` of
    ``tests.support.browser.Page.inspect``: each with its colour and background)."""
    return [
        (round(contrast(t["color"], t["background"]), 2), t["tag"], t["text"])
        for t in texts
        if contrast(t["color"], t["background"]) < AA_TEXT
    ]
