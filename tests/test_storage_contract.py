"""The storage contract, run against every store: the roster's rules through ``edit()``, bulk
updates, token candidates, the memory, the archive and the ledgers. A new store is one more
line in ``STORES`` (the PostgreSQL store gets a fresh database of the session's cluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from crusader_mail.clock import Clock, FixedClock
from crusader_mail.errors import StateError, SubscriberError
from crusader_mail.models import (
    BACKLOG,
    ConsentAction,
    FeedCache,
    Frequency,
    IssueRecord,
    OutgoingMessage,
    Post,
    Preferences,
    Source,
    Status,
    Subscriber,
)
from crusader_mail.storage import rules
from crusader_mail.storage.contract import KEEP_HANDLED, REPLY_WINDOW, RosterChanges, Store
from crusader_mail.storage.files import FilesStore
from crusader_mail.storage.postgres import PostgresStore
from crusader_mail.storage.rows import parse_line
from crusader_mail.util.tokens import Signer

SECRET = "contract-secret-0123456789abcdef"

STORES: dict[str, Callable[[pytest.FixtureRequest, Path, Clock], Store]] = {
    "files": lambda request, root, clock: FilesStore(
        root / "state", root / "subscribers", clock, lambda: SECRET
    ),
    "postgres": lambda request, root, clock: PostgresStore(
        request.getfixturevalue("database_url"),
        clock,
        lambda: SECRET,
        hint_of=Signer(SECRET).hint,
    ),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock) -> Iterator[Store]:
    made = STORES[request.param](request, tmp_path, clock)
    yield made
    made.close()


def statuses(store: Store) -> dict[str, Status]:
    return {sub.email: sub.status for sub in store.roster.iter()}


def seed(store: Store, **by_status: list[str]) -> None:
    with store.roster.edit() as changes:
        for status, emails in by_status.items():
            for email in emails:
                changes.add(email, status=Status(status), via=Source.CLI, ref="seed")


# --- the roster's rules through edit() --------------------------------------------------------

OPERATIONS: dict[str, Callable[[RosterChanges, str], Subscriber | None]] = {
    "add": lambda c, e: c.add(e, name="Ann", status=Status.ACTIVE, via=Source.CLI, ref="r"),
    "request": lambda c, e: c.request(e, name="Ann", via=Source.EMAIL, ref="r"),
    "unsubscribe": lambda c, e: c.unsubscribe(e, via=Source.WEB, ref="r"),
    "bounce": lambda c, e: c.mark(e, Status.BOUNCED, via=Source.SENDGRID, ref="r"),
    "complain": lambda c, e: c.mark(e, Status.COMPLAINED, via=Source.EMAIL, ref="r"),
}
RULES: dict[str, Callable[[Subscriber | None, str, FixedClock], Subscriber | None]] = {
    "add": lambda old, e, clock: rules.add(
        old, e, name="Ann", status=Status.ACTIVE, via=Source.CLI, ref="r", now=clock.now()
    ),
    "request": lambda old, e, clock: rules.request(
        old, e, name="Ann", via=Source.EMAIL, ref="r", now=clock.now()
    ),
    "unsubscribe": lambda old, e, clock: rules.unsubscribe(
        old, via=Source.WEB, ref="r", now=clock.now()
    ),
    "bounce": lambda old, e, clock: rules.mark(
        old, Status.BOUNCED, via=Source.SENDGRID, ref="r", now=clock.now()
    ),
    "complain": lambda old, e, clock: rules.mark(
        old, Status.COMPLAINED, via=Source.EMAIL, ref="r", now=clock.now()
    ),
}
START = [None, *Status]


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("start", START, ids=lambda s: s.value if s else "new")
def test_every_change_is_the_rule_applied_and_stored(
    store: Store, clock: FixedClock, operation: str, start: Status | None
) -> None:
    email = "ann@example.com"
    if start is not None:
        seed(store, **{start.value: [email]})
    old = store.roster.get(email)
    clock.advance(timedelta(hours=1))
    with store.roster.edit() as changes:
        made = OPERATIONS[operation](changes, email)
        assert changes.get(email) == (made if made is not None else old)
    assert made == RULES[operation](old, email, clock)
    assert store.roster.get(email) == made
    if start is None and operation in ("unsubscribe", "bounce", "complain"):
        assert made is None


def test_a_rejoining_reader_gets_a_new_consent_record(store: Store, clock: FixedClock) -> None:
    seed(store, complained=["jo@example.com"])
    left = store.roster.get("jo@example.com")
    clock.advance(timedelta(days=1))
    with store.roster.edit() as changes:
        # anyone may ask in their name: they stay as they left, leaving record and all
        assert changes.request("jo@EXAMPLE.com", name="Jo\r\nBcc: x", via=Source.WEB) == left
        clock.advance(timedelta(minutes=5))
        active = changes.confirm("jo@example.com", via=Source.EMAIL, ref="<m@x>")
        assert changes.confirm("jo@example.com", via=Source.EMAIL) == active  # replayed
    assert (active.status, active.confirmed_via, active.ref, active.left_at) == (
        Status.ACTIVE,
        Source.EMAIL,
        "<m@x>",
        None,
    )
    assert active.subscribed_at == active.confirmed_at == clock.now()
    assert store.roster.get("jo@example.com") == active
    assert [(e.action.value, e.status, e.via) for e in store.roster.history("JO@example.com")] == [
        ("add", Status.COMPLAINED, Source.CLI),  # the seed
        ("confirm", Status.ACTIVE, Source.EMAIL),
    ]


def test_confirming_nobody_fails(store: Store) -> None:
    with store.roster.edit() as changes, pytest.raises(SubscriberError, match="not on the list"):
        changes.confirm("nobody@example.com", via=Source.WEB)
    assert statuses(store) == {}


def test_forget_leaves_no_trace_and_a_raising_block_stores_nothing(store: Store) -> None:
    seed(store, active=["a@example.com", "b@example.com"])

    def change_then_fail() -> None:
        with store.roster.edit() as changes:
            changes.forget("a@example.com")
            changes.add("c@example.com", via=Source.CLI)
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert statuses(store) == {"a@example.com": Status.ACTIVE, "b@example.com": Status.ACTIVE}
    with store.roster.edit() as changes:
        assert changes.forget("a@EXAMPLE.com") is True
        assert changes.forget("a@example.com") is False
        assert changes.get("a@example.com") is None
    assert store.roster.get("a@example.com") is None
    assert not any("a@example.com" in line for line in store.roster.lines())


def test_reading_the_roster(store: Store) -> None:
    seed(store, active=["b@example.com", "a@example.com"], bounced=["c@example.com"])
    assert [sub.email for sub in store.roster.iter()] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    assert [sub.email for sub in store.roster.iter(Status.BOUNCED)] == ["c@example.com"]
    assert store.roster.counts() == {
        **dict.fromkeys(Status, 0),
        Status.ACTIVE: 2,
        Status.BOUNCED: 1,
    }
    assert [parse_line(line) for line in store.roster.lines()] == list(store.roster.iter())
    found = store.roster.get(" A@example.COM")  # any spelling of the mailbox
    assert found is not None
    assert found.email == "a@example.com"
    assert store.roster.get("not an address") is None


def test_recipients_are_the_active_readers_as_iter_gives_them(store: Store) -> None:
    seed(store, active=["b@example.com", "Ann@example.com", "c_d@example.com"])
    seed(store, bounced=["x@example.com"], pending=["p@example.com"])
    with store.roster.edit() as changes:
        changes.add("q@example.com", name='Quinn, "Q"', via=Source.CLI)
        changes.add(
            "u@example.com", name="is,active,now", status=Status.UNSUBSCRIBED, via=Source.CLI
        )
    expected = [(sub.email, sub.name) for sub in store.roster.iter(Status.ACTIVE)]
    assert list(store.roster.recipients()) == expected
    assert [email for email, _name in expected] == [
        "Ann@example.com",
        "b@example.com",
        "c_d@example.com",
        "q@example.com",
    ]
    assert ("q@example.com", 'Quinn, "Q"') in expected


# --- one reader per mailbox -------------------------------------------------------------------


def test_one_mailbox_is_one_reader_kept_as_first_given(store: Store, clock: FixedClock) -> None:
    with store.roster.edit() as changes:
        first = changes.add("Carol@Example.org", name="Carol", via=Source.CLI)
        again = changes.add("carol@example.org", name="Other", via=Source.IMPORT)
        assert again == first  # already there: unchanged
        assert changes.request("CAROL@example.org", via=Source.EMAIL) == first  # active already
        assert changes.get("cArOl@EXAMPLE.org") == first
    assert [sub.email for sub in store.roster.iter()] == ["Carol@example.org"]
    assert store.roster.counts()[Status.ACTIVE] == 1
    assert store.roster.get("carol@example.org") == first
    clock.advance(timedelta(hours=1))
    with store.roster.edit() as changes:
        left = changes.unsubscribe("CAROL@EXAMPLE.ORG", via=Source.WEB, ref="web:1")
    assert left is not None
    assert (left.email, left.status, left.left_via) == (
        "Carol@example.org",
        Status.UNSUBSCRIBED,
        Source.WEB,
    )
    assert statuses(store) == {"Carol@example.org": Status.UNSUBSCRIBED}
    with store.roster.edit() as changes:
        assert changes.request("carol@EXAMPLE.org", via=Source.WEB).status is Status.UNSUBSCRIBED
        assert changes.confirm("CAROL@example.org", via=Source.EMAIL).status is Status.ACTIVE
        marked = changes.mark("carol@example.org", Status.BOUNCED, via=Source.SENDGRID)
        assert marked is not None
        assert (marked.email, marked.status) == ("Carol@example.org", Status.BOUNCED)
    assert statuses(store) == {"Carol@example.org": Status.BOUNCED}


def test_every_spelling_finds_the_reader_by_token_hint_and_forgets_them(
    store: Store, clock: FixedClock
) -> None:
    signer = Signer(SECRET)
    hint_of = signer.hint
    seed(store, active=["Dan@example.org", "eve@example.org"])
    assert store.roster.candidates(hint_of("dan@EXAMPLE.org"), hint_of) == ["Dan@example.org"]
    # tokens mailed before name the address as spelled: looked up by their old-form hint
    old = signer.old_hint
    assert store.roster.candidates(old("Dan@example.org"), old) == ["Dan@example.org"]
    assert store.roster.candidates(b"", old) == []  # eve's old form is her new one
    with store.roster.edit() as changes:
        changes.queue_mail(_reply("Dan@example.org"))
    with store.roster.edit() as changes:
        assert changes.forget("DAN@example.org") is True
        assert changes.candidates(hint_of("Dan@example.org"), hint_of) == []
    assert statuses(store) == {"eve@example.org": Status.ACTIVE}
    assert store.mail.waiting() == 0  # their queued mail went with them


def test_a_restore_replaces_the_reader_of_that_mailbox(store: Store, clock: FixedClock) -> None:
    seed(store, active=["Fay@example.org"])
    restored = Subscriber(email="fay@example.org", name="Fay", status=Status.PENDING)
    assert store.roster.restore([restored]) == 1
    assert list(store.roster.iter()) == [restored]


def test_a_restore_holding_one_mailbox_twice_stores_nothing(
    store: Store, clock: FixedClock
) -> None:
    seed(store, active=["gil@example.org"])
    before = list(store.roster.lines())
    twice = [
        Subscriber(email="hal@example.org", status=Status.ACTIVE),
        Subscriber(email="gil@example.org", status=Status.UNSUBSCRIBED),
        Subscriber(email="Hal@example.org", status=Status.PENDING),
    ]
    with pytest.raises(SubscriberError, match=r"H•••@example\.org is given twice"):
        store.roster.restore(twice)
    assert list(store.roster.lines()) == before


def test_readers_come_in_mailbox_order_byte_by_byte(store: Store, clock: FixedClock) -> None:
    spellings = ["Bo@example.com", "ann@example.com", "b_z@example.com", "BA@example.com"]
    seed(store, active=spellings, pending=["Zed@example.com"], unsubscribed=["ab@example.com"])
    everyone = [*spellings, "Zed@example.com", "ab@example.com"]
    in_order = sorted(everyone, key=lambda email: rules.mailbox_key(email).encode())
    assert [sub.email for sub in store.roster.iter()] == in_order
    assert [line.split(",")[0] for line in store.roster.lines()] == in_order
    active = [email for email in in_order if email in spellings]
    assert [sub.email for sub in store.roster.iter(Status.ACTIVE)] == active
    # "_" sorts before "a" byte by byte (a language's collation would put it after "ba")
    assert active == ["ann@example.com", "b_z@example.com", "BA@example.com", "Bo@example.com"]


# --- update_many ------------------------------------------------------------------------------


def test_update_many_changes_only_the_readers_it_is_offered(
    store: Store, clock: FixedClock
) -> None:
    seed(store, active=["Ann@example.com", "bo@example.com", "cy@example.com"])

    def leave(changes: RosterChanges, email: str) -> None:
        changes.unsubscribe(email, via=Source.SENDGRID, ref="bulk")

    report = store.roster.update_many([" aNN@EXAMPLE.com", "not an address"], leave)
    assert (report.matched, report.changed, report.written) == (1, 1, True)
    report = store.roster.update_many({"ann@example.com", "bo@example.com"}, leave, match=str.lower)
    assert (report.matched, report.changed) == (2, 1)
    assert statuses(store) == {
        "Ann@example.com": Status.UNSUBSCRIBED,
        "bo@example.com": Status.UNSUBSCRIBED,
        "cy@example.com": Status.ACTIVE,
    }
    report = store.roster.update_many(["cy@example.com"], lambda changes, email: None)
    assert (report.matched, report.changed, report.written) == (1, 0, False)
    seed(store, active=["Dee@Example.com"])  # the suppression sync's match: the mailbox key
    report = store.roster.update_many({"dee@example.com"}, leave, match=rules.mailbox_key)
    assert (report.matched, report.changed) == (1, 1)
    assert statuses(store)["Dee@example.com"] is Status.UNSUBSCRIBED


def test_update_many_with_any_match_function(store: Store) -> None:
    seed(store, active=["ann@one.example", "bo@two.example", "cy@one.example"])

    def bounce(changes: RosterChanges, email: str) -> None:
        changes.mark(email, Status.BOUNCED, via=Source.SENDGRID, ref="domain")

    report = store.roster.update_many({"one.example"}, bounce, match=lambda e: e.split("@")[1])
    assert (report.matched, report.changed, report.written) == (2, 2, True)
    assert statuses(store) == {
        "ann@one.example": Status.BOUNCED,
        "bo@two.example": Status.ACTIVE,
        "cy@one.example": Status.BOUNCED,
    }


def test_update_many_may_not_touch_another_reader(store: Store) -> None:
    seed(store, active=["a@example.com", "b@example.com"])

    def sneaky(changes: RosterChanges, email: str) -> None:
        changes.forget(email)
        changes.add("intruder@example.com", via=Source.CLI)

    with pytest.raises(SubscriberError, match="changed another"):
        store.roster.update_many(["a@example.com"], sneaky)
    assert statuses(store) == {"a@example.com": Status.ACTIVE, "b@example.com": Status.ACTIVE}


def test_one_reader_per_mailbox(store: Store) -> None:
    hint_of = Signer(SECRET).hint
    seed(store, active=["Carol@Example.org"])
    with store.roster.edit() as changes:
        again = changes.add("carol@example.org", name="Carol", via=Source.CLI)
        assert changes.get("CAROL@example.org") == again
    assert again.email == "Carol@example.org"  # kept as first given (domain lowercased)
    assert [sub.email for sub in store.roster.iter()] == ["Carol@example.org"]
    assert store.roster.get("carol@EXAMPLE.ORG") == again
    assert store.roster.candidates(hint_of("Carol@example.org"), hint_of) == ["Carol@example.org"]
    added = store.roster.add_many(
        [("CAROL@example.org", ""), ("dan@example.org", "")],
        status=Status.ACTIVE,
        via=Source.IMPORT,
        ref="f.csv",
    )
    assert (added.added, added.unchanged) == (1, {"active": 1})
    with store.roster.edit() as changes:
        left = changes.unsubscribe("carol@example.ORG", via=Source.WEB)
    assert left is not None
    assert left.email == "Carol@example.org"

    def forget(changes: RosterChanges, email: str) -> None:
        changes.forget(email)

    report = store.roster.update_many(["DAN@example.org"], forget)
    assert (report.matched, report.changed) == (1, 1)
    assert statuses(store) == {"Carol@example.org": Status.UNSUBSCRIBED}


# --- token candidates -------------------------------------------------------------------------


def test_candidates_follow_the_roster_and_the_changes_in_progress(store: Store) -> None:
    hint_of = Signer(SECRET).hint
    seed(store, active=["a@example.com", "b@example.com"])
    assert store.roster.candidates(hint_of("a@example.com"), hint_of) == ["a@example.com"]
    assert store.roster.candidates(hint_of("new@example.com"), hint_of) == []
    with store.roster.edit() as changes:
        changes.request("new@example.com", via=Source.EMAIL)
        changes.forget("a@example.com")
        assert changes.candidates(hint_of("new@example.com"), hint_of) == ["new@example.com"]
        assert changes.candidates(hint_of("a@example.com"), hint_of) == []
        assert changes.candidates(hint_of("b@example.com"), hint_of) == ["b@example.com"]
    assert store.roster.candidates(hint_of("new@example.com"), hint_of) == ["new@example.com"]
    assert store.roster.candidates(hint_of("a@example.com"), hint_of) == []


# --- memory -----------------------------------------------------------------------------------


def test_memory_remembers_messages_events_and_replies(store: Store, clock: FixedClock) -> None:
    with store.memory() as memory:
        assert not memory.seen("mid:<1@x>")
        memory.remember("mid:<1@x>", clock.now())
        memory.remember_event("ev-1", clock.now())
        assert memory.may_reply("help", "jo@example.com", clock.now(), REPLY_WINDOW)
        memory.replied("help", "jo@example.com", clock.now())

    def remember_then_fail() -> None:
        with store.memory() as memory:
            memory.remember("mid:<2@x>", clock.now())
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        remember_then_fail()
    clock.advance(REPLY_WINDOW - timedelta(minutes=1))
    with store.memory() as memory:
        assert memory.seen("mid:<1@x>")
        assert not memory.seen("mid:<2@x>")
        assert memory.event_seen("ev-1")
        assert not memory.event_seen("ev-2")
        assert not memory.may_reply("help", "jo@EXAMPLE.com", clock.now(), REPLY_WINDOW)
        assert not memory.may_reply("help", "JO@example.com", clock.now(), REPLY_WINDOW)
        assert memory.may_reply("confirm", "jo@example.com", clock.now(), REPLY_WINDOW)
    clock.advance(timedelta(minutes=1))
    with store.memory() as memory:
        assert memory.may_reply("help", "jo@example.com", clock.now(), REPLY_WINDOW)
    clock.advance(KEEP_HANDLED)
    with store.memory() as memory:
        pass  # the end of a unit drops what is past its keeping time
    with store.memory() as memory:
        assert not memory.seen("mid:<1@x>")
        assert not memory.event_seen("ev-1")


# --- archive ----------------------------------------------------------------------------------


def _post(n: int, clock: FixedClock) -> Post:
    return Post(
        id=f"https://blog.example/?p={n}",
        title=f"Post {n}",
        link=f"https://blog.example/{n}/",
        published=clock.now() - timedelta(days=10 - n),
        updated=clock.now() - timedelta(days=10 - n),
        feed="https://blog.example/feed/",
        first_seen=clock.now(),
    )


def test_archive_round_trip(store: Store, clock: FixedClock) -> None:
    archive = store.archive.load()
    assert (archive.posts, archive.issues, archive.feed_cache) == ([], [], {})
    archive.merge([_post(1, clock), _post(2, clock)], clock.now())  # the installation: backlog
    store.archive.save(archive)
    archive = store.archive.load()
    assert archive.merge([_post(3, clock)], clock.now()).new == [_post(3, clock).id]
    archive.feed_cache["https://blog.example/feed/"] = FeedCache(etag='"e"')
    record = IssueRecord(
        issue_id="2026-11-23-aaaa0000",
        created_at=clock.now(),
        subject="S",
        post_ids=(_post(3, clock).id,),
        related_ids=(),
        status="sending",
    )
    archive.record_issue(record)
    store.archive.save(archive)
    loaded = store.archive.load()
    assert loaded.posts == archive.posts
    assert [post.issue for post in loaded.posts] == [None, BACKLOG, BACKLOG]
    assert loaded.issues == [record]
    assert loaded.feed_cache == {"https://blog.example/feed/": FeedCache(etag='"e"')}
    loaded.mark_sent([_post(3, clock).id], record.issue_id)
    store.archive.save(loaded)
    assert store.archive.load().new_posts() == []


def test_archive_save_refuses_to_overwrite_a_newer_archive(store: Store, clock: FixedClock) -> None:
    first, second = store.archive.load(), store.archive.load()
    first.merge([_post(1, clock)], clock.now())
    store.archive.save(first)
    second.merge([_post(2, clock)], clock.now())
    with pytest.raises(StateError, match="changed"):
        store.archive.save(second)
    assert [post.id for post in store.archive.load().posts] == [_post(1, clock).id]


# --- ledgers, locks, traces -------------------------------------------------------------------


def test_ledger_load_and_write(store: Store, clock: FixedClock) -> None:
    issue = "2026-11-23-1a2b3c4d"
    assert not store.ledgers.exists(issue)
    ledger = store.ledgers.load(issue)
    readers = [ledger.reader_hash(f"r{i}@example.com") for i in range(4)]
    with store.ledgers.send_lock(), ledger.writer(clock) as writer:
        writer.pending(0, readers[:2])
        writer.accepted(0, "msg-0")
        writer.pending(1, readers[2:])
    assert store.ledgers.exists(issue)
    assert not store.ledgers.exists(issue, sandbox=True)
    again = store.ledgers.load(issue)
    assert again.was_accepted(again.reader_hash("R1@EXAMPLE.com"))  # any spelling
    assert not again.was_accepted(again.reader_hash("r2@example.com"))
    assert again.is_in_doubt(again.reader_hash("r3@example.com"))
    assert (again.in_doubt_batches, again.next_batch) == ([1], 2)


def test_run_lock_and_traces(store: Store) -> None:
    with store.run_lock():
        pass
    traces = store.traces()
    assert traces
    assert all(isinstance(trace, str) and trace for trace in traces)


# --- imports, restores and queued mail ----------------------------------------------------------


def test_add_many_adds_new_readers_and_keeps_those_who_left(store: Store) -> None:
    seed(store, unsubscribed=["gone@example.com"], active=["here@example.com"])
    report = store.roster.add_many(
        [("gone@example.com", "Gone"), ("here@example.com", ""), ("new@example.com", "New")],
        status=Status.PENDING,
        via=Source.IMPORT,
        ref="list.csv",
    )
    assert (report.added, report.names_filled, report.kept_away) == (1, 1, 1)
    assert report.unchanged == {"unsubscribed": 1, "active": 1}
    assert statuses(store) == {
        "gone@example.com": Status.UNSUBSCRIBED,
        "here@example.com": Status.ACTIVE,
        "new@example.com": Status.PENDING,
    }
    new = store.roster.get("new@example.com")
    assert new is not None
    assert (new.name, new.subscribed_via, new.ref) == ("New", Source.IMPORT, "list.csv")


def test_restore_stores_each_record_as_given(store: Store, clock: FixedClock) -> None:
    seed(store, active=["a@example.com", "b@example.com"])
    exported = list(store.roster.lines())
    readers = [parse_line(line) for line in exported]
    with store.roster.edit() as changes:
        changes.unsubscribe("a@example.com", via=Source.WEB, ref="later")
        changes.forget("b@example.com")
    assert store.roster.restore(readers) == 2
    assert list(store.roster.lines()) == exported


def _reply(to: str, subject: str = "Welcome") -> OutgoingMessage:
    return OutgoingMessage(to_email=to, subject=subject, text="Hello.\n")


def test_queued_mail_is_stored_with_its_change_only(store: Store, clock: FixedClock) -> None:
    with store.roster.edit() as changes:
        changes.add("a@example.com", via=Source.CLI)
        changes.queue_mail(_reply("a@example.com"))

    def failing_change() -> None:
        with store.roster.edit() as changes:
            changes.add("b@example.com", via=Source.CLI)
            changes.queue_mail(_reply("b@example.com"))
            raise RuntimeError("the change fails: its reply is not kept")

    with pytest.raises(RuntimeError):
        failing_change()
    assert store.mail.waiting() == 1
    with store.mail.claim(clock.now()) as batch:
        assert [mail.message.to_email for mail in batch.mails] == ["a@example.com"]
        batch.done(batch.mails[0].id)
    assert store.mail.waiting() == 0


def test_failed_mail_waits_and_claims_do_not_overlap(store: Store, clock: FixedClock) -> None:
    with store.roster.edit() as changes:
        for name in ("a", "b", "c"):
            changes.add(f"{name}@example.com", via=Source.CLI)
            changes.queue_mail(_reply(f"{name}@example.com"))
    now = clock.now()
    with store.mail.claim(now, limit=2) as first:
        assert len(first.mails) == 2
        with store.mail.claim(now) as second:  # another sender at the same time
            assert [m.message.to_email for m in second.mails] == ["c@example.com"]
            second.done(second.mails[0].id)
        first.failed(first.mails[0].id, "HTTP 503")
    # the one left unmarked is due again at once; the failed one only after a wait
    with store.mail.claim(now) as again:
        assert [m.message.to_email for m in again.mails] == ["b@example.com"]
    later = now + timedelta(hours=2)
    with store.mail.claim(later) as retry:
        assert {m.message.to_email for m in retry.mails} == {"a@example.com", "b@example.com"}
        failed = next(m for m in retry.mails if m.message.to_email == "a@example.com")
        assert (failed.attempts, failed.last_error) == (1, "HTTP 503")
    with store.mail.claim(now + timedelta(days=8)) as expired:
        assert expired.mails == []
    assert store.mail.waiting() == 0


def test_forgetting_a_reader_drops_their_queued_mail(store: Store, clock: FixedClock) -> None:
    with store.roster.edit() as changes:
        changes.add("a@example.com", via=Source.CLI)
        changes.queue_mail(_reply("a@example.com"))
        changes.add("b@example.com", via=Source.CLI)
        changes.queue_mail(_reply("b@example.com"))
    with store.roster.edit() as changes:
        changes.forget("a@example.com")
    with store.mail.claim(clock.now()) as batch:
        assert [m.message.to_email for m in batch.mails] == ["b@example.com"]


# --- the consent history ----------------------------------------------------------------------


def test_every_change_is_appended_to_the_history_and_never_overwritten(
    store: Store, clock: FixedClock
) -> None:
    with store.roster.edit() as changes:
        changes.request("Kim@example.org", name="Kim", via=Source.EMAIL, ref="<r1@x>")
        changes.add("kim@example.org", via=Source.CLI)  # there already: no change, no event
    clock.advance(timedelta(minutes=1))
    with store.roster.edit() as changes:
        changes.confirm("KIM@example.org", via=Source.WEB, ref="web:1")
    clock.advance(timedelta(days=1))

    def bounce(changes: RosterChanges, email: str) -> None:
        changes.mark(email, Status.BOUNCED, via=Source.SENDGRID, ref="sg")

    store.roster.update_many(["kim@example.org"], bounce)
    clock.advance(timedelta(days=1))
    with store.roster.edit() as changes:
        changes.mark("kim@example.org", Status.COMPLAINED, via=Source.EMAIL, ref="<arf@x>")
        changes.unsubscribe("kim@example.org", via=Source.WEB, ref="web:2")
        changes.request("kim@example.org", via=Source.EMAIL, ref="<forged@x>")  # stays left
    seed(store, active=["lee@example.org"])
    history = list(store.roster.history("kim@EXAMPLE.org"))
    assert [(e.action.value, e.status.value, e.via.value, e.ref) for e in history] == [
        ("request", "pending", "email", "<r1@x>"),
        ("confirm", "active", "web", "web:1"),
        ("bounce", "bounced", "sendgrid", "sg"),
        ("complain", "complained", "email", "<arf@x>"),
        ("unsubscribe", "unsubscribed", "web", "web:2"),
    ]
    assert {e.email for e in history} == {"Kim@example.org"}
    assert [e.at for e in history] == sorted(e.at for e in history)
    assert history[-1].at == clock.now()
    everyone = list(store.roster.history())
    assert everyone[: len(history)] == history
    assert [e.email for e in everyone[len(history) :]] == ["lee@example.org"]
    assert list(store.roster.history("nobody@example.org")) == []
    assert list(store.roster.history("not an address")) == []


def test_a_change_that_fails_adds_no_event(store: Store) -> None:
    def change_then_fail() -> None:
        with store.roster.edit() as changes:
            changes.add("a@example.com", via=Source.CLI)
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert list(store.roster.history()) == []


def test_forget_erases_the_history_and_restores_append(store: Store, clock: FixedClock) -> None:
    seed(store, active=["a@example.com", "b@example.com"])
    with store.roster.edit() as changes:
        changes.unsubscribe("a@example.com", via=Source.WEB, ref="web:1")
    exported = list(store.roster.history())
    clock.advance(timedelta(minutes=1))
    with store.roster.edit() as changes:
        assert changes.forget("A@example.com")
    assert [e.email for e in store.roster.history()] == ["b@example.com"]
    assert list(store.roster.history("a@example.com")) == []
    # moving to another store: the readers, then their history
    reader = Subscriber(email="a@example.com", status=Status.UNSUBSCRIBED)
    assert store.roster.restore([reader]) == 1
    assert store.roster.restore_history(e for e in exported if e.email == "a@example.com") == 2
    assert [e.action.value for e in store.roster.history("a@example.com")] == [
        "add",
        "unsubscribe",
        "restore",
    ]


def test_expire_pending_erases_requests_never_confirmed(store: Store, clock: FixedClock) -> None:
    with store.roster.edit() as changes:
        changes.request("old@example.com", via=Source.EMAIL, ref="<1@x>")
        changes.request("web@example.com", via=Source.WEB)
        changes.add("mine@example.com", status=Status.PENDING, via=Source.IMPORT)
        changes.add("here@example.com", via=Source.CLI)
        changes.queue_mail(_reply("old@example.com", "Please confirm"))
    clock.advance(timedelta(days=3))
    with store.roster.edit() as changes:
        changes.request("new@example.com", via=Source.EMAIL)
        changes.request("web@example.com", via=Source.WEB)  # renewed
    clock.advance(timedelta(days=5))
    assert store.roster.expire_pending(clock.now() - timedelta(days=7)) == 1
    assert statuses(store) == {
        "here@example.com": Status.ACTIVE,
        "mine@example.com": Status.PENDING,  # an operator's: never expires
        "new@example.com": Status.PENDING,
        "web@example.com": Status.PENDING,
    }
    assert list(store.roster.history("old@example.com")) == []
    assert store.mail.waiting() == 0
    assert store.roster.expire_pending(clock.now() - timedelta(days=7)) == 0


def test_a_feeds_failures_in_a_row_are_kept(store: Store) -> None:
    """The count that fails a run at three (``pipeline.FEED_FAILURES_LIMIT``) survives a save,
    and so does a feed known only by its failures (never read: its posts stay backlog)."""
    blog, typo = "https://blog.example/feed/", "https://blog.example/fede/"
    archive = store.archive.load()
    archive.record_read(blog, FeedCache(etag='"e"'), failed=False)
    assert archive.record_read(blog, None, failed=True) == 1
    assert archive.record_read(typo, None, failed=True) == 1
    store.archive.save(archive)
    loaded = store.archive.load()
    assert loaded.feed_cache == {
        blog: FeedCache(etag='"e"', failures=1),
        typo: FeedCache(failures=1, ever_read=False),
    }
    assert loaded.record_read(typo, None, failed=True) == 2
    assert loaded.record_read(blog, None, failed=False) == 0
    store.archive.save(loaded)
    again = store.archive.load().feed_cache
    assert again == {blog: FeedCache(etag='"e"'), typo: FeedCache(failures=2, ever_read=False)}


# --- preferences ------------------------------------------------------------------------------


def test_preferences_are_kept_by_mailbox_and_land_in_the_history(
    store: Store, clock: FixedClock
) -> None:
    seed(store, active=["Ann@example.com", "bo@example.com"], pending=["pat@example.com"])
    assert store.roster.preferences() == {}
    weekly = Preferences(frequency=Frequency.WEEKLY, topics=("Sales", "marketing", "SALES"))
    with store.roster.edit() as changes:
        reader = changes.set_preferences("ann@EXAMPLE.com", weekly, via=Source.WEB, ref="w1")
        assert reader is not None
        assert reader.email == "Ann@example.com"
        settled = changes.preferences("ANN@example.com")
        assert settled == Preferences(frequency=Frequency.WEEKLY, topics=("marketing", "Sales"))
        # only an active reader chooses: nothing is stored for anyone else
        assert changes.set_preferences("pat@example.com", weekly, via=Source.WEB) is None
        assert changes.set_preferences("nobody@example.com", weekly, via=Source.WEB) is None
    assert store.roster.preferences() == {"ann@example.com": settled}
    assert store.roster.get("Ann@example.com") == reader  # the roster row is not changed
    clock.advance(timedelta(hours=1))
    until = clock.now() + timedelta(weeks=4, microseconds=5)
    with store.roster.edit() as changes:
        paused = settled.model_copy(update={"paused_until": until})
        changes.set_preferences("ann@example.com", paused, via=Source.WEB, ref="w2")
        changes.set_preferences("ann@example.com", paused, via=Source.WEB, ref="same")  # no-op
    stored = store.roster.preferences()["ann@example.com"]
    assert stored.paused_until == rules.stamp(until)
    assert stored.paused(clock.now())
    assert not stored.paused(clock.now() + timedelta(weeks=5))  # resumes by itself
    with store.roster.edit() as changes:
        changes.set_preferences("ann@example.com", Preferences(), via=Source.WEB, ref="w3")
    assert store.roster.preferences() == {}  # the default is not kept
    actions = [(e.action, e.ref) for e in store.roster.history("ann@example.com")]
    assert actions[1:] == [
        (ConsentAction.PREFERENCES, "w1"),
        (ConsentAction.PAUSE, "w2"),
        (ConsentAction.RESUME, "w3"),
    ]
    assert [e.action for e in store.roster.history("pat@example.com")] == [ConsentAction.ADD]


def test_preferences_go_with_a_forgotten_reader_and_a_raising_block(store: Store) -> None:
    seed(store, active=["ann@example.com", "bo@example.com"])
    weekly = Preferences(frequency=Frequency.WEEKLY)
    with store.roster.edit() as changes:
        changes.set_preferences("ann@example.com", weekly, via=Source.WEB)
        changes.set_preferences("bo@example.com", weekly, via=Source.WEB)

    def change_then_fail() -> None:
        with store.roster.edit() as changes:
            changes.set_preferences("bo@example.com", Preferences(), via=Source.WEB)
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert set(store.roster.preferences()) == {"ann@example.com", "bo@example.com"}
    with store.roster.edit() as changes:
        assert changes.forget("Ann@example.com")
        assert changes.preferences("ann@example.com") == Preferences()
    assert set(store.roster.preferences()) == {"bo@example.com"}
    with store.roster.edit() as changes:
        changes.add("ann@example.com", via=Source.CLI)  # back: with no preferences
    assert set(store.roster.preferences()) == {"bo@example.com"}


def test_restored_preferences_replace_a_readers_own_and_append_no_event(
    store: Store, clock: FixedClock
) -> None:
    seed(store, active=["Ann@example.com", "bo@example.com", "cy@example.com"])
    with store.roster.edit() as changes:
        changes.set_preferences(
            "cy@example.com", Preferences(frequency=Frequency.WEEKLY), via=Source.WEB
        )
    before = list(store.roster.history())
    until = rules.stamp(clock.now() + timedelta(weeks=8))
    paused = Preferences(topics=("Sales",), paused_until=until)
    restored = [
        ("ann@example.com", paused),
        ("BO@example.com", Preferences(frequency=Frequency.EVERY_POST)),
        ("cy@example.com", Preferences()),  # the default: cy's own choice goes
    ]
    assert store.roster.restore_preferences(restored) == 3
    assert store.roster.preferences() == {
        "ann@example.com": paused,
        "bo@example.com": Preferences(frequency=Frequency.EVERY_POST),
    }
    assert list(store.roster.history()) == before  # the history is restored on its own
    # a reader not on the list, or one mailbox twice: refused whole, nothing stored
    for wrong, why in (
        ([("bo@example.com", paused), ("zed@example.com", paused)], r"z•••@example\.com"),
        ([("bo@example.com", paused), ("Bo@example.com", paused)], "two rows"),
    ):
        with pytest.raises(SubscriberError, match=why):
            store.roster.restore_preferences(wrong)
        assert store.roster.preferences()["bo@example.com"].paused_until is None
    assert store.roster.restore_preferences([]) == 0
