"""Shared fixtures. Real peers (HTTP feed server, SendGrid-like server, IMAP, PostgreSQL) live
in ``peers/``; each test starts what it needs on 127.0.0.1 (PostgreSQL: one cluster per
session, ``tests/support/postgres.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from peers.feed_server import feed_server  # noqa: F401  (the loopback feed server)
from peers.sendgrid_server import sendgrid_server  # noqa: F401  (loopback SendGrid v3)

from crusader_mail.clock import FixedClock
from tests.support.network import loopback_only  # noqa: F401  (no address beyond loopback)
from tests.support.postgres import (  # noqa: F401  (one PostgreSQL cluster, a database per test)
    database_url,
    empty_database_url,
    postgres_cluster,
)

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not here")
    return CORPUS


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CRUSADER_MAIL_* or SENDGRID_* from the developer's shell; cwd in a temp folder."""
    import os

    for name in list(os.environ):
        if name.startswith(("CRUSADER_MAIL_", "SENDGRID_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path
