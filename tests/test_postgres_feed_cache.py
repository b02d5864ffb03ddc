"""The PostgreSQL store's feed cache after schema 2: a database of schema 1 upgrades with its
feeds kept (read, no failure), and then keeps each feed's failures in a row. (The contract test
``test_a_feeds_failures_in_a_row_are_kept`` runs the round trip on every store.)"""

from __future__ import annotations

import psycopg
import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.errors import SchemaMismatch
from crusader_mail.models import FeedCache
from crusader_mail.storage.postgres import PostgresStore, schema
from crusader_mail.storage.postgres.connections import Database

SECRET = "feed-cache-secret-0123456789abcdef"
FEED = "https://blog.example/feed/"


def test_a_schema_1_database_upgrades_with_its_feed_cache(
    empty_database_url: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, *_later = schema.migrations()
    with monkeypatch.context() as patched:  # the database as crusader-mail of schema 1 left it
        patched.setattr(schema, "migrations", lambda: (first,))
        db = Database(empty_database_url)
        schema.upgrade(db)
        db.close()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO feed_cache (feed, etag, last_modified, permanent_redirect) "
            "VALUES (%s, %s, NULL, NULL)",
            (FEED, '"v1"'),
        )
    store = PostgresStore(empty_database_url, clock, lambda: SECRET)
    try:
        with pytest.raises(
            SchemaMismatch, match=r"is version 1, .* run `crusader-mail db upgrade`"
        ):
            store.archive.load()
        db = Database(empty_database_url)
        report = schema.upgrade(db)
        db.close()
        assert report.applied[0] == "0002_feed_failures"  # and every later one
        archive = store.archive.load()
        assert archive.feed_cache == {FEED: FeedCache(etag='"v1"')}
        assert archive.record_read(FEED, None, failed=True) == 1
        store.archive.save(archive)
        assert store.archive.load().feed_cache == {FEED: FeedCache(etag='"v1"', failures=1)}
    finally:
        store.close()
    with (
        psycopg.connect(empty_database_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        conn.execute("UPDATE feed_cache SET failures = -1")
