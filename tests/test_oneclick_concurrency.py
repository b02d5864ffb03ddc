"""200 one-click unsubscribes at once over real HTTP on ``crusader-mail serve`` (a subprocess)
with a PostgreSQL list of 1,000,000 readers (restored through the store, so ``COPY``-ed; one
list for the module, each test clicking readers of its own): every one recorded, none failed,
every other reader as they were, one row per mailbox; with the loopback SendGrid up and down,
and no mail at all (after a one-click the page is the goodbye: nothing is queued or sent).
The same, timed, is ``bench/bench_oneclick.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from peers.sendgrid_server import SendGridServer

from crusader_mail.clock import FixedClock
from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.storage.postgres import PostgresStore
from crusader_mail.util.tokens import Purpose, Signer
from tests.support.postgres import Cluster
from tests.support.serving import free_port, serve_process

pytestmark = pytest.mark.timeout(300)  # the first test also fills the list: about 30 s alone

SECRET = "oneclick-secret-0123456789abcdef"
READERS = 1_000_000
CLICKS = 200
UP = [index * (READERS // CLICKS) + 7 for index in range(CLICKS)]  # spread over the list
DOWN = [index + READERS // CLICKS // 2 for index in UP]
JOINED = datetime(2026, 11, 1, tzinfo=UTC)


def address(index: int) -> str:
    """Reader ``index``'s address: every third one spelt with capitals, as people type them."""
    return f"Reader.{index:07d}@example.com" if index % 3 == 0 else f"r{index:07d}@example.com"


def config(folder: Path, port: int, sendgrid_url: str) -> Path:
    folder.mkdir()
    (folder / "crusader-mail.toml").write_text(
        f'templates_dir = "{Path(__file__).resolve().parent.parent / "templates"}"\n'
        "[newsletter]\n"
        'name = "Biz Crusader"\nfrom_email = "news@bizcrusader.example"\n'
        f'unsubscribe_url = "http://127.0.0.1:{port}/unsubscribe"\n'
        "[sendgrid]\n"
        f'api_url = "{sendgrid_url}"\nmax_retries = 1\nbackoff_base = 0.05\ntimeout = 5\n',
        encoding="utf-8",
    )
    return folder


def environment(database_url: str, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUSADER_MAIL_", "SENDGRID_"))}
    env.update(
        CRUSADER_MAIL_DATABASE_URL=database_url,
        CRUSADER_MAIL_SECRET_KEY=SECRET,
        SENDGRID_API_KEY=api_key,
    )
    return env


async def click_all(base: str, tokens: list[str]) -> list[int]:
    """Every token's RFC 8058 one-click POST, all at once; the status codes."""
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    f"/unsubscribe?token={token}",
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                for token in tokens
            )
        )
    return [response.status_code for response in responses]


def received(sendgrid: SendGridServer) -> list[str]:
    """Every address a message went to, spelt as sent, once per message."""
    return [to for delivery in sendgrid.deliveries for to in delivery.to]


@pytest.fixture(scope="module")
def filled(postgres_cluster: Cluster) -> Iterator[str]:
    url = postgres_cluster.database()
    store = PostgresStore(url, FixedClock(JOINED), lambda: SECRET, Signer(SECRET).hint)
    readers = (
        Subscriber.model_construct(  # valid by construction: restore checks each address
            email=address(index),
            name=f"Reader {index}",
            status=Status.ACTIVE,
            subscribed_at=JOINED,
            subscribed_via=Source.IMPORT,
            confirmed_at=JOINED,
            confirmed_via=Source.IMPORT,
            updated_at=JOINED,
        )
        for index in range(READERS)
    )
    try:
        assert store.roster.restore(readers) == READERS
    finally:
        store.close()
    yield url
    postgres_cluster.drop(url)


def tokens_of(indexes: list[int]) -> list[str]:
    signer = Signer(SECRET)
    # a token made for the address in another spelling: the mailbox is what it names
    return [signer.make(Purpose.UNSUBSCRIBE, address(i).upper(), JOINED) for i in indexes]


def check_table(url: str, clicked: list[int]) -> None:
    """Every clicked reader left by the web, spelt as stored; nobody else changed but the
    other test's readers; every row still there, one per mailbox."""
    with psycopg.connect(url) as conn:
        [(count, misfiled)] = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE mailbox <> lower(email)) FROM readers"
        ).fetchall()
        rows = conn.execute(
            "SELECT mailbox, email, status, left_via FROM readers WHERE status <> 'active' "
            "OR left_via IS NOT NULL"
        ).fetchall()
    assert (count, misfiled) == (READERS, 0)
    left = {mailbox: (email, status, via) for mailbox, email, status, via in rows}
    for index in clicked:
        assert left[address(index).lower()] == (address(index), "unsubscribed", "web")
    assert set(left) <= {address(index).lower() for index in (*UP, *DOWN)}


def test_200_one_clicks_at_once_are_all_recorded_and_answered(
    filled: str, tmp_path: Path, sendgrid_server: SendGridServer
) -> None:
    port = free_port()
    folder = config(tmp_path / "server", port, sendgrid_server.url)
    clicked = UP
    with serve_process(folder, environment(filled, sendgrid_server.api_key), port) as served:
        codes = asyncio.run(click_all(served.url, tokens_of(clicked)))
        assert codes == [200] * CLICKS
        check_table(filled, clicked)
        store = PostgresStore(filled, FixedClock(JOINED), lambda: SECRET)
        try:
            assert store.mail.waiting() == 0  # no goodbye mail after a one-click
        finally:
            store.close()
    assert received(sendgrid_server) == []
    assert "Traceback" not in served.stderr


def test_200_one_clicks_while_sendgrid_is_down_are_recorded_and_answered(
    filled: str, tmp_path: Path, sendgrid_server: SendGridServer
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"  # nobody listens there
    port = free_port()
    folder = config(tmp_path / "server", port, nowhere)
    clicked = DOWN
    with serve_process(folder, environment(filled, sendgrid_server.api_key), port) as served:
        codes = asyncio.run(click_all(served.url, tokens_of(clicked)))
    assert codes == [200] * CLICKS
    assert "Traceback" not in served.stderr
    check_table(filled, clicked)
    store = PostgresStore(filled, FixedClock(datetime.now(UTC)), lambda: SECRET)
    try:
        assert store.mail.waiting() == 0  # nothing queued: SendGrid being down changes nothing
    finally:
        store.close()
    assert sendgrid_server.deliveries == []
