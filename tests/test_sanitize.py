"""The email sanitizer: an allowlist, URLs absolute, nothing active survives."""

from __future__ import annotations

import re

import pytest

from crusader_mail.feeds.sanitize import absolute_url, content_images, sanitize_html

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
        # players become link cards; nothing of theirs gets past the allowlist
        "<audio src='javascript:alert(1)'>fallback</audio>",
        "<video src='data:video/mp4;base64,AAAA' poster='javascript:x'>fallback</video>",
        "<video poster='https://x.example/p.jpg' onplay='x()'><source src='vbscript:x'>fallback</video>",
        "<iframe src='https://www.youtube.com/embed/dQw4w9WgXcQ' onload='x()'><script>x</script></iframe>",
        "<a class='media-card' href='javascript:alert(1)' style='x'>fake card</a>",
        "<video><audio src='https://x.example/a.mp3' onerror='x()'>inner</audio>fallback</video>",
        "<p title='<iframe src=https://www.youtube.com/embed/dQw4w9WgXcQ>'>t</p>",
    ],
)
def test_active_content_never_survives(hostile: str) -> None:
    out = sanitize_html(f"<p>before</p>{hostile}<p>after</p>", BASE).lower()
    for bad in ("<script", "javascript:", "vbscript:", "data:", "<iframe", "<form", "<object",
                "<embed", "<style", "style=", "<svg", "<meta", "<input", "<audio", "<video",
                "<source", "fallback"):  # fmt: skip
        assert bad not in out
    assert not re.search(r"\son[a-z]+=", out)
    assert out.count('class="media-card"') <= 1  # only a card the sanitizer made
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


def test_content_images_in_order_with_their_declared_size() -> None:
    safe = sanitize_html(
        "<p>x</p><img src='b.png' alt='B &amp; C'><img src='c.png' width='640px' height='302'>",
        BASE,
    )
    first, second = content_images(safe)
    assert first.url == "https://blog.example/posts/one/b.png"
    assert first.alt == "B & C"
    assert (first.width, first.height) == (None, None)
    assert (second.url, second.width, second.height) == (BASE + "c.png", 640, 302)
    assert content_images("<p>none</p>") == []
