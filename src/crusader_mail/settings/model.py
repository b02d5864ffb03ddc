"""The settings as a whole (:class:`Settings`, a pydantic-settings ``BaseSettings``) and what
they say about how a reader can leave (:class:`Leaving`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from crusader_mail.errors import ConfigError
from crusader_mail.settings.sections import (
    ENV_PREFIX,
    MIN_SECRET_KEY,
    SENDGRID_API_KEY,
    CadenceSettings,
    ComposeSettings,
    FetchSettings,
    ImapSettings,
    NewsletterSettings,
    SendGridSettings,
    ServerSettings,
    is_web_url,
)
from crusader_mail.util.addresses import plus_address


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
    archive_dir: Path = Field(
        Path("archive"), description="the public archive of sent issues (newsletter.archive_url)"
    )
    note_file: Path = Field(
        Path("notes/next.md"),
        description="the editor's note (Markdown) for the top of the next issue; emptied once sent",
    )
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
    # The conventional SENDGRID_API_KEY (the environment and .env sources read it by this
    # alias): it fills sendgrid.api_key when nothing higher set that. Not shown, not dumped.
    sendgrid_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(SENDGRID_API_KEY, SENDGRID_API_KEY.lower()),
        exclude=True,
        repr=False,
    )

    @field_validator("feeds")
    @classmethod
    def _feeds(cls, value: list[str]) -> list[str]:
        cleaned = [feed.strip() for feed in value]
        for number, feed in enumerate(cleaned, start=1):
            if not feed:
                raise ValueError(f"feed {number} is blank; expected a URL or a path")
            if "://" in feed and not feed.lower().startswith("file://"):
                try:
                    is_web_url(feed, https=False)
                except ValueError as error:
                    raise ValueError(f"feed {number}: {error}") from None
        return cleaned

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """Set but short is a mistake now, not at the first send (unset: a dry run needs none)."""
        secret = value.get_secret_value() if value is not None else ""
        if secret and len(secret) < MIN_SECRET_KEY:
            raise ValueError(f"too short: {_SHORT_SECRET}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _conventional_api_key(cls, data: Any) -> Any:
        """``SENDGRID_API_KEY`` fills ``sendgrid.api_key`` when no higher source set it."""
        if not isinstance(data, dict):
            return data
        key = next(
            (data[k] for k in (SENDGRID_API_KEY, SENDGRID_API_KEY.lower()) if data.get(k)), None
        )
        section = data.get("sendgrid")
        if key is None or (isinstance(section, Mapping) and section.get("api_key")):
            return data
        if section is None or isinstance(section, Mapping):
            return data | {"sendgrid": {**(section or {}), "api_key": key}}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what is passed in: :func:`load_settings` reads the environment, ``.env`` and
        the TOML file with pydantic-settings' own sources, in that order, and passes the merged
        values (so ``Settings(...)`` in code and tests reads nothing from the process)."""
        return (init_settings,)

    # -- derived values ------------------------------------------------------------------------

    def require_secret_key(self) -> str:
        if self.secret_key is None or not self.secret_key.get_secret_value():
            raise ConfigError(
                "secret_key is not set: set CRUSADER_MAIL_SECRET_KEY (a long random string)"
            )
        value = self.secret_key.get_secret_value()
        if len(value) < MIN_SECRET_KEY:
            raise ConfigError(f"secret_key is too short: {_SHORT_SECRET}")
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

    def issue_page_url(self, issue_id: str) -> str | None:
        """The public page of an issue in the archive (``None``: no ``newsletter.archive_url``)."""
        base = self.newsletter.archive_url
        return f"{base}{issue_id}.html" if base else None

    def served_page(self, page: str) -> str | None:
        """The URL of ``serve``'s page ``page`` (``subscribe``, ``preferences``) beside
        ``newsletter.unsubscribe_url``, when serve runs over a store the job shares (what it
        records reaches the job); ``None`` otherwise."""
        serve = self.newsletter.unsubscribe_url
        if serve and self.shares_store:
            parts = urlsplit(serve)
            if parts.scheme in ("http", "https") and parts.netloc:
                path = parts.path.rpartition("/")[0] + "/" + page
                return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        return None

    @property
    def subscribe_link(self) -> str:
        """Where a visitor subscribes: serve's ``/subscribe`` (:meth:`served_page`), else a
        ``mailto:`` to the ``+subscribe`` command address."""
        served = self.served_page("subscribe")
        return served or "mailto:" + plus_address(self.command_address, "subscribe")

    @property
    def uses_database(self) -> bool:
        """Is the PostgreSQL store chosen? ``database_url`` set and not empty (an unset CI
        secret arrives as an empty value)."""
        return self.database_url is not None and bool(self.database_url.get_secret_value())

    @property
    def shares_store(self) -> bool:
        """Does what ``serve`` records reach the job? Yes with a database (``database_url``)
        or when ``server.same_host`` says they run on one machine over the same files; a
        ``serve`` elsewhere with the files store keeps its own copy the job never sees."""
        return self.server.same_host or self.uses_database

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


_SHORT_SECRET = (
    f"CRUSADER_MAIL_SECRET_KEY needs at least {MIN_SECRET_KEY} characters (a long random "
    "string: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
)
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
