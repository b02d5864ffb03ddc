"""Where state lives: the storage contract (:mod:`.contract`), the roster's rules
(:mod:`.rules`) and the stores behind them. :func:`open_store` is the one place a store is made;
everything else reaches state through the :class:`~crusader_mail.storage.contract.Store` it
returns."""

from __future__ import annotations

from crusader_mail.clock import Clock
from crusader_mail.settings import Settings
from crusader_mail.storage.contract import Store
from crusader_mail.storage.files import FilesStore


def open_store(settings: Settings, clock: Clock) -> Store:
    """The store the settings name (today always the files store in ``state_dir`` and
    ``subscribers_dir``). Opening it reads nothing; each part reads when it is used."""
    return FilesStore(
        settings.state_dir, settings.subscribers_dir, clock, settings.require_secret_key
    )
