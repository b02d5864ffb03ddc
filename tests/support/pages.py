"""A reader's own web pages, served by the app over uvicorn on 127.0.0.1: the preferences page
and the unsubscribe page with its "Pause instead?", for the browser test and ``make
screenshots`` (no tests here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crusader_mail.clock import Clock
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.models import Source
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.util.tokens import Purpose, Signer
from crusader_mail.web.app import build_app
from tests.support.inbox import SECRET, make_settings
from tests.support.web import running

READER = "jane@reader.example"
TOPICS = ("Marketing", "Sales", "Pricing for small agencies and freelancers")
NOWHERE = "http://127.0.0.1:9"  # SendGrid when no mail is to go out: nothing listens


def pages_settings(
    folder: Path, clock: Clock, api_key: str = "unused", api_url: str = NOWHERE
) -> Settings:
    """Settings under ``folder`` whose serve shares the store (``server.same_host``), the
    editor's ``TOPICS`` offered, and :data:`READER` on the list."""
    made = make_settings(
        folder, sendgrid={"api_key": api_key, "api_url": api_url}, server={"same_host": True}
    )
    made = made.model_copy(
        update={"newsletter": made.newsletter.model_copy(update={"topics": TOPICS})}
    )
    with open_store(made, clock).roster.edit() as changes:
        changes.add(READER, name="Jane", via=Source.CLI)
    return made


@contextmanager
def serving(settings: Settings, clock: Clock) -> Iterator[str]:
    """``crusader-mail serve`` for ``settings`` on 127.0.0.1: its URL."""
    mailer = make_mailer(settings, clock, sleep=lambda _s: None)
    with running(build_app(settings, clock, mailer, open_store(settings, clock))) as url:
        yield url


def reader_page(base: str, page: str, clock: Clock) -> str:
    """The URL of :data:`READER`'s ``page`` (``preferences`` or ``unsubscribe``) under
    ``base``, with the token their mail carries."""
    purpose = Purpose.PREFERENCES if page == "preferences" else Purpose.UNSUBSCRIBE
    return f"{base}/{page}?token={Signer(SECRET).make(purpose, READER, clock.now())}"
