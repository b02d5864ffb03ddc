"""Typed settings: ``crusader-mail.toml``, overridden by ``.env``, overridden by the environment.

Where a value comes from, highest first (each a pydantic-settings source, see :func:`load_settings`):

1. environment ``CRUSADER_MAIL_<NAME>`` (sections joined with ``__``: ``CRUSADER_MAIL_SENDGRID__API_KEY``;
   lists as JSON: ``CRUSADER_MAIL_FEEDS='["https://example.com/feed"]'``)
2. the ``.env`` file beside the config file (same names)
3. the conventional ``SENDGRID_API_KEY`` (environment, then ``.env``) for ``sendgrid.api_key``
4. the TOML config file: ``--config PATH``, else ``$CRUSADER_MAIL_CONFIG``, else ``./crusader-mail.toml``
5. the defaults below

Relative paths are taken relative to the config file's folder. Secrets are ``SecretStr``: they
print as ``**********`` and only :meth:`SecretStr.get_secret_value` reveals them. They come
from the environment or ``.env`` only: one in the TOML file is refused (:func:`secret_keys`).

Mistakes are caught when the settings load, each naming the key and where its value came from:
a value a send would fail on (a sender that is no address, a URL without its scheme, an http
one-click link, a short secret key, a subject that is no template), an unknown key in the TOML
file (with the nearest known key), a list variable that is not JSON (naming the variable). An
unknown ``CRUSADER_MAIL_*`` name in the environment or ``.env`` is ignored with a warning
(:attr:`LoadedSettings.warnings`), the nearest known name suggested.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

import jinja2
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from crusader_mail.errors import ConfigError
from crusader_mail.util.addresses import plus_address
from crusader_mail.util.masking import mask_url

ENV_PREFIX = "CRUSADER_MAIL_"
MIN_SECRET_KEY = 16  # tokens, ledger and inbox-state hashes are keyed with it
CONFIG_ENV = "CRUSADER_MAIL_CONFIG"
DEFAULT_CONFIG = "crusader-mail.toml"
SENDGRID_API_KEY = "SENDGRID_API_KEY"  # the conventional name, read for sendgrid.api_key
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _is_address(value: str | None) -> str | None:
    """``value`` when it is one email address (no DNS lookup); else a ``ValueError``."""
    if value is None:
        return None
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"{value!r} is not an email address ({error})") from None
    return value


def _is_web_url(value: str | None, *, https: bool) -> str | None:
    """``value`` when it is a whole http(s) URL with a host (``https``: https, or http on this
    machine for a trial); else a ``ValueError`` saying how to write it."""
    if value is None:
        return None
    shown = mask_url(value)
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if "://" not in value or not parts.hostname:
        raise ValueError(
            f"{shown!r} is not a whole URL: write it with its scheme, like https://{shown.split('://')[-1].lstrip('/')}"
        )
    if scheme not in ("http", "https"):
        raise ValueError(f"{shown!r} is not an http(s) URL")
    if https and scheme != "https" and parts.hostname not in _LOOPBACK:
        raise ValueError(
            f"{shown!r} must be https (mail clients and one-click unsubscribe need it)"
        )
    return value


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
            "newsletter requests in flight at once, each on its own kept-alive connection (a "
            "crash leaves at most this many batches in doubt), and suppression lists fetched "
            "at once"
        ),
    )

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        """The API key goes there: https (http only to this machine, a test peer)."""
        return _is_web_url(value, https=True) or value

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        if not value.strip() or len(value) > 255:
            raise ValueError("SendGrid takes a category of 1 to 255 characters")
        return value

    @field_validator("asm_group_id")
    @classmethod
    def _group(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(
                "an unsubscribe group id is a positive number (Suppressions > Unsubscribe Groups)"
            )
        return value


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
    archive_url: str | None = Field(
        None,
        description=(
            "public URL of archive_dir (GitHub Pages, or serve's /archive/): every issue "
            "links to its page there, and the run publishes each issue it sends"
        ),
    )
    replies_per_hour: int = Field(
        60,
        ge=0,
        description=(
            "automatic replies to people who write in (confirmations, already-subscribed, "
            "leave, help) per hour, all addresses together; one per mailbox a day besides"
        ),
    )
    welcome_posts: tuple[str, ...] = Field(
        (),
        max_length=10,
        description=(
            "the posts the welcome shows (their links or ids), in this order; default: the "
            "three posts most often chosen as related in the issues sent"
        ),
    )

    topics: tuple[str, ...] = Field(
        (),
        max_length=30,
        description=(
            "topics readers may choose on the preferences page: the posts' categories and "
            "tags, matched case-insensitively; a reader with topics gets only issues with a "
            "post in them; empty: no topic choice"
        ),
    )

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for topic in value:
            if not topic.strip() or topic != topic.strip():
                raise ValueError(f"{topic!r}: a topic is a name without surrounding spaces")
            if "|" in topic or any(ord(ch) < 32 for ch in topic) or len(topic) > 60:
                raise ValueError(f"{topic[:60]!r}: at most 60 characters, no '|' nor control")
            if topic.lower() in seen:
                raise ValueError(f"{topic!r} is given twice (topics match in any case)")
            seen.add(topic.lower())
        return value

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

    @field_validator("archive_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an absolute http(s) URL, e.g. https://example.github.io/news/"
            )
        if parts.query or parts.fragment or any(ord(ch) <= 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must be a folder's URL, without query, fragment or spaces")
        return value if value.endswith("/") else value + "/"

    @field_validator("from_email", "reply_to", "command_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return _is_address(value)

    @field_validator("site_url")
    @classmethod
    def _site(cls, value: str) -> str:
        return _is_web_url(value, https=False) or value

    @field_validator("unsubscribe_url", "confirm_url")
    @classmethod
    def _served(cls, value: str | None) -> str | None:
        return _is_web_url(value, https=True)


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

    @field_validator("subject", "preheader")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            jinja2.Environment(autoescape=False).parse(value)  # noqa: S701 - plain text, parsed only
        except jinja2.TemplateSyntaxError as error:
            raise ValueError(f"not a Jinja template: {error.message}") from None
        return value


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
    approval: bool = Field(
        False,
        description=(
            "hold each new issue for approval: run composes it, writes its preview and sends "
            "nothing; run --approve ISSUE_ID sends it"
        ),
    )

    @model_validator(mode="after")
    def _range(self) -> CadenceSettings:
        if self.max_posts < self.min_posts:
            raise ValueError(
                f"max_posts ({self.max_posts}) is below min_posts ({self.min_posts}): "
                "no issue could ever go out"
            )
        return self


class ImapSettings(Section):
    host: str | None = None
    port: int = Field(993, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = None
    folder: str = "INBOX"
    processed_folder: str | None = Field(None, description="move handled mail here; else flag it")
    tls: bool = True
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _login(self) -> ImapSettings:
        if self.host and not self.user:
            raise ValueError("imap.host is set without imap.user: the inbox could not log in")
        return self


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
    header_timeout: float = Field(
        10.0, gt=0, description="seconds a client has to send a request's line and headers"
    )
    body_timeout: float = Field(60.0, gt=0, description="seconds a client has to send a body")
    public_url: str | None = Field(
        None,
        description=(
            "https URL serve is reached at (the subscribe form is public_url/subscribe); "
            "default: newsletter.confirm_url without its /confirm"
        ),
    )
    trusted_proxy_header: str | None = Field(
        None,
        description=(
            "header the reverse proxy in front of serve puts the client's address in "
            "(X-Forwarded-For: its last address; X-Real-IP); unset: the connection's address"
        ),
    )
    subscribe_per_ip: int = Field(
        5, ge=1, description="web sign-ups per client address (an IPv6 /64) per hour"
    )
    subscribe_per_hour: int = Field(
        50, ge=1, description="web sign-ups per hour, everyone together"
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError(
                "must be an http(s) URL with a host and no query, e.g. https://news.example.com"
            )
        if any(ord(ch) < 33 or ord(ch) == 127 for ch in value):
            raise ValueError("must be one URL, without spaces or control characters")
        return value.rstrip("/")

    @field_validator("trusted_proxy_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
            raise ValueError("must be a header name, e.g. X-Forwarded-For")
        return value


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
                    _is_web_url(feed, https=False)
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


# -- loading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    config_file: Path | None
    sources: Mapping[str, str]  # dotted key -> where its value came from
    warnings: tuple[str, ...] = ()  # unknown CRUSADER_MAIL_* names, ignored (one line each)


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


@dataclass(frozen=True)
class _Layer:
    """What one source gave: ``name`` says where (``environment``, a ``.env`` or TOML path),
    ``values`` the nested values, ``variables`` the names it read (lowercased) for the
    environment and ``.env``."""

    name: str
    values: dict[str, Any]
    variables: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def is_environment(self) -> bool:
        return self.name == ENVIRONMENT


ENVIRONMENT = "environment"


def load_settings(config: Path | None = None) -> LoadedSettings:
    """Load and validate the settings; a bad value raises :class:`ConfigError` naming it.

    pydantic-settings' own sources read the environment (``EnvSettingsSource``), the ``.env``
    beside the config file (``DotEnvSettingsSource``) and the config file
    (``TomlConfigSettingsSource``); the values are merged in that priority and validated once.
    """
    config_file = find_config(config)
    base = config_file.resolve().parent if config_file else Path.cwd()
    layers = [_variables(EnvSettingsSource(Settings), ENVIRONMENT)]
    dotenv = base / ".env"
    if dotenv.is_file():
        layers.append(_variables(DotEnvSettingsSource(Settings, env_file=dotenv), str(dotenv)))
    if config_file is not None:
        layers.append(_toml(config_file))
    warnings = tuple(warning for layer in layers for warning in _unknown_names(layer))
    sources = _provenance(layers)
    merged: dict[str, Any] = {}
    for layer in reversed(layers):  # lowest priority first: higher layers overwrite
        merged = _merge(merged, layer.values)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_describe(error, sources)) from None
    settings = _anchor_paths(settings, base)
    return LoadedSettings(settings, config_file, sources, warnings)


def _variables(source: EnvSettingsSource, name: str) -> _Layer:
    """The values of the environment or a ``.env`` file; names that are no setting dropped
    (a ``.env`` holds other tools' variables too; :func:`_unknown_names` warns about ours)."""
    try:
        values = source()
    except SettingsError as error:
        raise ConfigError(_not_json(error, source.env_vars, name)) from None
    return _Layer(name, _known_only(values, Settings), dict(source.env_vars))


def _toml(config_file: Path) -> _Layer:
    try:
        source = TomlConfigSettingsSource(Settings, toml_file=config_file)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{config_file}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{config_file}: cannot read: {error.strerror}") from None
    _refuse_secrets(source.toml_data, config_file)
    return _Layer(str(config_file), source())


def _merge(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """``high`` over ``low``, section by section."""
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _sections(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The fields of ``model`` that are sections (a model of their own), by name."""
    found = {}
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found[name] = kind
    return found


def _names(model: type[BaseModel]) -> list[str]:
    """The settings of ``model`` an editor can set by name (not the hidden alias fields)."""
    return [name for name, info in model.model_fields.items() if not info.exclude]


def _known_only(values: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    fields = model.model_fields
    aliases = {SENDGRID_API_KEY, SENDGRID_API_KEY.lower()} if model is Settings else set()
    sections = _sections(model)
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if key in sections and isinstance(value, Mapping):
            kept[key] = _known_only(value, sections[key])
        elif key in fields or key in aliases:
            kept[key] = value
    return kept


def known_env_names() -> set[str]:
    """Every ``CRUSADER_MAIL_*`` name a setting is read from (sections too: their value may be
    a JSON object), and ``CRUSADER_MAIL_CONFIG``."""

    def walk(model: type[BaseModel], prefix: str) -> set[str]:
        names = set()
        sections = _sections(model)
        for name in _names(model):
            names.add(env_name(prefix + name))
            if name in sections:
                names |= walk(sections[name], f"{prefix}{name}.")
        return names

    return walk(Settings, "") | {CONFIG_ENV}


def _unknown_names(layer: _Layer) -> list[str]:
    """One warning per ``CRUSADER_MAIL_*`` name of the environment or ``.env`` that is no
    setting, with the nearest one (``CRUSADER_MAIL_IMAP_PASSWORD``: ``…IMAP__PASSWORD``)."""
    known = sorted(known_env_names())
    place = "the environment" if layer.is_environment else layer.name
    warnings = []
    for variable, value in sorted(layer.variables.items()):
        name = variable.upper()
        if not name.startswith(ENV_PREFIX) or not value or name in known:
            continue
        nearest = _nearest(name, known, ENV_PREFIX)
        hint = f"; did you mean {nearest}?" if nearest else _NAMES_HINT
        warnings.append(f"unknown setting {name} in {place}, ignored{hint}")
    return warnings


def _nearest(name: str, known: list[str], prefix: str = "") -> str | None:
    """The known name nearest ``name`` (compared without their shared ``prefix``), if any is
    near enough to be the one meant."""
    tail = name.removeprefix(prefix)
    tails = {entry.removeprefix(prefix): entry for entry in known}
    found = difflib.get_close_matches(tail, list(tails), n=1, cutoff=0.75)
    if found:
        return tails[found[0]]
    inside = [entry for entry in known if entry.endswith("__" + tail)]  # its section left out
    return inside[0] if len(inside) == 1 else None


_NAMES_HINT = (
    f" (settings are {ENV_PREFIX}<KEY>, sections joined with __; `config check` lists the keys)"
)


def _wants_json(dotted: str) -> bool:
    """Is the setting ``dotted`` a list or a section, written as JSON in a variable?"""
    model: type[BaseModel] = Settings
    *path, name = dotted.split(".")
    for part in path:
        section = _sections(model).get(part)
        if section is None:
            return False
        model = section
    info = model.model_fields.get(name)
    if info is None:
        return False
    kinds = get_args(info.annotation) or (info.annotation,)
    origin = getattr(info.annotation, "__origin__", None)
    return origin in (list, tuple, dict) or any(
        isinstance(kind, type) and issubclass(kind, BaseModel) for kind in kinds
    )


_JSON_EXAMPLES = {
    "feeds": '["https://blog.example.com/feed"]',
    "fetch.allow_hosts": '["intranet.example", "10.1.2.0/24"]',
}


def _not_json(error: SettingsError, variables: Mapping[str, str | None], where: str) -> str:
    """The one line for a list or section variable whose value is not JSON, naming it."""
    found = re.search(r'field "([^"]+)"', str(error))
    prefix = env_name(found.group(1)).lower() if found else ENV_PREFIX.lower()
    place = "in the environment" if where == ENVIRONMENT else f"in {where}"
    for variable, value in sorted(variables.items()):
        if not value or not (variable == prefix or variable.startswith(prefix + "__")):
            continue
        dotted = variable[len(ENV_PREFIX) :].replace("__", ".")
        if not _wants_json(dotted):
            continue
        try:
            json.loads(value)
        except ValueError as bad:
            reason = getattr(bad, "msg", str(bad))
            example = _JSON_EXAMPLES.get(
                dotted,
                '{"key": "value"}'
                if "." not in dotted and dotted in _sections(Settings)
                else '["…"]',
            )
            return (
                f"{variable.upper()} {place} is not valid JSON ({reason}); lists and sections "
                f"are written as JSON there, e.g. {variable.upper()}='{example}'"
            )
    return f"{place.removeprefix('in ')}: {error}"


def secret_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """The dotted name of every secret setting (a ``SecretStr``): only the environment (or the
    ``.env`` file beside the config file) may set them, never the config file."""
    keys: list[str] = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue  # the alias of one (sendgrid_api_key)
        kinds = get_args(info.annotation) or (info.annotation,)
        if SecretStr in kinds:
            keys.append(prefix + name)
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                keys += secret_keys(kind, f"{prefix}{name}.")
    return keys


def env_name(key: str) -> str:
    """The environment variable of a dotted setting: ``CRUSADER_MAIL_IMAP__PASSWORD``."""
    return ENV_PREFIX + key.upper().replace(".", "__")


def _refuse_secrets(toml_data: Mapping[str, Any], config_file: Path) -> None:
    """A secret in the config file is refused (ConfigError naming it and its variable), never
    used: the file is committed."""
    present = {
        "sendgrid.api_key" if key == SENDGRID_API_KEY.lower() else key
        for key in _flatten(toml_data)
    }
    found = [
        key for key in secret_keys() if any(k == key or k.startswith(key + ".") for k in present)
    ]
    if not found:
        return
    where = [SENDGRID_API_KEY if key == "sendgrid.api_key" else env_name(key) for key in found]
    one = len(found) == 1
    raise ConfigError(
        f"{config_file}: {' and '.join(found)} {'is a secret' if one else 'are secrets'}, never "
        f"read from a config file (it gets committed): remove {'it' if one else 'them'} and set "
        f"{' and '.join(where)} in the environment (a GitHub secret, or .env beside the file)"
    )


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
            "archive_dir": anchor(settings.archive_dir),
            "note_file": anchor(settings.note_file),
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


def _provenance(layers: list[_Layer]) -> dict[str, str]:
    """Which source each dotted key comes from (highest priority wins); ``sendgrid.api_key``
    from ``SENDGRID_API_KEY`` only when no ``CRUSADER_MAIL_SENDGRID__API_KEY`` set it."""
    sources: dict[str, str] = {}
    conventional: str | None = None
    for layer in reversed(layers):  # lowest first, so higher layers overwrite
        for key in _flatten(layer.values):
            if key == SENDGRID_API_KEY.lower():
                here = "" if layer.is_environment else f" in {layer.name}"
                conventional = SENDGRID_API_KEY + here
            elif layer.is_environment:
                sources[key] = "env " + env_name(key)
            else:
                sources[key] = layer.name
    if conventional is not None and "sendgrid.api_key" not in sources:
        sources["sendgrid.api_key"] = conventional
    return sources


def source_of(key: str, sources: Mapping[str, str]) -> str:
    return sources.get(key) or next(
        (src for k, src in sources.items() if k.startswith(key + ".")), "default"
    )


def _describe(error: ValidationError, sources: Mapping[str, str]) -> str:
    """One line for every problem: the key, where its value came from, what is wrong."""
    lines = []
    for problem in error.errors():
        loc = [str(part) for part in problem["loc"] if not isinstance(part, int)]
        key = ".".join(loc)
        where = source_of(key, sources)
        if problem["type"] == "extra_forbidden":
            lines.append(_unknown_key(loc, where))
            continue
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"{key} (from {where}): {message}")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems in the settings: " + " | ".join(lines)


def _unknown_key(loc: list[str], where: str) -> str:
    """``unknown setting 'from_emial' in crusader-mail.toml [newsletter]; did you mean
    'from_email'?``: the nearest key of the section, else the section the key belongs to."""
    *path, name = loc
    model: type[BaseModel] | None = Settings
    for part in path:
        model = _sections(model).get(part) if model is not None else None
    place = f"{where} [{'.'.join(path)}]" if path else where
    line = f"unknown setting {name!r} in {place}"
    known = _names(model) if model is not None else []
    nearest = _nearest(name.lower(), known)
    if nearest:
        return f"{line}; did you mean {nearest!r}?"
    if path and name.lower() in _names(Settings):
        return (
            f"{line}; {name!r} is a top-level setting: move it above the first [section] "
            "(a key after a [section] line belongs to that section)"
        )
    homes = [
        section for section, kind in _sections(Settings).items() if name.lower() in _names(kind)
    ]
    if homes:
        return f"{line}; did you mean {name!r} in [{homes[0]}]?"
    return f"{line}; the settings there are: {', '.join(known)}" if known else line


def effective_settings(loaded: LoadedSettings) -> list[tuple[str, Any, str]]:
    """(key, value as JSON, source) for every setting, for ``config check``: numbers, booleans,
    lists and ``None`` as they are, paths as text, secrets masked (``**********``)."""
    dumped = loaded.settings.model_dump(mode="json")
    return [
        (key, value, source_of(key, loaded.sources))
        for key, value in sorted(_flatten(dumped).items())
    ]
