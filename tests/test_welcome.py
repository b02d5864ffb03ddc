"""The welcome: the blog's best posts (most related-to, or the editor's), in the newsletter's own
templates, both parts, each reader's own footer; the plain reply when it cannot be rendered."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.compose.composer import Composer
from crusader_mail.compose.guards import html_problems
from crusader_mail.errors import GuardError
from crusader_mail.models import IssueRecord, OutgoingMessage, Post, Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.storage.archive import Archive
from crusader_mail.subscriptions.service import SubscriptionService
from crusader_mail.subscriptions.welcome import best_posts
from crusader_mail.util.tokens import Purpose, Signer
from tests.support.inbox import SECRET, make_settings
from tests.support.joining import POST, seed_archive

JANE = "Jane@reader.example"


@pytest.fixture
def settings(clean_env: Path, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, server={"same_host": True})  # our one-click link counts


def service(settings: Settings, clock: FixedClock) -> SubscriptionService:
    return SubscriptionService(settings, clock, open_store(settings, clock), Signer(SECRET))


def confirmed(
    settings: Settings, clock: FixedClock, email: str = JANE
) -> tuple[str, OutgoingMessage]:
    """``email`` asks and confirms: the confirmation's result line and the welcome queued."""
    with service(settings, clock).session() as session:
        session.roster.request(email, name="Jane", via=Source.WEB, ref="web:1")
        line = session.confirm(email, "web:2", Source.WEB)
    store = open_store(settings, clock)
    with store.mail.claim(clock.now()) as batch:
        [welcome] = [m.message for m in batch.mails if m.message.category == "reply-welcome"]
    return line, welcome


def welcome_changed(settings: Settings, tmp_path: Path, where: str, added: str) -> Settings:
    """``settings`` with a copy of the templates whose ``welcome.html`` has ``added`` put
    before (or, for a closing tag, after) the first ``where``."""
    templates = tmp_path / "templates"
    shutil.copytree(settings.templates_dir, templates)
    page = templates / "welcome.html"
    into = where + added if where.startswith("</") else added + where
    page.write_text(page.read_text().replace(where, into, 1))
    return settings.model_copy(update={"templates_dir": templates})


def ids(posts: Sequence[Post]) -> list[str]:
    return [post.id for post in posts]


# --- which posts ------------------------------------------------------------------------------


def test_the_best_posts_are_those_the_sent_issues_chose_most_as_related(
    settings: Settings, clock: FixedClock
) -> None:
    archive = seed_archive(
        settings, clock, [[POST + "134", POST + "305"], [POST + "305"], [POST + "547"]]
    )
    archive.record_issue(  # an issue not sent (yet): its choices do not count
        IssueRecord(
            issue_id="2026-11-23-sending0",
            created_at=clock.now(),
            subject="Sending",
            post_ids=(),
            related_ids=(POST + "134", POST + "134", POST + "134"),
            status="sending",
        )
    )
    # p=305 twice, then p=134 once (p=547 is no post); then the newest of the rest
    assert ids(best_posts(archive, ())) == [POST + "305", POST + "134", POST + "683"]
    assert ids(best_posts(Archive(posts=archive.posts), ())) == [
        POST + "683",
        POST + "668",
        POST + "655",
    ]  # no issue sent yet: the newest
    assert best_posts(Archive(), ()) == []


def test_the_editors_picks_come_first_by_link_or_id_in_their_order(
    settings: Settings, clock: FixedClock
) -> None:
    archive = seed_archive(settings, clock, [[POST + "134"]])
    picks = (
        "https://bizcrusader.example/2026/05/writing-a-one-page-proposal",  # no trailing slash
        POST + "160",
        "https://bizcrusader.example/no-such-post/",  # left out
        "https://bizcrusader.example/2026/05/writing-a-one-page-proposal/#top",  # the same post
    )
    assert ids(best_posts(archive, picks)) == [POST + "318", POST + "160"]
    assert ids(best_posts(archive, ("https://bizcrusader.example/gone/",))) == [
        POST + "134",
        POST + "683",
        POST + "668",
    ]  # none found: the automatic choice


def test_the_setting_takes_at_most_ten_posts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most 10"):
        make_settings(tmp_path, newsletter={"welcome_posts": [str(n) for n in range(11)]})


# --- the mail -----------------------------------------------------------------------------------


def test_a_confirmed_reader_gets_both_parts_with_their_own_footer(
    settings: Settings, clock: FixedClock
) -> None:
    seed_archive(settings, clock, [[POST + "280"]])
    line, welcome = confirmed(settings, clock)
    assert line == "J•••@reader.example confirmed: active; welcome queued"
    assert welcome.to_email == JANE
    assert welcome.subject == "Welcome to Biz Crusader"  # mail/welcome.txt's subject
    assert welcome.html is not None
    assert "Handling Objections: The Complete Field Guide" in welcome.html
    assert "Handling Objections: The Complete Field Guide" in welcome.text
    assert html_problems(welcome.html) == []
    assert "[[" not in welcome.html + welcome.text
    assert f"because <span>{JANE}</span> subscribed" in welcome.html
    mailto = welcome.headers["List-Unsubscribe"].split(",")[0].strip("<> ")
    https = welcome.headers["List-Unsubscribe"].split(",")[1].strip("<> ")
    assert f'href="{https}"' in welcome.html  # their own one-click link
    assert https in welcome.text
    assert mailto.startswith("mailto:news+unsubscribe-")
    # their own preferences page: in the welcome's words and in the footer, in both parts
    [page] = set(re.findall(r"https://[^\s\"]+/preferences\?token=[a-z2-7]+", welcome.text))
    assert welcome.html.count(f'href="{page}"') == 2
    assert welcome.text.count(page) == 2
    token = page.split("token=")[1]
    assert Signer(SECRET).matches(Purpose.PREFERENCES, token, JANE, clock.now())
    assert welcome.headers["X-Crusader-Mail"] == "welcome"
    assert welcome.headers["X-Crusader-Mail-Id"].startswith("welcome.")
    long = [line for line in welcome.text.splitlines() if len(line) > 72]
    assert long  # the post links
    assert all(line.startswith("https://") and " " not in line for line in long)  # wrapped


def test_the_footer_promises_one_click_only_for_our_own_link(
    clean_env: Path, tmp_path: Path, clock: FixedClock
) -> None:
    """With SendGrid's subscription tracking, newsletters get SendGrid's link; a welcome is a
    single message without it, so its link is the mailto."""
    settings = make_settings(tmp_path, sendgrid={"subscription_tracking": True})
    _line, welcome = confirmed(settings, clock)
    assert welcome.html is not None
    assert "this opens an email to us" in welcome.html
    assert 'href="mailto:news+unsubscribe-' in welcome.html
    assert "preferences" not in welcome.html + welcome.text  # no serve shares the store


def test_a_welcome_that_cannot_be_rendered_is_the_plain_reply(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    broken = welcome_changed(settings, tmp_path, "{% endblock %}", '<img src="/x.png" alt="">')
    line, welcome = confirmed(broken, clock)
    assert line.startswith("J•••@reader.example confirmed: active; welcome queued (plain text: ")
    assert "is not absolute" in line  # the guards' reason
    assert welcome.html is None
    assert welcome.text.startswith("Hello,\n\nYou are in: Biz Crusader will now arrive at")
    reader = open_store(broken, clock).roster.get(JANE)
    assert reader is not None
    assert reader.status is Status.ACTIVE


def test_the_composer_runs_the_guards_on_the_welcome(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    composer = Composer(welcome_changed(settings, tmp_path, "</h2>", "<script>track()</script>"))
    with pytest.raises(GuardError, match=r"issue welcome is not safe to send: .*<script>"):
        composer.welcome([], "Welcome", clock.now())


def test_the_welcome_is_rendered_once_an_hour(settings: Settings, clock: FixedClock) -> None:
    archive = seed_archive(settings, clock, [[POST + "280"]])
    one = service(settings, clock)
    first = one.welcome.rendered("Welcome")
    assert not isinstance(first, str)
    archive.record_issue(
        IssueRecord(
            issue_id="2026-11-24-00000009",
            created_at=clock.now(),
            subject="Later",
            post_ids=(),
            related_ids=(POST + "112", POST + "112"),
            status="sent",
        )
    )
    open_store(settings, clock).archive.save(archive)
    clock.advance(timedelta(minutes=59))
    assert one.welcome.rendered("Welcome") is first
    clock.advance(timedelta(minutes=2))
    later = one.welcome.rendered("Welcome")
    assert not isinstance(later, str)
    assert later.post_ids[0] == POST + "112"
