"""The roster's rules as pure functions: a call that changes nothing returns the reader itself,
and only readers still on the list are changed from outside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.storage import rules

NOW = datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC)


def reader(status: Status, name: str = "") -> Subscriber:
    return Subscriber(email="jo@example.com", name=name, status=status)


@pytest.mark.parametrize(
    ("old", "change"),
    [
        (
            reader(Status.ACTIVE, "Jo"),
            lambda old: rules.add(
                old, old.email, name="Other", status=Status.PENDING, via=Source.CLI, ref="", now=NOW
            ),
        ),
        (
            reader(Status.ACTIVE),
            lambda old: rules.request(
                old, old.email, name="Jo", via=Source.EMAIL, ref="r", now=NOW
            ),
        ),
        (
            reader(Status.ACTIVE),
            lambda old: rules.confirm(old, old.email, via=Source.WEB, ref="r", now=NOW),
        ),
        (
            reader(Status.COMPLAINED),
            lambda old: rules.request(
                old, old.email, name="Jo", via=Source.EMAIL, ref="r", now=NOW
            ),
        ),
        (
            reader(Status.UNSUBSCRIBED),
            lambda old: rules.unsubscribe(old, via=Source.WEB, ref="r", now=NOW),
        ),
        (
            reader(Status.COMPLAINED),
            lambda old: rules.mark(old, Status.BOUNCED, via=Source.SENDGRID, ref="r", now=NOW),
        ),
    ],
)
def test_a_call_that_changes_nothing_returns_the_old_reader_itself(
    old: Subscriber, change: object
) -> None:
    assert change(old) is old  # type: ignore[operator]


def test_changes_are_stamped_in_whole_utc_seconds() -> None:
    left = rules.mark(reader(Status.PENDING), Status.BOUNCED, via=Source.EMAIL, ref="x", now=NOW)
    assert left is not None
    assert left.left_at == left.updated_at == NOW.replace(microsecond=0)
    later = NOW.astimezone(UTC) + timedelta(hours=1)
    back = rules.confirm(left, left.email, via=Source.WEB, ref="=cmd()", now=later)
    assert (back.status, back.left_at, back.ref) == (Status.ACTIVE, None, "'=cmd()")
    assert back.subscribed_at == back.confirmed_at == later.replace(microsecond=0)


@pytest.mark.parametrize("status", sorted(rules.LEFT))
def test_a_request_leaves_a_reader_who_left_as_they_left(status: Status) -> None:
    """Anyone can ask in a reader's name: their leaving record stays until they confirm."""
    left = rules.mark(reader(Status.ACTIVE), Status.BOUNCED, via=Source.EMAIL, ref="x", now=NOW)
    assert left is not None
    left = left.model_copy(update={"status": status})
    assert rules.request(left, left.email, name="Eve", via=Source.EMAIL, ref="f", now=NOW) is left
    back = rules.confirm(left, left.email, via=Source.EMAIL, ref="<c@x>", now=NOW + DAY)
    assert (back.status, back.subscribed_via, back.confirmed_via) == (
        Status.ACTIVE,
        Source.EMAIL,
        Source.EMAIL,
    )
    assert (back.left_at, back.left_via) == (None, None)


def test_reply_key_folds_case_plus_parts_and_gmail_dots() -> None:
    assert {
        rules.reply_key(address)
        for address in ("victim@x.org", "Victim+1@X.org", "VICTIM+a+b@x.org", " victim+@x.org")
    } == {"victim@x.org"}
    assert rules.reply_key("v.i.ctim+z@GMail.com") == "victim@gmail.com"
    assert rules.reply_key("v.ictim@x.org") == "v.ictim@x.org"  # dots matter elsewhere
    assert rules.reply_key("+tag@x.org") == "+tag@x.org"


def test_only_requests_by_mail_or_web_expire() -> None:
    old = NOW - 8 * DAY
    asked = Subscriber(
        email="jo@example.com",
        status=Status.PENDING,
        subscribed_at=old,
        subscribed_via=Source.EMAIL,
        updated_at=old,
    )
    assert rules.expired(asked, NOW - 7 * DAY)
    assert not rules.expired(asked, old)  # renewed since
    assert not rules.expired(asked.model_copy(update={"subscribed_via": Source.IMPORT}), NOW)
    assert not rules.expired(asked.model_copy(update={"status": Status.ACTIVE}), NOW)


@pytest.mark.parametrize("status", list(Status))
def test_only_a_reader_still_on_the_list_is_staying(status: Status) -> None:
    assert rules.staying(reader(status)) is (status in (Status.ACTIVE, Status.PENDING))
    assert rules.staying(None) is False


# --- one reader per mailbox -------------------------------------------------------------------

DAY = timedelta(days=1)


def variant(email: str, status: Status, joined: int, **extra: object) -> Subscriber:
    """A row of a version 1 list: ``joined`` days after the start."""
    at = NOW.replace(microsecond=0) + joined * DAY
    values: dict[str, object] = {
        "email": email,
        "status": status,
        "subscribed_at": at,
        "subscribed_via": Source.IMPORT,
        "updated_at": at,
    }
    if status is Status.ACTIVE:
        values.update(confirmed_at=at, confirmed_via=Source.IMPORT)
    if status in rules.LEFT:
        values.update(left_at=at + DAY, left_via=Source.WEB, updated_at=at + DAY)
    values.update(extra)
    return Subscriber.model_validate(values)


def test_mailbox_key_lowercases_the_whole_address() -> None:
    assert rules.mailbox_key("Carol@example.org") == rules.mailbox_key("cAROL@example.org")
    assert rules.mailbox_key("Carol@example.org") == "carol@example.org"


def test_a_reader_who_left_in_any_spelling_stays_left() -> None:
    first = variant("Carol@example.org", Status.ACTIVE, 0, name="Carol")
    left = variant("carol@example.org", Status.UNSUBSCRIBED, 3, ref="web:1")
    for rows in ([first, left], [left, first]):
        merged = rules.merge_variants(rows)
        assert merged.email == "Carol@example.org"  # the earliest subscribed spelling
        assert merged.status is Status.UNSUBSCRIBED
        assert (merged.left_at, merged.left_via, merged.ref) == (left.left_at, Source.WEB, "web:1")
        assert merged.name == "Carol"  # the record had none: the first one given


def test_the_strongest_way_of_leaving_wins() -> None:
    rows = [
        variant("dan@example.org", Status.BOUNCED, 0),
        variant("Dan@example.org", Status.COMPLAINED, 5),
        variant("DAN@example.org", Status.UNSUBSCRIBED, 9),
    ]
    merged = rules.merge_variants(rows)
    assert (merged.email, merged.status) == ("dan@example.org", Status.COMPLAINED)
    assert merged.left_at == rows[1].left_at


def test_a_confirmed_spelling_makes_the_reader_active_with_its_whole_record() -> None:
    pending = variant("Eve@example.org", Status.PENDING, 0, name="Eve")
    active = variant("eve@example.org", Status.ACTIVE, 2, ref="<m@x>")
    merged = rules.merge_variants([active, pending])
    assert merged.status is Status.ACTIVE
    assert merged.email == "Eve@example.org"
    assert (merged.confirmed_at, merged.confirmed_via, merged.ref) == (
        active.confirmed_at,
        Source.IMPORT,
        "<m@x>",
    )
    assert merged.subscribed_at == active.subscribed_at  # never pieced together
    assert merged.name == "Eve"


def test_among_equals_the_fuller_record_is_kept() -> None:
    bare = variant("Fay@example.org", Status.ACTIVE, 0)
    full = variant("fay@example.org", Status.ACTIVE, 1, name="Fay", ref="list.csv")
    merged = rules.merge_variants([full, bare])
    assert (merged.email, merged.name, merged.ref) == ("Fay@example.org", "Fay", "list.csv")
    assert merged.subscribed_at == full.subscribed_at
    with pytest.raises(ValueError, match="at least one"):
        rules.merge_variants([])
