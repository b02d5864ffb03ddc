"""Shared set-up for the tests of joining: the subscribe form, the welcome, readers added as
pending (no tests here)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import timedelta

import httpx
from peers.sendgrid_server import Delivery

from crusader_mail.clock import Clock, FixedClock
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import read_feed
from crusader_mail.models import IssueRecord
from crusader_mail.settings import FetchSettings, Settings
from crusader_mail.storage import open_store
from crusader_mail.storage.archive import Archive
from crusader_mail.subscriptions.signup import FORM_MIN_AGE
from tests.support.browser import EXAMPLE_FEED

SITE = "https://bizcrusader.example"  # newsletter.site_url: the blog
POST = "https://bizcrusader.example/?p="  # the example feed's post ids: POST + number
_FORM = re.compile(r'name="form" value="([^"]+)"')


def seed_archive(settings: Settings, clock: Clock, related: Iterable[Sequence[str]]) -> Archive:
    """The example feed's posts in the store's archive, and one sent issue for each list of
    related post ids in ``related`` (ids are ``POST`` + a number)."""
    store = open_store(settings, clock)
    archive = store.archive.load()
    with make_client(FetchSettings()) as client:
        outcome = read_feed(str(EXAMPLE_FEED), client, FetchSettings(), None, clock)
    archive.merge(outcome.posts, clock.now())
    for number, ids in enumerate(related):
        archive.record_issue(
            IssueRecord(
                issue_id=f"2026-11-0{number + 1}-0000000{number}",
                created_at=clock.now(),
                subject=f"Issue {number}",
                post_ids=(),
                related_ids=tuple(ids),
                status="sent",
            )
        )
    store.archive.save(archive)
    return archive


def form_token(html: str) -> str:
    """The signed token of the subscribe form on a page."""
    match = _FORM.search(html)
    assert match, html
    return match.group(1)


def fresh_form(http: httpx.Client, clock: FixedClock) -> str:
    """``GET /subscribe``'s form token, old enough to be sent (the clock moved past
    ``FORM_MIN_AGE``)."""
    page = http.get("/subscribe")
    assert page.status_code == 200, page.text
    clock.advance(FORM_MIN_AGE + timedelta(seconds=3))
    return form_token(page.text)


def join(
    http: httpx.Client,
    email: str,
    form: str,
    *,
    source: str | None = SITE,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    """``POST /subscribe`` as a browser on ``source`` (its ``Origin``; ``None``: no Origin)."""
    sent = dict(headers or {})
    if source is not None:
        sent["Origin"] = source
    return http.post(
        "/subscribe", data={"email": email, "form": form, "comment": "", **fields}, headers=sent
    )


def text_of(delivery: Delivery, kind: str = "text/plain") -> str:
    return next(value for type_, value in delivery.content if type_ == kind)
