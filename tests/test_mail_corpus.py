"""Every real message in ../shared/corpus/mail: none crashes, none is taken for a command.

What each one was taken for is checked against a table (and printed with ``-s``); the table
is what the reader of the report sees: bounce / complaint / auto-reply / other. None of the
real bounces and complaints answers mail we sent (they carry no ``X-Crusader-Mail-Id`` of
ours), so none of them may mark a reader: each is reported as unverified. The same reports
returning our proof do mark them (``tests/test_consent.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.mailer import RecordingMailer
from crusader_mail.inbox.classify import Kind, classify, parse
from crusader_mail.inbox.commands import Command
from crusader_mail.inbox.sources import read_paths
from crusader_mail.models import Source, Status
from tests.support.inbox import make_ctx, make_settings, run

pytestmark = pytest.mark.corpus
SIGNALS = (Kind.BOUNCE, Kind.COMPLAINT)

# file name (without the source prefix) -> (kind, hard-bounced or complained addresses)
EXPECTED: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "mikel_mail__error_emails_cant_parse_from.eml": (Kind.OTHER, ()),
    "mikel_mail__mime_emails_raw_email11.eml": (Kind.OTHER, ()),
    "mikel_mail__mime_emails_raw_email_encoded_stack_level_too_deep.eml": (Kind.OTHER, ()),
    "mikel_mail__multi_charset_japanese.eml": (Kind.OTHER, ()),
    "mikel_mail__multi_charset_japanese_iso_2022.eml": (Kind.OTHER, ()),
    "mikel_mail__plain_emails_basic_email.eml": (Kind.OTHER, ()),
    "mikel_mail__plain_emails_mix_caps_content_type.eml": (Kind.OTHER, ()),
    "mikel_mail__plain_emails_raw_email.eml": (Kind.OTHER, ()),
    "mikel_mail__plain_emails_raw_email_reply.eml": (Kind.OTHER, ()),
    "mikel_mail__rfc6532_utf8_headers.eml": (Kind.OTHER, ()),
    "python_cpython__Lib_test_test_email_data_msg_15.eml": (Kind.OTHER, ()),
    "python_cpython__Lib_test_test_email_data_msg_16.eml": (
        Kind.BOUNCE,
        ("jangel1@cougar.noc.ucla.edu",),
    ),
    "sisimai_set-of-emails__maildir_bsd_arf-01.eml": (Kind.COMPLAINT, ("redacted@example.net",)),
    "sisimai_set-of-emails__maildir_bsd_lhost-amazonses-01.eml": (
        Kind.BOUNCE,
        ("shironeko@example.co.jp",),
    ),
    "sisimai_set-of-emails__maildir_bsd_lhost-exim-01.eml": (
        Kind.BOUNCE,
        ("kijitora@example.ed.jp",),
    ),
    "sisimai_set-of-emails__maildir_bsd_lhost-gmail-01.eml": (
        Kind.BOUNCE,
        ("userunknown@example.jp",),
    ),
    "sisimai_set-of-emails__maildir_bsd_lhost-postfix-01.eml": (
        Kind.BOUNCE,
        ("kijitora@example.org", "r@p351355.pool.example.ne.jp"),
    ),
    "sisimai_set-of-emails__maildir_bsd_lhost-sendgrid-01.eml": (
        Kind.BOUNCE,
        ("kijitora@example.jp",),
    ),
    "sisimai_set-of-emails__maildir_bsd_rfc3464-01.eml": (
        Kind.BOUNCE,
        ("userunknown@bouncehammer.jp",),
    ),
    "sisimai_set-of-emails__maildir_bsd_rfc3834-02.eml": (Kind.AUTO_REPLY, ()),
    "sisimai_set-of-emails__maildir_bsd_rfc3834-05.eml": (Kind.AUTO_REPLY, ()),
    "sisimai_set-of-emails__maildir_dos_rfc3834-01.eml": (Kind.AUTO_REPLY, ()),
    "sisimai_set-of-emails__maildir_not_is-not-bounce-01.eml": (Kind.OTHER, ()),
    "sisimai_set-of-emails__maildir_not_is-not-bounce-02.eml": (Kind.OTHER, ()),
    "sisimai_set-of-emails__maildir_not_rb-issue-368-bug.eml": (Kind.BOUNCE, ()),
}


def test_every_corpus_message_is_classified(
    corpus: Path,
    clean_env: Path,
    tmp_path: Path,
    clock: FixedClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(tmp_path)
    files = sorted((corpus / "mail").glob("*.eml"))
    assert files, "no corpus messages"
    seen: dict[str, tuple[Kind, tuple[str, ...]]] = {}
    for path in files:
        sort = classify(parse(path.read_bytes()), settings)
        seen[path.name] = (sort.kind, sort.hard)
        with capsys.disabled():
            print(
                f"{path.name}: {sort.kind.value} ({sort.reason}) hard={list(sort.hard)} soft={list(sort.soft)}"
            )
    unknown = set(seen) - set(EXPECTED)
    assert not unknown, f"new corpus files, add them to EXPECTED: {sorted(unknown)}"
    assert seen == {name: EXPECTED[name] for name in seen}


def test_no_corpus_message_is_a_command_or_crashes(
    corpus: Path, clean_env: Path, tmp_path: Path, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path)
    ctx = make_ctx(settings, clock)
    # every address the corpus bounces or complains about is a reader here
    with ctx.store.roster.edit() as roster:
        for _kind, addresses in EXPECTED.values():
            for address in addresses:
                roster.add(address, via=Source.IMPORT)
    report = run(ctx, read_paths([corpus / "mail"]))
    assert report.processed == len(list((corpus / "mail").glob("*.eml")))
    commands = {c.value for c in Command}
    assert not [a for a in report.actions if a.command in commands]
    assert not [a for a in report.actions if a.command == "error"]
    mailer = ctx.mailer
    assert isinstance(mailer, RecordingMailer)
    assert mailer.sent == []
    counts = ctx.store.roster.counts()
    named = sum(len(found) for _kind, found in EXPECTED.values())
    assert counts[Status.ACTIVE] == named  # no proof that they answer our mail: nobody marked
    signals = [a for a in report.actions if a.command in {"bounce", "complaint"}]
    assert len(signals) == sum(1 for kind, _ in EXPECTED.values() if kind in SIGNALS)
    for action in signals:
        assert action.result.startswith("no reader on the list changed"), action.result
    assert sum("unverified: " in a.result for a in signals) == sum(
        1 for _kind, found in EXPECTED.values() if found
    )
