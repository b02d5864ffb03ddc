"""The pages behind the links in mail and the subscribe form (:class:`Pages`): a GET asks, a
POST does it through the subscription service and answers with a page from
``templates_dir/web``. What each route does is drawn in :mod:`crusader_mail.web.app`."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from starlette.background import BackgroundTask, BackgroundTasks
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from crusader_mail.errors import TokenError, TokenExpired
from crusader_mail.models import Preferences, Source, Status
from crusader_mail.storage.rules import normal_or_none, staying
from crusader_mail.subscriptions.choices import PAUSE_WEEKS, ChoiceError, chosen, describe
from crusader_mail.subscriptions.outbox import Drainer
from crusader_mail.subscriptions.service import Session, SubscriptionService
from crusader_mail.subscriptions.signup import (
    FORM_FIELDS,
    HONEYPOT,
    FormCheck,
    WebSignup,
    client_address,
    origin,
    public_url,
)
from crusader_mail.util.masking import mask_email
from crusader_mail.util.tokens import Purpose
from crusader_mail.web.headers import FORM_HEADERS, SECURITY_HEADERS

MAX_FORM_BODY = 64 * 1024  # /unsubscribe, /confirm, /subscribe: a token and a word or two
MAX_ADDRESS = 320  # characters of a typed address kept (the longest an address may be)


@dataclass(frozen=True)
class Outcome:
    status: int
    template: str
    values: Mapping[str, Any]


class Pages:
    """The pages behind the links in mail: a GET asks, a POST does it through the service."""

    def __init__(self, service: SubscriptionService, drain: Drainer) -> None:
        self.service = service
        self.drain = drain
        self.settings = service.settings
        self.signup = WebSignup(service)
        sites = (service.settings.newsletter.site_url, public_url(service.settings) or "")
        self.origins = {found for found in map(origin, sites) if found}
        self.pages = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(service.settings.templates_dir / "web")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def page(
        self,
        outcome: Outcome,
        *,
        then_send: bool = False,
        headers: Mapping[str, str] = SECURITY_HEADERS,
        background: BackgroundTask | None = None,
    ) -> HTMLResponse:
        """The page; with ``then_send`` the queued replies go out after it was sent, with
        ``background`` that runs after it instead."""
        values = {
            "name": self.settings.newsletter.name,
            "site_url": self.settings.newsletter.site_url,
            **outcome.values,
        }
        html = self.pages.get_template(outcome.template).render(values)
        if then_send:
            background = BackgroundTask(self.drain)
        return HTMLResponse(
            html, status_code=outcome.status, headers=dict(headers), background=background
        )

    async def home(self, request: Request) -> Response:
        return self.page(Outcome(200, "home.html", {}))

    # -- unsubscribe ---------------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        outcome = await run_in_threadpool(self._unsubscribe_page, token)
        return self.page(outcome, headers=FORM_HEADERS)  # its pause form is origin-checked

    def _unsubscribe_page(self, token: str) -> Outcome:
        try:
            email = self.service.find(Purpose.UNSUBSCRIBE, token)
        except TokenError:
            return _invalid_link()
        reader = self.service.reader(email)
        if not staying(reader):
            return Outcome(200, "done.html", self._left(email))
        asked = _ask("Unsubscribe", f"Stop sending the newsletter to {mask_email(email)}?", token)
        if reader is None or reader.status is not Status.ACTIVE:
            return asked
        keep = self.service.preferences_token(email)  # made for the page, nothing stored
        return Outcome(
            asked.status,
            asked.template,
            {**asked.values, "pause_token": keep, "pause_weeks": str(PAUSE_WEEKS[0])},
        )

    async def unsubscribe(self, request: Request) -> Response:
        token = await _token(request)
        return self.page(await run_in_threadpool(self._unsubscribe, token), then_send=True)

    def _unsubscribe(self, token: str) -> Outcome:
        return self.unsubscribe_all([token])[0]

    def unsubscribe_all(self, tokens: list[str]) -> list[Outcome]:
        """The answer to each unsubscribe ``token``, all of them in one unit of change: stored
        together when it ends, or none of them when it raises."""
        with self.service.session() as session:
            return [self._unsubscribe_in(session, token) for token in tokens]

    def _unsubscribe_in(self, session: Session, token: str) -> Outcome:
        try:
            email = session.find(Purpose.UNSUBSCRIBE, token)
        except TokenError:
            return _invalid_link()
        session.unsubscribe(email, _web_ref(), Source.WEB)
        return Outcome(200, "done.html", self._left(email))

    def _left(self, email: str) -> dict[str, str]:
        """The goodbye page (no goodbye mail follows a web unsubscribe): what happened, that
        no more mail comes, and how to come back."""
        serve = public_url(self.settings)
        back = f"{serve}/subscribe" if serve else self.settings.newsletter.site_url
        return {
            "heading": "You are unsubscribed",
            "text": f"Done: {mask_email(email)} is off the list, and no more mail comes from "
            f"{self.settings.newsletter.name}, not even a goodbye. Thank you for reading.",
            "more": "Changed your mind? You are always welcome back:",
            "link": back,
            "link_text": f"subscribe to {self.settings.newsletter.name} again",
        }

    # -- preferences ---------------------------------------------------------------------------

    async def preferences_page(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        outcome = await run_in_threadpool(self._preferences_page, token)
        return self.page(outcome, headers=FORM_HEADERS)

    def _preferences_page(self, token: str, note: str = "") -> Outcome:
        try:
            email = self.service.find(Purpose.PREFERENCES, token)
        except TokenError:
            return _invalid_link()
        reader = self.service.reader(email)
        if reader is None or reader.status is not Status.ACTIVE:
            if not staying(reader):
                return Outcome(200, "done.html", self._left(email))
            return _invalid_link()
        return self._choices(email, token, self.service.preferences(email), note)

    def _choices(self, email: str, token: str, prefs: Preferences, note: str) -> Outcome:
        now = self.service.clock.now()
        paused = prefs.paused_until if prefs.paused(now) else None
        values: dict[str, Any] = {
            "heading": "Your newsletter, your way",
            "text": f"Choose what {mask_email(email)} receives.",
            "now": describe(prefs, cadence=self.settings.cadence.mode, now=now),
            "note": note,
            "token": token,
            "frequency": prefs.frequency.value if prefs.frequency is not None else "",
            "editor": "as the editor sends them"
            + (" (one for each new post)" if self.settings.cadence.mode == "per_post" else ""),
            "topics": [
                {"name": t, "checked": t.lower() in {c.lower() for c in prefs.topics}}
                for t in self.settings.newsletter.topics
            ],
            "weeks": PAUSE_WEEKS,
            "paused_until": f"{paused.day} {paused:%B %Y}" if paused is not None else "",
        }
        return Outcome(200, "preferences.html", values)

    async def preferences(self, request: Request) -> Response:
        if not self._same_site(request.headers):
            outcome = Outcome(403, "done.html", _FOREIGN_FORM)
            return self.page(outcome, headers=FORM_HEADERS)
        async with request.form(max_files=0, max_fields=60, max_part_size=MAX_FORM_BODY) as form:
            fields = {
                name: value if isinstance(value := form.get(name), str) else ""
                for name in ("token", "action", "frequency", "weeks")
            }
            topics = [value for value in form.getlist("topics") if isinstance(value, str)]
        outcome = await run_in_threadpool(self._preferences, fields, topics)
        return self.page(outcome, headers=FORM_HEADERS)

    def _preferences(self, fields: Mapping[str, str], topics: list[str]) -> Outcome:
        token, action = fields["token"], fields["action"]
        with self.service.session() as session:
            try:
                email = session.find(Purpose.PREFERENCES, token)
            except TokenError:
                return _invalid_link()
            reader = session.reader(email)
            if reader is None or reader.status is not Status.ACTIVE:
                if not staying(reader):
                    return Outcome(200, "done.html", self._left(email))
                return _invalid_link()
            if action == "leave":
                session.unsubscribe(email, _web_ref(), Source.WEB)
                return Outcome(200, "done.html", self._left(email))
            current = session.roster.preferences(email)
            try:
                wanted = chosen(
                    current,
                    action,
                    frequency=fields["frequency"],
                    topics=topics,
                    weeks=fields["weeks"],
                    offered=self.settings.newsletter.topics,
                    now=self.service.clock.now(),
                )
            except ChoiceError as error:
                page = self._choices(email, token, current, str(error))
                return Outcome(400, page.template, page.values)
            session.choose(email, wanted, _web_ref(), Source.WEB)
            saved = session.roster.preferences(email)
        now = self.service.clock.now()
        return Outcome(
            200,
            "done.html",
            {
                "heading": _SAVED.get(action, "Your choice is saved"),
                "text": describe(saved, cadence=self.settings.cadence.mode, now=now),
                "more": "You can change it again whenever you like:",
                "link": f"/preferences?token={token}",
                "link_text": "your preferences",
            },
        )

    # -- confirm -------------------------------------------------------------------------------

    async def confirm_page(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        return self.page(await run_in_threadpool(self._confirm_page, token))

    def _confirm_page(self, token: str) -> Outcome:
        try:
            email = self.service.find(Purpose.CONFIRM, token)
        except TokenExpired:
            return _expired()
        except TokenError:
            return _invalid_link()
        current = self.service.reader(email)
        if current is not None and current.status is Status.ACTIVE:
            return Outcome(200, "done.html", _joined(email))
        if current is None:  # a token that verifies was made for the reader as they are now
            return _invalid_link()
        question = f"Send the newsletter to {mask_email(email)}?"
        return _ask("Confirm your subscription", question, token, confirm=True)

    async def confirm(self, request: Request) -> Response:
        token = await _token(request)
        return self.page(await run_in_threadpool(self._confirm, token), then_send=True)

    def _confirm(self, token: str) -> Outcome:
        with self.service.session() as session:
            try:
                email = session.find(Purpose.CONFIRM, token)
            except TokenExpired:
                return _expired()
            except TokenError:
                return _invalid_link()
            session.confirm(email, _web_ref(), Source.WEB)  # pending, or left and asking back
        return Outcome(200, "done.html", _joined(email))

    # -- subscribe -----------------------------------------------------------------------------

    async def subscribe_form(self, request: Request) -> Response:
        return self.page(self._form(), headers=FORM_HEADERS)

    async def subscribe(self, request: Request) -> Response:
        if not self._same_site(request.headers):
            return self.page(self._form(note=_CROSS_SITE, status=403), headers=FORM_HEADERS)
        fields = await _fields(request, FORM_FIELDS)
        peer = request.client.host if request.client else ""
        client = client_address(peer, request.headers, self.settings.server.trusted_proxy_header)
        outcome, email = await run_in_threadpool(self._subscribe, fields, client)
        tasks = None
        if email is not None:  # asked after the answer: it cannot tell how the address is listed
            tasks = BackgroundTasks()
            tasks.add_task(self.signup.subscribe, email, _web_ref())
            tasks.add_task(self.drain)
        return self.page(outcome, headers=FORM_HEADERS, background=tasks)

    def _subscribe(self, fields: Mapping[str, str], client: str) -> tuple[Outcome, str | None]:
        """The answer to a sent form, and the address to ask after it (``None``: nobody)."""
        typed = fields["email"].strip()[:MAX_ADDRESS]
        check = self.signup.check_form(fields["form"])
        if check is not FormCheck.FRESH:
            return self._form(typed, note=_AGAIN[check]), None
        if fields[HONEYPOT]:
            return Outcome(200, "done.html", _asked(typed)), None  # as a person's; nothing done
        email = normal_or_none(typed)
        if email is None:
            return self._form(typed, note=_NO_ADDRESS, status=400), None
        if not self.signup.admit(client):
            return Outcome(429, "done.html", _BUSY), None
        return Outcome(200, "done.html", _asked(email)), email

    def _form(
        self, email: str = "", *, note: tuple[str, str] | None = None, status: int = 200
    ) -> Outcome:
        """The subscribe form (``note``: its text and tone, "note" or "error")."""
        text, tone = note or ("", "note")
        name = self.settings.newsletter.name
        values = {
            "heading": f"Subscribe to {name}",
            "text": f"Get {name} by email: enter your address and press Subscribe.",
            "note": text,
            "tone": tone,
            "email": email,
            "honeypot": HONEYPOT,
            "form": self.signup.form_token(),
        }
        return Outcome(status, "subscribe.html", values)

    def _same_site(self, headers: Headers) -> bool:
        """Was the form sent from the blog or from this host (see the module docstring)?"""
        stated = headers.get("origin") or headers.get("referer")
        found = origin(stated) if stated else None
        if found is None:
            return False
        if found in self.origins:
            return True
        own = origin("http://" + headers.get("host", ""))  # TLS may end at a proxy: any scheme
        return own is not None and _authority(found) == _authority(own)


# --- helpers ------------------------------------------------------------------------------------

_AGAIN = {
    FormCheck.MISSING: (
        "Almost there: press Subscribe to confirm this address (it keeps robots out).",
        "note",
    ),
    FormCheck.TOO_FAST: (
        "That was quick! To keep robots out, please wait a moment, then press Subscribe again.",
        "note",
    ),
    FormCheck.TOO_OLD: (
        "This page was open for a long while: please press Subscribe again.",
        "note",
    ),
}
_NO_ADDRESS = ("That does not look like an email address: please check it.", "error")
_CROSS_SITE = (
    "The form came from a page we do not know, so nothing was done. You can subscribe here.",
    "error",
)
_BUSY = {
    "heading": "Please try again later",
    "text": "Many people are signing up right now, more than we can answer at once. "
    "Nothing was done.",
    "more": "Please try again in an hour.",
}


def _asked(email: str) -> dict[str, str]:
    return {
        "heading": "Check your inbox",
        "text": f"If {mask_email(email)} can receive our mail, a message with a link to confirm "
        "is on its way. You are subscribed once you press the button it leads to.",
        "more": "Nothing after a few minutes? Look in the spam folder, or try again tomorrow.",
    }


def _authority(found: str) -> str:
    """``host[:port]`` of an origin, the default ports left out whatever the scheme."""
    netloc = found.split("://", 1)[1]
    return netloc.removesuffix(":80").removesuffix(":443")


async def _fields(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The form's text fields ``names`` ("" when absent), the body capped as for ``_token``."""
    async with request.form(max_files=0, max_fields=10, max_part_size=MAX_FORM_BODY) as form:
        values = {name: form.get(name) for name in names}
    return {name: value if isinstance(value, str) else "" for name, value in values.items()}


def _ask(heading: str, text: str, token: str, *, confirm: bool = False) -> Outcome:
    """The page behind a link: one button that POSTs the token back (GET changes nothing)."""
    action, button = ("/confirm", "Yes, subscribe me") if confirm else ("/unsubscribe", heading)
    values = {"heading": heading, "text": text, "action": action, "token": token, "button": button}
    return Outcome(200, "ask.html", values)


def _invalid_link() -> Outcome:
    return Outcome(
        400,
        "done.html",
        {
            "heading": "This link does not work",
            "text": "The link is not valid, or no longer valid. Nothing was changed.",
            "more": "",
        },
    )


def _expired() -> Outcome:
    return Outcome(
        400,
        "done.html",
        {
            "heading": "This link has expired",
            "text": "Confirmation links are valid for 7 days. Nothing was changed.",
            "more": "To subscribe, simply ask again.",
        },
    )


_SAVED = {
    "save": "Your choice is saved",
    "pause": "Paused",
    "resume": "Welcome back",
}
_FOREIGN_FORM = {
    "heading": "Nothing was changed",
    "text": "The form came from a page we do not know, so nothing was done.",
    "more": "Please use the preferences link in one of our emails.",
}


def _joined(email: str) -> dict[str, str]:
    return {
        "heading": "You are subscribed",
        "text": f"Welcome! The newsletter will now reach {mask_email(email)}.",
        "more": "Every issue has a link to leave whenever you like.",
    }


def _web_ref() -> str:
    return f"web:{secrets.token_hex(6)}"


async def _token(request: Request) -> str:
    """The token from the query (RFC 8058 one-click) or the form body."""
    token = request.query_params.get("token", "")
    if token:
        return token
    # the field cap is the body cap: an oversized body is always refused by ``_Guard`` (413),
    # however the reads fall, never first by the form parser's own field limit (400)
    async with request.form(max_files=0, max_fields=10, max_part_size=MAX_FORM_BODY) as form:
        value = form.get("token")
    return value if isinstance(value, str) else ""
