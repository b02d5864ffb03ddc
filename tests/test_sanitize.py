"""The email sanitizer: an allowlist, URLs absolute, nothing active survives."""

from __future__ import annotations

import pytest

from crusader_mail.feeds.sanitize import absolute_url, first_image, sanitize_html

BASE = "https://blog.example/posts/one/"


def test_keeps_structure_people_write() -> None:
    html = (
        "<h2>H</h2><p>p <em>e</em> <strong>s</strong><br></p><ul><li>a</li></ul><ol><li>b</li></ol>"
        "<table><thead><tr><th>h</th></tr></thead><tbody><tr><td colspan='2'>c</td></tr></tbody></table>"
        "<pre><code>x = 1</code></pre><blockquote>q</blockquote><hr>"
        "<figure><img src='a.png' alt='A' width='10' height='20'><figcaption>cap</figcaption></figure>"
    )
    out = sanitize_html(html, BASE)
    for tag in ("<h2>", "<em>", "<strong>", "<br>", "<ul>", "<ol>", "<li>", "<table>", "<thead>",
                "<th>", '<td colspan="2">', "<pre><code>", "<blockquote>", "<hr>", "<figure>",
                "<figcaption>"):  # fmt: skip
        assert tag in out
    assert '<img src="https://blog.example/posts/one/a.png" alt="A" width="10" height="20">' in out


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<p onclick='x()'>t</p>",
        "<img src='x.png' onerror='alert(1)'>",
        "<a href='javascript:alert(1)'>j</a>",
        "<a href=' JaVaScRiPt:alert(1)'>j</a>",
        "<a href='jav&#x09;ascript:alert(1)'>j</a>",
        "<a href='data:text/html,<script>alert(1)</script>'>d</a>",
        "<img src='data:image/png;base64,AAAA'>",
        "<iframe src='https://evil.example/'></iframe>",
        "<form action='https://evil.example/'><input name='x'></form>",
        "<object data='x.swf'></object><embed src='x.swf'>",
        "<style>body{display:none}</style>",
        "<div style='position:fixed;top:0'>x</div>",
        "<svg onload='alert(1)'></svg>",
        "<meta http-equiv='refresh' content='0;url=https://evil.example/'>",
        "<a href='vbscript:msgbox(1)'>v</a>",
    ],
)
def test_active_content_never_survives(hostile: str) -> None:
    out = sanitize_html(f"<p>before</p>{hostile}<p>after</p>", BASE).lower()
    for bad in ("<script", "javascript:", "vbscript:", "data:", " on", "<iframe", "<form", "<object",
                "<embed", "<style", "style=", "<svg", "<meta", "<input"):  # fmt: skip
        assert bad not in out
    assert "before" in out
    assert "after" in out


def test_every_url_made_absolute_and_links_get_noopener() -> None:
    html = "<a href='../two/'>2</a><a href='/about'>a</a><a href='#c'>c</a><img src='//cdn.example/i.png'>"
    out = sanitize_html(html, BASE)
    assert 'href="https://blog.example/posts/two/" rel="noopener"' in out
    assert 'href="https://blog.example/about"' in out
    assert 'href="https://blog.example/posts/one/#c"' in out
    assert 'src="https://cdn.example/i.png"' in out


def test_relative_url_without_usable_base_is_dropped() -> None:
    out = sanitize_html("<a href='/x'>x</a><img src='y.png'>", "javascript:alert(1)//")
    assert "href" not in out
    assert "src" not in out
    assert absolute_url("/x", None) is None


def test_resolution_happens_before_the_scheme_is_judged() -> None:
    # a relative URL that *looks* like a scheme after joining is still judged on the result
    assert absolute_url("javascript:alert(1)", BASE) is None
    assert absolute_url("mailto:a@example.com", BASE) == "mailto:a@example.com"
    assert absolute_url("page.html", BASE) == "https://blog.example/posts/one/page.html"


def test_non_numeric_sizes_are_dropped() -> None:
    out = sanitize_html("<img src='a.png' width='100%' height='30px'>", BASE)
    assert 'height="30"' in out
    assert "width" not in out


def test_first_image() -> None:
    safe = sanitize_html("<p>x</p><img src='b.png' alt='B &amp; C'>", BASE)
    image = first_image(safe)
    assert image is not None
    assert image.url == "https://blog.example/posts/one/b.png"
    assert image.alt == "B & C"
    assert first_image("<p>none</p>") is None
