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
    back = rules.request(left, left.email, name="", via=Source.WEB, ref="=cmd()", now=later)
    assert (back.status, back.left_at, back.ref) == (Status.PENDING, None, "'=cmd()")


@pytest.mark.parametrize("status", list(Status))
def test_only_a_reader_still_on_the_list_is_staying(status: Status) -> None:
    assert rules.staying(reader(status)) is (status in (Status.ACTIVE, Status.PENDING))
    assert rules.staying(None) is False
