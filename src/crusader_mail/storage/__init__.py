"""Where state lives: the storage contract (:mod:`.contract`), the roster's rules
(:mod:`.rules`) and the stores behind them. :func:`open_store` is the one place a store is made;
everything else reaches state through the :class:`~crusader_mail.storage.contract.Store` it
returns. The PostgreSQL store (:mod:`.postgres`) is imported only when ``database_url`` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from crusader_mail.clock import Clock
from crusader_mail.errors import ConfigError
from crusader_mail.settings import Settings
from crusader_mail.storage.contract import HintOf, Store
from crusader_mail.storage.files import FilesStore

if TYPE_CHECKING:
    from crusader_mail.storage.postgres.schema import SchemaReport


def open_store(settings: Settings, clock: Clock) -> Store:
    """The store the settings name: the PostgreSQL store when ``database_url`` is set, else
    the files store in ``state_dir`` and ``subscribers_dir`` (also when ``database_url`` is
    empty, as an unset CI secret gives it). Opening it reads nothing; each part reads (or
    connects) when it is used."""
    if settings.uses_database:
        from crusader_mail.storage.postgres import PostgresStore

        return PostgresStore(
            _database_url(settings),
            clock,
            settings.require_secret_key,
            hint_of=_hint_function(settings),
        )
    return FilesStore(
        settings.state_dir, settings.subscribers_dir, clock, settings.require_secret_key
    )


def upgrade_database(settings: Settings) -> SchemaReport:
    """Create or migrate the PostgreSQL schema (``crusader-mail db upgrade``)."""
    return _with_database(settings, "upgrade")


def database_status(settings: Settings) -> SchemaReport:
    """The PostgreSQL schema's version, changing nothing (``crusader-mail db status``); its
    ``check()`` raises :class:`SchemaMismatch` when it is missing, older or newer than this
    code's."""
    return _with_database(settings, "status")


def _with_database(settings: Settings, action: Literal["upgrade", "status"]) -> SchemaReport:
    from crusader_mail.storage.postgres import schema
    from crusader_mail.storage.postgres.connections import Database

    db = Database(_database_url(settings))
    try:
        return schema.upgrade(db) if action == "upgrade" else schema.status(db)
    finally:
        db.close()


def _database_url(settings: Settings) -> str:
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    if not url:
        raise ConfigError(
            "database_url is not set: set CRUSADER_MAIL_DATABASE_URL (postgresql://user:"
            "password@host:port/database) in the environment or .env"
        )
    return url


def _hint_function(settings: Settings) -> HintOf | None:
    """The token hint function of ``secret_key`` (``None`` when no usable key is set)."""
    from crusader_mail.util.tokens import Signer

    try:
        return Signer(settings.require_secret_key()).hint
    except ConfigError:
        return None
