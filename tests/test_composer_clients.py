"""Every mail program, light and dark: what the rendered issue holds for each (the browser tests
in test_browser.py look at it in Chromium).

Dark mode survives premailer; one h1, alt text, lang and dir, layout tables, "Read more" naming
its post; Word-rendered Outlook's conditional tables, button and picture widths; the contrast
of the stylesheets' colours in both schemes.
"""

from __future__ import annotations

import re

import pytest

from crusader_mail.compose.composer import Composer
from crusader_mail.compose.views import COLUMN_WIDTH, fit_content
from crusader_mail.models import Image, RenderedIssue
from tests.support.contrast import AA_TEXT, contrast, css_rules
from tests.support.golden import NOW, TEMPLATES, golden_posts, golden_settings, make_post

MSO = re.compile(r"<!--\[if mso\]>(.*?)<!\[endif\]-->", re.DOTALL)
STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL)
TAG = re.compile(r"<(img|table|h1)\b[^>]*>")


def golden(*, full: bool = True) -> RenderedIssue:
    posts, related = golden_posts()
    return Composer(golden_settings(full_content=full)).compose(posts, related, "i", NOW)


def styles(html: str) -> list[str]:
    return STYLE.findall(MSO.sub("", html))  # the blocks every program reads


def dark_css() -> str:
    """The dark block as readers get it."""
    return styles(golden().html)[1]


# --- dark mode -------------------------------------------------------------------------------


def test_dark_mode_survives_premailer_in_a_block_of_its_own() -> None:
    html = golden().html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    phones, dark = styles(html)
    assert "@media only screen and (max-width: 620px)" in phones
    assert "prefers-color-scheme" not in phones
    assert "data-ogsc" not in phones  # a program that drops the dark block keeps this one
    template = (TEMPLATES / "newsletter-dark.css").read_text()
    as_written = re.sub(r"\{#.*?#\}", "", template, flags=re.DOTALL)
    assert dark.split() == as_written.split()  # kept as written (but the Jinja comments)
    assert "/*" not in dark  # its comments stay in the template
    assert "<style data-premailer" not in html  # premailer's mark, taken away
    at_rules = {at_rule for at_rule, _, _ in css_rules(dark)}
    assert at_rules == {"", "@media (prefers-color-scheme: dark)"}
    rules = re.sub(r"/\*.*?\*/", "", dark, flags=re.DOTALL)
    declarations = re.findall(r"([\w-]+):\s*([^;{}]+)[;}]", rules)
    assert len(declarations) > 40
    for name, value in declarations:  # each beats the inlined light style
        assert value.strip().endswith("!important") or "color-scheme" in name, name


def test_outlook_com_gets_the_same_dark_colours() -> None:
    dark = dark_css()
    scheme: dict[tuple[str, str], str] = {}
    outlook: dict[tuple[str, str], str] = {}
    for at_rule, selector, declarations in css_rules(dark):
        for name in ("color", "background-color"):
            if name not in declarations:
                continue
            if at_rule:
                scheme[selector, name] = declarations[name]
            elif selector.startswith("[data-og"):
                marker, _, inner = selector.partition(" ")
                assert marker == ("[data-ogsc]" if name == "color" else "[data-ogsb]"), selector
                outlook[inner, name] = declarations[name]
    scheme.pop(("body", "background-color"))  # Outlook.com marks elements, never <body> itself
    assert len(scheme) > 40
    assert outlook == scheme


# Text on its background, each as the selectors that can give it its colour, the first that
# does winning (as the more specific rule would).
PAIRS = {
    "body text": ([".content", "td"], [".container"]),
    "excerpt": ([".excerpt", "p"], [".container"]),
    "a post's heading": ([".content h3", "h3"], [".container"]),
    "newsletter name (h1)": ([".brand a"], [".container"]),
    "issue date": ([".issue-date"], [".container"]),
    "post title": ([".post-title a"], [".container"]),
    "post date and author": ([".meta"], [".container"]),
    "link in a post": ([".content a"], [".container"]),
    "quote": ([".content blockquote"], [".container"]),
    "caption": ([".content figcaption"], [".container"]),
    "code": ([".content pre", ".content"], [".content pre", ".container"]),
    "table cell": ([".content td", "td"], [".container"]),
    "picture's alt text": ([".lead-image"], [".container"]),
    "a post's picture's alt text": ([".content img", ".content"], [".content img", ".container"]),
    "note": ([".note p", "p"], [".note p", ".container"]),
    "media card title": ([".media-title a"], [".media-card"]),
    "media card details": ([".media-details"], [".media-card"]),
    "player link": ([".content a.media-card"], [".media-card"]),
    "button": ([".button"], [".button", ".button-cell"]),
    "related: heading": ([".section-title"], [".related"]),
    "related: title": ([".related-title a"], [".related"]),
    "related: excerpt": ([".related-excerpt"], [".related"]),
    "related: read more": ([".related-more a"], [".related"]),
    "footer": ([".footer p"], [".container"]),
    "footer link": ([".footer a"], [".container"]),
}


def sheet(css: str, keep: str) -> dict[tuple[str, str], str]:
    """(selector, property) -> colour of the rules whose at-rule is ``keep`` (a [data-og…]
    prefix dropped)."""
    found: dict[tuple[str, str], str] = {}
    for at_rule, selector, declarations in css_rules(css):
        if at_rule != keep:
            continue
        for name in ("color", "background-color"):
            if name in declarations:
                found[re.sub(r"^\[data-og\w+\] ", "", selector), name] = declarations[name]
    return found


def first(values: dict[tuple[str, str], str], selectors: list[str], name: str) -> str:
    for selector in selectors:
        if (selector, name) in values:
            return values[selector, name]
    raise AssertionError(f"no {name} for {selectors}")


def schemes() -> dict[str, dict[tuple[str, str], str]]:
    light = sheet((TEMPLATES / "newsletter.css").read_text(), "")
    dark = dark_css()
    return {
        "light": light,
        "dark": light | sheet(dark, "@media (prefers-color-scheme: dark)"),
        "Outlook.com dark": light | sheet(dark, ""),
    }


@pytest.mark.parametrize("scheme", ["light", "dark", "Outlook.com dark"])
def test_text_contrast_is_at_least_4_5_to_1(scheme: str) -> None:
    values = schemes()[scheme]
    low = {}
    for name, (text, background) in PAIRS.items():
        ratio = contrast(
            first(values, text, "color"), first(values, background, "background-color")
        )
        if ratio < AA_TEXT:
            low[name] = round(ratio, 2)
    assert low == {}


def test_the_contrast_check_sees_a_background_left_light_in_dark_mode() -> None:
    values = schemes()["dark"]
    values[".related", "background-color"] = "#f7f8fa"  # as if the dark rule were missing
    text, background = PAIRS["related: excerpt"]
    ratio = contrast(first(values, text, "color"), first(values, background, "background-color"))
    assert ratio < AA_TEXT


# --- accessible ------------------------------------------------------------------------------


def test_one_h1_the_posts_own_headings_a_level_down() -> None:
    content = "<h1>Big</h1><p>a</p><h2>Section</h2><h3>Sub</h3><h6>Tiny</h6>"
    post = make_post(1, "Headings", content=content)
    issue = Composer(golden_settings(full_content=True)).compose([post], [], "i", NOW)
    assert len(re.findall(r"<h1\b", issue.html)) == 1
    assert re.search(r'<h1 class="brand"[^>]*><a [^>]*>Biz Crusader</a></h1>', issue.html)
    assert re.search(r'<h2 class="post-title"[^>]*><a [^>]*>Headings</a></h2>', issue.html)
    for before, after in (("Big", "h2"), ("Section", "h3"), ("Sub", "h4"), ("Tiny", "h6")):
        assert re.search(rf"<{after}\b[^>]*>{before}</{after}>", issue.html), before
    assert (
        fit_content('<h2 id="x">A</h2><header>h</header>') == '<h3 id="x">A</h3><header>h</header>'
    )


def test_lang_and_dir_on_the_page_and_on_the_article() -> None:
    html = golden().html
    assert re.search(r'<html lang="en" dir="ltr"', html)
    assert re.search(
        r'<div class="article" role="article" aria-roledescription="email" '
        r'aria-label="Biz Crusader, 23 November 2026" lang="en" dir="ltr"',
        html,
    )


def test_every_picture_has_alt_text_and_every_layout_table_is_presentation() -> None:
    content = (
        '<p><img src="https://x.example/chart.png" width="1024" height="512">'
        '<img width="500" height="40"></p>'  # its address did not survive the reader
        "<table><tr><th>Plan</th><td>9</td></tr></table>"
    )
    posts, related = golden_posts()
    posts[1] = make_post(2, "Chart", content=content)
    issue = Composer(golden_settings(full_content=True)).compose(posts, related, "i", NOW)
    tags = TAG.findall(issue.html)
    assert tags.count("img") == 2  # the lead picture and the chart
    for tag in re.findall(r"<img\b[^>]*>", issue.html):
        assert re.search(r'\salt="', tag), tag
    assert '<img src="https://x.example/chart.png" width="552" height="276" alt=""' in issue.html
    assert 'width="500" height="40"' not in issue.html  # an empty box left out
    tables = re.findall(r"<table\b[^>]*>", issue.html)
    layout = [t for t in tables if "class=" in t or 'width="600"' in t]
    assert len(layout) == len(tables) - 1  # all but the post's own table
    assert all('role="presentation"' in t for t in layout)


def test_read_more_names_its_post_for_screen_readers() -> None:
    posts, related = golden_posts()
    html = golden().html
    for post in [*posts, *related]:
        title = post.title.replace("<", "&lt;").replace(">", "&gt;")
        link = re.escape(post.link)
        assert re.search(
            rf'<a (class="button" )?href="{link}"[^>]*>Read more<span class="visually-hidden"'
            rf"[^>]*>: {re.escape(title)}</span></a>",
            html,
        ), post.title
    hidden = re.search(r'<span class="visually-hidden" style="([^"]*)"', html).group(1)
    assert "display:none" not in hidden  # screen readers skip what is not displayed
    assert "width:1px" in hidden
    assert "overflow:hidden" in hidden
    assert "mso-hide:all" in hidden


def test_the_text_part_puts_each_link_under_its_post() -> None:
    posts, related = golden_posts()
    text = golden().text
    for post in [*posts, *related]:
        title = text.index(post.title.split()[0])
        assert text.index(f"Read more:\n{post.link}\n", title) > title


# --- Outlook ---------------------------------------------------------------------------------


def test_outlook_gets_a_600_px_table_and_keeps_it_through_premailer() -> None:
    html = golden().html
    comments = MSO.findall(html)
    assert any("<o:PixelsPerInch>96</o:PixelsPerInch>" in c for c in comments)
    assert any("font-family: Arial" in c for c in comments)
    opening = (
        '<table role="presentation" align="center" width="600" cellpadding="0" '
        'cellspacing="0" border="0"><tr><td width="600">'
    )
    assert opening in comments
    assert "</td></tr></table>" in comments
    assert html.index(opening) < html.index('class="container"') < html.rindex("</td></tr></table>")
    assert re.search(r'<table role="presentation" class="container" width="100%"', html)
    assert "max-width:600px" in html


def test_buttons_are_tables_outlook_pads() -> None:
    html = golden().html
    buttons = re.findall(
        r'<table role="presentation" class="button-table"[^>]*>\s*<tr>\s*'
        r'<td class="button-cell" bgcolor="#0b5cad" style="([^"]*)"><a class="button" '
        r'href="[^"]+" style="([^"]*)"',
        html,
    )
    assert len(buttons) == 2
    for cell, link in buttons:
        assert "mso-padding-alt:9px 16px" in cell
        assert "background-color:#0b5cad" in cell
        assert "padding:9px 16px" in link
        assert "display:inline-block" in link


def test_a_picture_of_unknown_width_gets_an_outlook_width_and_no_other() -> None:
    post = make_post(1, "Unsized")
    post = post.model_copy(update={"image": Image(url="https://x.example/big.jpg", alt="Big")})
    html = Composer(golden_settings()).compose([post], [], "i", NOW).html
    outlook, others = re.findall(r'<img[^>]*src="https://x.example/big.jpg"[^>]*>', html)
    assert f'width="{COLUMN_WIDTH}"' in outlook
    assert "width=" not in others.replace("max-width", "")
    assert "max-width:100%" in others
    assert f"<!--[if mso]>{outlook}<![endif]--><!--[if !mso]><!-->{others}<!--<![endif]-->" in html
    sized = make_post(2, "Sized", image=True)  # 1200 px: the column's width for everyone
    html = Composer(golden_settings()).compose([sized], [], "i", NOW).html
    assert "[if mso]><img" not in html
    assert re.search(r'<img class="lead-image" src="[^"]+" width="552" alt="Sized"', html)


def test_content_pictures_wider_than_the_column_are_declared_column_wide() -> None:
    fitted = fit_content(
        '<p><img src="https://x.example/a.png" alt="A" width="1200" height="800">'
        '<img src="https://x.example/b.png" alt="B" width="300" height="200">'
        '<img src="https://x.example/c.png" alt="C"></p>'
    )
    assert '<img src="https://x.example/a.png" alt="A" width="552" height="368">' in fitted
    assert '<img src="https://x.example/b.png" alt="B" width="300" height="200">' in fitted
    assert '<img src="https://x.example/c.png" alt="C">' in fitted
