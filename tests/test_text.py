"""Plain text and the WordPress-style excerpt."""

from __future__ import annotations

from crusader_mail.util.html_text import html_to_text, html_words, inline_text, mail_text
from crusader_mail.util.text import MORE, excerpt, first_words


def words(count: int) -> str:
    return " ".join(f"w{i}" for i in range(1, count + 1))


def test_excerpt_is_exactly_55_words_and_the_marker() -> None:
    result = excerpt(words(80))
    assert result.endswith(" […]")
    assert result[: -len(MORE)].split() == [f"w{i}" for i in range(1, 56)]


def test_excerpt_of_short_text_stays_whole() -> None:
    assert excerpt(words(55)) == words(55)
    assert excerpt("Two words") == "Two words"
    assert excerpt("") == ""


def test_excerpt_does_not_double_a_marker_the_feed_already_put() -> None:
    assert excerpt("A summary cut short […]") == "A summary cut short […]"
    assert excerpt("A summary cut short [...]") == "A summary cut short […]"
    long_cut = words(70) + " [&#8230;]"
    assert excerpt(long_cut) == words(55) + MORE


def test_html_to_text_keeps_blocks_apart_and_drops_active_content() -> None:
    html = "<h2>Title</h2><p>One&nbsp;two</p><script>alert(1)</script><style>p{}</style><p>three&amp;four</p>"
    assert html_to_text(html) == "Title\n\nOne two\n\nthree&four"


def test_inline_text_is_one_line_without_markup() -> None:
    assert inline_text("Title <em>With</em>\n <b>Mark<sup>up</sup></b>") == "Title With Markup"


def test_first_words() -> None:
    assert first_words(words(12), 3) == "w1 w2 w3…"
    assert first_words("short", 3) == "short"


def test_html_to_text_reads_broken_and_cut_html_as_a_browser_would() -> None:
    assert html_to_text('<p>Kept</p><iframe src="x"/><p>gone</p>') == "Kept"
    assert html_to_text("<p>One</p><embed src='x'><p>two</p>") == "One\n\ntwo"
    assert html_to_text("<html><head><body>Shown<br>text") == "Shown\ntext"
    assert html_to_text('<p>Cut short <a href="https://exa') == "Cut short"
    assert html_to_text("a\r\nb<br>c") == "a\nb\nc"


def test_html_to_text_can_leave_code_out() -> None:
    html = "<p>Use <code>x = 1</code> here</p><pre><code>print()</code></pre><p>end</p>"
    assert html_words(html) == ["Use", "x", "=", "1", "here", "print()", "end"]
    assert html_words(html, skip_code=True) == ["Use", "here", "end"]


def test_mail_text_lays_out_blocks_lists_quotes_tables_and_links() -> None:
    html = (
        "<h2>Head</h2><ul><li>one</li><li>two<ol><li>a</li></ol></li></ul>"
        "<blockquote><p>quoted</p></blockquote><pre>  code\n  more</pre>"
        "<table><tr><td>a</td><td>b</td></tr></table><hr>"
        '<p>See <a href="https://x.example/p">the post</a>, <a href="https://y.example/"><img '
        'src="i.png" alt=""></a> and <img src="i.png" alt="A cat"></p>'
    )
    assert mail_text(html) == (
        "Head\n\n- one\n\n- two\n\n  1. a\n\n> quoted\n\n      code\n      more\n\na | b\n\n"
        "* * *\n\nSee the post [1], https://y.example/ and [image: A cat]\n\n"
        "[1] https://x.example/p"
    )
