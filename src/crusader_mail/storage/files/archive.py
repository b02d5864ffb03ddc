"""The archive: every post ever seen, the per-feed HTTP cache, and the issue history.

Contract (see contracts.md)::

    Archive.load(state_dir) -> Archive     # empty when nothing is there; StateError (file:line) when damaged
    archive.save(state_dir)                # atomic + locked; writes only the files that changed
    archive.merge(posts, now) -> MergeResult
    archive.posts / get / new_posts / release_backlog / mark_sent / issues / record_issue
    archive.feed_cache: dict[str, FeedCache]

Files in ``state_dir``, text that diffs well in git:

- ``archive.jsonl``: a header line ``{"format": "crusader-mail/archive", "version": 1}``, then one
  post per line, oldest first (published, then id), so a new post is one added line;
- ``issues.jsonl``: the same header (``crusader-mail/issues``), one issue per line, oldest first;
- ``feeds.json``: the header keys plus ``"feeds"``: the HTTP cache by feed, keys sorted.

A damaged file is never overwritten: :meth:`Archive.load` raises, and :meth:`Archive.save` refuses
to replace a file that changed on disk since it was loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crusader_mail.errors import StateError
from crusader_mail.feeds.reader import FeedCache
from crusader_mail.models import BACKLOG, ArchivedPost, IssueRecord, Post
from crusader_mail.util.statefile import atomic_write, locked

FORMAT_VERSION = 1
ARCHIVE_FILE = "archive.jsonl"
ISSUES_FILE = "issues.jsonl"
FEEDS_FILE = "feeds.json"


@dataclass(frozen=True)
class MergeResult:
    new: list[str]  # ids that became new (issue is None) in this merge
    updated: list[str]  # ids whose content changed (stay not-new if already sent)
    added: list[str]  # every id not seen before (incl. backlog)


def _header(kind: str) -> str:
    return json.dumps({"format": f"crusader-mail/{kind}", "version": FORMAT_VERSION})


def _check_header(path: Path, line: str, kind: str) -> None:
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != f"crusader-mail/{kind}":
        raise StateError(f"{path}:1: not a crusader-mail {kind} file (bad header line)")
    if header.get("version") != FORMAT_VERSION:
        raise StateError(
            f"{path}:1: format version {header.get('version')!r} is not supported "
            f"(this crusader-mail reads version {FORMAT_VERSION})"
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as error:
        raise StateError(f"{path}: not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise StateError(f"{path}: cannot read: {error.strerror}") from None


def _lines(path: Path, text: str, kind: str) -> Iterable[tuple[int, dict[str, Any]]]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise StateError(f"{path}:1: the file is empty (expected a header line)")
    _check_header(path, lines[0], kind)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            raise StateError(f"{path}:{number}: blank line")
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise StateError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(value, dict):
            raise StateError(f"{path}:{number}: expected a JSON object")
        yield number, value


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


class Archive:
    """Every post ever seen (by id), the feed cache and the issue history, in memory."""

    def __init__(self) -> None:
        self._posts: dict[str, ArchivedPost] = {}
        self._issues: dict[str, IssueRecord] = {}
        self.feed_cache: dict[str, FeedCache] = {}
        self._loaded: dict[str, str | None] = {}  # file name -> text as loaded (None: absent)
        self._installing = True  # empty at load: the first merges fill the backlog

    # -- files ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, state_dir: Path) -> Archive:
        archive = cls()
        posts_text = _read(state_dir / ARCHIVE_FILE)
        issues_text = _read(state_dir / ISSUES_FILE)
        feeds_text = _read(state_dir / FEEDS_FILE)
        if posts_text is not None:
            path = state_dir / ARCHIVE_FILE
            for number, value in _lines(path, posts_text, "archive"):
                try:
                    post = ArchivedPost.model_validate(value)
                except ValidationError as error:
                    raise StateError(f"{path}:{number}: bad post ({_problem(error)})") from None
                if post.id in archive._posts:
                    raise StateError(f"{path}:{number}: post {post.id!r} appears twice")
                archive._posts[post.id] = post
        if issues_text is not None:
            path = state_dir / ISSUES_FILE
            for number, value in _lines(path, issues_text, "issues"):
                try:
                    record = IssueRecord.model_validate(value)
                except ValidationError as error:
                    raise StateError(f"{path}:{number}: bad issue ({_problem(error)})") from None
                archive._issues[record.issue_id] = record
        if feeds_text is not None:
            archive.feed_cache = _parse_feeds(state_dir / FEEDS_FILE, feeds_text)
        archive._loaded = {
            ARCHIVE_FILE: posts_text,
            ISSUES_FILE: issues_text,
            FEEDS_FILE: feeds_text,
        }
        archive._installing = not archive._posts and not archive._issues
        return archive

    def save(self, state_dir: Path) -> None:
        """Write the files whose content changed, each atomically under its lock."""
        for name, text in (
            (ARCHIVE_FILE, self._dump_posts()),
            (ISSUES_FILE, self._dump_issues()),
            (FEEDS_FILE, self._dump_feeds()),
        ):
            loaded = self._loaded.get(name)
            if text is None or text == loaded:
                continue
            path = state_dir / name
            with locked(path):
                on_disk = _read(path)
                if on_disk != loaded:
                    raise StateError(
                        f"{path}: changed on disk since it was loaded (another run?); "
                        "not overwriting it"
                    )
                atomic_write(path, text)
            self._loaded[name] = text

    def _dump_posts(self) -> str | None:
        if not self._posts and self._loaded.get(ARCHIVE_FILE) is None:
            return None
        ordered = sorted(self._posts.values(), key=lambda post: (post.published, post.id))
        lines = [_header("archive")]
        lines.extend(post.model_dump_json() for post in ordered)
        return "\n".join(lines) + "\n"

    def _dump_issues(self) -> str | None:
        if not self._issues and self._loaded.get(ISSUES_FILE) is None:
            return None
        lines = [_header("issues")]
        lines.extend(record.model_dump_json() for record in self.issues)
        return "\n".join(lines) + "\n"

    def _dump_feeds(self) -> str | None:
        if not self.feed_cache and self._loaded.get(FEEDS_FILE) is None:
            return None
        feeds = {
            source: {
                "etag": cache.etag,
                "last_modified": cache.last_modified,
                "permanent_redirect": cache.permanent_redirect,
            }
            for source, cache in sorted(self.feed_cache.items())
        }
        document = {"format": "crusader-mail/feeds", "version": FORMAT_VERSION, "feeds": feeds}
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    # -- posts ---------------------------------------------------------------------------------

    @property
    def posts(self) -> list[ArchivedPost]:
        """Newest first (published descending, then id)."""
        ordered = sorted(self._posts.values(), key=lambda post: (post.published, post.id))
        return ordered[::-1]

    def get(self, post_id: str) -> ArchivedPost | None:
        return self._posts.get(post_id)

    def merge(self, posts: Iterable[Post], now: datetime, *, backfill: bool = False) -> MergeResult:
        """Add posts not seen before and update edited ones in place.

        While the archive is being filled for the first time (it was empty, with no issues,
        when loaded) every added post becomes BACKLOG, so a new installation never mails its
        whole backlog. With ``backfill`` a post older than the newest archived post is BACKLOG
        too (backfilled pages hold old posts). An edited post keeps its issue and first_seen.
        """
        newest = max((post.published for post in self._posts.values()), default=None)
        new: list[str] = []
        updated: list[str] = []
        added: list[str] = []
        for post in posts:
            known = self._posts.get(post.id)
            if known is None:
                backlog = self._installing or (
                    backfill and newest is not None and post.published < newest
                )
                data = post.model_dump()
                data.update(first_seen=now, issue=BACKLOG if backlog else None)
                self._posts[post.id] = ArchivedPost(**data)
                added.append(post.id)
                if not backlog:
                    new.append(post.id)
                continue
            changed = self._edited(known, post)
            if changed is not None:
                self._posts[post.id] = changed
                updated.append(post.id)
        return MergeResult(new=new, updated=updated, added=added)

    @staticmethod
    def _edited(known: ArchivedPost, post: Post) -> ArchivedPost | None:
        """The archived post with the feed's new content, or None when nothing changed."""
        undated = post.published == post.first_seen  # the feed gave no date: keep ours
        incoming = post.model_dump(exclude={"first_seen", "feed"})
        if undated:
            incoming["published"] = known.published
        if post.updated == post.first_seen:
            incoming["updated"] = known.updated
        current = known.model_dump(exclude={"first_seen", "feed", "issue"})
        if incoming == current:
            return None
        return ArchivedPost.model_validate({**known.model_dump(), **incoming})

    def release_backlog(self, count: int) -> list[str]:
        """The newest ``count`` BACKLOG posts become new again (``--include-backlog N``)."""
        if count <= 0:
            return []
        released = [post.id for post in self.posts if post.issue == BACKLOG][:count]
        for post_id in released:
            self._posts[post_id] = self._posts[post_id].model_copy(update={"issue": None})
        if released:
            self._installing = False
        return released

    def new_posts(self) -> list[ArchivedPost]:
        """Posts not yet sent in an issue, oldest first."""
        return [post for post in reversed(self.posts) if post.issue is None]

    def mark_sent(self, post_ids: Iterable[str], issue_id: str) -> None:
        ids = list(post_ids)
        missing = [post_id for post_id in ids if post_id not in self._posts]
        if missing:
            raise StateError(f"issue {issue_id}: post {missing[0]!r} is not in the archive")
        for post_id in ids:
            self._posts[post_id] = self._posts[post_id].model_copy(update={"issue": issue_id})
        self._installing = False

    # -- issues --------------------------------------------------------------------------------

    @property
    def issues(self) -> list[IssueRecord]:
        """Oldest first (created_at, then id)."""
        return sorted(self._issues.values(), key=lambda r: (r.created_at, r.issue_id))

    def record_issue(self, record: IssueRecord) -> None:
        self._issues[record.issue_id] = record
        self._installing = False


def _parse_feeds(path: Path, text: str) -> dict[str, FeedCache]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise StateError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(document, dict) or document.get("format") != "crusader-mail/feeds":
        raise StateError(f"{path}:1: not a crusader-mail feeds file")
    if document.get("version") != FORMAT_VERSION:
        raise StateError(f"{path}:1: format version {document.get('version')!r} is not supported")
    feeds = document.get("feeds")
    if not isinstance(feeds, dict):
        raise StateError(f'{path}: "feeds" must be an object')
    caches: dict[str, FeedCache] = {}
    for source, entry in feeds.items():
        values = entry if isinstance(entry, dict) else None
        fields = ("etag", "last_modified", "permanent_redirect")
        if (
            values is None
            or any(not isinstance(values.get(key), str | None) for key in fields)
            or set(values) - set(fields)
        ):
            raise StateError(f"{path}: the cache of feed {source!r} is damaged")
        caches[source] = FeedCache(**{key: values.get(key) for key in fields})
    return caches
