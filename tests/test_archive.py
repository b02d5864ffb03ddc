"""The archive: round trip, damage, no duplicates, edits in place, backlog, atomic saves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crusader_mail.errors import StateError
from crusader_mail.models import BACKLOG, FeedCache, Image, IssueRecord, Post
from crusader_mail.storage.archive import Archive
from crusader_mail.storage.files.archive import (
    ARCHIVE_FILE,
    FEEDS_FILE,
    ISSUES_FILE,
    FileArchiveStore,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def post(n: int, **changes: object) -> Post:
    data: dict[str, object] = {
        "id": f"https://blog.example/?p={n}",
        "title": f"Post {n}",
        "link": f"https://blog.example/{n}/",
        "published": datetime(2026, 11, n, 8, 0, tzinfo=UTC),
        "updated": datetime(2026, 11, n, 8, 0, tzinfo=UTC),
        "categories": ("Sales",),
        "content_html": f"<p>Body {n}</p>",
        "excerpt": f"Body {n}",
        "image": Image(url=f"https://blog.example/{n}.png"),
        "feed": "https://blog.example/feed/",
        "first_seen": NOW,
    }
    data.update(changes)
    return Post.model_validate(data)


def filled(tmp_path: Path) -> Archive:
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(1), post(2)], NOW)  # the installation: backlog
    archive.merge([post(3)], NOW)
    archive.feed_cache["https://blog.example/feed/"] = FeedCache(
        etag='"e"', permanent_redirect=None
    )
    archive.record_issue(
        IssueRecord(
            issue_id="2026-11-23-aaaa0000",
            created_at=NOW,
            subject="S",
            post_ids=("x",),
            related_ids=(),
            status="sent",
            sent_at=NOW,
            recipients=3,
        )
    )
    FileArchiveStore(tmp_path).save(archive)
    return archive


def test_empty_state_loads_empty(tmp_path: Path) -> None:
    archive = FileArchiveStore(tmp_path / "nothing-here").load()
    assert archive.posts == []
    assert archive.issues == []
    assert archive.feed_cache == {}


def test_round_trip(tmp_path: Path) -> None:
    saved = filled(tmp_path)
    loaded = FileArchiveStore(tmp_path).load()
    assert loaded.posts == saved.posts
    assert [p.id for p in loaded.posts] == [post(3).id, post(2).id, post(1).id]  # newest first
    assert loaded.issues == saved.issues
    assert loaded.feed_cache == {"https://blog.example/feed/": FeedCache(etag='"e"')}
    assert loaded.get(post(2).id) == saved.get(post(2).id)


def test_files_are_versioned_sorted_lines(tmp_path: Path) -> None:
    filled(tmp_path)
    lines = (tmp_path / ARCHIVE_FILE).read_text().splitlines()
    assert json.loads(lines[0]) == {"format": "crusader-mail/archive", "version": 1}
    assert [json.loads(line)["id"] for line in lines[1:]] == [post(n).id for n in (1, 2, 3)]
    assert json.loads((tmp_path / ISSUES_FILE).read_text().splitlines()[0])["version"] == 1
    assert json.loads((tmp_path / FEEDS_FILE).read_text())["version"] == 1


def test_a_new_post_adds_one_line(tmp_path: Path) -> None:
    filled(tmp_path)
    before = (tmp_path / ARCHIVE_FILE).read_text().splitlines()
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(4)], NOW)
    FileArchiveStore(tmp_path).save(archive)
    after = (tmp_path / ARCHIVE_FILE).read_text().splitlines()
    assert after[:-1] == before
    assert len(after) == len(before) + 1


@pytest.mark.parametrize(
    ("damage", "line", "words"),
    [
        (lambda lines: lines.__setitem__(2, "{not json"), 3, "not valid JSON"),
        (lambda lines: lines.__setitem__(2, '{"id": "x"}'), 3, "bad post"),
        (lambda lines: lines.__setitem__(0, '{"format": "other"}'), 1, "bad header"),
        (
            lambda lines: lines.__setitem__(0, '{"format": "crusader-mail/archive", "version": 9}'),
            1,
            "version 9",
        ),
        (lambda lines: lines.append(lines[1]), 5, "appears twice"),
        (lambda lines: lines.insert(2, ""), 3, "blank line"),
    ],
)
def test_damage_names_file_and_line_and_is_never_overwritten(
    tmp_path: Path, damage: object, line: int, words: str
) -> None:
    filled(tmp_path)
    path = tmp_path / ARCHIVE_FILE
    lines = path.read_text().splitlines()
    damage(lines)  # type: ignore[operator]
    path.write_text("\n".join(lines) + "\n")
    broken = path.read_bytes()
    with pytest.raises(StateError) as caught:
        FileArchiveStore(tmp_path).load()
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert words in str(caught.value)
    assert path.read_bytes() == broken


def test_damaged_issues_and_feeds_files(tmp_path: Path) -> None:
    filled(tmp_path)
    (tmp_path / ISSUES_FILE).write_text(
        '{"format": "crusader-mail/issues", "version": 1}\n{"issue_id": 1}\n'
    )
    with pytest.raises(StateError, match=r"issues.jsonl:2: bad issue"):
        FileArchiveStore(tmp_path).load()
    (tmp_path / ISSUES_FILE).unlink()
    (tmp_path / FEEDS_FILE).write_text(
        '{"format": "crusader-mail/feeds", "version": 1,\n "feeds": [}'
    )
    with pytest.raises(StateError, match=r"feeds.json:2: not valid JSON"):
        FileArchiveStore(tmp_path).load()


def test_save_refuses_a_file_changed_since_load(tmp_path: Path) -> None:
    filled(tmp_path)
    archive = FileArchiveStore(tmp_path).load()
    (tmp_path / ARCHIVE_FILE).write_text("damaged by someone else\n")
    archive.merge([post(5)], NOW)
    with pytest.raises(StateError, match="changed on disk since it was loaded"):
        FileArchiveStore(tmp_path).save(archive)
    assert (tmp_path / ARCHIVE_FILE).read_text() == "damaged by someone else\n"


def test_refetch_never_duplicates(tmp_path: Path) -> None:
    archive = filled(tmp_path)
    result = archive.merge([post(1), post(2), post(3)], NOW + timedelta(days=1))
    assert result.added == []
    assert result.new == []
    assert result.updated == []
    assert len(archive.posts) == 3


def test_first_merge_into_an_empty_archive_is_backlog(tmp_path: Path) -> None:
    archive = FileArchiveStore(tmp_path).load()
    first = archive.merge([post(1), post(2)], NOW)
    assert first.added == [post(1).id, post(2).id]
    assert first.new == []
    second_feed = archive.merge([post(3, feed="https://other.example/feed")], NOW)  # same run
    assert second_feed.new == []
    assert {p.issue for p in archive.posts} == {BACKLOG}
    assert archive.new_posts() == []
    FileArchiveStore(tmp_path).save(archive)
    later = FileArchiveStore(tmp_path).load().merge([post(4)], NOW)
    assert later.new == [post(4).id]
    assert later.added == [post(4).id]


OTHER = "https://other.example/feed"


def test_a_feed_added_later_is_backlog_at_first_sight_then_new(tmp_path: Path) -> None:
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(1), post(2)], NOW)  # the installation
    later = NOW + timedelta(days=7)
    added = archive.merge([post(3, feed=OTHER), post(4, feed=OTHER)], later)
    assert added.backlog == [post(3).id, post(4).id]
    assert added.new == []
    known = archive.merge([post(5)], later)  # the installed feed's new post
    assert known.new == [post(5).id]
    assert known.backlog == []
    fresh = post(6, id="other-6", feed=OTHER, published=later + timedelta(days=1))
    assert archive.merge([fresh], later + timedelta(days=2)).new == ["other-6"]
    assert [p.id for p in archive.new_posts()] == [post(5).id, "other-6"]


def test_a_feed_read_empty_before_keeps_what_it_publishes_after_the_installation(
    tmp_path: Path,
) -> None:
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(1)], NOW)
    archive.feed_cache[OTHER] = FeedCache(etag='"empty"')  # read before, without a post
    old = post(2, id="other-old", feed=OTHER, published=NOW - timedelta(days=30))
    new = post(3, id="other-new", feed=OTHER, published=NOW + timedelta(days=3))
    result = archive.merge([old, new], NOW + timedelta(days=7))
    assert result.backlog == ["other-old"]  # published before the installation
    assert result.new == ["other-new"]


def test_an_installation_whose_feed_was_empty_mails_its_first_post(tmp_path: Path) -> None:
    archive = FileArchiveStore(tmp_path).load()
    assert archive.merge([], NOW).added == []  # the first run read an empty feed
    archive.feed_cache["https://blog.example/feed/"] = FeedCache()
    assert archive.merge([post(1)], NOW + timedelta(days=7)).new == [post(1).id]


def test_a_moved_feed_is_known_by_its_posts(tmp_path: Path) -> None:
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(1), post(2)], NOW)
    moved = "https://blog.example/new-feed/"
    result = archive.merge([post(2, feed=moved), post(3, feed=moved)], NOW)
    assert result.new == [post(3).id]


def test_include_backlog_releases_the_newest(tmp_path: Path) -> None:
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(1), post(2), post(3)], NOW)
    assert archive.release_backlog(2) == [post(3).id, post(2).id]
    assert [p.id for p in archive.new_posts()] == [post(2).id, post(3).id]  # oldest first


def test_edited_post_is_updated_in_place_and_not_new_again(tmp_path: Path) -> None:
    archive = filled(tmp_path)
    archive.mark_sent([post(3).id], "2026-11-23-aaaa0000")
    later = NOW + timedelta(days=2)
    edited = post(3, title="Post 3 (fixed)", content_html="<p>Better</p>", first_seen=later)
    result = archive.merge([edited], later)
    assert result.updated == [post(3).id]
    assert result.new == []
    assert result.added == []
    stored = archive.get(post(3).id)
    assert stored is not None
    assert stored.title == "Post 3 (fixed)"
    assert stored.content_html == "<p>Better</p>"
    assert stored.issue == "2026-11-23-aaaa0000"
    assert stored.first_seen == NOW
    assert archive.new_posts() == []


def test_undated_post_keeps_its_first_seen_date(tmp_path: Path) -> None:
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(9)], NOW)
    undated = post(7, published=NOW, updated=NOW, first_seen=NOW)
    archive.merge([undated], NOW)
    later = NOW + timedelta(days=7)
    again = post(7, published=later, updated=later, first_seen=later)  # the reader's fallback
    assert archive.merge([again], later).updated == []
    stored = archive.get(post(7).id)
    assert stored is not None
    assert stored.published == NOW


def test_backfill_merge_keeps_old_posts_out_of_the_next_issue(tmp_path: Path) -> None:
    archive = filled(tmp_path)
    result = archive.merge([post(0 + 1, id="old-1", published=datetime(2020, 1, 1, tzinfo=UTC)),
                            post(20)], NOW, backfill=True)  # fmt: skip
    assert result.added == ["old-1", post(20).id]
    assert result.new == [post(20).id]
    stored = archive.get("old-1")
    assert stored is not None
    assert stored.issue == BACKLOG


def test_mark_sent_and_issue_history(tmp_path: Path) -> None:
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(1)], NOW)
    archive.release_backlog(1)
    archive.mark_sent([post(1).id], "i-1")
    with pytest.raises(StateError, match="not in the archive"):
        archive.mark_sent(["nope"], "i-1")
    record = IssueRecord(issue_id="i-1", created_at=NOW, subject="S", post_ids=(post(1).id,),
                         related_ids=(), status="sending")  # fmt: skip
    archive.record_issue(record)
    archive.record_issue(record.model_copy(update={"status": "sent"}))
    assert [r.status for r in archive.issues] == ["sent"]


def test_save_writes_only_changed_files_atomically(tmp_path: Path) -> None:
    filled(tmp_path)
    stamps = {
        name: (tmp_path / name).stat().st_mtime_ns
        for name in (ARCHIVE_FILE, ISSUES_FILE, FEEDS_FILE)
    }
    inodes = {name: (tmp_path / name).stat().st_ino for name in stamps}
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(6)], NOW)
    FileArchiveStore(tmp_path).save(archive)
    assert (tmp_path / ARCHIVE_FILE).stat().st_ino != inodes[ARCHIVE_FILE]  # replaced by rename
    assert (tmp_path / ISSUES_FILE).stat().st_mtime_ns == stamps[ISSUES_FILE]
    assert (tmp_path / FEEDS_FILE).stat().st_mtime_ns == stamps[FEEDS_FILE]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_save_writes_under_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    from crusader_mail.storage.files import archive as archive_module

    events: list[str] = []
    real_locked, real_write = archive_module.locked, archive_module.atomic_write  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def spy_locked(path: Path, timeout: float = 30.0):  # type: ignore[no-untyped-def]
        events.append(f"lock {path.name}")
        with real_locked(path, timeout):
            yield
        events.append(f"unlock {path.name}")

    def spy_write(path: Path, data: str | bytes) -> None:
        events.append(f"write {path.name}")
        real_write(path, data)

    monkeypatch.setattr(archive_module, "locked", spy_locked)
    monkeypatch.setattr(archive_module, "atomic_write", spy_write)
    archive = FileArchiveStore(tmp_path).load()
    archive.merge([post(1)], NOW)
    FileArchiveStore(tmp_path).save(archive)
    assert events == [f"lock {ARCHIVE_FILE}", f"write {ARCHIVE_FILE}", f"unlock {ARCHIVE_FILE}"]
