"""The lean path of a one-click (``web/oneclick.py``) over real HTTP, with the files store and
with PostgreSQL: for every kind of token it answers byte for byte as the ordinary route does
(the token in the form body) and leaves the list as that route does; one-clicks that arrive
together are each answered and recorded once; a batch that fails sends each of its requests
the ordinary way; and :class:`Batches` on its own."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from peers.sendgrid_server import SendGridServer, sendgrid_server
from pydantic import SecretStr

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.errors import StateError
from crusader_mail.models import ConsentAction, Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.storage.contract import Store
from crusader_mail.util.tokens import Purpose, Signer
from crusader_mail.web.app import build_app
from crusader_mail.web.oneclick import Batches
from tests.support.inbox import SECRET, make_settings
from tests.support.web import running

__all__ = ["sendgrid_server"]

JANE = "jane@reader.example"
CAROL = "Carol@Reader.example"  # kept as first given, with capitals
ONE_CLICK = b"List-Unsubscribe=One-Click"


@pytest.fixture
def settings(clean_env: Path, tmp_path: Path, sendgrid_server: SendGridServer) -> Settings:
    return make_settings(
        tmp_path, sendgrid={"api_key": sendgrid_server.api_key, "api_url": sendgrid_server.url}
    )


@pytest.fixture(params=["files", "postgres"])
def either(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """``settings`` with the files store, or with a fresh PostgreSQL database."""
    if request.param == "files":
        return settings
    url = request.getfixturevalue("database_url")
    return settings.model_copy(update={"database_url": SecretStr(url)})


@contextmanager
def serving(settings: Settings, clock: FixedClock, store: Store | None = None) -> Iterator[str]:
    mailer = make_mailer(settings, clock, sleep=lambda _s: None)
    own = store or open_store(settings, clock)
    try:
        with running(build_app(settings, clock, mailer, own)) as url:
            yield url
    finally:
        if store is None:
            own.close()


@pytest.fixture
def store(either: Settings, clock: FixedClock) -> Iterator[Store]:
    """The test's own view of the list (the server opens its own)."""
    opened = open_store(either, clock)
    yield opened
    opened.close()


def post(base: str, target: str, body: bytes) -> bytes:
    """The whole answer to a POST on a connection of its own, its ``date`` line left out."""
    host, port = base.removeprefix("http://").split(":")
    request = (
        f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + rest


def lean(base: str, token: str) -> bytes:
    """A mail client's RFC 8058 one-click: the token in the query."""
    return post(base, f"/unsubscribe?token={token}", ONE_CLICK)


def ordinary(base: str, token: str) -> bytes:
    """The page's button: the token in the form body (Starlette's route)."""
    return post(base, "/unsubscribe", f"token={token}".encode())


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def signed(purpose: Purpose, email: str, clock: FixedClock, secret: str = SECRET) -> str:
    return Signer(secret).make(purpose, email, clock.now())


def altered(token: str) -> str:
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


TOKENS: dict[str, tuple[Status | None, Callable[[FixedClock], str], int]] = {
    # kind: (Jane's or Carol's status before, None: not on the list; the token; the status)
    "valid": (Status.ACTIVE, lambda c: signed(Purpose.UNSUBSCRIBE, JANE, c), 200),
    "capitals": (Status.ACTIVE, lambda c: signed(Purpose.UNSUBSCRIBE, CAROL, c), 200),
    "pending": (Status.PENDING, lambda c: signed(Purpose.UNSUBSCRIBE, JANE, c), 200),
    "a year old": (
        Status.ACTIVE,
        lambda c: Signer(SECRET).make(Purpose.UNSUBSCRIBE, JANE, c.now() - timedelta(days=365)),
        200,
    ),
    "spent": (Status.UNSUBSCRIBED, lambda c: signed(Purpose.UNSUBSCRIBE, JANE, c), 200),
    "bounced": (Status.BOUNCED, lambda c: signed(Purpose.UNSUBSCRIBE, JANE, c), 200),
    "forged": (Status.ACTIVE, lambda c: signed(Purpose.UNSUBSCRIBE, JANE, c, "x" * 32), 400),
    "altered": (Status.ACTIVE, lambda c: altered(signed(Purpose.UNSUBSCRIBE, JANE, c)), 400),
    "another purpose": (Status.ACTIVE, lambda c: signed(Purpose.PREFERENCES, JANE, c), 400),
    "confirmation": (Status.PENDING, lambda c: signed(Purpose.CONFIRM, JANE, c), 400),
    "not on the list": (None, lambda c: signed(Purpose.UNSUBSCRIBE, JANE, c), 400),
    "no token at all": (Status.ACTIVE, lambda _c: "not-a-token", 400),
}


def reset(store: Store, before: Status | None) -> None:
    """Jane and Carol as new, each with ``before`` (``None``: neither is on the list)."""
    with store.roster.edit() as changes:
        for email in (JANE, CAROL):
            changes.forget(email)
            if before is not None:
                changes.add(email, status=before, via=Source.CLI)


def state(store: Store) -> list[tuple[Any, ...]]:
    """How Jane and Carol stand, and what their consent histories say (refs left out)."""
    found: list[tuple[Any, ...]] = []
    for email in (JANE, CAROL):
        reader = store.roster.get(email)
        found.append((reader.status, reader.left_via) if reader else (None, None))
        found += [(e.action, e.status, e.via) for e in store.roster.history(email)]
    return found


@pytest.mark.parametrize("kind", list(TOKENS))
def test_the_lean_path_answers_every_token_as_the_ordinary_route(
    either: Settings, store: Store, clock: FixedClock, sendgrid_server: SendGridServer, kind: str
) -> None:
    before, make, expected = TOKENS[kind]
    token = make(clock)
    outcomes = []
    with serving(either, clock) as base:
        for click in (lean, ordinary):
            reset(store, before)
            answer = click(base, token)
            outcomes.append((answer, state(store)))
    (lean_answer, lean_state), (route_answer, route_state) = outcomes
    assert status_of(lean_answer) == expected, lean_answer
    assert lean_answer == route_answer
    assert lean_state == route_state
    assert b"security-policy: default-src 'none'" in lean_answer.lower()
    if expected == 200 and before in (Status.ACTIVE, Status.PENDING):
        assert (Status.UNSUBSCRIBED, Source.WEB) in lean_state  # Jane, or Carol
    assert sendgrid_server.deliveries == []  # after a one-click the page is the goodbye


def test_one_clicks_that_arrive_together_are_each_answered_and_recorded_once(
    either: Settings, store: Store, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    readers = [f"reader{n}@reader.example" for n in range(40)]
    with store.roster.edit() as changes:
        for email in readers:
            changes.add(email, via=Source.CLI)
    tokens = [signed(Purpose.UNSUBSCRIBE, email, clock) for email in readers]
    tokens += tokens[:5] + ["forged-token"] * 3  # clicked twice, and nonsense
    answers: dict[int, bytes] = {}
    with serving(either, clock) as base:
        threads = [
            threading.Thread(target=lambda i=i, t=t: answers.__setitem__(i, lean(base, t)))
            for i, t in enumerate(tokens)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    statuses = [status_of(answers[index]) for index in range(len(tokens))]
    assert statuses == [200] * 45 + [400] * 3
    for email in readers:
        reader = store.roster.get(email)
        assert reader is not None
        assert reader.status is Status.UNSUBSCRIBED
        actions = [event.action for event in store.roster.history(email)]
        assert actions == [ConsentAction.ADD, ConsentAction.UNSUBSCRIBE]
    assert sendgrid_server.deliveries == []


def test_a_batch_that_fails_sends_each_request_the_ordinary_way(
    settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    store = open_store(settings, clock)
    reset(store, Status.ACTIVE)
    edit = store.roster.edit
    calls: list[str] = []

    def flaky() -> Any:  # the first unit of change fails, as a lost connection would
        calls.append("edit")
        if len(calls) == 1:
            raise StateError("PostgreSQL at 127.0.0.1:5432/news: connection lost")
        return edit()

    store.roster.edit = flaky  # type: ignore[method-assign]
    with serving(settings, clock, store) as base:
        answer = lean(base, signed(Purpose.UNSUBSCRIBE, JANE, clock))
        units = len(calls)  # the batch's, then the request's alone
        reset(store, Status.ACTIVE)
        expected = ordinary(base, signed(Purpose.UNSUBSCRIBE, JANE, clock))
    assert status_of(answer) == 200
    assert answer == expected
    assert units == 2
    reader = store.roster.get(JANE)
    assert reader is not None
    assert reader.status is Status.UNSUBSCRIBED


# --- Batches on its own -----------------------------------------------------------------------


def test_batches_group_what_arrives_while_a_call_runs() -> None:
    calls: list[list[int]] = []
    after: list[int] = []
    started = threading.Event()
    go_on = threading.Event()

    def work(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            started.set()
            assert go_on.wait(30)
        if 13 in items:
            raise StateError("this batch fails")
        return [item * 10 for item in items]

    async def main() -> list[int | None]:
        batches: Batches[int, int] = Batches(work, lambda: after.append(1), most=4, lanes=1)
        first = asyncio.ensure_future(batches(0))
        await asyncio.to_thread(started.wait, 30)  # the first call runs: the rest wait
        rest = [asyncio.ensure_future(batches(item)) for item in (1, 2, 3, 4, 5, 13, 7)]
        await asyncio.sleep(0)
        go_on.set()
        found = [await first] + [await each for each in rest]
        while not after:  # ``then`` is not awaited: it runs once the lane is done
            await asyncio.sleep(0.01)
        return found

    results = asyncio.run(main())
    assert calls == [[0], [1, 2, 3, 4], [5, 13, 7]]
    assert results == [0, 10, 20, 30, 40, None, None, None]
    assert after == [1]  # once, after the last call (one lane, busy all along)


def test_batches_run_calls_side_by_side_in_their_lanes() -> None:
    both = threading.Barrier(2, timeout=30)  # each call waits until the other has begun

    def work(items: list[int]) -> list[int]:
        both.wait()
        return items

    async def main() -> list[int | None]:
        batches: Batches[int, int] = Batches(work, lambda: None, most=1, lanes=2)
        return list(await asyncio.gather(batches(1), batches(2)))

    assert asyncio.run(main()) == [1, 2]
