"""The PostgreSQL store's archive: ``archive_posts`` and ``archive_issues`` (JSONB rows keyed by
id), ``feed_cache`` (one row per feed: the HTTP validators, a permanent redirect, the failures in
a row and whether it was ever read) and ``archive_revision`` (a counter every save moves on).

:meth:`PgArchiveStore.load` reads everything in one repeatable-read transaction and keeps, as
the archive's ``revision``, the counter and each row as loaded. :meth:`PgArchiveStore.save`
writes only the rows that differ, in one transaction that first moves the counter on from the
loaded value: when another run saved meanwhile the counter moved already, and the save is
refused (:class:`StateError`) with nothing written.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from typing import TypeVar

from psycopg import sql
from pydantic import ValidationError

from crusader_mail.errors import StateError
from crusader_mail.models import ArchivedPost, FeedCache, IssueRecord
from crusader_mail.storage.archive import Archive
from crusader_mail.storage.files.archive import _problem
from crusader_mail.storage.postgres.connections import Connection, Database

CacheRow = tuple[str | None, str | None, str | None, int, bool]  # FeedCache's fields, in order
Row = TypeVar("Row", ArchivedPost, IssueRecord)


@dataclass
class Revision:
    """What an archive was loaded from: the counter and every row as loaded."""

    counter: int = 0
    posts: dict[str, str] = field(default_factory=dict)  # id -> post JSON
    issues: dict[str, str] = field(default_factory=dict)  # id -> record JSON
    feeds: dict[str, CacheRow] = field(default_factory=dict)


class PgArchiveStore:
    """The archive's tables (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self) -> Archive:
        """The archive as stored now (empty when nothing is)."""
        with self._db.transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute("SELECT revision FROM archive_revision").fetchone()
            revision = Revision(int(row[0]) if row is not None else 0)
            posts = [
                self._parse(ArchivedPost, "archive_posts", id, text)
                for id, text in conn.execute(_POSTS)
            ]
            issues = [
                self._parse(IssueRecord, "archive_issues", id, text)
                for id, text in conn.execute(_ISSUES)
            ]
            for feed, etag, modified, moved, failures, ever_read in conn.execute(_FEEDS):
                revision.feeds[feed] = (etag, modified, moved, int(failures), bool(ever_read))
        revision.posts = {post.id: post.model_dump_json() for post in posts}
        revision.issues = {issue.issue_id: issue.model_dump_json() for issue in issues}
        feed_cache = {feed: FeedCache(*cache) for feed, cache in revision.feeds.items()}
        return Archive(posts, issues, feed_cache, revision=revision)

    def save(self, archive: Archive) -> None:
        """Store the rows that changed since ``archive`` was loaded, in one transaction;
        :class:`StateError` when the stored archive changed meanwhile."""
        loaded = archive.revision if archive.revision is not None else Revision()
        if not isinstance(loaded, Revision):
            raise StateError("this archive was not loaded from the PostgreSQL store: not saving it")
        now = Revision(
            loaded.counter,
            {post.id: post.model_dump_json() for post in archive.posts},
            {issue.issue_id: issue.model_dump_json() for issue in archive.issues},
            {feed: astuple(cache) for feed, cache in archive.feed_cache.items()},
        )
        if (now.posts, now.issues, now.feeds) == (loaded.posts, loaded.issues, loaded.feeds):
            return
        with self._db.transaction() as conn:
            row = conn.execute(
                "UPDATE archive_revision SET revision = revision + 1 WHERE revision = %s "
                "RETURNING revision",
                [loaded.counter],
            ).fetchone()
            if row is None:
                raise StateError(
                    f"the archive in PostgreSQL at {self._db.where} changed since it was loaded "
                    "(another run?); not overwriting it"
                )
            now.counter = int(row[0])
            _write(conn, "archive_posts", "id", "post", loaded.posts, now.posts)
            _write(conn, "archive_issues", "issue_id", "record", loaded.issues, now.issues)
            _write_feeds(conn, loaded.feeds, now.feeds)
        archive.revision = now

    def _parse(self, model: type[Row], table: str, key: str, text: str) -> Row:
        try:
            return model.model_validate_json(text)
        except ValidationError as error:
            raise StateError(
                f"PostgreSQL at {self._db.where}: {table} row {key!r} is damaged "
                f"({_problem(error)})"
            ) from None


_POSTS = "SELECT id, post::text FROM archive_posts"
_ISSUES = "SELECT issue_id, record::text FROM archive_issues"
_FEEDS = "SELECT feed, etag, last_modified, permanent_redirect, failures, ever_read FROM feed_cache"


def _write(
    conn: Connection,
    table: str,
    key: str,
    column: str,
    before: dict[str, str],
    after: dict[str, str],
) -> None:
    """Upsert the rows of ``table`` that differ, delete the ones gone."""
    changed = [(id, text) for id, text in after.items() if before.get(id) != text]
    gone = [id for id in before if id not in after]
    names = {"table": sql.Identifier(table), "key": sql.Identifier(key)}
    value = sql.Identifier(column)
    with conn.cursor() as cursor:
        if changed:
            cursor.executemany(
                sql.SQL(
                    "INSERT INTO {table} ({key}, {value}) VALUES (%s, %s::jsonb) "
                    "ON CONFLICT ({key}) DO UPDATE SET {value} = EXCLUDED.{value}"
                ).format(value=value, **names),
                changed,
            )
        if gone:
            cursor.execute(
                sql.SQL("DELETE FROM {table} WHERE {key} = ANY(%s)").format(**names), [gone]
            )


def _write_feeds(conn: Connection, before: dict[str, CacheRow], after: dict[str, CacheRow]) -> None:
    changed = [(feed, *cache) for feed, cache in after.items() if before.get(feed) != cache]
    gone = [feed for feed in before if feed not in after]
    with conn.cursor() as cursor:
        if changed:
            cursor.executemany(
                "INSERT INTO feed_cache (feed, etag, last_modified, permanent_redirect, failures, "
                "ever_read) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (feed) DO UPDATE SET "
                "etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified, "
                "permanent_redirect = EXCLUDED.permanent_redirect, "
                "failures = EXCLUDED.failures, ever_read = EXCLUDED.ever_read",
                changed,
            )
        if gone:
            cursor.execute("DELETE FROM feed_cache WHERE feed = ANY(%s)", [gone])
