"""Consent by mail that cannot be forged: the real ``inbox process`` over mail files (and IMAP),
its replies through the SendGrid peer on 127.0.0.1.

- bounces and complaints change a reader only when they return our signed proof (the
  ``X-Crusader-Mail-Id`` of a message we sent that reader); a forged corpus marks nobody;
- an ``Authentication-Results`` header proves a sender only when it is the topmost one, from
  our host, above no hop of someone else's;
- replies are limited per mailbox (``victim+1@``, ``Victim@``) and per hour for everyone;
  requests never confirmed expire;
- a confirmation comes from the address being confirmed, never from a subject we wrote;
- a reply to an issue is never a command by its subject;
- a reader who left stays left until they confirm, and the consent history keeps every change;
- a confirmation token is void once the reader changed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from peers import dovecot
from peers.sendgrid_server import Delivery, sendgrid_server

from crusader_mail.delivery.client import client_factory
from crusader_mail.inbox.classify import Kind, classify, parse
from crusader_mail.models import Source, Status
from tests.support.bounces import arf, dsn, prose, received_copy
from tests.support.inbox import FIXTURES, TRUSTED
from tests.support.installation import Mail, box
from tests.support.sending import make_issue, send_issue

__all__ = ["box", "sendgrid_server"]

FORGED = FIXTURES / "forged"
MAIL_ID_HEADER = "X-Crusader-Mail-Id"  # what every message we send carries, and a bounce returns
# every list member the forged corpus names
MEMBERS = [
    f"{name}@reader.example"
    for name in ("jane", "bob", "carol", "dave", "erin", "frank", "gus", "hal", "ivy", "kim", "lee")
]


def token_of(delivery: Delivery, purpose: str = "confirm") -> str:
    """The token a confirmation carries (in its body: older ones had it in the subject too)."""
    text = "\n".join(value for _type, value in delivery.content)
    match = re.search(rf"{purpose}[- ]([a-z2-7]{{29}})", text)
    assert match, text
    return match.group(1)


# --- 1. bounces and complaints need our proof ------------------------------------------------


def test_the_forged_corpus_marks_nobody(box: Mail) -> None:
    box.add(*MEMBERS)
    files = sorted(FORGED.glob("*.eml"))
    assert len(files) >= 9
    settings = box.settings
    named = set()
    for path in files:  # each one is taken for a bounce or complaint naming list members
        sort = classify(parse(path.read_bytes()), settings)
        assert sort.kind in (Kind.BOUNCE, Kind.COMPLAINT), path.name
        assert sort.hard, path.name
        named |= {address.lower() for address in sort.hard}
    assert named <= set(MEMBERS)
    report = box.process(FORGED)
    assert report["processed"] == len(files)
    for action in report["actions"]:
        assert action["command"] in ("bounce", "complaint")
        assert action["result"].startswith("no reader on the list changed; unverified: ")
        assert "reader.example" not in action["result"].replace("•••@reader.example", "")
    assert set(box.statuses().values()) == {Status.ACTIVE}
    assert box.sendgrid.deliveries == []


def test_one_forged_dsn_of_400_kb_naming_5000_readers_marks_nobody(box: Mail) -> None:
    readers = [f"reader{n:05d}@example.com" for n in range(5000)]
    listing = box.folder / "readers.csv"
    listing.write_text("email\n" + "\n".join(readers) + "\n")
    box.command("subscribers", "import", str(listing))
    forged_copy = b"From: Biz Crusader <news@bizcrusader.example>\nTo: x@example.com\n\nHi\n"
    data = dsn(forged_copy, dict.fromkeys(readers, "5.1.1"), message_id="<big@forger.example>")
    assert len(data) > 400_000
    report = box.process(box.write(data))
    [action] = report["actions"]
    assert action["command"] == "bounce"
    assert action["result"] == (
        "no reader on the list changed; unverified: 5000 address(es) named without proof "
        "that it answers our mail, unchanged"
    )
    assert box.store().roster.counts()[Status.ACTIVE] == 5000


def test_bounces_and_complaints_of_an_issue_we_sent_mark_that_reader_only(
    box: Mail, tmp_path: Path
) -> None:
    readers = ["ann@reader.example", "ben@reader.example", "cat@reader.example"]
    victims = ["vic@reader.example", "val@reader.example"]
    box.add(*readers, *victims)
    settings = box.settings
    # a dry run writes what the first reader would get; a real send goes to the SendGrid peer
    send_issue(make_issue(), settings, box.clock, None, dry_run=True)
    first = (settings.outbox_dir / "first-reader.eml").read_bytes()
    assert b"X-Crusader-Mail-Id: 2026-11-23-1a2b3c4d." in first
    assert b"To: ann@reader.example" in first
    send_issue(make_issue(), settings, box.clock, client_factory(settings), dry_run=False)
    [ben_copy] = [received_copy(d) for d in box.mails_to("ben@reader.example")]
    [cat_copy] = [received_copy(d) for d in box.mails_to("cat@reader.example")]
    # Ann's copy bounces, naming victims too; Ben complains (the ISP redacts him); Cat's
    # server writes prose with her copy quoted below
    failed = {"ann@reader.example": "5.1.1", **dict.fromkeys(victims, "5.1.1")}
    box.write(dsn(first, failed, message_id="<b1@mx.reader.example>"))
    box.write(arf(ben_copy, None, message_id="<c1@isp.example>"))
    box.write(prose(cat_copy, ["cat@reader.example", "vic@reader.example"], message_id="<p1@mx>"))
    report = box.process()
    assert [a["result"] for a in report["actions"]] == [
        "bounced: a•••@reader.example; unverified: 2 address(es) named without proof that it "
        "answers our mail, unchanged",
        "complained: b•••@reader.example",
        "bounced: c•••@reader.example; unverified: 1 address(es) named without proof that it "
        "answers our mail, unchanged",
    ]
    assert box.statuses() == {
        "ann@reader.example": Status.BOUNCED,
        "ben@reader.example": Status.COMPLAINED,
        "cat@reader.example": Status.BOUNCED,
        "val@reader.example": Status.ACTIVE,
        "vic@reader.example": Status.ACTIVE,
    }
    ann = box.store().roster.get("ann@reader.example")
    assert ann is not None
    assert (ann.left_via, ann.ref) == (Source.EMAIL, "<b1@mx.reader.example>")


def test_a_reader_returning_their_own_proof_marks_only_themselves(box: Mail) -> None:
    box.add("eve@attacker.example", "vic@reader.example")
    settings = box.settings
    send_issue(make_issue(), settings, box.clock, client_factory(settings), dry_run=False)
    [eve_copy] = [received_copy(d) for d in box.mails_to("eve@attacker.example")]
    # Eve holds a real proof, her own, and names her victim as the one who failed
    box.write(dsn(eve_copy, {"vic@reader.example": "5.1.1"}, message_id="<e1@attacker>"))
    box.process()
    assert box.statuses() == {
        "eve@attacker.example": Status.BOUNCED,  # what her proof proves: mail to her failed
        "vic@reader.example": Status.ACTIVE,
    }


def test_a_temporary_failure_with_our_proof_marks_nobody(box: Mail) -> None:
    box.add("ann@reader.example")
    settings = box.settings
    send_issue(make_issue(), settings, box.clock, None, dry_run=True)
    first = (settings.outbox_dir / "first-reader.eml").read_bytes()
    box.write(dsn(first, {"ann@reader.example": "4.2.2"}, message_id="<d1@mx>", headers_only=True))
    report = box.process()
    assert report["actions"][0]["result"] == (
        "no reader on the list changed; 1 temporary failure(s) ignored"
    )
    assert box.status("ann@reader.example") is Status.ACTIVE


def test_a_bounced_confirmation_marks_the_pending_reader(box: Mail) -> None:
    box.letter("Nobody <typo@reader.example>", "subscribe")
    box.process()
    [confirmation] = box.mails_to("typo@reader.example")
    copy = received_copy(confirmation)
    assert b"X-Crusader-Mail-Id: confirm." in copy
    box.write(dsn(copy, {"typo@reader.example": "5.1.1"}, message_id="<t1@mx>", headers_only=True))
    box.process()
    assert box.status("typo@reader.example") is Status.BOUNCED


CORPUS_SIGNALS = {  # the real bounces and complaints, and whom each names
    "python_cpython__Lib_test_test_email_data_msg_16.eml": "jangel1@cougar.noc.ucla.edu",
    "sisimai_set-of-emails__maildir_bsd_arf-01.eml": "redacted@example.net",
    "sisimai_set-of-emails__maildir_bsd_lhost-amazonses-01.eml": "shironeko@example.co.jp",
    "sisimai_set-of-emails__maildir_bsd_lhost-exim-01.eml": "kijitora@example.ed.jp",
    "sisimai_set-of-emails__maildir_bsd_lhost-gmail-01.eml": "userunknown@example.jp",
    "sisimai_set-of-emails__maildir_bsd_lhost-postfix-01.eml": "kijitora@example.org",
    "sisimai_set-of-emails__maildir_bsd_lhost-sendgrid-01.eml": "kijitora@example.jp",
    "sisimai_set-of-emails__maildir_bsd_rfc3464-01.eml": "userunknown@bouncehammer.jp",
}


@pytest.mark.corpus
def test_the_real_corpus_is_unverified_and_marks_once_it_returns_our_proof(
    box: Mail, corpus: Path
) -> None:
    """The corpus bounces answer mail of others: no proof of ours, so "unverified". The very
    same reports, had they returned the copy of the issue we sent their reader (the proof
    header of that copy put among the returned message's headers), mark that reader."""
    readers = list(CORPUS_SIGNALS.values())
    box.add(*readers)
    unproven = box.process(*(corpus / "mail" / name for name in CORPUS_SIGNALS))
    assert all("unverified: " in a["result"] for a in unproven["actions"])
    assert set(box.statuses().values()) == {Status.ACTIVE}
    settings = box.settings
    send_issue(make_issue(), settings, box.clock, client_factory(settings), dry_run=False)
    for name, reader in CORPUS_SIGNALS.items():
        [sent] = box.mails_to(reader)
        data = (corpus / "mail" / name).read_bytes()
        at = data.rfind(b"\nTo:")  # the returned copy's To (the last To: header in the file)
        assert at > 0, name
        proof = f"{MAIL_ID_HEADER}: {sent.headers[MAIL_ID_HEADER]}\n".encode()
        data = data[: at + 1] + proof + data[at + 1 :]
        data = re.sub(rb"(?im)^(message-id:\s*<)", rb"\1proven-", data, count=1)
        box.write(data)
    proven = box.process()
    assert [a["result"].split(":")[0] for a in proven["actions"]] == [
        "complained" if "arf" in name else "bounced" for name in CORPUS_SIGNALS
    ]
    assert box.store().roster.counts()[Status.ACTIVE] == 0


@pytest.fixture
def imap(box: Mail) -> Iterator[dovecot.Dovecot]:
    if not dovecot.available() and not os.environ.get("CI"):
        pytest.skip("dovecot is not installed (make services)")
    server = dovecot.start_dovecot()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.imap
def test_over_imap_the_forged_corpus_marks_nobody_and_a_real_bounce_does(
    box: Mail, imap: dovecot.Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imaplib

    box.add(*MEMBERS)
    settings = box.settings
    send_issue(make_issue(), settings, box.clock, client_factory(settings), dry_run=False)
    [jane_copy] = [received_copy(d) for d in box.mails_to("jane@reader.example")]
    real = dsn(jane_copy, {"jane@reader.example": "5.1.1"}, message_id="<real@mx.reader.example>")
    with imaplib.IMAP4_SSL(imap.host, imap.port, ssl_context=imap.ssl_context()) as client:
        client.login(imap.user, imap.password)
        for path in sorted(FORGED.glob("*.eml")):
            assert client.append("INBOX", None, None, path.read_bytes())[0] == "OK"
        assert client.append("INBOX", None, None, real)[0] == "OK"
        client.logout()
    box.config.write_text(
        box.config.read_text()
        + f'[imap]\nhost = "{imap.host}"\nport = {imap.port}\nuser = "{imap.user}"\n'
        f'ca_file = "{imap.ca_file}"\n'
    )
    monkeypatch.setenv("CRUSADER_MAIL_IMAP__PASSWORD", imap.password)
    report = json.loads(box.command("inbox", "process", "--imap", "--json"))
    assert report["processed"] == len(list(FORGED.glob("*.eml"))) + 1
    assert [a["result"].split(";")[0] for a in report["actions"]][
        -1
    ] == "bounced: j•••@reader.example"
    assert {s for e, s in box.statuses().items() if e != "jane@reader.example"} == {Status.ACTIVE}
    assert box.status("jane@reader.example") is Status.BOUNCED


# --- 2. Authentication-Results: the topmost one, from our host --------------------------------


def test_authentication_results_prove_a_sender_only_from_the_top_and_our_host(box: Mail) -> None:
    box.add("carol@reader.example", "dan@reader.example", "ed@reader.example")

    def unsubscribe(name: str, *head: str) -> None:
        ours = f"{TRUSTED}; dkim=pass header.d=reader.example; spf=pass smtp.mailfrom={name}@"
        lines = [line.replace("OURS", ours + "reader.example") for line in head]
        lines += [f"From: <{name}@reader.example>", "To: news@bizcrusader.example"]
        lines += ["Subject: unsubscribe", f"Message-ID: <{name}-1@reader.example>", "", "stop"]
        box.write("\n".join(lines).encode())

    # a header from someone else's host on top: ours below it came with the message
    unsubscribe(
        "carol",
        "Authentication-Results: mx.elsewhere.example; dkim=none",
        "Authentication-Results: OURS",
    )
    # a header of our host's name, below a hop of someone else's
    unsubscribe(
        "dan",
        "Received: from relay.elsewhere.example by relay.elsewhere.example; Mon, 23 Nov 2026",
        "Authentication-Results: OURS",
    )
    # ours, on top, under our own hops only: proves Ed
    unsubscribe(
        "ed",
        "Received: from mx.bizcrusader.example by imap.bizcrusader.example; Mon, 23 Nov 2026",
        "Authentication-Results: OURS",
        "Received: from mail.reader.example by mx.bizcrusader.example; Mon, 23 Nov 2026",
    )
    report = box.process()
    assert [a["result"] for a in report["actions"]] == [
        "c•••@reader.example not authenticated; asked to confirm leaving (reply queued)",
        "d•••@reader.example not authenticated; asked to confirm leaving (reply queued)",
        "e•••@reader.example unsubscribed; goodbye queued",
    ]
    assert box.statuses() == {
        "carol@reader.example": Status.ACTIVE,
        "dan@reader.example": Status.ACTIVE,
        "ed@reader.example": Status.UNSUBSCRIBED,
    }


# --- 3. mail bombing --------------------------------------------------------------------------


def test_one_mailbox_gets_one_confirmation_whatever_the_spelling(box: Mail) -> None:
    spellings = [f"victim+{n}@target.example" for n in range(20)]
    spellings += ["Victim@target.example", "VICTIM+x@Target.example", "victim@target.example"]
    for address in spellings:
        box.letter(address, "subscribe")
    report = box.process()
    assert report["processed"] == 23
    confirmations = [d for d in box.sendgrid.deliveries if d.subject.startswith("Please confirm")]
    assert [d.to for d in confirmations] == [("victim+0@target.example",)]
    assert list(box.statuses()) == ["victim+0@target.example"]  # one pending row
    assert sum("nothing changed" in a["result"] for a in report["actions"]) == 22


def test_automatic_replies_are_capped_per_hour_for_everyone(box: Mail) -> None:
    for n in range(70):
        box.letter(f"person{n}@target{n}.example", "subscribe")
    report = box.process()
    capped = [a for a in report["actions"] if "60 automatic replies went out" in a["result"]]
    assert len(capped) == 10
    assert len(box.sendgrid.deliveries) == 60
    assert len(box.statuses()) == 60  # a request whose confirmation cannot go changes nothing
    box.clock.advance(timedelta(minutes=61))
    box.letter("late@target.example", "subscribe")
    box.process()
    assert len(box.sendgrid.deliveries) == 61


def test_requests_never_confirmed_expire_in_inbox_process_and_run(box: Mail) -> None:
    box.add("added@reader.example", status=Status.PENDING)  # the editor's: asked once, first
    box.clock.advance(timedelta(days=1))
    box.letter("first@target.example", "subscribe")
    report = box.process()
    assert report["pending"] == {"asked": 1, "reminded": 0, "expired": 0, "held": 0}
    box.clock.advance(timedelta(days=5))
    box.letter("second@target.example", "subscribe")
    box.process()
    box.clock.advance(timedelta(days=2, minutes=1))  # first: 7 days; the added reader: 8
    report = box.process(FIXTURES / "other.eml")
    assert report["expired"] == 1
    assert report["pending"]["expired"] == 1
    assert set(box.statuses()) == {"second@target.example"}
    assert list(box.store().roster.history("first@target.example")) == []
    assert list(box.store().roster.history("added@reader.example")) == []
    box.clock.advance(timedelta(days=5))
    box.command("run")  # the weekly job expires them too
    assert box.statuses() == {}


# --- 4. confirmation by the address being confirmed, never by our subject ---------------------


def test_an_echoed_confirmation_subject_confirms_nothing(box: Mail) -> None:
    """A ticket system at the victim's address acknowledges our confirmation, echoing its
    subject (the token in it, as it used to be) without Auto-Submitted."""
    box.letter("Forger <helpdesk@company.example>", "subscribe")
    box.process()
    [confirmation] = box.mails_to("helpdesk@company.example")
    token = token_of(confirmation)
    box.letter(
        "Helpdesk <helpdesk@company.example>",
        f"[Ticket #4411] Re: Please confirm your subscription to Biz Crusader [confirm {token}]",
        "Thank you for contacting us. Your ticket #4411 has been received.\n",
    )
    report = box.process()
    assert report["actions"][0]["command"] == "none"
    assert box.status("helpdesk@company.example") is Status.PENDING
    assert len(box.mails_to("helpdesk@company.example")) == 1


def test_a_token_from_another_mailbox_confirms_nothing_by_mail(box: Mail) -> None:
    box.letter("victim@target.example", "subscribe")
    box.process()
    token = token_of(box.mails_to("victim@target.example")[0])
    # the victim's mail goes on to a ticket system that answers from its own address
    box.letter("tickets@elsewhere.example", f"confirm {token}", f"confirm {token}\n")
    box.letter("tickets@elsewhere.example", to=f"news+confirm-{token}@bizcrusader.example")
    report = box.process()
    assert all("nothing changed" in a["result"] for a in report["actions"])
    assert box.status("victim@target.example") is Status.PENDING
    box.letter("Victim <VICTIM@target.example>", to=f"news+confirm-{token}@bizcrusader.example")
    box.process()
    assert box.status("victim@target.example") is Status.ACTIVE


def test_a_reply_to_our_help_mail_is_not_a_command(box: Mail) -> None:
    box.letter("Pat <pat@reader.example>", to="news+whatever@bizcrusader.example")
    box.process()
    [help_mail] = box.mails_to("pat@reader.example")
    box.clock.advance(timedelta(days=2))
    box.letter(
        "Pat <pat@reader.example>",
        f"Re: {help_mail.subject}",
        "Thanks, that explains it.\n",
        headers={"In-Reply-To": "<help-1@bizcrusader.example>"},
    )
    report = box.process()
    assert report["actions"][0]["command"] == "none"
    assert box.status("pat@reader.example") is None
    assert len(box.mails_to("pat@reader.example")) == 1


# --- 5. a reply to an issue is never a command by its subject ---------------------------------


def test_replying_to_an_issue_does_not_unsubscribe(box: Mail) -> None:
    box.add("fan@reader.example", "done@reader.example")
    ours = f"{TRUSTED}; dkim=pass header.d=reader.example"
    for sender, subject, body in [
        ("Fan <fan@reader.example>", "Re: Stop Discounting Your Services", "Great post!\n"),
        ("Fan <fan@reader.example>", "Re: Leave", "Loved this one about leaving a client.\n"),
        ("Done <done@reader.example>", "Re: Stop Discounting Your Services", "unsubscribe\n"),
    ]:
        box.letter(
            sender,
            subject,
            body,
            headers={
                "Authentication-Results": ours,
                "In-Reply-To": "<issue-2026-11-23@sendgrid.example>",
            },
        )
    report = box.process()
    assert [a["command"] for a in report["actions"]] == ["none", "none", "unsubscribe"]
    assert box.status("fan@reader.example") is Status.ACTIVE
    assert box.status("done@reader.example") is Status.UNSUBSCRIBED  # its body said so
    assert box.mails_to("fan@reader.example") == []


# --- 6. a reader who left stays left until they confirm; the history keeps everything ---------


def test_a_forged_subscribe_leaves_a_reader_who_left_as_they_left(box: Mail) -> None:
    box.add("gone@reader.example")
    box.clock.advance(timedelta(days=1))
    box.command("subscribers", "remove", "gone@reader.example")
    left = box.store().roster.get("gone@reader.example")
    assert left is not None
    box.clock.advance(timedelta(days=1))
    box.letter("Forger <gone@reader.example>", "subscribe")
    report = box.process()
    assert "is unsubscribed, until they confirm" in report["actions"][0]["result"]
    assert box.store().roster.get("gone@reader.example") == left  # leaving record and all
    [confirmation] = box.mails_to("gone@reader.example")
    # they do want to come back: their own confirmation makes them active again
    box.clock.advance(timedelta(hours=1))
    token = token_of(confirmation)
    box.letter("gone@reader.example", to=f"news+confirm-{token}@bizcrusader.example")
    box.process()
    back = box.store().roster.get("gone@reader.example")
    assert back is not None
    assert (back.status, back.left_at, back.subscribed_at) == (Status.ACTIVE, None, box.clock.now())
    exported = box.command("subscribers", "export", "--history")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["action"], r["status"], r["via"]) for r in rows] == [
        ("add", "active", "cli"),
        ("unsubscribe", "unsubscribed", "cli"),
        ("confirm", "active", "email"),
    ]


# --- 7. a confirmation token is spent by its use and void once the reader changed -------------


def test_an_old_confirmation_token_cannot_bring_back_a_reader_who_left(box: Mail) -> None:
    box.letter("Sam <sam@reader.example>", "subscribe")
    box.process()
    first = token_of(box.mails_to("sam@reader.example")[0])
    box.letter("sam@reader.example", to=f"news+confirm-{first}@bizcrusader.example")
    box.process()
    assert box.status("sam@reader.example") is Status.ACTIVE
    box.clock.advance(timedelta(days=1))
    box.command("subscribers", "remove", "sam@reader.example")
    box.clock.advance(timedelta(days=1, minutes=1))
    box.letter("Forger <sam@reader.example>", "subscribe")  # a fresh confirmation goes to Sam
    box.letter("sam@reader.example", to=f"news+confirm-{first}@bizcrusader.example")
    report = box.process()
    assert report["actions"][1]["result"] == "token not valid (or no longer): nothing changed"
    assert box.status("sam@reader.example") is Status.UNSUBSCRIBED
    again = token_of(box.mails_to("sam@reader.example")[-1])
    assert again != first
    box.letter("sam@reader.example", to=f"news+confirm-{again}@bizcrusader.example")
    box.process()
    assert box.status("sam@reader.example") is Status.ACTIVE
