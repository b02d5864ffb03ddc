"""Typed settings: ``crusader-mail.toml``, overridden by ``.env``, overridden by the environment.

Where a value comes from, highest first:

1. environment ``CRUSADER_MAIL_<NAME>`` (sections joined with ``__``: ``CRUSADER_MAIL_SENDGRID__API_KEY``;
   lists as JSON: ``CRUSADER_MAIL_FEEDS='["https://example.com/feed"]'``)
2. the ``.env`` file beside the config file (same names)
3. the conventional ``SENDGRID_API_KEY`` (environment, then ``.env``) for ``sendgrid.api_key``
4. the TOML config file: ``--config PATH``, else ``$CRUSADER_MAIL_CONFIG``, else ``./crusader-mail.toml``
5. the defaults below

Relative paths are taken relative to the config file's folder. Secrets are ``SecretStr``: they
print as ``**********`` and only :meth:`SecretStr.get_secret_value` reveals them.
``database_url`` (the PostgreSQL store) is read from the environment or ``.env`` only: the TOML
file is committed, and a ``database_url`` there is refused.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from crusader_mail.errors import ConfigError

ENV_PREFIX = "CRUSADER_MAIL_"
MIN_SECRET_KEY = 16  # tokens, ledger and inbox-state hashes are keyed with it
CONFIG_ENV = "CRUSADER_MAIL_CONFIG"
DEFAULT_CONFIG = "crusader-mail.toml"
ENV_ONLY = "database_url"  # a secret the committed TOML file may not hold


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendGridSettings(Section):
    api_key: SecretStr | None = None
    api_url: str = "https://api.sendgrid.com"
    timeout: float = Field(30.0, gt=0, description="seconds per request")
    sandbox_mode: bool = False
    asm_group_id: int | None = Field(None, description="unsubscribe group id")
    category: str = "newsletter"
    batch_size: int = Field(1000, ge=1, le=1000, description="readers per request (max 1000)")
    max_retries: int = Field(5, ge=0, le=20)
    backoff_base: float = Field(1.0, ge=0, description="seconds before the first retry")
    backoff_max: float = Field(60.0, ge=0)
    subscription_tracking: bool = Field(
        False,
        description=(
            "SendGrid adds its own one-click unsubscribe link and List-Unsubscribe header to "
            "every issue; those unsubscribes come back with the suppression sync"
        ),
    )
    concurrency: int = Field(
        2,
        ge=1,
        le=16,
        description=(
            "batches built ahead of the one being sent, and suppression lists fetched at once "
            "(one client each); newsletter requests go one at a time"
        ),
    )


class NewsletterSettings(Section):
    name: str = "Newsletter"
    site_url: str = "https://example.com"
    from_email: str = "newsletter@example.com"
    from_name: str = ""
    reply_to: str | None = None
    postal_address: str = ""
    list_id: str | None = Field(None, description="List-Id value; default from from_email")
    command_address: str | None = Field(
        None, description="address readers mail commands to (plus-addressing); default from_email"
    )
    unsubscribe_url: str | None = Field(None, description="https URL of serve's /unsubscribe")
    confirm_url: str | None = Field(None, description="https URL of serve's /confirm")

    @field_validator(
        "name",
        "from_email",
        "from_name",
        "reply_to",
        "list_id",
        "command_address",
        "unsubscribe_url",
        "confirm_url",
    )
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        """These end up in mail headers (From, Reply-To, List-Id, List-Unsubscribe): a line
        break or other control character there would split or forge a header."""
        if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must be one line, without control characters (it goes in a header)")
        return value


class ComposeSettings(Section):
    subject: str = Field(
        "{{ posts[0].title }}{% if posts|length > 1 %} and {{ posts|length - 1 }} more{% endif %}",
        description="Jinja template of the subject",
    )
    preheader: str = Field(
        "{{ posts[0].excerpt|truncate(120) }}", description="Jinja template of the preheader"
    )
    full_content: bool = Field(False, description="full posts instead of excerpts")
    related_count: int = Field(3, ge=0, le=20)
    related_memory: int = Field(3, ge=0, description="issues whose related posts are avoided")
    max_html_bytes: int = Field(102 * 1024, gt=0)


class FetchSettings(Section):
    connect_timeout: float = Field(10.0, gt=0)
    timeout: float = Field(
        30.0, gt=0, description="total seconds per feed: connect, headers, body and redirects"
    )
    max_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_redirects: int = Field(5, ge=0)
    backfill_max_pages: int = Field(100, ge=1)
    allow_private: bool = Field(
        False,
        description="read feeds from loopback, private and link-local addresses (an intranet)",
    )
    allow_hosts: tuple[str, ...] = Field(
        (),
        description="host names or addresses/networks (10.1.2.0/24) allowed although private",
    )

    @field_validator("allow_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(entry.strip() for entry in value)
        for entry in cleaned:
            try:
                ipaddress.ip_network(entry.strip("[]"), strict=False)
            except ValueError:
                if not re.fullmatch(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?", entry, re.I):
                    raise ValueError(
                        f"{entry!r} is not a host name, an address or a network"
                    ) from None
        return cleaned


class CadenceSettings(Section):
    mode: Literal["digest", "per_post"] = "digest"
    min_posts: int = Field(1, ge=1)
    max_posts: int = Field(10, ge=1)


class ImapSettings(Section):
    host: str | None = None
    port: int = Field(993, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = None
    folder: str = "INBOX"
    processed_folder: str | None = Field(None, description="move handled mail here; else flag it")
    tls: bool = True
    ca_file: Path | None = None


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8025, ge=1, le=65535)
    inbound_secret: SecretStr | None = None
    event_public_key: str | None = Field(None, description="Event Webhook ECDSA public key")
    trusted_authserv_id: str | None = Field(
        None, description="host whose Authentication-Results header is trusted"
    )
    same_host: bool = Field(
        False,
        description=(
            "serve runs on the machine where the job runs, on the same state files (cron or a "
            "systemd timer): what it records reaches the job"
        ),
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    feeds: list[str] = Field(default_factory=list, description="feed URLs or local paths")
    state_dir: Path = Path("state")
    subscribers_dir: Path = Path("subscribers")
    templates_dir: Path = Path("templates")
    outbox_dir: Path = Path("outbox")
    preview_dir: Path = Path("preview")
    secret_key: SecretStr | None = None
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL of the shared store (environment or .env only)"
    )
    sendgrid: SendGridSettings = SendGridSettings()
    newsletter: NewsletterSettings = NewsletterSettings()
    compose: ComposeSettings = ComposeSettings()
    fetch: FetchSettings = FetchSettings()
    cadence: CadenceSettings = CadenceSettings()
    imap: ImapSettings = ImapSettings()
    server: ServerSettings = ServerSettings()

    @field_validator("feeds")
    @classmethod
    def _feeds_not_blank(cls, value: list[str]) -> list[str]:
        cleaned = [feed.strip() for feed in value]
        if any(not feed for feed in cleaned):
            raise ValueError("a feed is blank; expected a URL or a path")
        return cleaned

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init_settings carries the TOML file and comes last: the lowest priority.
        return (
            env_settings,
            _KnownKeysOnly(settings_cls, dotenv_settings),
            _SendGridKeySource(settings_cls, getattr(dotenv_settings, "env_file", None)),
            init_settings,
        )

    # -- derived values ------------------------------------------------------------------------

    def require_secret_key(self) -> str:
        if self.secret_key is None or not self.secret_key.get_secret_value():
            raise ConfigError(
                "secret_key is not set: set CRUSADER_MAIL_SECRET_KEY (a long random string)"
            )
        value = self.secret_key.get_secret_value()
        if len(value) < MIN_SECRET_KEY:
            raise ConfigError(
                f"secret_key is too short: CRUSADER_MAIL_SECRET_KEY needs at least "
                f"{MIN_SECRET_KEY} characters (a long random string)"
            )
        return value

    def require_api_key(self) -> str:
        if self.sendgrid.api_key is None or not self.sendgrid.api_key.get_secret_value():
            raise ConfigError(
                "sendgrid.api_key is not set: set SENDGRID_API_KEY (a key with Mail Send access)"
            )
        return self.sendgrid.api_key.get_secret_value()

    @property
    def list_id(self) -> str:
        if self.newsletter.list_id:
            return self.newsletter.list_id
        domain = self.newsletter.from_email.rpartition("@")[2] or "localhost"
        return f"{self.newsletter.name} <newsletter.{domain}>"

    @property
    def command_address(self) -> str:
        return self.newsletter.command_address or self.newsletter.from_email

    @property
    def shares_store(self) -> bool:
        """Does what ``serve`` records reach the job? Yes with a database (``database_url``)
        or when ``server.same_host`` says they run on one machine over the same files; a
        ``serve`` elsewhere with the files store keeps its own copy the job never sees."""
        url = self.database_url  # an empty value (an unset CI secret) is no database
        return self.server.same_host or (url is not None and bool(url.get_secret_value()))

    def leaving(self) -> Leaving:
        """How readers of this configuration can leave (:class:`Leaving`)."""
        notes = []
        shared = self.shares_store
        one_click: OneClick | None = None
        if self.sendgrid.subscription_tracking:
            one_click = "sendgrid"
        elif self.newsletter.unsubscribe_url and shared:
            one_click = "ours"
        elif self.newsletter.unsubscribe_url:
            notes.append(
                "newsletter.unsubscribe_url does not count: with the files store, serve's "
                f"unsubscribes would not reach this job ({_SHARE_HINT})"
            )
        by_mail: ByMail | None = None
        if self.imap.host:
            by_mail = "imap"
        elif self.server.inbound_secret is not None and shared:
            by_mail = "inbound parse"
        elif self.server.inbound_secret is not None:
            notes.append(
                "server.inbound_secret does not count: with the files store, mail handled by "
                f"serve would not reach this job ({_SHARE_HINT})"
            )
        return Leaving(one_click=one_click, by_mail=by_mail, notes=tuple(notes))


OneClick = Literal["ours", "sendgrid"]
ByMail = Literal["imap", "inbound parse"]
_SHARE_HINT = "set database_url, or server.same_host = true when serve runs beside the job"


@dataclass(frozen=True)
class Leaving:
    """How a reader can leave: by one click (``ours``: serve's ``/unsubscribe`` over a shared
    store; ``sendgrid``: SendGrid's subscription tracking) and by mail (the ``mailto:`` of
    every issue, read from ``imap`` or through ``inbound parse``). ``notes``: settings that are
    there but do not count, and why."""

    one_click: OneClick | None
    by_mail: ByMail | None
    notes: tuple[str, ...] = ()

    @property
    def problem(self) -> str | None:
        """One line saying what to configure when nothing would honour an unsubscribe."""
        if self.one_click or self.by_mail:
            return None
        return (
            "nothing would honour an unsubscribe (no one-click link, and nothing reads the "
            "unsubscribe mail): set [sendgrid] subscription_tracking = true, or [imap] host, or "
            "newsletter.unsubscribe_url / server.inbound_secret with a store serve shares "
            "(database_url, or server.same_host)"
        )


class _KnownKeysOnly(PydanticBaseSettingsSource):
    """A ``.env`` file holds other tools' variables too: keep only our settings."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        return {key: value for key, value in self.inner().items() if key in fields}


class _SendGridKeySource(PydanticBaseSettingsSource):
    """The conventional ``SENDGRID_API_KEY`` (environment, then ``.env``)."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: object = None) -> None:
        super().__init__(settings_cls)
        self.dotenv = dotenv if isinstance(dotenv, str | Path) else None

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        value = os.environ.get("SENDGRID_API_KEY")
        if value is None and self.dotenv is not None and Path(self.dotenv).is_file():
            value = dotenv_values(self.dotenv).get("SENDGRID_API_KEY")
        return {"sendgrid": {"api_key": value}} if value else {}


# -- loading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    config_file: Path | None
    sources: Mapping[str, str]  # dotted key -> where its value came from


def find_config(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: config file not found")
        return explicit
    named = environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (from ${CONFIG_ENV})")
        return path
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def load_settings(config: Path | None = None) -> LoadedSettings:
    """Load and validate the settings; a bad value raises :class:`ConfigError` naming it."""
    config_file = find_config(config)
    base = config_file.resolve().parent if config_file else Path.cwd()
    toml_data = _read_toml(config_file) if config_file else {}
    if any(str(key).lower() == ENV_ONLY for key in toml_data):
        raise ConfigError(
            f"{config_file}: {ENV_ONLY} is a secret and is never read from the config file: "
            f"remove it there and set {ENV_PREFIX}{ENV_ONLY.upper()} in the environment or .env"
        )
    dotenv_file = base / ".env"
    dotenv = dotenv_file if dotenv_file.is_file() else None
    sources = _provenance(toml_data, config_file, dotenv)
    try:
        settings = Settings(_env_file=dotenv, **toml_data)
    except ValidationError as error:
        raise ConfigError(_describe(error, sources)) from None
    except ValueError as error:  # JSON in an environment variable that does not parse
        raise ConfigError(f"environment: {error}") from None
    settings = _anchor_paths(settings, base)
    return LoadedSettings(settings=settings, config_file=config_file, sources=sources)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None


def _anchor_paths(settings: Settings, base: Path) -> Settings:
    def anchor(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    feeds = [
        feed if "://" in feed or Path(feed).is_absolute() else str(base / feed)
        for feed in settings.feeds
    ]
    return settings.model_copy(
        update={
            "feeds": feeds,
            "state_dir": anchor(settings.state_dir),
            "subscribers_dir": anchor(settings.subscribers_dir),
            "templates_dir": anchor(settings.templates_dir),
            "outbox_dir": anchor(settings.outbox_dir),
            "preview_dir": anchor(settings.preview_dir),
        }
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{str(key).lower()}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _provenance(
    toml_data: Mapping[str, Any], config_file: Path | None, dotenv: Path | None
) -> dict[str, str]:
    """Which source each dotted key comes from (highest priority wins)."""
    env = EnvSettingsSource(
        Settings, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
    )
    layers: list[tuple[str, Mapping[str, Any]]] = []
    try:
        layers.append(("environment", env()))
    except ValueError:
        layers.append(("environment", {}))
    if dotenv is not None:
        values = {k.lower(): v for k, v in dotenv_values(dotenv).items() if v is not None}
        nested: dict[str, Any] = {}
        for key, value in values.items():
            if key.startswith(ENV_PREFIX.lower()):
                parts = key[len(ENV_PREFIX) :].split("__")
                node = nested
                for part in parts[:-1]:
                    node = node.setdefault(part, {})
                node[parts[-1]] = value
        layers.append((str(dotenv), nested))
    sg_env = os.environ.get("SENDGRID_API_KEY") or (
        dotenv_values(dotenv).get("SENDGRID_API_KEY") if dotenv else None
    )
    if sg_env:
        layers.append(("SENDGRID_API_KEY", {"sendgrid": {"api_key": sg_env}}))
    if config_file is not None:
        layers.append((str(config_file), toml_data))
    sources: dict[str, str] = {}
    for name, data in reversed(layers):  # lowest first, so higher layers overwrite
        for key in _flatten(data):
            if name == "environment":
                sources[key] = "env " + ENV_PREFIX + key.upper().replace(".", "__")
            else:
                sources[key] = name
    return sources


def source_of(key: str, sources: Mapping[str, str]) -> str:
    return sources.get(key) or next(
        (src for k, src in sources.items() if k.startswith(key + ".")), "default"
    )


def _describe(error: ValidationError, sources: Mapping[str, str]) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"] if not isinstance(part, int))
        where = source_of(key, sources)
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{key} (from {where}): {message}")
    return "invalid settings: " + "; ".join(lines)


def effective_settings(loaded: LoadedSettings) -> list[tuple[str, str, str]]:
    """(key, value with secrets masked, source) for every setting, for ``config check``."""
    dumped = loaded.settings.model_dump(mode="json")
    rows = []
    for key, value in sorted(_flatten(dumped).items()):
        shown = "(empty)" if value in (None, [], "") else str(value)
        rows.append((key, shown, source_of(key, loaded.sources)))
    return rows
