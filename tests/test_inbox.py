"""Commands by email: double opt-in, unsubscribing, not-commands, hostile input, once only."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.mailer import RecordingMailer
from crusader_mail.errors import SendError
from crusader_mail.inbox.commands import parse_words
from crusader_mail.inbox.sources import RawMessage, read_paths
from crusader_mail.models import OutgoingMessage, Source, Status
from crusader_mail.storage.files.subscribers import SubscriberList
from crusader_mail.subscriptions.outbox import OutboxReport
from crusader_mail.subscriptions.service import reader_state
from crusader_mail.util.tokens import MAIL_ID_HEADER, Purpose
from tests.support.inbox import (
    FIXTURES,
    Inbox,
    fixture,
    mail,
    make_ctx,
    make_settings,
    proof,
    returning,
    run,
)

JANE = "jane@reader.example"


@pytest.fixture
def ctx(clean_env: Path, tmp_path: Path, clock: FixedClock) -> Inbox:
    return make_ctx(make_settings(tmp_path), clock)


def sent(ctx: Inbox) -> list[OutgoingMessage]:
    mailer = ctx.mailer
    assert isinstance(mailer, RecordingMailer)
    return mailer.sent


def status(ctx: Inbox, email: str) -> Status | None:
    found = ctx.store.roster.get(email)
    return found.status if found else None


def token_in(message: OutgoingMessage, purpose: str) -> str:
    """The token of a confirm / leave reply: the line it asks a reply to start with."""
    match = re.search(rf"^  {purpose} ([a-z2-7]{{29}})$", message.text, re.MULTILINE)
    assert match, message.text
    assert match.group(1) not in message.subject  # a subject we wrote never carries it
    return match.group(1)


def subscribe_and_get_token(ctx: Inbox, email: str = JANE) -> str:
    run(ctx, [mail(sender=email, to="news+subscribe@bizcrusader.example")])
    return token_in(sent(ctx)[-1], "confirm")


# --- double opt-in --------------------------------------------------------------------------


def test_subscribe_by_address_makes_pending_and_sends_one_confirmation(ctx: Inbox) -> None:
    report = run(ctx, [fixture("subscribe-by-address.eml")])
    reader = ctx.store.roster.get(JANE)
    assert reader is not None
    assert reader.status is Status.PENDING
    assert reader.subscribed_via is Source.EMAIL
    assert reader.ref == "<subscribe-address-1@reader.example>"
    assert reader.name == "Jane Reader"
    [confirmation] = sent(ctx)
    assert confirmation.to_email == JANE
    assert confirmation.subject == "Please confirm your subscription to Biz Crusader"
    assert confirmation.headers["Auto-Submitted"] == "auto-replied"
    assert confirmation.headers["List-Id"] == ctx.settings.list_id
    assert confirmation.headers[MAIL_ID_HEADER] == proof(JANE, "confirm")
    token = token_in(confirmation, "confirm")
    assert f"news+confirm-{token}@bizcrusader.example" in confirmation.text
    assert f"https://mail.bizcrusader.example/confirm?token={token}" in confirmation.text
    state = reader_state(reader)
    assert ctx.signer.matches(Purpose.CONFIRM, token, JANE, ctx.clock.now(), 7, state)
    assert not ctx.signer.matches(Purpose.CONFIRM, token, JANE, ctx.clock.now(), 7)
    [action] = report.actions
    assert action.command == "subscribe"
    assert JANE not in action.result
    assert "j•••@reader.example pending" in action.result


def test_subscribe_by_words_in_subject(ctx: Inbox) -> None:
    run(ctx, [fixture("subscribe-by-subject.eml")])
    assert status(ctx, "BOB@reader.example") is Status.PENDING  # the domain is normalized


def test_confirm_by_replying_from_the_address_with_the_line_asked_for(ctx: Inbox) -> None:
    token = subscribe_and_get_token(ctx)
    subject = sent(ctx)[-1].subject
    # from another address: the token alone does not confirm by mail
    elsewhere = mail(
        sender="Jane at work <jane.doe@work.example>",
        subject=f"Re: {subject}",
        body=f"confirm {token}\n",
        headers={"In-Reply-To": "<confirm-1@bizcrusader.example>"},
    )
    report = run(ctx, [elsewhere])
    assert "only its own mailbox confirms by mail" in report.actions[0].result
    assert status(ctx, JANE) is Status.PENDING
    reply = mail(
        sender="Jane <JANE@reader.example>",
        subject=f"Re: {subject}",
        body=f"Confirm {token}\n\n> Someone, probably you, asked...\n",
        headers={"In-Reply-To": "<confirm-1@bizcrusader.example>"},
    )
    report = run(ctx, [reply])
    assert status(ctx, JANE) is Status.ACTIVE
    assert status(ctx, "jane.doe@work.example") is None
    welcome = sent(ctx)[-1]
    assert welcome.to_email == JANE
    assert welcome.subject == "Welcome to Biz Crusader"
    assert welcome.headers["List-Unsubscribe"].startswith("<mailto:news+unsubscribe-")
    assert report.actions[0].command == "confirm"


def test_confirm_by_mailing_the_confirm_address(ctx: Inbox) -> None:
    token = subscribe_and_get_token(ctx)
    run(ctx, [mail(sender=JANE, to=f"news+confirm-{token.upper()}@BizCrusader.example")])
    reader = ctx.store.roster.get(JANE)
    assert reader is not None
    assert reader.status is Status.ACTIVE
    assert reader.confirmed_via is Source.EMAIL


def test_one_confirmation_per_address_per_day(ctx: Inbox, clock: FixedClock) -> None:
    for number in range(3):
        run(ctx, [mail(sender=JANE, subject="subscribe", message_id=f"<s{number}@r.example>")])
    assert len(sent(ctx)) == 1
    clock.advance(timedelta(hours=24, minutes=1))
    run(ctx, [mail(sender=JANE, subject="subscribe", message_id="<s9@r.example>")])
    assert len(sent(ctx)) == 2


def test_active_reader_is_told_politely_once(ctx: Inbox) -> None:
    with ctx.store.roster.edit() as roster:
        roster.add(JANE, via=Source.CLI)
    run(ctx, [mail(sender=JANE, subject="subscribe", message_id="<a1@r>")])
    run(ctx, [mail(sender=JANE, subject="join", message_id="<a2@r>")])
    [already] = sent(ctx)
    assert already.subject == "You are already subscribed to Biz Crusader"
    assert status(ctx, JANE) is Status.ACTIVE


# --- hostile input ----------------------------------------------------------------------------


def test_forged_from_only_sends_a_confirmation_the_forger_cannot_use(ctx: Inbox) -> None:
    forged = mail(sender="victim@else.example", subject="subscribe", message_id="<f1@evil>")
    run(ctx, [forged])
    assert status(ctx, "victim@else.example") is Status.PENDING
    assert [m.to_email for m in sent(ctx)] == ["victim@else.example"]
    # the forger guesses a token: nothing happens
    guess = "a" * 29
    report = run(ctx, [mail(sender="victim@else.example", body=f"confirm {guess}")])
    assert "not valid" in report.actions[0].result
    assert status(ctx, "victim@else.example") is Status.PENDING


def test_a_token_confirms_only_the_address_it_was_made_for(ctx: Inbox) -> None:
    token_a = subscribe_and_get_token(ctx, JANE)
    subscribe_and_get_token(ctx, "bob@reader.example")
    # Bob sends Jane's token: it never confirms Bob, nor Jane from Bob's mailbox
    run(ctx, [mail(sender="bob@reader.example", body=f"confirm {token_a}")])
    assert status(ctx, "bob@reader.example") is Status.PENDING
    assert status(ctx, JANE) is Status.PENDING
    run(ctx, [mail(sender=JANE, body=f"confirm {token_a}")])
    assert status(ctx, JANE) is Status.ACTIVE
    # a token altered by one character confirms nobody
    altered = token_a[:-1] + ("a" if token_a[-1] != "a" else "b")
    report = run(ctx, [mail(sender="bob@reader.example", body=f"confirm {altered}")])
    assert "not valid" in report.actions[0].result
    # an unsubscribe token is not a confirm token
    leave = ctx.signer.make(Purpose.UNSUBSCRIBE, "bob@reader.example", ctx.clock.now())
    run(ctx, [mail(sender="bob@reader.example", to=f"news+confirm-{leave}@bizcrusader.example")])
    assert status(ctx, "bob@reader.example") is Status.PENDING


def test_expired_confirmation_changes_nothing(ctx: Inbox, clock: FixedClock) -> None:
    token = subscribe_and_get_token(ctx)
    clock.advance(timedelta(days=7, hours=23))
    report = run(ctx, [mail(sender=JANE, body=f"confirm {token}")])
    assert report.actions[0].result == "token expired: nothing changed"
    assert status(ctx, JANE) is Status.PENDING


def test_replayed_confirmation_does_not_bring_back_a_reader_who_left(ctx: Inbox) -> None:
    token = subscribe_and_get_token(ctx)
    confirm = mail(sender=JANE, body=f"confirm {token}", message_id="<c1@r>")
    run(ctx, [confirm])
    again = run(ctx, [confirm])
    assert again.actions[0].command == "duplicate"
    with ctx.store.roster.edit() as roster:
        roster.unsubscribe(JANE, via=Source.WEB)
    before = len(sent(ctx))
    report = run(ctx, [mail(sender=JANE, body=f"confirm {token}", message_id="<c2@r>")])
    assert status(ctx, JANE) is Status.UNSUBSCRIBED
    assert "nothing changed" in report.actions[0].result
    assert len(sent(ctx)) == before


def test_header_injection_through_display_names(ctx: Inbox) -> None:
    run(ctx, [fixture("header-injection.eml")])
    [reply] = sent(ctx)
    assert reply.to_email == "eve@attacker.example"
    assert reply.to_name == ""
    for name, value in reply.headers.items():
        assert not re.search(r"[\r\n]", value), name
    assert "victim" not in json.dumps(reply.model_dump())
    reader = ctx.store.roster.get("eve@attacker.example")
    assert reader is not None
    assert not re.search(r"[\r\n]", reader.name)


def test_malformed_and_two_sender_messages_are_handled(ctx: Inbox) -> None:
    report = run(ctx, [fixture("malformed.eml"), fixture("two-senders.eml")])
    assert [a.command for a in report.actions] == ["subscribe", "subscribe"]
    assert all("no valid From" in a.result for a in report.actions)
    assert sent(ctx) == []
    assert list(ctx.store.roster.iter()) == []


def test_huge_message_is_skipped_in_one_line(ctx: Inbox, tmp_path: Path) -> None:
    huge = tmp_path / "huge.eml"
    huge.write_bytes(b"Subject: subscribe\n\n" + b"x" * (ctx.max_bytes + 1))
    report = run(ctx, read_paths([huge], ctx.max_bytes))
    [action] = report.actions
    assert action.command == "skipped"
    assert "over 10 MB" in action.result
    assert sent(ctx) == []


# --- unsubscribing ----------------------------------------------------------------------------


def activate(ctx: Inbox, *emails: str) -> None:
    with ctx.store.roster.edit() as roster:
        for email in emails:
            roster.add(email, via=Source.CLI)


def test_plain_unsubscribe_asks_for_one_step_confirmation(ctx: Inbox) -> None:
    activate(ctx, "carol@reader.example")
    run(ctx, [fixture("unsubscribe-by-body.eml")])
    assert status(ctx, "carol@reader.example") is Status.ACTIVE
    [ask] = sent(ctx)
    token = token_in(ask, "unsubscribe")
    assert f"news+unsubscribe-{token}@bizcrusader.example" in ask.text
    # the reader mails the tokenized address: gone at once, with a goodbye
    run(
        ctx,
        [mail(sender="carol@reader.example", to=f"news+unsubscribe-{token}@bizcrusader.example")],
    )
    reader = ctx.store.roster.get("carol@reader.example")
    assert reader is not None
    assert reader.status is Status.UNSUBSCRIBED
    assert reader.left_via is Source.EMAIL
    goodbye = sent(ctx)[-1]
    assert goodbye.subject == "You have left Biz Crusader"
    assert "news+subscribe@bizcrusader.example" in goodbye.text  # how to come back
    assert "List-Unsubscribe" not in goodbye.headers
    # nothing more is ever sent
    count = len(sent(ctx))
    run(ctx, [mail(sender="carol@reader.example", subject="unsubscribe", message_id="<u9@r>")])
    run(
        ctx,
        [
            mail(
                sender="carol@reader.example",
                to=f"news+unsubscribe-{token}@bizcrusader.example",
                message_id="<u10@r>",
            )
        ],
    )
    assert len(sent(ctx)) == count


def test_authenticated_unsubscribe_is_immediate(ctx: Inbox) -> None:
    activate(ctx, "carol@reader.example")
    run(ctx, [fixture("unsubscribe-authenticated.eml")])
    assert status(ctx, "carol@reader.example") is Status.UNSUBSCRIBED
    assert [m.subject for m in sent(ctx)] == ["You have left Biz Crusader"]


def test_forged_authentication_results_are_not_trusted(ctx: Inbox) -> None:
    activate(ctx, "carol@reader.example")
    run(ctx, [fixture("unsubscribe-forged-auth.eml")])
    assert status(ctx, "carol@reader.example") is Status.ACTIVE
    assert sent(ctx)[0].subject.startswith("Confirm you want to leave")


def test_rejoining_after_leaving_works(ctx: Inbox) -> None:
    activate(ctx, JANE)
    leave = ctx.signer.make(Purpose.UNSUBSCRIBE, JANE, ctx.clock.now())
    run(ctx, [mail(sender=JANE, to=f"news+unsubscribe-{leave}@bizcrusader.example")])
    assert status(ctx, JANE) is Status.UNSUBSCRIBED
    token = subscribe_and_get_token(ctx)
    assert status(ctx, JANE) is Status.UNSUBSCRIBED  # until they confirm
    run(ctx, [mail(sender=JANE, to=f"news+confirm-{token}@bizcrusader.example")])
    assert status(ctx, JANE) is Status.ACTIVE


# --- not commands -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("out-of-office.eml", "auto-reply"),
        ("out-of-office-subject-only.eml", "auto-reply"),
        ("loop.eml", "loop"),
        ("other.eml", "none"),
    ],
)
def test_not_commands_change_nothing_and_get_no_reply(ctx: Inbox, name: str, command: str) -> None:
    activate(ctx, "dave@reader.example", "erin@reader.example")
    report = run(ctx, [fixture(name)])
    assert report.actions[0].command == command
    assert sent(ctx) == []
    assert status(ctx, "dave@reader.example") is Status.ACTIVE
    assert status(ctx, "erin@reader.example") is Status.ACTIVE


BOUNCES = ["dsn-hard.eml", "exim-bounce.eml", "gmail-bounce.eml", "arf-complaint.eml"]


def test_bounces_and_complaints_without_our_proof_are_unverified(ctx: Inbox) -> None:
    readers = ["jane@reader.example", "bob@reader.example", "carol@reader.example"]
    activate(ctx, *readers, "frank@reader.example")
    report = run(ctx, [fixture(name) for name in BOUNCES])
    assert [a.command for a in report.actions] == ["bounce", "bounce", "bounce", "complaint"]
    assert all("unverified: " in a.result for a in report.actions)
    assert all(a.result.startswith("no reader on the list changed") for a in report.actions)
    assert {s.status for s in ctx.store.roster.iter()} == {Status.ACTIVE}


def test_bounces_and_complaints_returning_our_proof_mark_the_reader(ctx: Inbox) -> None:
    readers = ["jane@reader.example", "bob@reader.example", "carol@reader.example"]
    activate(ctx, *readers, "frank@reader.example")
    run(ctx, [fixture("dsn-delayed.eml")])
    assert status(ctx, JANE) is Status.ACTIVE  # delays are not failures
    report = run(ctx, [returning("dsn-hard.eml", JANE, "bob@reader.example")])
    assert report.actions[0].result == (
        "bounced: j•••@reader.example; 1 temporary failure(s) ignored"
    )
    assert status(ctx, JANE) is Status.BOUNCED
    assert status(ctx, "bob@reader.example") is Status.ACTIVE  # 4.2.2 in the same report
    run(
        ctx,
        [
            returning("exim-bounce.eml", "bob@reader.example"),
            returning("gmail-bounce.eml", "frank@reader.example"),
            returning("arf-complaint.eml", "carol@reader.example"),
        ],
    )
    assert status(ctx, "bob@reader.example") is Status.BOUNCED
    assert status(ctx, "frank@reader.example") is Status.BOUNCED
    assert status(ctx, "carol@reader.example") is Status.COMPLAINED
    jane = ctx.store.roster.get(JANE)
    assert jane is not None
    assert jane.ref == "<proven-dsn-hard-1@mx.reader.example>"
    assert sent(ctx) == []


def test_every_command_and_signal_finds_the_reader_in_any_spelling(ctx: Inbox) -> None:
    activate(ctx, "Jane@reader.example", "BOB@reader.example", "Carol@Reader.example")
    activate(ctx, "Frank@reader.example")
    report = run(ctx, [mail(sender="jane@READER.example", subject="subscribe")])
    assert "is already subscribed" in report.actions[0].result
    assert [m.to_email for m in sent(ctx)] == ["Jane@reader.example"]  # as the list keeps it
    run(ctx, [fixture("unsubscribe-authenticated.eml")])  # from carol@reader.example
    assert status(ctx, "carol@reader.example") is Status.UNSUBSCRIBED
    assert sent(ctx)[-1].to_email == "Carol@reader.example"
    run(
        ctx,
        [
            returning("dsn-hard.eml", "Jane@reader.example"),
            returning("exim-bounce.eml", "BOB@reader.example"),
            returning("gmail-bounce.eml", "frank@READER.example"),
        ],
    )
    assert status(ctx, "jane@reader.example") is Status.BOUNCED
    assert status(ctx, "bob@reader.example") is Status.BOUNCED
    assert status(ctx, "frank@reader.example") is Status.BOUNCED
    assert [s.email for s in ctx.store.roster.iter()] == [
        "BOB@reader.example",
        "Carol@reader.example",
        "Frank@reader.example",
        "Jane@reader.example",
    ]


def test_help_at_most_once_a_day(ctx: Inbox, clock: FixedClock) -> None:
    for number in range(2):
        run(ctx, [mail(to="news+whatever@bizcrusader.example", message_id=f"<h{number}@r>")])
    [help_reply] = sent(ctx)
    assert help_reply.subject.startswith("How to subscribe")
    clock.advance(timedelta(days=1, seconds=1))
    run(ctx, [mail(subject="help", message_id="<h9@r>")])
    assert len(sent(ctx)) == 2


# --- once only, privacy of the state --------------------------------------------------------


def test_processing_a_mailbox_twice_changes_nothing(ctx: Inbox) -> None:
    activate(ctx, "carol@reader.example", "frank@reader.example")
    paths = [FIXTURES]
    first = run(ctx, read_paths(paths))
    list_file = SubscriberList(ctx.settings.subscribers_dir, ctx.clock).path
    before = list_file.read_bytes()
    count = len(sent(ctx))
    second = run(ctx, read_paths(paths))
    assert second.processed == first.processed
    assert {a.command for a in second.actions} <= {"duplicate", "skipped"}
    assert list_file.read_bytes() == before
    assert len(sent(ctx)) == count


def test_state_file_holds_no_address_and_no_message_id(ctx: Inbox) -> None:
    run(ctx, [fixture("subscribe-by-address.eml")])
    text = (ctx.settings.state_dir / "inbox.json").read_text()
    assert "reader.example" not in text
    assert "subscribe-address-1" not in text
    data = json.loads(text)
    assert len(data["messages"]) == 1
    assert sorted(key.partition(":")[0] for key in data["replies"]) == ["confirm", "hourly-cap"]


def test_a_reply_that_cannot_be_sent_is_kept_and_sent_later(
    clean_env: Path, tmp_path: Path, clock: FixedClock
) -> None:
    class Failing:
        def send_one(self, message: OutgoingMessage) -> None:
            raise SendError("SendGrid is down")

    ctx = make_ctx(make_settings(tmp_path), clock, Failing())
    report = run(ctx, [mail(sender=JANE, subject="subscribe", message_id="<x1@r>")])
    assert status(ctx, JANE) is Status.PENDING  # the change is stored all the same
    assert report.actions[0].result == "j•••@reader.example pending; confirmation queued"
    assert report.replies == OutboxReport(sent=0, failed=1, waiting=1)
    again = run(ctx, [mail(sender=JANE, subject="subscribe", message_id="<x2@r>")])
    assert "no confirmation" in again.actions[0].result  # the queued one counts for the day
    recording = ctx.mailer = RecordingMailer()
    run(ctx, [])
    assert recording.sent == []  # a failed reply waits a little before it is tried again
    clock.advance(timedelta(minutes=3))
    report = run(ctx, [])
    [confirmation] = recording.sent
    assert token_in(confirmation, "confirm")
    assert report.replies == OutboxReport(sent=1, failed=0, waiting=0)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("subscribe", "subscribe"),
        ("SUBSCRIBE ME", "subscribe"),
        ("Re: [Biz] Please unsubscribe me!", "unsubscribe"),
        ("Stop", "unsubscribe"),
        ("please remove me from this list", "unsubscribe"),
        ("join", "subscribe"),
        ("Leave", "unsubscribe"),
        ("Do you think I should stop calling on Fridays? It is hard to join the dots.", None),
        ("subscribe or unsubscribe?", None),
        ("Please confirm your subscription to Biz Crusader", None),
        ("You are already subscribed to Biz Crusader", None),
        ("You have left Biz Crusader", None),
        ("Nyaan", None),
        ("", None),
        # a command is the whole line, with only polite words around it
        ("Stop Discounting Your Services", None),
        ("Re: Stop Discounting Your Services", None),
        ("Re: How to subscribe to Biz Crusader or leave it", None),
        ("Leave a comment below", None),
        ("Join our webinar on pricing", None),
        ("Unsubscribe me, please.", "unsubscribe"),
        ("Fwd: [Biz] remove me from your mailing list", "unsubscribe"),
        ("confirm abcdefghijklmnopqrstuvwxyz234", "confirm"),
        ("Please confirm abcdefghijklmnopqrstuvwxyz234 now", None),
    ],
)
def test_parse_words(line: str, expected: str | None) -> None:
    found = parse_words(line)
    assert (found.command.value if found else None) == expected


def test_a_subject_never_carries_a_token() -> None:
    assert parse_words("Re: confirm abcdefghijklmnopqrstuvwxyz234", tokens=False) is None
    found = parse_words("unsubscribe", tokens=False)
    assert found is not None
    assert found.command.value == "unsubscribe"


def test_raw_message_size_defaults_to_its_length() -> None:
    assert RawMessage(b"abc", "x").size == 3
