from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from crusader_mail.errors import LockTimeout
from crusader_mail.util.statefile import atomic_write, atomic_writer, locked
from crusader_mail.util.tokens import Purpose, Signer


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state" / "archive.jsonl"
    atomic_write(target, "one\n")
    atomic_write(target, "two\n")
    assert target.read_text() == "two\n"
    assert [p.name for p in target.parent.iterdir()] == ["archive.jsonl"]


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "archive.jsonl"
    atomic_write(target, "old\n")

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["archive.jsonl"]


def test_atomic_writer_streams_then_renames(tmp_path: Path) -> None:
    target = tmp_path / "list.csv"
    atomic_write(target, "old\n")
    target.chmod(0o600)
    with atomic_writer(target) as replacement:
        for i in range(3):
            replacement.text.write(f"r{i}\u00e9\r\n")
        assert target.read_text() == "old\n"  # readers see the old file until the rename
    assert target.read_bytes() == "r0\u00e9\r\nr1\u00e9\r\nr2\u00e9\r\n".encode()
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["list.csv"]


def test_atomic_writer_discard_or_error_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "list.csv"
    atomic_write(target, "old\n")
    before = target.stat()
    with atomic_writer(target) as replacement:
        replacement.text.write("new\n")
        replacement.discard()

    def fail_halfway() -> None:
        with atomic_writer(target) as replacement:
            replacement.text.write("new\n")
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        fail_halfway()
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["list.csv"]


def _hold(
    path: str, ready: multiprocessing.synchronize.Event, go: multiprocessing.synchronize.Event
) -> None:
    with locked(Path(path)):
        ready.set()
        go.wait(10)


def test_lock_excludes_another_process(tmp_path: Path) -> None:
    target = tmp_path / "subscribers.csv"
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(target), ready, go))
    holder.start()
    try:
        assert ready.wait(20)
        with (
            pytest.raises(LockTimeout, match="another crusader-mail run"),
            locked(target, timeout=0.2),
        ):
            pass
    finally:
        go.set()
        holder.join(10)
    with locked(target, timeout=1):
        pass


def test_token_is_bound_to_purpose_and_address(clock: object) -> None:
    from datetime import UTC, datetime, timedelta

    from crusader_mail.errors import TokenError, TokenExpired

    now = datetime(2026, 11, 23, tzinfo=UTC)
    signer = Signer("k" * 32)
    token = signer.make(Purpose.CONFIRM, "reader@Example.com", now)
    assert len(token) <= 40
    assert token == token.lower()
    assert (
        signer.verify(Purpose.CONFIRM, token.upper(), ["x@example.com", "reader@example.com"], now)
        == "reader@example.com"
    )
    with pytest.raises(TokenError):
        signer.verify(Purpose.CONFIRM, token, ["other@example.com"], now)
    with pytest.raises(TokenError):
        signer.verify(Purpose.UNSUBSCRIBE, token, ["reader@example.com"], now)
    with pytest.raises(TokenError):
        Signer("z" * 32).verify(Purpose.CONFIRM, token, ["reader@example.com"], now)
    with pytest.raises(TokenExpired):
        signer.verify(
            Purpose.CONFIRM, token, ["reader@example.com"], now + timedelta(days=8), max_age_days=7
        )
    tampered = token[:-1] + ("a" if token[-1] != "a" else "b")
    with pytest.raises(TokenError):
        signer.verify(Purpose.CONFIRM, tampered, ["reader@example.com"], now)
