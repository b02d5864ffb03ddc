"""The PostgreSQL store's schema: versioned migrations, applied by ``crusader-mail db upgrade``.

Each migration is a SQL file ``migrations/NNNN_name.sql`` in this package; ``NNNN`` is its
version. The table ``schema_version`` lists the versions applied. :func:`upgrade` applies the
missing ones in order, all in one transaction under an advisory lock (two upgrades at once: the
second waits, then finds nothing to do), so running it again changes nothing. Every other
command checks the version first (:func:`check`) and stops with one line
(:class:`SchemaMismatch`) when the database has no schema, an older one, or a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from crusader_mail.errors import SchemaMismatch
from crusader_mail.storage.postgres.connections import LOCK_SPACE, Connection, Database

UPGRADE_LOCK = 1  # the advisory lock key of `db upgrade`


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """The migrations in this package, by version."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        stem, _, suffix = entry.name.partition(".")
        number, _, name = stem.partition("_")
        if suffix == "sql" and number.isdigit():
            found.append(Migration(int(number), name, entry.read_text(encoding="utf-8")))
    return tuple(sorted(found, key=lambda migration: migration.version))


def latest() -> int:
    """The schema version this crusader-mail works with."""
    return migrations()[-1].version


def current(conn: Connection) -> int | None:
    """The version of the schema in the database (``None``: no crusader-mail schema)."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    found = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(found[0]) if found is not None and found[0] is not None else None


def check(conn: Connection, where: str) -> None:
    """Stop (:class:`SchemaMismatch`, one line) unless the schema is the one this code uses."""
    refuse(current(conn), where)


def refuse(version: int | None, where: str, *, upgrading: bool = False) -> None:
    """The one line for a schema that is missing, older (unless ``upgrading``) or newer."""
    need = latest()
    if version is None and not upgrading:
        raise SchemaMismatch(
            f"PostgreSQL at {where} has no crusader-mail tables yet: run `crusader-mail db upgrade`"
        )
    if version is not None and version < need and not upgrading:
        raise SchemaMismatch(
            f"the crusader-mail schema in PostgreSQL at {where} is version {version}, this "
            f"crusader-mail needs version {need}: run `crusader-mail db upgrade`"
        )
    if version is not None and version > need:
        raise SchemaMismatch(
            f"the crusader-mail schema in PostgreSQL at {where} is version {version}, newer than "
            f"this crusader-mail knows (version {need}): upgrade crusader-mail"
        )


@dataclass(frozen=True)
class SchemaReport:
    """What ``db upgrade`` or ``db status`` found (``before``/``after`` ``None``: no schema)."""

    where: str
    before: int | None
    after: int | None
    latest: int
    applied: tuple[str, ...] = ()  # "0002_name" of each migration applied

    @property
    def ok(self) -> bool:
        """Is the schema the one this crusader-mail works with?"""
        return self.after == self.latest

    def check(self) -> None:
        """Stop (:class:`SchemaMismatch`, the one line of :func:`refuse`) unless :attr:`ok`."""
        refuse(self.after, self.where)


def upgrade(db: Database) -> SchemaReport:
    """Create or migrate the schema to :func:`latest` in one transaction; idempotent."""
    with db.transaction() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, UPGRADE_LOCK))
        before = current(conn)
        refuse(before, db.where, upgrading=True)
        if before is None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        applied = []
        for migration in migrations():
            if before is None or migration.version > before:
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied.append(f"{migration.version:04d}_{migration.name}")
    return SchemaReport(db.where, before, latest(), latest(), tuple(applied))


def status(db: Database) -> SchemaReport:
    """The schema version in the database, changing nothing."""
    with db.connection() as conn:
        version = current(conn)
        conn.rollback()
    return SchemaReport(db.where, version, version, latest())
