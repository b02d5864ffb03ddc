"""Joining on the web: the subscribe form's token, its limits, and the snippet for the blog.

::

    signup = WebSignup(service)
    signup.form_token() -> str                    the signed time the form was shown
    signup.check_form(token) -> FormCheck         fresh, missing, too fast, too old
    signup.admit(client) -> bool                  the per-address and the global limit
    signup.subscribe(email) -> str                the service's subscribe (double opt-in)
    client_address(peer, headers, header) -> str  the client, or the trusted proxy's word
    public_url(settings) -> str | None            where serve is reached
    snippet(settings) -> str                      the form to paste into the blog

- The form carries a token signed with ``secret_key``: the time it was shown. A form sent
  sooner than ``FORM_MIN_AGE`` after it was shown (a robot), or later than ``FORM_MAX_AGE``,
  or without a token (the blog's snippet, which cannot carry a fresh one) is shown again,
  with the address filled in, for one more press: nothing is asked before that.
- The limits count in the store's memory (:meth:`Memory.may_reply` / ``replied``: keyed
  hashes, one slot a use, an hour each), so every ``serve`` process sharing a store shares
  them: ``server.subscribe_per_ip`` an hour per client address (an IPv6 address counts by its
  /64, what one customer usually holds) and ``server.subscribe_per_hour`` for everyone. The
  address is hashed (HMAC with a key derived from ``secret_key``) before the memory sees it,
  so it is never stored in the clear.
- The client is the connection's address, or, when ``server.trusted_proxy_header`` names the
  header the reverse proxy writes, that header's last address (the one the proxy added):
  nothing else a client sends is believed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from datetime import timedelta
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from crusader_mail.errors import ConfigError, CrusaderMailError, TemplateError
from crusader_mail.models import Source
from crusader_mail.settings import Settings
from crusader_mail.subscriptions.service import CAP_WINDOW, SubscriptionService, free_slots
from crusader_mail.util.masking import mask_email

FORM_MIN_AGE = timedelta(seconds=2)
FORM_MAX_AGE = timedelta(hours=2)
HONEYPOT = "comment"  # the field people never see (a robot fills it in)
FORM_FIELDS = ("email", HONEYPOT, "form")
_PER_IP = "web-ip"
_EVERYONE = "web-all"


class FormCheck(Enum):
    FRESH = "fresh"  # shown between FORM_MIN_AGE and FORM_MAX_AGE ago
    MISSING = "missing"  # no token (the blog's snippet), or not ours
    TOO_FAST = "too fast"
    TOO_OLD = "too old"


class WebSignup:
    """The web form's side of joining, for one service (its settings, clock, store, key)."""

    def __init__(self, service: SubscriptionService) -> None:
        self.service = service
        self.settings = service.settings
        secret = self.settings.require_secret_key().encode()
        self._form_key = hashlib.sha256(b"crusader-mail subscribe form\0" + secret).digest()
        self._client_key = hashlib.sha256(b"crusader-mail client address\0" + secret).digest()

    # -- the form's token ----------------------------------------------------------------------

    def form_token(self) -> str:
        """The token of a form shown now."""
        shown = int(self.service.clock.now().timestamp())
        return f"{shown}.{self._mac(str(shown))}"

    def check_form(self, token: str) -> FormCheck:
        stamp, _, mac = token.strip().partition(".")
        if not stamp.isdigit() or len(stamp) > 12 or not hmac.compare_digest(mac, self._mac(stamp)):
            return FormCheck.MISSING
        age = self.service.clock.now().timestamp() - int(stamp)
        if age < FORM_MIN_AGE.total_seconds():
            return FormCheck.TOO_FAST
        if age > FORM_MAX_AGE.total_seconds():
            return FormCheck.TOO_OLD
        return FormCheck.FRESH

    def _mac(self, text: str) -> str:
        return hmac.new(self._form_key, text.encode(), hashlib.sha256).hexdigest()[:32]

    # -- limits --------------------------------------------------------------------------------

    def admit(self, client: str) -> bool:
        """Count one sign-up from ``client`` against both limits; ``False`` (nothing counted)
        when either is reached."""
        server = self.settings.server
        who = self._client_hash(client)
        now = self.service.clock.now()
        mine = [f"{who}-{n}@web.invalid" for n in range(server.subscribe_per_ip)]
        everyone = [f"slot-{n}@web.invalid" for n in range(server.subscribe_per_hour)]
        with self.service.store.memory() as memory:
            slot = next(free_slots(memory, _PER_IP, mine, now, CAP_WINDOW), None)
            common = next(free_slots(memory, _EVERYONE, everyone, now, CAP_WINDOW), None)
            if slot is None or common is None:
                return False
            memory.replied(_PER_IP, slot, now)
            memory.replied(_EVERYONE, common, now)
        return True

    def _client_hash(self, client: str) -> str:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            key = client
        else:
            key = (
                str(ipaddress.ip_network(f"{address}/64", strict=False))
                if address.version == 6
                else str(address)
            )
        return hmac.new(self._client_key, key.encode(), hashlib.sha256).hexdigest()[:24]

    # -- joining -------------------------------------------------------------------------------

    def subscribe(self, email: str, ref: str) -> str:
        """Ask ``email`` (normalized) to confirm, as a request by mail does: one unit of change,
        the confirmation (or the already-subscribed note) queued with it. Runs after the answer
        went out, so an error is only said in the line returned."""
        try:
            with self.service.session() as session:
                return session.subscribe(email, "", ref, Source.WEB)
        except CrusaderMailError as error:  # the store was busy or damaged: the visitor retries
            return f"{mask_email(email)}: not asked ({error})"


def client_address(peer: str, headers: Mapping[str, str], header: str | None) -> str:
    """The client of a request: the connection's address (``peer``), or with ``header`` (the
    trusted proxy's) the last address in it; the peer when the header is absent or holds no
    address."""
    if header is None:
        return peer
    value = headers.get(header.lower(), "")
    last = value.rsplit(",", 1)[-1].strip()
    host = last[1:].partition("]")[0] if last.startswith("[") else last
    if host.count(":") == 1:  # an IPv4 address with its port
        host = host.partition(":")[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return peer


def public_url(settings: Settings) -> str | None:
    """Where ``serve`` is reached: ``server.public_url``, else ``newsletter.confirm_url`` (or
    ``unsubscribe_url``) without its last path part; ``None`` when none is set."""
    if settings.server.public_url:
        return settings.server.public_url
    for page in (settings.newsletter.confirm_url, settings.newsletter.unsubscribe_url):
        if page:
            parts = urlsplit(page)
            if parts.scheme in ("http", "https") and parts.hostname:
                path = parts.path.rsplit("/", 1)[0]
                return f"{parts.scheme}://{parts.netloc}{path}"
    return None


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` (lowercase, the default port left out), or ``None``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    shown = "" if port is None or port == {"http": 80, "https": 443}[scheme] else f":{port}"
    return f"{scheme}://{host}{shown}"


def snippet(settings: Settings) -> str:
    """The HTML form to paste into the blog (``templates_dir/web/snippet.html``): it posts to
    ``public_url(settings)/subscribe``; :class:`ConfigError` when that is not known."""
    base = public_url(settings)
    if base is None:
        raise ConfigError(
            "the snippet needs the address of serve: set [server] public_url (or "
            "[newsletter] confirm_url)"
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(settings.templates_dir) / "web")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    values = {"action": f"{base}/subscribe", "name": settings.newsletter.name, "honeypot": HONEYPOT}
    try:
        return env.get_template("snippet.html").render(values)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"{settings.templates_dir}/web/snippet.html: not found") from None
    except jinja2.TemplateError as error:
        raise TemplateError(f"web/snippet.html: {error}") from None
