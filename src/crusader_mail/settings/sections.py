"""The sections of the settings (``[sendgrid]``, ``[newsletter]``, ...), each a frozen pydantic
model whose validators name the key and say how to write it; :mod:`.model` puts them together."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import jinja2
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

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


def is_web_url(value: str | None, *, https: bool) -> str | None:
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
        return is_web_url(value, https=True) or value

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
        return is_web_url(value, https=False) or value

    @field_validator("unsubscribe_url", "confirm_url")
    @classmethod
    def _served(cls, value: str | None) -> str | None:
        return is_web_url(value, https=True)


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
