"""Bounces and complaints as mail servers write them, around a copy of a message (no tests here).

:func:`dsn` (RFC 3464, the copy as ``message/rfc822``), :func:`arf` (RFC 5965 feedback report)
and :func:`prose` (an Exim-style notice quoting the copy inline) wrap whatever message they are
given: one we really sent (a dry run's ``first-reader.eml``, :func:`received_copy` of what the
SendGrid peer delivered) or one a forger made up.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

from peers.sendgrid_server import Delivery


def received_copy(delivery: Delivery) -> bytes:
    """The message a reader got from one personalization the SendGrid peer accepted."""
    lines = ["From: Biz Crusader <news@bizcrusader.example>", f"To: {', '.join(delivery.to)}"]
    lines.append(f"Subject: {delivery.subject}")
    lines += [f"{name}: {value}" for name, value in delivery.headers.items()]
    body = "\n".join(value for _type, value in delivery.content)
    return ("\n".join(lines) + "\n\n" + body + "\n").encode()


def headers_of(copy: bytes) -> Message:
    return BytesParser(policy=compat32).parsebytes(copy, headersonly=True)


def dsn(
    copy: bytes,
    failed: dict[str, str],
    *,
    message_id: str,
    reporter: str = "mx.reader.example",
    headers_only: bool = False,
) -> bytes:
    """A delivery status notification from ``reporter``: one block per address of ``failed``
    (address -> status, ``5.1.1`` or ``4.2.2``), then ``copy`` returned whole
    (``message/rfc822``) or its headers only (``text/rfc822-headers``)."""
    blocks = "".join(
        f"Final-Recipient: rfc822; {address}\nOriginal-Recipient: rfc822; {address}\n"
        f"Action: {'failed' if status.startswith('5') else 'delayed'}\nStatus: {status}\n\n"
        for address, status in failed.items()
    )
    returned = copy.split(b"\n\n", 1)[0] + b"\n" if headers_only else copy
    kind = "text/rfc822-headers" if headers_only else "message/rfc822"
    return (
        (
            f"Return-Path: <>\nFrom: Mail Delivery System <MAILER-DAEMON@{reporter}>\n"
            f"To: news@bizcrusader.example\nSubject: Undelivered Mail Returned to Sender\n"
            f"Message-ID: {message_id}\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
            "--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
            f"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; {reporter}\n\n"
            f"{blocks}--b\nContent-Type: {kind}\n\n"
        ).encode()
        + returned
        + b"\n--b--\n"
    )


def arf(copy: bytes, rcpt_to: str | None, *, message_id: str) -> bytes:
    """A feedback report (a spam complaint) about ``copy``; ``rcpt_to`` ``None``: redacted."""
    rcpt = f"Original-Rcpt-To: <{rcpt_to}>\n" if rcpt_to else ""
    return (
        (
            "From: Feedback Loop <fbl@isp.example>\nTo: abuse@bizcrusader.example\n"
            f"Subject: FW: complaint\nMessage-ID: {message_id}\nMIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=feedback-report; boundary="a"\n\n'
            "--a\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
            "--a\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nVersion: 1\n"
            f"{rcpt}\n--a\nContent-Type: message/rfc822\n\n"
        ).encode()
        + copy
        + b"\n--a--\n"
    )


def prose(copy: bytes, failed: list[str], *, message_id: str) -> bytes:
    """An Exim-style bounce notice naming ``failed``, the copy quoted inline below it."""
    listed = "".join(f"  {address}\n    550 5.1.1 User unknown\n" for address in failed)
    return (
        "Return-path: <>\nFrom: Mail Delivery System <Mailer-Daemon@mx.reader.example>\n"
        "To: news@bizcrusader.example\nSubject: Mail delivery failed: returning message to "
        f"sender\nMessage-Id: {message_id}\nX-Failed-Recipients: {', '.join(failed)}\n"
        "Auto-Submitted: auto-replied\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        f"{listed}\n------ This is a copy of the message, including all the headers. ------\n\n"
    ).encode() + copy
