"""The files store's archive: ``state_dir/archive.jsonl``, ``issues.jsonl`` and ``feeds.json``.

Text that diffs well in git:

- ``archive.jsonl``: a header line ``{"format": "crusader-mail/archive", "version": 1}``, then one
  post per line, oldest first (published, then id), so a new post is one added line;
- ``issues.jsonl``: the same header (``crusader-mail/issues``), one issue per line, oldest first;
- ``feeds.json``: the header keys plus ``"feeds"``: the HTTP cache by feed, keys sorted, with
  ``"failures"`` (runs in a row the feed failed) and ``"ever_read": false`` where they apply.

A damaged file is never overwritten: :meth:`FileArchiveStore.load` raises :class:`StateError`
naming the file and line, and :meth:`FileArchiveStore.save` writes only the files whose content
changed, each atomically under its lock, and refuses to replace a file that changed on disk
since the archive was loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crusader_mail.errors import StateError
from crusader_mail.models import ArchivedPost, FeedCache, IssueRecord
from crusader_mail.storage.archive import Archive
from crusader_mail.util.statefile import atomic_write, locked

FORMAT_VERSION = 1
ARCHIVE_FILE = "archive.jsonl"
ISSUES_FILE = "issues.jsonl"
FEEDS_FILE = "feeds.json"
_FILES = (ARCHIVE_FILE, ISSUES_FILE, FEEDS_FILE)


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


class FileArchiveStore:
    """The archive in the files of ``state_dir``. An archive's ``revision`` is the text of each
    file as loaded (``None``: absent)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def load(self) -> Archive:
        """The archive as the files hold it (empty when there are none)."""
        texts = {name: _read(self.state_dir / name) for name in _FILES}
        posts: dict[str, ArchivedPost] = {}
        issues: list[IssueRecord] = []
        feed_cache: dict[str, FeedCache] = {}
        posts_text = texts[ARCHIVE_FILE]
        if posts_text is not None:
            path = self.state_dir / ARCHIVE_FILE
            for number, value in _lines(path, posts_text, "archive"):
                try:
                    post = ArchivedPost.model_validate(value)
                except ValidationError as error:
                    raise StateError(f"{path}:{number}: bad post ({_problem(error)})") from None
                if post.id in posts:
                    raise StateError(f"{path}:{number}: post {post.id!r} appears twice")
                posts[post.id] = post
        issues_text = texts[ISSUES_FILE]
        if issues_text is not None:
            path = self.state_dir / ISSUES_FILE
            for number, value in _lines(path, issues_text, "issues"):
                try:
                    issues.append(IssueRecord.model_validate(value))
                except ValidationError as error:
                    raise StateError(f"{path}:{number}: bad issue ({_problem(error)})") from None
        feeds_text = texts[FEEDS_FILE]
        if feeds_text is not None:
            feed_cache = _parse_feeds(self.state_dir / FEEDS_FILE, feeds_text)
        return Archive(posts.values(), issues, feed_cache, revision=texts)

    def save(self, archive: Archive) -> None:
        """Write the files whose content changed, each atomically under its lock."""
        archive.revision = loaded = _loaded(archive)
        for name, text in (
            (ARCHIVE_FILE, _dump_posts(archive, loaded)),
            (ISSUES_FILE, _dump_issues(archive, loaded)),
            (FEEDS_FILE, _dump_feeds(archive, loaded)),
        ):
            before = loaded.get(name)
            if text is None or text == before:
                continue
            path = self.state_dir / name
            with locked(path):
                on_disk = _read(path)
                if on_disk != before:
                    raise StateError(
                        f"{path}: changed on disk since it was loaded (another run?); "
                        "not overwriting it"
                    )
                atomic_write(path, text)
            loaded[name] = text


def _loaded(archive: Archive) -> dict[str, str | None]:
    """The file texts ``archive`` was loaded from (a new archive: none of the files)."""
    revision = archive.revision
    if revision is None:
        return dict.fromkeys(_FILES)
    if not isinstance(revision, dict):
        raise StateError("this archive was not loaded from the files store: not saving it")
    return dict(revision)


def _dump_posts(archive: Archive, loaded: dict[str, str | None]) -> str | None:
    posts = archive.posts
    if not posts and loaded.get(ARCHIVE_FILE) is None:
        return None
    lines = [_header("archive")]
    lines.extend(post.model_dump_json() for post in reversed(posts))
    return "\n".join(lines) + "\n"


def _dump_issues(archive: Archive, loaded: dict[str, str | None]) -> str | None:
    issues = archive.issues
    if not issues and loaded.get(ISSUES_FILE) is None:
        return None
    lines = [_header("issues")]
    lines.extend(record.model_dump_json() for record in issues)
    return "\n".join(lines) + "\n"


def _dump_feeds(archive: Archive, loaded: dict[str, str | None]) -> str | None:
    if not archive.feed_cache and loaded.get(FEEDS_FILE) is None:
        return None
    feeds = {source: _cache_entry(cache) for source, cache in sorted(archive.feed_cache.items())}
    document = {"format": "crusader-mail/feeds", "version": FORMAT_VERSION, "feeds": feeds}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _cache_entry(cache: FeedCache) -> dict[str, object]:
    """A feed's cache as ``feeds.json`` keeps it: the three HTTP fields always, the failure
    count and ``ever_read`` only when they differ from their defaults (an older file, without
    them, reads as a feed that was read and never failed)."""
    entry: dict[str, object] = {
        "etag": cache.etag,
        "last_modified": cache.last_modified,
        "permanent_redirect": cache.permanent_redirect,
    }
    if cache.failures:
        entry["failures"] = cache.failures
    if not cache.ever_read:
        entry["ever_read"] = False
    return entry


_TEXT_FIELDS = ("etag", "last_modified", "permanent_redirect")


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
        values = entry if isinstance(entry, dict) else {"": None}
        failures = values.get("failures", 0)
        ever_read = values.get("ever_read", True)
        if (
            any(not isinstance(values.get(key), str | None) for key in _TEXT_FIELDS)
            or set(values) - {*_TEXT_FIELDS, "failures", "ever_read"}
            or type(failures) is not int
            or failures < 0
            or not isinstance(ever_read, bool)
        ):
            raise StateError(f"{path}: the cache of feed {source!r} is damaged")
        caches[source] = FeedCache(
            values.get("etag"),
            values.get("last_modified"),
            values.get("permanent_redirect"),
            failures=failures,
            ever_read=ever_read,
        )
    return caches
