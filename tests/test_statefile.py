from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from crusader_mail.errors import LockTimeout
from crusader_mail.statefile import atomic_write, locked
from crusader_mail.tokens import Purpose, Signer


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
