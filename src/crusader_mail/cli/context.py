"""What every command shares: the settings (loaded once, lazily) and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from crusader_mail.clock import Clock, SystemClock
from crusader_mail.settings import LoadedSettings, Settings, load_settings


@dataclass
class AppContext:
    config: Path | None = None
    clock: Clock = field(default_factory=SystemClock)
    _loaded: LoadedSettings | None = None

    def loaded(self) -> LoadedSettings:
        if self._loaded is None:
            self._loaded = load_settings(self.config)
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.loaded().settings
