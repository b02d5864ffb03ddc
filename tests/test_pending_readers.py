"""Readers an editor added as pending (an import, ``subscribers add``) are asked to confirm by the
real commands (``inbox process``, ``run``), reminded once after three days, and erased when they
never confirm; under the limits of every automatic reply, mail through the SendGrid peer."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from peers.sendgrid_server import Delivery, sendgrid_server

from crusader_mail.models import ConsentAction, Source, Status
from tests.support.installation import Mail, box

__all__ = ["box", "sendgrid_server"]

AMY, BEN, CAL = "amy@reader.example", "ben@reader.example", "cal@reader.example"
ASKED = "Please confirm your subscription to Biz Crusader"
REMINDED = "Still interested in Biz Crusader?"


def import_pending(box: Mail, *emails: str) -> None:
    readers = box.folder / "readers.csv"
    readers.write_text("email\n" + "".join(f"{email}\n" for email in emails))
    box.command("subscribers", "import", "--status", "pending", str(readers))


def subjects(box: Mail, email: str) -> list[str]:
    return [delivery.subject for delivery in box.mails_to(email)]


def token_of(delivery: Delivery) -> str:
    text = "\n".join(value for _type, value in delivery.content)
    match = re.search(r"confirm ([a-z2-7]{29})", text)
    assert match, text
    return match.group(1)


def body(delivery: Delivery) -> str:
    return " ".join("\n".join(value for _type, value in delivery.content).split())


def test_readers_added_as_pending_are_asked_once_reminded_once_then_erased(box: Mail) -> None:
    import_pending(box, AMY, BEN)
    box.command("subscribers", "add", "--status", "pending", CAL)
    box.letter("dan@reader.example", to="news+subscribe@bizcrusader.example")  # asks himself
    report = box.process()
    assert report["pending"] == {"asked": 3, "reminded": 0, "expired": 0, "held": 0}
    for email in (AMY, BEN, CAL):
        [asked] = box.mails_to(email)
        assert asked.subject == ASKED
        assert f"{email} is on the list for Biz Crusader" in body(asked)
        assert "we remind you once in a few days" in body(asked)
        assert box.status(email) is Status.PENDING
    history = list(box.store().roster.history(AMY))
    assert [(e.action, e.via, e.ref) for e in history] == [
        (ConsentAction.ADD, Source.IMPORT, "readers.csv"),
        (ConsentAction.REQUEST, Source.IMPORT, "confirmation-mail"),
    ]
    first_link = token_of(box.mails_to(AMY)[0])

    box.clock.advance(timedelta(days=2, hours=23))
    assert "pending" not in box.process()  # nothing to do: not in the report
    box.clock.advance(timedelta(hours=1))  # three days after they were asked
    assert box.process()["pending"]["reminded"] == 3
    for email in (AMY, BEN, CAL):
        assert subjects(box, email) == [ASKED, REMINDED]
    reminder = box.mails_to(BEN)[1]
    assert "your address leaves the list on 30 November 2026" in body(reminder)
    assert subjects(box, "dan@reader.example") == [ASKED]  # his own request: no reminder
    assert list(box.store().roster.history(AMY)) == history  # a reminder changes no reader

    box.clock.advance(timedelta(days=1))
    box.letter(AMY, to=f"news+confirm-{first_link}@bizcrusader.example")  # the first link
    box.letter(BEN, to=f"news+confirm-{token_of(reminder)}@bizcrusader.example")
    assert "pending" not in box.process()  # never reminded twice
    assert (box.status(AMY), box.status(BEN)) == (Status.ACTIVE, Status.ACTIVE)
    assert subjects(box, AMY) == [ASKED, REMINDED, "Welcome to Biz Crusader"]

    box.clock.advance(timedelta(days=3, minutes=1))  # seven days after CAL was asked
    report = box.process()
    assert report["pending"]["expired"] == 1
    assert report["expired"] == 1  # dan's own request, as ever
    assert box.status(CAL) is None
    assert list(box.store().roster.history(CAL)) == []
    assert subjects(box, CAL) == [ASKED, REMINDED]


def test_a_large_import_is_asked_over_hours_leaving_room_for_people_who_write_in(
    box: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRUSADER_MAIL_NEWSLETTER__REPLIES_PER_HOUR", "4")
    added = [f"r{n}@reader.example" for n in range(5)]
    import_pending(box, *added)
    box.letter("dan@reader.example", to="news+subscribe@bizcrusader.example")
    report = box.process()
    assert report["pending"] == {"asked": 2, "reminded": 0, "expired": 0, "held": 3}
    assert subjects(box, "dan@reader.example") == [ASKED]  # the room kept for him
    box.clock.advance(timedelta(minutes=30))
    assert box.process()["pending"] == {"asked": 0, "reminded": 0, "expired": 0, "held": 3}
    box.clock.advance(timedelta(minutes=31))
    assert box.process()["pending"] == {"asked": 2, "reminded": 0, "expired": 0, "held": 1}
    box.clock.advance(timedelta(minutes=61))
    assert box.process()["pending"]["asked"] == 1
    assert sorted(len(box.mails_to(email)) for email in added) == [1] * 5


def test_the_weekly_run_asks_them_and_sends_the_confirmations_at_once(box: Mail) -> None:
    import_pending(box, AMY)
    box.command("run")
    assert subjects(box, AMY) == [ASKED]
    box.clock.advance(timedelta(days=3))
    report = json.loads(box.command("run", "--json"))
    assert report["pending"] == {"asked": 0, "reminded": 1, "expired": 0, "held": 0}
    assert subjects(box, AMY) == [ASKED, REMINDED]
    box.clock.advance(timedelta(days=4, minutes=1))
    box.command("run")
    assert box.status(AMY) is None


def test_a_reader_added_as_pending_who_asked_on_their_own_is_not_asked_again(
    box: Mail,
) -> None:
    import_pending(box, AMY)
    with box.store().roster.edit() as roster:
        roster.request(AMY, via=Source.WEB, ref="web:1")  # their own confirmation went out then
    box.clock.advance(timedelta(days=1))
    assert "pending" not in box.process()
    assert box.mails_to(AMY) == []
