"""The PostgreSQL store (psycopg 3): the whole storage contract in one shared database, chosen
by the secret setting ``database_url``. Imported only when that setting is set, so commands
without a database never load psycopg. ``crusader-mail db upgrade`` creates its schema
(:mod:`.schema`)."""

from crusader_mail.storage.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
