"""PostgreSQL for the tests: ONE throwaway cluster per session (:mod:`peers.postgres`) and a
fresh database per test, created from a template that already has the schema (fast).

Without PostgreSQL installed the tests that need it are skipped on a developer's machine and
fail under CI (``CI`` set), as the IMAP tests do.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from peers import postgres

from crusader_mail.storage.postgres import schema
from crusader_mail.storage.postgres.connections import Database

TEMPLATE = "crusader_template"


@dataclass
class Cluster:
    """The session's server and an autocommit connection to its ``postgres`` database."""

    server: postgres.Postgres
    admin: psycopg.Connection
    _names: Iterator[int] = field(default_factory=itertools.count)

    def database(self, *, template: str = TEMPLATE) -> str:
        """A new database (a copy of ``template``: the schema, no rows); its URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.server.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def need_postgres() -> None:
    """Skip (fail under CI) when PostgreSQL is not installed."""
    if not postgres.available():
        message = "PostgreSQL is not installed (make services)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; under CI the PostgreSQL tests must run")
        pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    need_postgres()
    # Not below pytest's temporary root: another pytest session run as the same user resets
    # that folder to 0700, and the server's own user could no longer reach its files.
    server = postgres.start_postgres(Path(tempfile.mkdtemp(prefix="crusader-mail-pg-")) / "db")
    try:
        server.create_database(TEMPLATE)
        db = Database(server.url(TEMPLATE))
        try:
            schema.upgrade(db)
        finally:
            db.close()
        server.create_database("test_empty_template")  # no schema: for the migration tests
        with psycopg.connect(server.url(), autocommit=True) as admin:
            yield Cluster(server, admin)
    finally:
        server.stop()
        shutil.rmtree(server.root.parent, ignore_errors=True)


@pytest.fixture
def database_url(postgres_cluster: Cluster) -> Iterator[str]:
    """A fresh database with the current schema and no rows."""
    url = postgres_cluster.database()
    yield url
    postgres_cluster.drop(url)


@pytest.fixture
def empty_database_url(postgres_cluster: Cluster) -> Iterator[str]:
    """A fresh database without any crusader-mail table."""
    url = postgres_cluster.database(template="test_empty_template")
    yield url
    postgres_cluster.drop(url)
