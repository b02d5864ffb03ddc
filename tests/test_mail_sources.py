"""Reading messages from .eml files, mbox files, Maildir folders and folders of .eml files."""

from __future__ import annotations

from pathlib import Path

import pytest

from crusader_mail.errors import InboxError
from crusader_mail.inbox.classify import Kind, classify, header, parse
from crusader_mail.inbox.sources import read_paths
from tests.support.inbox import FIXTURES, make_settings

ONE = b"From: a@reader.example\nSubject: one\nMessage-ID: <1@r>\n\nFrom here on, hello\n"


def test_eml_with_an_mbox_from_line_is_one_message(tmp_path: Path) -> None:
    path = tmp_path / "one.eml"
    path.write_bytes(b"From a@reader.example Mon Nov 23 08:00:00 2026\n" + ONE + b"From x\n")
    [message] = list(read_paths([path]))
    parsed = parse(message.data)
    assert header(parsed, "Subject") == "one"
    assert message.origin == str(path)


def test_mbox_yields_each_message(tmp_path: Path) -> None:
    path = tmp_path / "box"
    parts = []
    for number in range(3):
        parts.append(
            f"From sender@reader.example Mon Nov 23 08:0{number}:00 2026\n"
            f"From: s{number}@reader.example\nSubject: m{number}\nMessage-ID: <{number}@r>\n\n"
            ">From the start\nbody\n\n"
        )
    path.write_text("".join(parts))
    messages = list(read_paths([path]))
    assert [header(parse(m.data), "Subject") for m in messages] == ["m0", "m1", "m2"]
    assert [m.origin for m in messages] == [f"{path}#1", f"{path}#2", f"{path}#3"]
    assert not messages[0].data.startswith(b"From ")


def test_maildir_reads_new_and_cur_not_tmp(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.host").write_bytes(ONE)
    (box / "cur" / "2.host:2,S").write_bytes(ONE.replace(b"one", b"two"))
    (box / "tmp" / "3.host").write_bytes(ONE.replace(b"one", b"half-written"))
    subjects = sorted(header(parse(m.data), "Subject") for m in read_paths([box]))
    assert subjects == ["one", "two"]


def test_a_folder_of_eml_files(tmp_path: Path) -> None:
    messages = list(read_paths([FIXTURES]))
    assert len(messages) == len(list(FIXTURES.glob("*.eml")))


def test_oversized_messages_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.mbox"
    path.write_bytes(b"From x Mon Nov 23 08:00:00 2026\nSubject: big\n\n" + b"y" * 5000 + b"\n")
    [message] = list(read_paths([path], max_bytes=1000))
    assert message.data == b""
    assert message.size > 5000
    single = tmp_path / "big.eml"
    single.write_bytes(b"Subject: big\n\n" + b"y" * 5000)
    [message] = list(read_paths([single], max_bytes=1000))
    assert (message.data, message.size) == (b"", single.stat().st_size)


def test_a_missing_path_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InboxError, match=r"nowhere\.eml: no such file or folder"):
        list(read_paths([tmp_path / "nowhere.eml"]))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("dsn-hard.eml", Kind.BOUNCE),
        ("dsn-delayed.eml", Kind.BOUNCE),
        ("soft-prose-bounce.eml", Kind.BOUNCE),
        ("exim-bounce.eml", Kind.BOUNCE),
        ("gmail-bounce.eml", Kind.BOUNCE),
        ("arf-complaint.eml", Kind.COMPLAINT),
        ("out-of-office.eml", Kind.AUTO_REPLY),
        ("out-of-office-subject-only.eml", Kind.AUTO_REPLY),
        ("loop.eml", Kind.LOOP),
        ("other.eml", Kind.OTHER),
        ("subscribe-by-address.eml", Kind.OTHER),
        ("malformed.eml", Kind.OTHER),
    ],
)
def test_fixture_classification(clean_env: Path, tmp_path: Path, name: str, kind: Kind) -> None:
    settings = make_settings(tmp_path)
    sort = classify(parse((FIXTURES / name).read_bytes()), settings)
    assert sort.kind is kind, sort.reason


def test_bounce_recipients(clean_env: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    def read(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        sort = classify(parse((FIXTURES / name).read_bytes()), settings)
        return sort.hard, sort.soft

    assert read("dsn-hard.eml") == (("jane@reader.example",), ("bob@reader.example",))
    assert read("dsn-delayed.eml") == ((), ("jane@reader.example",))
    assert read("soft-prose-bounce.eml") == ((), ("jane@reader.example",))
    assert read("exim-bounce.eml") == (("bob@reader.example",), ())
    assert read("gmail-bounce.eml") == (("frank@reader.example",), ())  # not the quoted To
