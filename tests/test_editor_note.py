"""The editor's note through the real pipeline (loopback feed and SendGrid servers): on top of
the next issue in both parts, kept in its record and on its archive page, and emptied from
``notes/next.md`` only once that issue is sent: never by ``preview``, a dry run or a failed
send. Then what the note may hold (Markdown made safe) and how its text part is laid out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers.feed_server import FeedServer

from crusader_mail.compose import guards
from crusader_mail.compose.composer import Composer
from crusader_mail.compose.note import clear_note, note_html, note_text, read_note
from crusader_mail.errors import ConfigError
from tests.support.golden import NOW, golden_posts, golden_settings
from tests.test_archive_site import archived_site
from tests.test_pipeline import ACTIVE, PER_POST, Site

NOTE = """# A word before the posts

This week I am **travelling**, so the issue is short.
It comes with [our new page](/about) and a
line that goes on.

- first point
- second point
"""


@pytest.fixture
def site(tmp_path: Path, feed_server: FeedServer) -> Iterator[Site]:
    yield from archived_site(tmp_path, feed_server)


def write_note(site: Site, text: str = NOTE) -> Path:
    path = site.root / "notes" / "next.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def records(site: Site) -> list[dict[str, object]]:
    lines = (site.root / "state" / "issues.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[1:]]


def parts(site: Site) -> tuple[str, str]:
    """The HTML and text of the (one) issue the readers got."""
    subjects = {d.subject: d for d in site.api.deliveries}
    assert len(subjects) == 1
    content = dict(next(iter(subjects.values())).content)
    return content["text/html"], content["text/plain"]


def test_the_note_goes_on_top_of_the_next_issue_and_is_emptied_once_it_is_sent(
    site: Site,
) -> None:
    site.install(hidden=1)
    site.publish(hidden=0)
    note = write_note(site)
    shown = site.cli("preview", "--out", str(site.root / "preview"))
    assert shown.exit_code == 0, shown.output
    assert "travelling" in (site.root / "preview" / "newsletter.html").read_text(encoding="utf-8")
    dry = site.cli("run", "--dry-run", secrets=False)
    assert dry.exit_code == 0, dry.output
    assert "travelling" in (site.root / "outbox" / "newsletter.html").read_text(encoding="utf-8")
    assert note.read_text(encoding="utf-8") == NOTE  # neither preview nor a dry run empties it

    result = site.cli("run")
    assert result.exit_code == 0, result.output
    assert "notes/next.md emptied" in result.output
    html, text = parts(site)
    assert html.index("<strong>travelling</strong>") < html.index('class="post-title"')
    assert '<a href="https://bizcrusader.example/about" rel="noopener"' in html
    assert re.search(r"<h2[ >][^<]*A word before the posts</h2>", html)  # under the h1
    assert (
        "This week I am **travelling**, so the issue is short. It comes with [our\n"
        "new page](/about) and a line that goes on.\n\n- first point\n- second point"
    ) in text
    assert text.index("travelling") < text.index("Read more")
    [record] = [r for r in records(site) if r["status"] == "sent"]
    assert record["note"] == NOTE.strip()
    page = (site.root / "archive" / f"{record['issue_id']}.html").read_text(encoding="utf-8")
    assert "<strong>travelling</strong>" in page
    assert note.read_text(encoding="utf-8") == ""
    assert sorted(site.api.per_address()) == ACTIVE


def test_a_failed_send_keeps_the_note_and_the_resumed_issue_carries_it(site: Site) -> None:
    site.install(hidden=1)
    site.publish(hidden=0)
    note = write_note(site)
    site.api.fail(400, paths="/v3/mail/send")
    failed = site.cli("run")
    assert failed.exit_code == 1
    assert note.read_text(encoding="utf-8") == NOTE
    [record] = records(site)
    assert (record["status"], record["note"]) == ("sending", NOTE.strip())
    resumed = site.cli("run", "--json")
    assert resumed.exit_code == 0, resumed.output
    [issue] = json.loads(resumed.stdout)["issues"]
    assert issue["issue"]["resumed"] is True
    assert "travelling" in parts(site)[0]
    assert note.read_text(encoding="utf-8") == ""


def test_a_note_given_with_note_leaves_the_file_alone(site: Site) -> None:
    site.install(hidden=1)
    site.publish(hidden=0)
    note = write_note(site)
    result = site.cli("run", "--note", "Given on the **command line**.")
    assert result.exit_code == 0, result.output
    html, text = parts(site)
    assert "<strong>command line</strong>" in html
    assert "travelling" not in html
    assert "Given on the **command line**." in text
    assert note.read_text(encoding="utf-8") == NOTE  # for the next issue
    [record] = records(site)[-1:]
    assert record["note"] == "Given on the **command line**."


def test_an_edited_note_file_stays_for_the_next_issue(site: Site) -> None:
    """The file changed after the issue was composed with it (here: the failed run's note is
    replaced before the resuming run): the resumed issue keeps its own note, the new one waits."""
    site.install(hidden=1)
    site.publish(hidden=0)
    note = write_note(site)
    site.api.fail(400, paths="/v3/mail/send")
    assert site.cli("run").exit_code == 1
    note.write_text("A fresh note for next week.\n", encoding="utf-8")
    assert site.cli("run").exit_code == 0
    assert "travelling" in parts(site)[0]
    assert note.read_text(encoding="utf-8") == "A fresh note for next week.\n"


def test_with_per_post_only_the_first_issue_of_the_run_carries_the_note(site: Site) -> None:
    site.configure(PER_POST)
    site.install(hidden=2)
    site.publish(hidden=0)
    write_note(site)
    result = site.cli("run", "--json")
    assert result.exit_code == 0, result.output
    notes = [bool(issue["issue"]["note"]) for issue in json.loads(result.stdout)["issues"]]
    assert notes == [True, False]
    first, second = ({d.subject: d for d in site.api.deliveries}).values()
    assert "travelling" in dict(first.content)["text/html"]
    assert "travelling" not in dict(second.content)["text/html"]


def test_a_note_file_that_is_not_text_stops_the_run_before_anything(site: Site) -> None:
    site.install(hidden=1)
    site.publish(hidden=0)
    write_note(site).write_bytes(b"caf\xe9 \xff\xfe")
    calls = len(site.api.log)
    result = site.cli("run")
    assert isinstance(result.exception, ConfigError)
    assert "notes/next.md: the editor's note is not UTF-8 text" in str(result.exception)
    assert len(site.api.log) == calls


def test_nothing_due_keeps_the_note_and_says_so_for_a_given_one(site: Site) -> None:
    site.install(hidden=0)
    note = write_note(site)
    result = site.cli("run", "--json", "--note", "lost?")
    assert result.exit_code == 0, result.output
    assert "--note was not used: no new issue was due" in json.loads(result.stdout)["problems"]
    assert site.cli("run").exit_code == 0
    assert note.read_text(encoding="utf-8") == NOTE
    assert not (site.root / "archive").exists()  # nothing sent, nothing published


# --- what a note may hold -------------------------------------------------------------------


def test_a_note_is_markdown_made_safe() -> None:
    html = note_html(
        "<script>alert(1)</script> <b>bold?</b> [bad](javascript:alert(1)) "
        '[rel](/x "t") ![pic](https://img.example/a.png) <img src=x onerror=alert(1)>\n\n'
        "| a | b |\n| - | - |\n| 1 | 2 |\n\n~~gone~~",
        "https://bizcrusader.example",
    )
    assert "<script" not in html
    assert "&lt;script&gt;" in html  # raw HTML shows as typed
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html
    assert 'href="javascript' not in html
    assert "[bad](javascript:alert(1))" in html  # not made a link: shown as typed
    assert "onerror" not in html.replace("onerror=alert(1)&gt;", "")  # only as text
    assert 'href="https://bizcrusader.example/x"' in html
    assert '<img src="https://img.example/a.png" alt="pic">' in html
    assert "<table>" in html
    assert "<s>gone</s>" in html


def test_a_note_cannot_forge_placeholders_or_template_syntax() -> None:
    posts, related = golden_posts()
    note = 'Hi [[name]], at [[email]]; {{ "fo" ~ "rged" }} {% if x %}; [[unsubscribe_url]]'
    issue = Composer(golden_settings()).compose(
        posts, related, "2026-11-23-note0000", NOW, note=note
    )
    html_counts = {p: issue.html.count(p.value) for p in issue.placeholders}
    plain = Composer(golden_settings()).compose(posts, related, "2026-11-23-note0000", NOW)
    assert html_counts == {p: plain.html.count(p.value) for p in plain.placeholders}
    assert "forged" not in issue.text
    assert guards.syntax_problems("HTML", issue.html) == []
    assert guards.syntax_problems("text", issue.text) == []


def test_the_text_part_reflows_paragraphs_and_keeps_the_rest() -> None:
    source = (
        "One paragraph\nover three\nlines.\n\n"
        "- a list item\n  that goes on\n- another\n\n"
        "> a quote\n> kept\n\n"
        "A hard break  \nstays.\n\n"
        "```\ncode line one\ncode line two\n```\n\n"
        "    indented code\n\n"
        "## A heading\nright after it"
    )
    assert note_text(source) == (
        "One paragraph over three lines.\n\n"
        "- a list item that goes on\n- another\n\n"
        "> a quote\n> kept\n\n"
        "A hard break\nstays.\n\n"
        "    code line one\n    code line two\n\n"
        "    indented code\n\n"
        "## A heading\nright after it"
    )


def test_the_note_file_is_read_stripped_and_cleared_only_when_it_still_holds_the_note(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes" / "next.md"
    assert read_note(path) == ""  # no file: no note
    assert clear_note(path, "anything") is False
    path.parent.mkdir()
    path.write_text("\n  Hello  \n\n", encoding="utf-8")
    assert read_note(path) == "Hello"
    assert clear_note(path, "Something else") is False
    assert path.read_text(encoding="utf-8") == "\n  Hello  \n\n"
    assert clear_note(path, "Hello") is True
    assert path.read_text(encoding="utf-8") == ""
    path.write_text("x" * 20_001, encoding="utf-8")
    with pytest.raises(ConfigError, match="over 20,000"):
        read_note(path)
