"""The PostgreSQL store beyond the shared contract (tests/test_storage_contract.py): its schema,
one row per mailbox, concurrency between threads and processes, advisory locks, bulk work with
COPY, export and restore, token hints across a changed secret_key, and its one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from peers.sendgrid_server import SendGridServer

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.engine import deliver
from crusader_mail.errors import (
    ConfigError,
    LockTimeout,
    SchemaMismatch,
    StateError,
    SubscriberError,
)
from crusader_mail.models import IssueRecord, OutgoingMessage, Source, Status, Subscriber
from crusader_mail.storage.contract import KEEP_HANDLED, REPLY_WINDOW, RosterChanges
from crusader_mail.storage.files import FilesStore
from crusader_mail.storage.files.memory import FileMemory
from crusader_mail.storage.postgres import PostgresStore, bulk, hints, schema
from crusader_mail.storage.postgres import store as store_module
from crusader_mail.storage.postgres.connections import Database
from crusader_mail.storage.rows import parse_line
from crusader_mail.util.tokens import Signer
from tests.support.postgres import Cluster
from tests.support.sending import make_issue, make_settings, reader_address, sendgrid

SECRET = "postgres-secret-0123456789abcdef"
OTHER_SECRET = "another-secret-0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent


def open_store(url: str, clock: FixedClock, secret: str | None = SECRET) -> PostgresStore:
    return PostgresStore(
        url,
        clock,
        lambda: secret or "",
        hint_of=Signer(secret).hint if secret else None,
    )


@pytest.fixture
def store(database_url: str, clock: FixedClock) -> Iterator[PostgresStore]:
    made = open_store(database_url, clock)
    yield made
    made.close()


def sql(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query.encode())
        return cursor.fetchall() if cursor.description else []


# --- the schema -------------------------------------------------------------------------------


def test_migrations_are_idempotent(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        assert schema.status(db).before is None
        first = schema.upgrade(db)
        tables = sql(empty_database_url, "SELECT tablename FROM pg_tables ORDER BY 1")
        again = schema.upgrade(db)
    finally:
        db.close()
    applied = ("0001_initial", "0002_feed_failures", "0003_consent_history", "0004_preferences")
    assert schema.latest() == len(applied)
    assert (first.before, first.after, first.applied) == (None, 4, applied)
    assert (again.before, again.after, again.applied) == (4, 4, ())
    assert sql(empty_database_url, "SELECT tablename FROM pg_tables ORDER BY 1") == tables
    assert sql(empty_database_url, "SELECT version FROM schema_version ORDER BY 1") == [
        (1,),
        (2,),
        (3,),
        (4,),
    ]
    assert {("readers",), ("consent_events",), ("preferences",)} <= set(tables)


def test_a_missing_old_or_newer_schema_stops_with_one_line(
    empty_database_url: str, clock: FixedClock
) -> None:
    store = open_store(empty_database_url, clock)
    with pytest.raises(
        SchemaMismatch, match=r"no crusader-mail tables yet: run `crusader-mail db upgrade`"
    ):
        store.roster.counts()
    store.close()
    db = Database(empty_database_url)
    schema.upgrade(db)
    db.close()
    sql(empty_database_url, "DELETE FROM schema_version WHERE version > 1")  # one row left:
    sql(empty_database_url, "UPDATE schema_version SET version = 0")
    store = open_store(empty_database_url, clock)
    with pytest.raises(
        SchemaMismatch, match=rf"is version 0, this crusader-mail needs version {schema.latest()}"
    ):
        store.roster.counts()
    store.close()
    sql(empty_database_url, "UPDATE schema_version SET version = 99")  # the one row
    store = open_store(empty_database_url, clock)
    with pytest.raises(SchemaMismatch, match=r"version 99, newer than .* upgrade crusader-mail"):
        store.roster.get("a@example.com")
    store.close()
    db = Database(empty_database_url)
    with pytest.raises(SchemaMismatch, match="newer"):
        schema.upgrade(db)  # an older crusader-mail never "upgrades" a newer schema
    db.close()
    assert SchemaMismatch.exit_code == 2


def test_an_older_schema_gets_the_missing_migrations_only(
    database_url: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = schema.migrations()
    now = shipped[-1].version
    notes = schema.Migration(now + 1, "notes", "ALTER TABLE readers ADD COLUMN note text;")
    monkeypatch.setattr(schema, "migrations", lambda: (*shipped, notes))
    store = open_store(database_url, clock)
    try:
        with pytest.raises(
            SchemaMismatch, match=f"is version {now}, this crusader-mail needs version {now + 1}"
        ):
            store.mail.waiting()
        db = Database(database_url)
        report = schema.upgrade(db)
        db.close()
        assert (report.before, report.after, report.applied) == (
            now,
            now + 1,
            (f"{now + 1:04d}_notes",),
        )
        assert sql(database_url, "SELECT version, name FROM schema_version ORDER BY 1") == [
            *((migration.version, migration.name) for migration in shipped),
            (now + 1, "notes"),
        ]
        assert store.mail.waiting() == 0  # the check passes now
    finally:
        store.close()


def test_the_checks_accept_every_status_and_source_and_nothing_else(
    store: PostgresStore, database_url: str, clock: FixedClock
) -> None:
    now = clock.now()
    readers = [
        Subscriber(
            email=f"{status.value}.{source.value}@example.com",
            status=status,
            subscribed_at=now,
            subscribed_via=source,
            confirmed_at=now,
            confirmed_via=source,
            left_at=now,
            left_via=source,
            updated_at=now,
        )
        for status in Status
        for source in Source
    ]
    assert store.roster.restore(readers) == len(readers)
    assert list(store.roster.iter()) == sorted(readers, key=lambda sub: sub.email)
    with pytest.raises(psycopg.errors.CheckViolation):
        sql(
            database_url,
            "INSERT INTO readers (mailbox, email, status) VALUES ('x@y', 'x@y', 'gone')",
        )


# --- one reader per mailbox -------------------------------------------------------------------


def test_the_mailbox_is_unique_and_every_lookup_ignores_case(
    store: PostgresStore, database_url: str
) -> None:
    with store.roster.edit() as changes:
        changes.add("Carol@Example.org", via=Source.CLI)
        changes.add("CAROL@example.org", name="Carol", via=Source.CLI)
    assert sql(database_url, "SELECT mailbox, email, name FROM readers") == [
        ("carol@example.org", "Carol@example.org", "Carol")
    ]
    with pytest.raises(psycopg.errors.UniqueViolation):
        sql(
            database_url,
            "INSERT INTO readers (mailbox, email, status) "
            "VALUES ('carol@example.org', 'carol@example.org', 'active')",
        )
    with store.roster.edit() as changes:
        assert changes.mark("carol@EXAMPLE.org", Status.BOUNCED, via=Source.SENDGRID) is not None
    assert store.roster.counts()[Status.BOUNCED] == 1


# --- concurrency ------------------------------------------------------------------------------


def _reply(to: str) -> OutgoingMessage:
    return OutgoingMessage(to_email=to, subject="Goodbye", text="Bye.\n")


def test_concurrent_units_from_threads_and_stores_lose_nothing(
    database_url: str, clock: FixedClock
) -> None:
    stores = [open_store(database_url, clock) for _ in range(3)]
    readers = [f"r{number:02d}@example.com" for number in range(60)]
    stores[0].roster.add_many(
        [(email, "") for email in readers], status=Status.ACTIVE, via=Source.IMPORT, ref="seed"
    )

    def one_click(number: int) -> None:
        store = stores[number % len(stores)]
        with store.memory() as memory, store.roster.edit() as changes:
            memory.remember(f"click-{number}", clock.now())
            changes.unsubscribe(readers[number], via=Source.WEB, ref=f"click-{number}")
            changes.request("NEW@example.com", via=Source.EMAIL)  # everyone races on one reader
            changes.queue_mail(_reply(readers[number]))

    with ThreadPoolExecutor(max_workers=24) as pool:
        list(pool.map(one_click, range(len(readers))))
    counts = stores[1].roster.counts()
    assert (counts[Status.UNSUBSCRIBED], counts[Status.PENDING], sum(counts.values())) == (
        60,
        1,
        61,
    )
    assert {sub.ref for sub in stores[2].roster.iter(Status.UNSUBSCRIBED)} == {
        f"click-{number}" for number in range(60)
    }
    assert stores[0].mail.waiting() == 60
    # one event per change: the losers of the race on NEW changed nothing and wrote none
    assert Counter(event.action.value for event in stores[1].roster.history()) == {
        "add": 60,
        "unsubscribe": 60,
        "request": 1,
    }
    with stores[0].memory() as memory:
        assert all(memory.seen(f"click-{number}") for number in range(60))
    for store in stores:
        store.close()


def test_a_unit_of_change_writes_only_the_row_it_changes(
    store: PostgresStore, database_url: str
) -> None:
    store.roster.add_many(
        [(f"r{number:04d}@example.com", "") for number in range(2000)],
        status=Status.ACTIVE,
        via=Source.IMPORT,
        ref="seed",
    )
    where = "SELECT mailbox, ctid::text FROM readers ORDER BY mailbox"
    before = {row[0]: row[1] for row in sql(database_url, where)}
    with store.roster.edit() as changes:
        changes.unsubscribe("r1234@example.com", via=Source.WEB, ref="one click")
    after = {row[0]: row[1] for row in sql(database_url, where)}
    assert [mailbox for mailbox in before if before[mailbox] != after[mailbox]] == [
        "r1234@example.com"
    ]


def test_a_second_memory_unit_waits_for_the_first(database_url: str, clock: FixedClock) -> None:
    first, second = open_store(database_url, clock), open_store(database_url, clock)
    answer: list[bool] = []

    def look() -> None:
        with second.memory() as memory:
            answer.append(memory.seen("<same@example.com>"))

    with first.memory() as memory:
        assert not memory.seen("<same@example.com>")
        thread = threading.Thread(target=look)
        thread.start()
        while not sql(
            database_url, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ):
            thread.join(0.01)  # until the second unit waits for the message's lock
        memory.remember("<same@example.com>", clock.now())
    thread.join()
    assert answer == [True]
    first.close()
    second.close()


LOCK_HOLDER = """
import sys
from crusader_mail.clock import SystemClock
from crusader_mail.storage.postgres import PostgresStore
store = PostgresStore(sys.argv[1], SystemClock(), lambda: "")
with store.run_lock():
    print("held", flush=True)
    sys.stdin.read()
"""


def test_the_run_lock_spans_processes_and_dies_with_its_holder(
    database_url: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "RUN_LOCK_WAIT", 0.2)
    store = open_store(database_url, clock)
    with subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, database_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "held\n"
            with (
                pytest.raises(LockTimeout, match="another crusader-mail run holds the lock"),
                store.run_lock(),
            ):
                pass
            os.kill(holder.pid, signal.SIGKILL)  # a crash: the server lets go with the connection
            holder.wait(timeout=30)
            with store.run_lock():
                assert store.ledgers.exists("2026-11-23-aaaa0000") is False
        finally:
            holder.kill()
            store.close()


def test_two_sends_cannot_run_at_once(database_url: str, clock: FixedClock) -> None:
    first, second = open_store(database_url, clock), open_store(database_url, clock)
    with (
        first.ledgers.send_lock(),
        pytest.raises(LockTimeout, match="another send"),
        second.ledgers.send_lock(),
    ):
        pass
    with second.ledgers.send_lock():
        pass
    first.close()
    second.close()


def test_the_ledger_keeps_its_key_check_and_its_doubts(
    database_url: str, clock: FixedClock
) -> None:
    store = open_store(database_url, clock)
    ledger = store.ledgers.load("2026-11-23-1a2b3c4d")
    readers = [ledger.reader_hash(f"r{number}@example.com") for number in range(6)]
    with store.ledgers.send_lock(), ledger.writer(clock) as writer:
        writer.pending(0, readers[:3])
        writer.accepted(0, "msg-0")
        writer.pending(1, readers[3:])  # the process dies here: batch 1 is in doubt
        with pytest.raises(StateError, match="accepted record for unknown batch 7"):
            writer.accepted(7, "msg-7")
    again = store.ledgers.load("2026-11-23-1a2b3c4d")
    assert (again.in_doubt_batches, again.next_batch) == ([1], 2)
    with store.ledgers.send_lock(), again.writer(clock) as writer:
        writer.release(again.in_doubt_batches)  # --resend-uncertain
    released = store.ledgers.load("2026-11-23-1a2b3c4d")
    assert released.in_doubt_batches == []
    assert not released.is_in_doubt(released.reader_hash("r4@example.com"))
    assert released.was_accepted(released.reader_hash("r1@EXAMPLE.com"))
    store.close()
    other = open_store(database_url, clock, secret=OTHER_SECRET)
    with pytest.raises(StateError, match="written with a different secret_key"):
        other.ledgers.load("2026-11-23-1a2b3c4d")
    assert other.ledgers.load("2026-11-23-1a2b3c4d", sandbox=True).next_batch == 0
    other.close()


def test_a_send_from_postgres_goes_to_each_reader_once(
    database_url: str, clock: FixedClock, sendgrid_server: SendGridServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, sendgrid_server, sendgrid={"batch_size": 10})
    store = open_store(database_url, clock, secret=settings.require_secret_key())
    store.roster.add_many(
        [(reader_address(number), f"Reader {number}") for number in range(25)],
        status=Status.ACTIVE,
        via=Source.IMPORT,
        ref="seed",
    )
    with store.roster.edit() as changes:
        changes.unsubscribe(reader_address(3), via=Source.WEB)
    transport = sendgrid(settings, clock)
    first = deliver(make_issue(), store.roster, store.ledgers, transport, settings, clock)
    again = deliver(make_issue(), store.roster, store.ledgers, transport, settings, clock)
    assert (first.delivered, first.requests, first.skipped["unsubscribed"]) == (24, 3, 1)
    assert (again.delivered, again.skipped["already_delivered"]) == (0, 24)
    counts = sendgrid_server.per_address()
    assert set(counts.values()) == {1}
    assert reader_address(3) not in counts
    store.close()


# --- bulk work --------------------------------------------------------------------------------


def test_add_many_copies_many_rows_in_one_transaction(store: PostgresStore) -> None:
    rows = [(f"reader{number:05d}@example.com", "") for number in range(12_000)]
    report = store.roster.add_many(rows, status=Status.PENDING, via=Source.IMPORT, ref="a.csv")
    assert (report.added, report.unchanged) == (12_000, {})
    again = store.roster.add_many(
        [(email.upper().replace("EXAMPLE.COM", "example.com"), "Named") for email, _ in rows],
        status=Status.ACTIVE,
        via=Source.IMPORT,
        ref="b.csv",
    )
    assert (again.added, again.names_filled, again.unchanged) == (0, 12_000, {"pending": 12_000})
    events = list(store.roster.history())  # one per reader added, one per name filled in
    assert [(event.email, event.ref) for event in events] == [
        *((email, "a.csv") for email, _ in rows),
        *((email, "b.csv") for email, _ in rows),
    ]
    streamed = list(store.roster.iter())
    assert [sub.email for sub in streamed] == [email for email, _ in rows]
    assert {(sub.status, sub.name, sub.ref) for sub in streamed} == {
        (Status.PENDING, "Named", "b.csv")
    }

    def explode(changes: RosterChanges, email: str) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        store.roster.update_many([email for email, _ in rows[:10]], explode)
    assert store.roster.counts()[Status.PENDING] == 12_000


def test_update_many_joins_a_large_wanted_list(store: PostgresStore) -> None:
    store.roster.add_many(
        [(f"r{number}@example.com", "") for number in range(3000)],
        status=Status.ACTIVE,
        via=Source.IMPORT,
        ref="seed",
    )
    wanted = {f"r{number}@example.com" for number in range(0, 60_000, 3)}  # 1000 of them here

    def bounce(changes: RosterChanges, email: str) -> None:
        changes.mark(email, Status.BOUNCED, via=Source.SENDGRID, ref="sync")

    report = store.roster.update_many(wanted, bounce, match=str.lower)
    assert (report.matched, report.changed, report.written) == (1000, 1000, True)
    report = store.roster.update_many(wanted, bounce, match=str.lower)
    assert (report.matched, report.changed, report.written) == (1000, 0, False)
    assert store.roster.counts()[Status.BOUNCED] == 1000


def test_export_restore_export_gives_the_same_rows_in_either_store(
    store: PostgresStore, postgres_cluster: Cluster, clock: FixedClock, tmp_path: Path
) -> None:
    with store.roster.edit() as changes:
        changes.add("ann@example.com", name='Ann "the, quoted" Lee', via=Source.CLI, ref="r,1")
        changes.request("Bo@Example.com", name="=1+1", via=Source.EMAIL, ref="<m@x>")
        changes.add("cy@example.com", status=Status.UNSUBSCRIBED, via=Source.IMPORT)
    clock.advance(timedelta(days=2, seconds=7))
    with store.roster.edit() as changes:
        changes.confirm("bo@example.com", via=Source.WEB)
        changes.mark("ann@example.com", Status.COMPLAINED, via=Source.SENDGRID, ref="event")
    exported = list(store.roster.lines())
    assert len(exported) == 3
    readers = [parse_line(line) for line in exported]
    with store.roster.edit() as changes:
        changes.forget("cy@example.com")
        changes.unsubscribe("bo@example.com", via=Source.WEB)
    assert store.roster.restore(readers) == 3
    assert list(store.roster.lines()) == exported
    other_url = postgres_cluster.database()
    other = open_store(other_url, clock, secret=None)  # no secret: hints come later
    try:
        assert other.roster.restore(readers) == 3
        assert list(other.roster.lines()) == exported
        hint_of = Signer(SECRET).hint
        assert other.roster.candidates(hint_of("Bo@example.com"), hint_of) == ["Bo@example.com"]
    finally:
        other.close()
        postgres_cluster.drop(other_url)
    files = FilesStore(tmp_path / "state", tmp_path / "subscribers", clock, lambda: SECRET)
    assert files.roster.restore(readers) == 3
    assert list(files.roster.lines()) == exported


# --- the consent history ----------------------------------------------------------------------


def test_a_restore_copies_each_readers_event_in_the_order_given(
    store: PostgresStore, database_url: str, clock: FixedClock
) -> None:
    count = bulk.CHUNK * 2 + 10  # three chunks
    order = [(number * 7919) % count for number in range(count)]  # not mailbox order
    readers = [
        Subscriber(email=f"r{number:05d}@example.com", status=Status.ACTIVE) for number in order
    ]
    assert store.roster.restore(readers) == count
    events = list(store.roster.history())
    assert [event.email for event in events] == [reader.email for reader in readers]
    assert {(e.action.value, e.via, e.ref, e.at) for e in events} == {
        ("restore", Source.IMPORT, "restore", clock.now())
    }
    twice = [*readers[:10], Subscriber(email=readers[3].email.capitalize(), status=Status.ACTIVE)]
    clock.advance(timedelta(minutes=1))
    with pytest.raises(SubscriberError, match="given twice"):
        store.roster.restore(twice)  # refused in its last chunk: none of its events is kept
    assert sql(database_url, "SELECT count(*) FROM consent_events") == [(count,)]


def test_a_reader_another_unit_adds_during_an_import_gets_one_event(
    store: PostgresStore, database_url: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = open_store(database_url, clock)
    locked = bulk._locked

    def add_meanwhile(
        conn: psycopg.Connection[tuple[object, ...]], mailboxes: list[str]
    ) -> list[Subscriber]:
        found = locked(conn, mailboxes)
        with other.roster.edit() as changes:  # another process, committed before the insert
            changes.add("race@example.com", via=Source.CLI, ref="the other")
        return found

    monkeypatch.setattr(bulk, "_locked", add_meanwhile)
    try:
        report = store.roster.add_many(
            [("race@example.com", "Race"), ("calm@example.com", "")],
            status=Status.ACTIVE,
            via=Source.IMPORT,
            ref="list.csv",
        )
    finally:
        other.close()
    assert (report.added, report.names_filled) == (1, 1)
    assert [(e.email, e.action.value, e.ref) for e in store.roster.history()] == [
        ("race@example.com", "add", "the other"),
        ("calm@example.com", "add", "list.csv"),
        ("race@example.com", "add", "list.csv"),  # its name filled in, one by one
    ]


def test_expiry_and_forget_delete_the_rows_of_those_readers_only(
    store: PostgresStore, database_url: str, clock: FixedClock
) -> None:
    with store.roster.edit() as changes:
        for number in range(3):
            changes.request(f"asked{number}@example.com", via=Source.WEB)
        changes.add("kept@example.com", via=Source.CLI)
        changes.queue_mail(_reply("asked0@example.com"))
        changes.queue_mail(_reply("kept@example.com"))
    clock.advance(timedelta(days=8))
    with store.roster.edit() as changes:
        changes.confirm("asked2@example.com", via=Source.WEB)
    assert store.roster.expire_pending(clock.now() - timedelta(days=7)) == 2
    tables = "SELECT mailbox FROM {} ORDER BY 1"
    left = [("asked2@example.com",), ("kept@example.com",)]
    assert sql(database_url, tables.format("readers")) == left
    assert sorted(set(sql(database_url, tables.format("consent_events")))) == left
    assert sql(database_url, tables.format("mail_queue")) == [("kept@example.com",)]
    with store.roster.edit() as changes:
        changes.forget("ASKED2@example.com")
        changes.add("asked2@example.com", via=Source.CLI, ref="again")  # kept: after the forget
    assert [(e.action.value, e.ref) for e in store.roster.history("asked2@example.com")] == [
        ("add", "again")
    ]


def test_the_memory_keeps_the_files_stores_hashes_of_every_key(
    store: PostgresStore, database_url: str, clock: FixedClock
) -> None:
    """Reply keys are slots and hashed clients, not readers; handled keys are not addresses:
    both stores hash them alike (by mailbox key), and a handled key stays ``KEEP_HANDLED``."""
    replies = ["slot-7@replies.invalid", "0f3a9c-2@web.invalid", "slot-41@web.invalid"]
    handled = "confirmation-reminder:jo@example.com:2026-11-23T09:00:00Z"
    files = FileMemory(SECRET, {})
    with store.memory() as memory:
        for key in replies:
            assert memory.may_reply("subscribe", key, clock.now(), REPLY_WINDOW)
            memory.replied("subscribe", key, clock.now())
            files.replied("subscribe", key, clock.now())
        memory.remember(handled, clock.now())
        files.remember(handled, clock.now())
    stored = set(sql(database_url, "SELECT kind, key FROM memory"))
    assert stored == {("reply", key) for key in files.replies} | {
        ("message", key) for key in files.messages
    }
    with store.memory() as memory:
        assert not memory.may_reply(
            "subscribe", "SLOT-7@Replies.invalid", clock.now(), REPLY_WINDOW
        )
    clock.advance(REPLY_WINDOW + timedelta(days=1))
    with store.memory() as memory:
        assert memory.seen(handled)
        memory.remember("mid:<other@x>", clock.now())  # a unit that stores prunes
    assert {kind for kind, _key in sql(database_url, "SELECT kind, key FROM memory")} == {"message"}
    clock.advance(KEEP_HANDLED)
    with store.memory() as memory:
        memory.remember("mid:<last@x>", clock.now())
    with store.memory() as memory:
        assert not memory.seen(handled)


def test_an_issue_awaiting_approval_keeps_its_note(store: PostgresStore, clock: FixedClock) -> None:
    record = IssueRecord(
        issue_id="2026-11-23-abcd1234",
        created_at=clock.now(),
        subject="Held",
        post_ids=("p1",),
        related_ids=(),
        status="awaiting_approval",
        note="**Hello** readers",
    )
    archive = store.archive.load()
    archive.record_issue(record)
    store.archive.save(archive)
    assert store.archive.load().issues == [record]


# --- token hints ------------------------------------------------------------------------------


def test_candidates_follow_a_changed_secret_key(database_url: str, clock: FixedClock) -> None:
    old = open_store(database_url, clock, secret=SECRET)
    old.roster.add_many(
        [(f"r{number}@example.com", "") for number in range(50)],
        status=Status.ACTIVE,
        via=Source.IMPORT,
        ref="seed",
    )
    old_hint = Signer(SECRET).hint
    assert old.roster.candidates(old_hint("r7@example.com"), old_hint) == ["r7@example.com"]
    new = open_store(database_url, clock, secret=OTHER_SECRET)
    new_hint = Signer(OTHER_SECRET).hint
    with new.roster.edit() as changes:
        changes.add("late@example.com", via=Source.CLI)
    assert new.roster.candidates(new_hint("r7@example.com"), new_hint) == ["r7@example.com"]
    assert new.roster.candidates(new_hint("late@example.com"), new_hint) == ["late@example.com"]
    assert sql(database_url, "SELECT count(*) FROM readers WHERE hint IS NULL") == [(0,)]
    old.close()
    new.close()


def test_old_and_new_token_hints_are_kept_side_by_side(
    database_url: str, clock: FixedClock
) -> None:
    store = open_store(database_url, clock)
    signer = Signer(SECRET)
    new, old = signer.hint, signer.old_hint
    store.roster.add_many(
        [("Mixed.Case@example.com", ""), *((f"r{n}@example.com", "") for n in range(20))],
        status=Status.ACTIVE,
        via=Source.IMPORT,
        ref="seed",
    )
    for _turn in range(2):  # lookups of either form in turn: neither column is computed again
        assert store.roster.candidates(new("mixed.case@example.com"), new) == [
            "Mixed.Case@example.com"
        ]
        assert store.roster.candidates(old("Mixed.Case@example.com"), old) == [
            "Mixed.Case@example.com"
        ]
        assert store.roster.candidates(old("r3@example.com"), old) == []  # b"": nobody
        assert store.roster.candidates(new("r3@example.com"), new) == ["r3@example.com"]
    # an old-form hint is kept only where it differs from the new one
    assert sql(database_url, "SELECT email FROM readers WHERE old_hint IS NOT NULL") == [
        ("Mixed.Case@example.com",)
    ]
    assert sql(database_url, "SELECT count(*) FROM readers WHERE hint IS NULL") == [(0,)]
    assert sql(database_url, "SELECT key FROM store_meta ORDER BY key") == [
        ("hint_check",),
        ("old_hint_check",),
    ]
    with store.roster.edit() as changes:  # a reader added in this unit is found in it
        changes.add("New.Comer@example.com", via=Source.CLI)
        assert changes.candidates(old("New.Comer@example.com"), old) == ["New.Comer@example.com"]
        assert changes.candidates(b"", old) == []
    other = Signer(OTHER_SECRET).old_hint  # another secret_key: the old column follows it
    assert store.roster.candidates(other("Mixed.Case@example.com"), other) == [
        "Mixed.Case@example.com"
    ]
    assert store.roster.candidates(old("Mixed.Case@example.com"), old) == ["Mixed.Case@example.com"]
    store.close()


def test_a_backlog_of_hints_is_filled_in_chunks_then_vacuumed(
    database_url: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hints, "FILL_CHUNK", 4)
    store = open_store(database_url, clock, secret=None)  # no key: rows get no hint
    store.roster.add_many(
        [(f"Cap{number}@example.com", "") for number in range(15)],
        status=Status.ACTIVE,
        via=Source.IMPORT,
        ref="seed",
    )
    store.close()
    store = open_store(database_url, clock)
    signer = Signer(SECRET)
    with store.roster.edit() as changes:  # one unit: the first chunk is its own, the rest not
        assert changes.candidates(signer.old_hint("Cap9@example.com"), signer.old_hint) == [
            "Cap9@example.com"
        ]
        assert changes.candidates(signer.hint("cap13@example.com"), signer.hint) == [
            "Cap13@example.com"
        ]
    assert sql(
        database_url,
        "SELECT count(*) FILTER (WHERE hint IS NULL), count(*) FILTER (WHERE old_hint IS NULL) "
        "FROM readers",
    ) == [(0, 0)]
    vacuumed = "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'readers'"
    assert sql(database_url, vacuumed) == [(True,)]
    store.close()


def test_a_version_1_ledger_keeps_hashing_the_address_as_spelled(
    database_url: str, clock: FixedClock
) -> None:
    store = open_store(database_url, clock)
    ledger = store.ledgers.load("2026-11-23-1a2b3c4d")
    assert ledger.version == 2
    assert ledger.reader_hash("Kim@example.com") == ledger.reader_hash("kim@EXAMPLE.com")
    with store.ledgers.send_lock(), ledger.writer(clock) as writer:
        writer.pending(0, [ledger.reader_hash("Kim@example.com")])
        writer.accepted(0, "msg-0")
    sql(database_url, "UPDATE ledgers SET version = 1")  # an issue begun before mailbox keys
    begun = store.ledgers.load("2026-11-23-1a2b3c4d")
    assert begun.version == 1
    assert begun.reader_hash("Kim@example.com") != begun.reader_hash("kim@example.com")
    assert begun.reader_hash("Kim@example.com") == begun.reader_hash("Kim@EXAMPLE.com")
    with store.ledgers.send_lock(), begun.writer(clock) as writer:
        writer.pending(1, [begun.reader_hash("Lee@example.com")])
        writer.accepted(1, "msg-1")
    again = store.ledgers.load("2026-11-23-1a2b3c4d")
    assert again.version == 1
    assert again.was_accepted(again.reader_hash("Lee@example.com"))
    assert not again.was_accepted(again.reader_hash("lee@example.com"))
    with pytest.raises(psycopg.errors.CheckViolation):
        sql(database_url, "UPDATE ledgers SET version = 3")
    store.close()


# --- connections ------------------------------------------------------------------------------


def test_connection_errors_name_the_server_never_the_password(clock: FixedClock) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    store = open_store(f"postgresql://crusader:s3cret-pw@127.0.0.1:{port}/news", clock)
    with pytest.raises(StateError) as raised:
        store.roster.counts()
    message = str(raised.value)
    assert message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/news: ")
    assert "s3cret-pw" not in message
    assert "\n" not in message
    with pytest.raises(ConfigError) as bad:
        open_store("postgresql://crusader:s3cret-pw@[::1/news", clock)
    assert "s3cret-pw" not in str(bad.value)


def test_close_lets_go_of_every_connection(store: PostgresStore, database_url: str) -> None:
    store.roster.counts()
    with store.roster.edit() as changes:
        changes.add("a@example.com", via=Source.CLI)
    name = database_url.rsplit("/", 1)[1]
    count = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    assert sql(database_url, count) != [(0,)]
    store.close()
    while sql(database_url, count) != [(0,)]:  # a server process ends soon after its client
        threading.Event().wait(0.01)
