"""Plain text and the WordPress-style excerpt."""

from __future__ import annotations

from crusader_mail.util.text import MORE, excerpt, first_words, html_to_text, inline_text


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
