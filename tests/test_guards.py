"""Each pre-send guard: size, absolute URLs, forbidden tags, leftover template syntax."""

from __future__ import annotations

import pytest

from crusader_mail.compose.guards import (
    PLACEHOLDER_ROOM,
    check_issue,
    find_problems,
    html_size,
    url_problem,
)
from crusader_mail.errors import GuardError
from crusader_mail.models import Placeholder, RenderedIssue

GOOD_BODY = (
    '<p><a href="https://example.com/a">a</a> <a href="mailto:x@example.com">m</a> '
    '<a href="[[unsubscribe_url]]">u</a> <img src="http://example.com/i.png" alt="" width="10"> '
    '<span style="background:url(https://example.com/bg.png)">[[email]]</span></p>'
)

PLACED_IN_GOOD_BODY = {Placeholder.UNSUBSCRIBE_URL: 1, Placeholder.EMAIL: 1}


def issue(
    body: str = GOOD_BODY, *, text: str = "Hello\n", subject: str = "Hi", preheader: str = ""
) -> RenderedIssue:
    return RenderedIssue(
        issue_id="2026-11-23-abcd1234",
        subject=subject,
        preheader=preheader,
        html=f"<!DOCTYPE html>\n<html><head><style>@media (max-width:600px){{.a{{width:100%}}}}</style></head><body>{body}</body></html>",
        text=text,
        placeholders=(),
        post_ids=("p",),
        related_ids=(),
    )


def as_placed(made: RenderedIssue) -> dict[str, dict[Placeholder, int]]:
    """As if the templates had put every placeholder of ``made`` there (for the other guards)."""
    parts = {"subject": made.subject, "preheader": made.preheader, "HTML": made.html}
    parts["text"] = made.text
    return {name: {p: part.count(p.value) for p in Placeholder} for name, part in parts.items()}


def problems_of(made: RenderedIssue) -> list[str]:
    return find_problems(made, as_placed(made))


def check(made: RenderedIssue, max_html_bytes: int) -> None:
    check_issue(made, max_html_bytes, as_placed(made))


def test_a_clean_issue_passes() -> None:
    assert problems_of(issue()) == []
    check(issue(), 100_000)


def test_size_guard_counts_room_for_each_placeholder() -> None:
    clean = issue()
    assert html_size(clean.html) == len(clean.html.encode()) + 2 * PLACEHOLDER_ROOM
    check(clean, html_size(clean.html))
    with pytest.raises(
        GuardError, match=r"issue 2026-11-23-abcd1234 .* over compose\.max_html_bytes"
    ):
        check(clean, html_size(clean.html) - 1)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('<a href="/relative">x</a>', "<a href> '/relative' is not absolute"),
        ('<a href="">x</a>', "is not absolute"),
        ('<a href="javascript:alert(1)">x</a>', "scheme 'javascript'"),
        ('<a href="https:///nohost">x</a>', "has no host"),
        ('<img src="images/a.png" alt="a">', "<img src> 'images/a.png' is not absolute"),
        ('<img src="data:image/png;base64,AAAA" alt="">', "scheme 'data'"),
        ('<img srcset="https://e.com/a.png 1x, b.png 2x" alt="">', "<img srcset> 'b.png'"),
        ('<td background="bg.png">x</td>', "<td background>"),
        ("<p style=\"background: url('bg.png')\">x</p>", "<p style> url() 'bg.png'"),
        ('<a href="[[unsubscribe_link]]">x</a>', "unknown placeholder '[[unsubscribe_link]]'"),
    ],
)
def test_every_link_and_image_url_is_absolute(body: str, expected: str) -> None:
    problems = problems_of(issue(body))
    assert any(expected in p for p in problems), problems
    with pytest.raises(GuardError, match="not safe to send"):
        check(issue(body), 100_000)


def test_url_problem_allows_only_http_https_mailto_and_placeholders() -> None:
    assert url_problem("https://example.com/x?y=1") is None
    assert url_problem("mailto:a@example.com") is None
    assert url_problem("[[unsubscribe_url]]") is None
    assert url_problem("ftp://example.com/") is not None
    assert url_problem("//example.com/x") is not None


@pytest.mark.parametrize("tag", ["script", "iframe", "form", "object", "embed"])
def test_no_active_content(tag: str) -> None:
    problems = problems_of(issue(f"<p>x</p><{tag}></{tag}>"))
    assert problems == [f"HTML line 2: <{tag}> is not allowed in a newsletter"]


def test_no_event_handlers_or_refresh() -> None:
    problems = problems_of(issue('<img src="https://e.com/a.png" alt="" onerror="x()">'))
    assert problems == ["HTML line 2: <img onerror> event handler is not allowed"]
    problems = problems_of(issue('<meta http-equiv="refresh" content="0">'))
    assert problems == ["HTML line 2: <meta http-equiv=refresh> is not allowed"]


@pytest.mark.parametrize(
    "leftover", ["{{ post.title }}", "{% endif %}", "{# note #}", "[[first_name]]"]
)
def test_no_leftover_template_syntax_anywhere(leftover: str) -> None:
    for where, made in (
        ("HTML", issue(f"<p>{leftover}</p>")),
        ("text", issue(text=f"Hello\n{leftover}\n")),
        ("subject", issue(subject=f"News {leftover}")),
        ("preheader", issue(preheader=leftover)),
    ):
        problems = problems_of(made)
        assert len(problems) == 1, problems
        assert problems[0].startswith(where), problems
    assert problems_of(issue(text="[[email]] and [[name]] and [[unsubscribe_url]]\n")) == []


def test_error_lists_at_most_five_problems() -> None:
    body = "".join(f'<a href="/r{i}">x</a>' for i in range(8))
    with pytest.raises(GuardError, match=r"; and 3 more$"):
        check(issue(body), 100_000)


def test_each_part_holds_exactly_the_placeholders_the_templates_put_there() -> None:
    placed = {"HTML": PLACED_IN_GOOD_BODY, "text": {Placeholder.EMAIL: 1}}
    assert find_problems(issue(text="Hi [[email]]\n"), placed) == []
    forged = issue(text="Hi [[email]]\nFrom the feed: [[email]] [[unsubscribe_url]]\n")
    rule = "(feed text may not add per-reader values)"
    assert find_problems(forged, placed) == [
        f"text: 1 [[unsubscribe_url]] where the templates put 0 {rule}",
        f"text: 2 [[email]] where the templates put 1 {rule}",
    ]
    lost = issue("<p>no footer</p>", text="Hi [[email]]\n")
    assert find_problems(lost, placed) == [
        f"HTML: 0 [[unsubscribe_url]] where the templates put 1 {rule}",
        f"HTML: 0 [[email]] where the templates put 1 {rule}",
    ]
    with pytest.raises(GuardError, match=r"text: 2 \[\[email\]\] where the templates put 1"):
        check_issue(forged, 100_000, placed)


def test_outlook_conditional_comments_pass_and_what_they_hide_is_checked() -> None:
    outlook = (
        '<!--[if mso]><table role="presentation" width="600"><tr><td width="600"><![endif]-->'
        + GOOD_BODY
        + '<!--[if mso]><img src="https://example.com/i.png" width="552" alt=""><![endif]-->'
        '<!--[if !mso]><!--><img src="https://example.com/i.png" alt=""><!--<![endif]-->'
        "<!--[if mso]></td></tr></table><![endif]-->"
    )
    assert problems_of(issue(outlook)) == []
    hidden = '<p>ok</p>\n<!--[if mso]><a href="/relative">x</a>\n<script>x()</script><![endif]-->'
    assert problems_of(issue(hidden)) == [
        "HTML line 3 (in <!--[if ...]>): <a href> '/relative' is not absolute",
        "HTML line 4 (in <!--[if ...]>): <script> is not allowed in a newsletter",
    ]
    assert problems_of(issue("<!-- [if mso]> just a remark <a href='/x'> -->")) == []
