"""What every command shares: the settings (loaded once, lazily), the clock, and the store
(opened once, lazily, and closed when the command ends)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from crusader_mail.clock import Clock, SystemClock

if TYPE_CHECKING:  # imported when first used: ``--help`` and ``--version`` never load them
    from crusader_mail.settings import LoadedSettings, Settings
    from crusader_mail.storage.contract import Store


@dataclass
class AppContext:
    config: Path | None = None
    clock: Clock = field(default_factory=SystemClock)
    _loaded: LoadedSettings | None = None
    _store: Store | None = None

    def loaded(self) -> LoadedSettings:
        """The settings, loaded on first use; their warnings (an unknown ``CRUSADER_MAIL_*``
        name) go to stderr then, once."""
        if self._loaded is None:
            from crusader_mail.settings import load_settings

            self._loaded = load_settings(self.config)
            for warning in self._loaded.warnings:
                click.echo(f"crusader-mail: warning: {warning}", err=True)
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.loaded().settings

    def store(self) -> Store:
        """The store the settings name, closed when the running command ends."""
        if self._store is None:
            from crusader_mail.storage import open_store

            store = self._store = open_store(self.settings, self.clock)
            click.get_current_context().call_on_close(store.close)
        return self._store
