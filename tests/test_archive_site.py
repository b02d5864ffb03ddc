"""The public archive through the real pipeline: ``run`` twice against the loopback feed and
SendGrid servers, then ``archive build``; ``serve`` shows the same folder at ``/archive/``.

What is checked: both issues have a page, the index lists them, ``feed.xml`` is Atom 1.0 that
feedparser reads without complaint and holds every element RFC 4287 requires; every page and the
index pass the mail's guards (no script, every URL absolute, no placeholder); no address of any
reader on the list appears anywhere in the folder; each mail links to its page ("View in your
browser") and to the archive; ``archive build`` composes the pages again from the records
byte for byte, and removes a page whose issue left the history.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import feedparser
import httpx
import pytest
from peers.feed_server import FeedServer
from peers.sendgrid_server import SendGridServer
from pydantic import ValidationError

from crusader_mail.clock import FixedClock
from crusader_mail.compose import guards
from crusader_mail.errors import ConfigError
from crusader_mail.settings import NewsletterSettings, ServerSettings, Settings
from crusader_mail.web.archive_files import ARCHIVE_POLICY
from tests.support.sending import make_settings
from tests.support.web import web_app
from tests.test_pipeline import Site

ARCHIVE_URL = "https://news.bizcrusader.example/archive/"


def with_archive(site: Site, url: str = ARCHIVE_URL) -> None:
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(
        text.replace("[newsletter]\n", f'[newsletter]\narchive_url = "{url}"\n', 1),
        encoding="utf-8",
    )


def archived_site(tmp_path: Path, feed_server: FeedServer) -> Iterator[Site]:
    """A newsletter site (as ``tests/test_pipeline.py`` makes it) with ``archive_url`` set."""
    with SendGridServer() as api:
        made = Site(tmp_path / "site", feed_server, api)
        with_archive(made)
        yield made


@pytest.fixture
def site(tmp_path: Path, feed_server: FeedServer) -> Iterator[Site]:
    yield from archived_site(tmp_path, feed_server)


def sent_ids(site: Site) -> list[str]:
    return [issue for issue, status in site.statuses().items() if status == "sent"]


def readers(site: Site) -> list[str]:
    rows = (site.root / "subscribers" / "subscribers.csv").read_text(encoding="utf-8")
    return [line.split(",", 1)[0] for line in rows.splitlines()[2:] if "@" in line]


def two_runs(site: Site) -> list[str]:
    """Install, then two weekly runs, each with one new post: the two issues' ids."""
    site.install(hidden=2)
    for hidden in (1, 0):
        site.publish(hidden=hidden)
        result = site.cli("run")
        assert result.exit_code == 0, result.output
        site.clock.advance(timedelta(days=7))
    ids = sent_ids(site)
    assert len(ids) == 2
    return ids


def check_page(html: str, name: str) -> None:
    """The guards of the mail, with no placeholder allowed."""
    assert guards.html_problems(html) == [], name
    assert guards.syntax_problems(name, html) == [], name
    assert "[[" not in html, name
    assert "<script" not in html.lower(), name


def test_two_runs_publish_both_issues_an_index_and_a_valid_atom_feed(site: Site) -> None:
    ids = two_runs(site)
    folder = site.root / "archive"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{issue}.html" for issue in ids] + ["feed.xml", "index.html"]
    )
    index = (folder / "index.html").read_text(encoding="utf-8")
    for issue in ids:
        assert f'href="{ARCHIVE_URL}{issue}.html"' in index
    assert index.index(ids[1]) < index.index(ids[0])  # newest first
    for path in folder.glob("*.html"):
        check_page(path.read_text(encoding="utf-8"), path.name)
    page = (folder / f"{ids[0]}.html").read_text(encoding="utf-8")
    assert "View in your browser" not in page
    assert f'href="{ARCHIVE_URL}"' in page  # all issues
    assert 'href="mailto:news+subscribe@bizcrusader.example"' in page  # no serve: by mail
    assert "Unsubscribe" not in page

    feed = feedparser.parse((folder / "feed.xml").read_bytes())
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Biz Crusader"
    assert feed.feed.id == ARCHIVE_URL + "feed.xml"
    assert feed.feed.updated_parsed is not None
    assert feed.feed.author == "Biz Crusader"
    assert {link.rel: link.href for link in feed.feed.links} == {
        "self": ARCHIVE_URL + "feed.xml",
        "alternate": ARCHIVE_URL,
    }
    subjects = list(site.received())[::-1]  # in sending order, so newest first
    assert [entry.link for entry in feed.entries] == [f"{ARCHIVE_URL}{i}.html" for i in ids[::-1]]
    assert [entry.title for entry in feed.entries] == subjects
    for entry in feed.entries:
        assert entry.id.startswith("tag:bizcrusader.example,")
        assert entry.updated_parsed is not None
        assert entry.summary.startswith("In this issue: ")
    assert len({entry.id for entry in feed.entries}) == 2


def test_no_reader_is_named_anywhere_in_the_archive(site: Site) -> None:
    two_runs(site)
    everything = "\n".join(
        path.read_text(encoding="utf-8").lower() for path in (site.root / "archive").iterdir()
    )
    on_list = readers(site)
    assert len(on_list) >= 5
    for address in on_list:
        assert address.lower() not in everything
        assert address.split("@")[0].lower() + "@" not in everything
    for name in ("Ada Lovelace", "Grace Hopper", "Katherine Johnson"):
        assert name.lower() not in everything
    assert "x-crusader-mail-id" not in everything
    assert "unsubscribe" not in everything  # no reader's link, no way out to offer


def test_each_mail_links_to_its_page_and_to_the_archive(site: Site) -> None:
    ids = two_runs(site)
    by_subject = {d.subject: d for d in site.api.deliveries}
    assert len(by_subject) == 2
    for issue, delivery in zip(ids, by_subject.values(), strict=True):
        html, text = (dict(delivery.content)[kind] for kind in ("text/html", "text/plain"))
        page = f"{ARCHIVE_URL}{issue}.html"
        assert html.index(f'href="{page}"') < html.index('class="header"')  # at the top
        assert "View in your browser" in html
        assert f'href="{ARCHIVE_URL}"' in html.split('class="footer"')[1]
        assert f"View this issue in your browser: \n{page}" in text or page in text.split("\n")
        assert f"Past issues: \n{ARCHIVE_URL}" in text or ARCHIVE_URL in text.split("\n")


def test_archive_build_composes_the_same_pages_again_from_the_records(site: Site) -> None:
    ids = two_runs(site)
    folder = site.root / "archive"
    published = {path.name: path.read_bytes() for path in folder.iterdir()}
    stale = folder / "2020-01-01-deadbeef.html"
    stale.write_text("an issue the history no longer holds", encoding="utf-8")
    (folder / "CNAME").write_text("news.bizcrusader.example\n", encoding="utf-8")
    for path in folder.glob("2026-*.html"):
        path.unlink()
    result = site.cli("archive", "build", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["pages"]) == sorted(ids)
    assert report["issues"] == 2
    assert report["removed"] == [stale.name]
    assert not stale.exists()
    assert (folder / "CNAME").is_file()  # not a page: left alone
    rebuilt = {path.name: path.read_bytes() for path in folder.iterdir() if path.name != "CNAME"}
    assert rebuilt == published


def test_archive_build_needs_the_archive_url(site: Site) -> None:
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace(f'archive_url = "{ARCHIVE_URL}"\n', ""), encoding="utf-8")
    result = site.cli("archive", "build")
    assert isinstance(result.exception, ConfigError)  # exit 2 (the CLI maps it)
    assert "newsletter.archive_url" in str(result.exception)
    assert not (site.root / "archive").exists()


def test_without_an_archive_url_nothing_is_published_and_no_mail_links_to_it(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    with SendGridServer() as api:
        site = Site(tmp_path / "plain", feed_server, api)
        site.install(hidden=1)
        site.publish(hidden=0)
        assert site.cli("run").exit_code == 0
        assert not (site.root / "archive").exists()
        [delivery] = {d.subject: d for d in api.deliveries}.values()
        assert "View in your browser" not in delivery.rendered()
        assert "Past issues" not in delivery.rendered()


def test_serve_shows_the_archive_read_only(site: Site, tmp_path: Path) -> None:
    ids = two_runs(site)
    settings = make_settings(tmp_path, site.api).model_copy(
        update={"archive_dir": site.root / "archive"}
    )
    with web_app(settings, site.clock) as url, httpx.Client(base_url=url) as client:
        index = client.get("/archive/")
        assert index.status_code == 200
        assert index.headers["content-type"].startswith("text/html")
        assert index.headers["content-security-policy"] == ARCHIVE_POLICY
        assert index.headers["x-content-type-options"] == "nosniff"
        assert index.text == (site.root / "archive" / "index.html").read_text(encoding="utf-8")
        page = client.get(f"/archive/{ids[0]}.html")
        assert page.status_code == 200
        assert "script-src" not in page.headers["content-security-policy"]
        feed = client.get("/archive/feed.xml")
        assert feed.status_code == 200
        moved = client.get("/archive")
        assert (moved.status_code, moved.headers["location"]) == (308, "/archive/")
        assert client.post("/archive/index.html").status_code == 405
        assert client.get("/archive/missing.html").status_code == 404
        assert client.get("/archive/..%2fcrusader-mail.toml").status_code == 404
        assert client.get("/archive/../state/issues.jsonl").status_code == 404


def test_serve_without_an_archive_folder_answers_404(tmp_path: Path, clock: FixedClock) -> None:
    with SendGridServer() as api:
        settings = make_settings(tmp_path, api).model_copy(
            update={"archive_dir": tmp_path / "nothing-here"}
        )
        with web_app(settings, clock) as url:
            answer = httpx.get(url + "/archive/")
    assert answer.status_code == 404
    assert answer.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://owner.github.io/news", "https://owner.github.io/news/"),
        ("https://mail.example/archive/", "https://mail.example/archive/"),
    ],
)
def test_the_archive_url_is_a_folder(given: str, kept: str) -> None:
    settings = Settings(newsletter=NewsletterSettings(archive_url=given))
    assert settings.newsletter.archive_url == kept
    assert settings.issue_page_url("2026-11-23-1a2b3c4d") == f"{kept}2026-11-23-1a2b3c4d.html"


@pytest.mark.parametrize(
    "bad", ["/archive/", "javascript:alert(1)", "https://x.example/a?b=c", "https://x.example/a b"]
)
def test_an_archive_url_that_is_no_web_folder_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="archive_url"):
        NewsletterSettings(archive_url=bad)


def test_visitors_subscribe_on_the_serve_host_or_by_mail() -> None:
    by_mail = Settings(newsletter=NewsletterSettings(from_email="news@blog.example"))
    assert by_mail.subscribe_link == "mailto:news+subscribe@blog.example"
    served = Settings(
        newsletter=NewsletterSettings(unsubscribe_url="https://mail.blog.example/unsubscribe"),
        server=ServerSettings(same_host=True),
    )
    assert served.subscribe_link == "https://mail.blog.example/subscribe"
    elsewhere = served.model_copy(update={"server": ServerSettings(same_host=False)})
    assert elsewhere.subscribe_link.startswith("mailto:")  # its store would not reach the job
