"""Feed text cannot plant a live per-reader placeholder, in either part, whatever markup it hides
the brackets in: the only ``[[email]]``, ``[[name]]``, ``[[unsubscribe_url]]`` and
``[[preferences_url]]`` in an issue are the templates' own, and so a reader's address and
personal links appear only where the templates put them.

The hostile posts come through the real reader (a feed served on 127.0.0.1, parsed, sanitized)
and also straight into the composer (an archive may hold HTML that never met today's sanitizer).
"""

from __future__ import annotations

from html import escape

import pytest
from peers.feed_server import FeedServer

from crusader_mail.clock import FixedClock
from crusader_mail.compose.composer import Composer, fill_placeholders
from crusader_mail.compose.guards import check_issue
from crusader_mail.errors import GuardError
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import read_feed
from crusader_mail.models import Placeholder, Post, RenderedIssue
from tests.support.feeds import loopback_fetch
from tests.support.golden import NOW, make_post, served_settings

READER = {
    Placeholder.EMAIL: "victim@reader.example",
    Placeholder.NAME: "Vic",
    Placeholder.UNSUBSCRIBE_URL: "https://news.example/unsubscribe?token=PERSONAL",
    Placeholder.PREFERENCES_URL: "https://news.example/preferences?token=CHOOSING",
}
# Markup inside the brackets: each collapses to a placeholder somewhere on the way
# (html-to-text, premailer's entity decoding, the sanitizer dropping comments or CDATA).
SHAPES = {
    "tag": "[<b></b>[email]]",
    "tags around": "<i>[</i><b>[email]]</b>",
    "span in unsubscribe": "[<span></span>[unsubscribe_url]]",
    "link text": '[<a href="https://x.example/">[unsubscribe_url]]</a>',
    "span in preferences": "[<span></span>[preferences_url]]",
    "preferences link": '<a href="https://x.example/">[<b></b>[preferences_url]]</a>',
    "preferences entity": "&#91;[preferences_url&#93;]",
    "name": "[<em></em>[name]]",
    "comment": "[<!-- hidden -->[email]]",
    "entity": "[&#91;email]]",
    "hex entities": "&#x5b;&#x5B;unsubscribe_url&#x5d;&#x5d;",
    "named entities": "&lbrack;&lbrack;email&rsqb;&rsqb;",
    "cdata": "[<![CDATA[[email]]]]>",
    "soft hyphen": "[\u00ad[email]]",
    "zero width space": "[\u200b[email]]",
    "zero width joiner": "[\u200d[email]]",
    "image alt": '<img src="https://x.example/i.png" alt="[&#91;email]]">',
    "code": "<code>[</code><code>[email]]</code>",
    "pre split": "<pre>[<b></b>[email]]</pre>",
    "template syntax": "{<b></b>{ config }} {<!-- -->% raw %}",
}
LONG = "word " * 13  # the placeholder lands where the text part wraps its line


def hostile_html() -> str:
    return "".join(f"<p>{LONG}{name}: {shape} {LONG}</p>" for name, shape in SHAPES.items())


def hostile_feed() -> bytes:
    items = "".join(
        f"<item><title>Post {n}</title><link>https://blog.example/{n}</link>"
        f"<guid>https://blog.example/{n}</guid><pubDate>Mon, 2{n} Nov 2026 08:00:00 GMT</pubDate>"
        f"<description>{escape(body)}</description></item>"
        for n, body in enumerate([hostile_html(), "<p>[<b></b>[email]] in the excerpt</p>"])
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Hostile</title>'
        f"<link>https://blog.example/</link>{items}</channel></rss>"
    ).encode()


def compose(posts: list[Post], related: list[Post]) -> RenderedIssue:
    settings = served_settings(full_content=True, subject="{{ posts[0].title }} for {{ name }}")
    return Composer(settings).compose(posts, related, "2026-11-23-hostile0", NOW)


def assert_only_the_templates_placeholders(issue: RenderedIssue) -> None:
    # The templates: one address, one unsubscribe link and one preferences link in each part;
    # the name in the subject, which the HTML repeats in its <title>.
    for part, names in ((issue.html, 1), (issue.text, 0), (issue.subject, 1)):
        assert part.count(Placeholder.NAME.value) == names
    for part in (issue.html, issue.text):
        assert part.count(Placeholder.EMAIL.value) == 1
        assert part.count(Placeholder.UNSUBSCRIBE_URL.value) == 1
        assert part.count(Placeholder.PREFERENCES_URL.value) == 1
    html = fill_placeholders(issue.html, READER, html=True)
    text = fill_placeholders(issue.text, READER)
    for part, names in ((html, 1), (text, 0)):
        assert part.count("victim@reader.example") == 1
        assert part.count("PERSONAL") == 1
        assert part.count("CHOOSING") == 1
        assert part.count("Vic") == names
    assert "{{" not in issue.text
    assert "{%" not in issue.text


def test_placeholders_hidden_in_markup_stay_dead_through_the_real_reader(
    feed_server: FeedServer, clock: FixedClock
) -> None:
    url = feed_server.add("/hostile.xml", hostile_feed())
    settings = loopback_fetch()
    with make_client(settings) as client:
        outcome = read_feed(url, client, settings, None, clock)
    assert outcome.report.status == "ok", outcome.report
    posts = sorted(outcome.posts, key=lambda post: post.link)
    issue = compose(posts[:1], posts[1:])
    assert_only_the_templates_placeholders(issue)
    assert "tag:\n[\u2060[email]] word" in issue.text  # still there for the eye, inert


@pytest.mark.parametrize("name", list(SHAPES))
def test_each_shape_straight_into_the_composer(name: str) -> None:
    content = f"<p>{LONG}{SHAPES[name]} {LONG}</p>"
    post = make_post(1, f"Title {SHAPES[name]}", content=content, author=SHAPES[name])
    related = make_post(2, "Related", content=f"<p>{SHAPES[name]}</p>")
    assert_only_the_templates_placeholders(compose([post], [related]))


def test_the_guard_refuses_a_placeholder_the_templates_did_not_put_there() -> None:
    issue = compose([make_post(1)], [])
    once = {Placeholder.EMAIL: 1, Placeholder.UNSUBSCRIBE_URL: 1, Placeholder.PREFERENCES_URL: 1}
    placed = {"HTML": once | {Placeholder.NAME: 1}, "text": once, "subject": {Placeholder.NAME: 1}}
    check_issue(issue, 200_000, placed)
    forged = issue.model_copy(update={"text": issue.text + "\nYour address: [[email]]\n"})
    with pytest.raises(GuardError, match=r"text: 2 \[\[email\]\] where the templates put 1"):
        check_issue(forged, 200_000, placed)
