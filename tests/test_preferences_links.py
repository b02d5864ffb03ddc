"""Every issue links the reader's own preferences page, next to the unsubscribe link, in both
parts, where serve's pages are (``newsletter.unsubscribe_url`` over a store the job shares):
a real ``run`` (the CLI, the example feed from the loopback feed server, the loopback SendGrid)
mails each reader a link whose page opens over real HTTP (uvicorn on 127.0.0.1) for that reader
only, and a pause chosen there leaves them out of the next run. A dry run shows a sample link
signed with a throwaway key. Without the pages there is no link (no broken one); the archive
page never has one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from peers.feed_server import FeedServer
from peers.sendgrid_server import Delivery, SendGridServer

from crusader_mail import pipeline
from crusader_mail.compose.composer import Composer, neutral_values, web_page
from crusader_mail.delivery.body import BodyBuilder
from crusader_mail.models import Placeholder
from crusader_mail.settings import Settings
from crusader_mail.util.tokens import Purpose, Signer
from tests.support.golden import NOW, golden_posts, golden_settings, served_settings
from tests.support.site import FeedSite, serve_settings
from tests.support.web import web_app

SECRET = "preferences-links-secret-0123456789"
SERVE = "https://mail.bizcrusader.example"
READERS = ("Ann@example.com", "bob@example.com", "cy@example.com")
PAGE_LINK = re.compile(re.escape(SERVE) + r"/preferences\?token=([a-z2-7]{29})")


class Site(FeedSite):
    """A newsletter whose serve runs beside the job (``server.same_host``, the files store)."""

    def settings(self) -> Settings:
        """What ``serve`` runs with."""
        return serve_settings(
            self.root, self.api.url, SECRET, unsubscribe_url=f"{SERVE}/unsubscribe"
        )


@pytest.fixture
def site(tmp_path: Path, feed_server: FeedServer) -> Iterator[Site]:
    with SendGridServer() as api:
        yield Site(
            tmp_path / "site",
            feed_server,
            api,
            SECRET,
            newsletter=f'unsubscribe_url = "{SERVE}/unsubscribe"\n',
            more="[server]\nsame_host = true\n",
        )


def parts(delivery: Delivery) -> dict[str, str]:
    """The text and HTML a reader sees: their own values filled in, as SendGrid does."""
    filled = {}
    for kind, value in delivery.content:
        for key, own in delivery.substitutions.items():
            value = value.replace(key, own)
        filled[kind] = value
    return filled


def test_each_reader_gets_a_link_to_their_own_page_and_a_pause_there_holds_the_next_issue(
    site: Site,
) -> None:
    site.publish(hidden=4)
    for email in READERS:
        assert site.cli("subscribers", "add", email).exit_code == 0
    assert site.run()["send"] is None  # the first run archives everything, sends nothing
    site.clock.advance(timedelta(days=7))
    site.publish(hidden=2)

    dry = site.run("--dry-run")  # the sample reader's link: the real shape, a throwaway key
    assert dry["send"] is not None
    sample = (site.root / "outbox" / "newsletter.html").read_text(encoding="utf-8")
    [shown] = PAGE_LINK.findall(sample)
    assert not Signer(SECRET).matches(
        Purpose.PREFERENCES, shown, "sample.reader@example.com", site.clock.now()
    )
    assert "[[" not in sample
    assert site.api.deliveries == []

    site.run()
    links: dict[str, str] = {}
    for delivery in site.api.deliveries:
        [reader] = delivery.to
        text, html = parts(delivery)["text/plain"], parts(delivery)["text/html"]
        [token] = PAGE_LINK.findall(text)
        assert f'<a class="preferences" href="{SERVE}/preferences?token={token}"' in html
        assert f"\n{SERVE}/preferences?token={token}\n" in text  # on a line of its own
        # next to the unsubscribe link, in both parts
        assert re.search(r"Preferences</a>[^\n]*</p>\s*<p[^>]*><a class=\"unsubscribe\"", html)
        assert re.search(r"Preferences \(.*\):\n\S+\n\nUnsubscribe \(", text)
        links[reader] = token
    assert sorted(links, key=str.lower) == sorted(READERS, key=str.lower)

    with web_app(site.settings(), site.clock) as url, httpx.Client(timeout=10) as http:
        for reader, token in links.items():
            page = http.get(f"{url}/preferences", params={"token": token})
            assert page.status_code == 200
            assert f"{reader[0]}•••@example.com" in page.text  # their own page (masked)
        ann = links["Ann@example.com"]
        paused = http.post(
            f"{url}/preferences",
            data={"token": ann, "action": "pause", "weeks": "4"},
            headers={"Origin": SERVE},
        )
        assert paused.status_code == 200
        # the unsubscribe token in the same mail opens no preferences page
        leave = site.api.to("Ann@example.com")[0].headers["List-Unsubscribe"]
        unsubscribe = leave.split("token=")[1].rstrip(">")
        other = http.get(f"{url}/preferences", params={"token": unsubscribe})
        assert other.status_code == 400
        assert "A•••@example.com" not in other.text

    site.clock.advance(timedelta(days=7))
    site.publish(hidden=0)
    before = len(site.api.deliveries)
    send = site.run()["send"]
    assert isinstance(send, dict)
    got = {d.to[0] for d in site.api.deliveries[before:]}
    assert got == {"bob@example.com", "cy@example.com"}
    assert send["skipped"]["paused"] == 1


@pytest.mark.parametrize(
    "settings",
    [
        golden_settings(),  # no serve at all
        served_settings().model_copy(  # a serve whose records never reach the job
            update={"server": served_settings().server.model_copy(update={"same_host": False})}
        ),
    ],
    ids=["no serve", "serve elsewhere over the files store"],
)
def test_without_the_pages_there_is_no_preferences_link(settings: Settings) -> None:
    posts, related = golden_posts()
    issue = Composer(settings).compose(posts, related, "2026-11-23-nopages0", NOW)
    assert Placeholder.PREFERENCES_URL not in issue.placeholders
    assert "preferences" not in (issue.html + issue.text).lower()
    builder = BodyBuilder(issue, settings, Signer(SECRET), NOW)
    person = json.loads(builder.personalization("ann@example.com", "Ann"))
    assert Placeholder.PREFERENCES_URL.value not in person["substitutions"]
    served = Composer(served_settings()).compose(posts, related, "2026-11-23-nopages0", NOW)
    assert Placeholder.PREFERENCES_URL in served.placeholders  # the same issue where they are


def test_the_archive_page_has_no_preferences_link() -> None:
    settings = served_settings().model_copy(
        update={
            "newsletter": served_settings().newsletter.model_copy(
                update={"archive_url": "https://bizcrusader.example/archive/"}
            )
        }
    )
    posts, related = golden_posts()
    page = Composer(settings).compose(posts, related, "2026-11-23-archive0", NOW, web=True)
    assert "preferences" not in (page.html + page.text).lower()
    assert "[[" not in page.html + page.text
    # an issue's own copy, should a template show it there, is neutralised like unsubscribe
    mailed = Composer(settings).compose(posts, related, "2026-11-23-archive0", NOW)
    neutral = web_page(mailed, settings)
    assert "[[" not in neutral.html + neutral.text
    assert f'href="{SERVE}/subscribe"' in neutral.html
    assert "/preferences" not in neutral.html + neutral.text
    assert urlsplit(settings.subscribe_link).path == "/subscribe"


def test_every_made_up_reader_has_a_value_for_every_placeholder() -> None:
    """The approval's preview and the archive page fill every placeholder an issue may hold."""
    assert set(pipeline.SAMPLE_READER) == set(Placeholder)
    assert set(neutral_values(served_settings())) == set(Placeholder)
