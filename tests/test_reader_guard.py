"""The feed client cannot be steered: one deadline for the whole exchange, no private addresses
(first URL and every redirect, checked before any connection, connected to the checked address),
and feed URLs masked in what the reader reports.

Outside addresses appear here only as names and redirect targets: ``loopback_only`` refuses any
connection or lookup beyond 127.0.0.0/8 and records it, and every test asserts none was tried.
"""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path

import pytest
from peers.feed_server import FeedServer

from crusader_mail.clock import FixedClock
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.network import AddressPolicy, ip_literal, non_public
from crusader_mail.feeds.read import FetchOutcome, backfill, read_feed
from crusader_mail.settings import FetchSettings
from crusader_mail.util.masking import mask_url, mask_urls
from tests.support.feeds import loopback_fetch, page
from tests.support.network import FakeDNS, Guard

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
ATOM = (FIXTURES / "atom.xml").read_bytes()
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "biz-crusader" / "feed.xml"
ADMIN = b"<rss version='2.0'><channel><title>admin</title><item><title>secret</title>" + (
    b"<link>https://admin.example/1</link></item></channel></rss>"
)


def read(
    url: str, settings: FetchSettings, clock: FixedClock, dns: FakeDNS | None = None
) -> FetchOutcome:
    with make_client(settings, **({"resolve": dns} if dns else {})) as client:
        return read_feed(url, client, settings, None, clock)


# --- 9. one deadline for connect, headers and body ------------------------------------------


def test_the_deadline_covers_headers_trickled_byte_by_byte(
    feed_server: FeedServer, clock: FixedClock, loopback_only: Guard
) -> None:
    # Every header byte comes well within the read timeout; all of them take ~25 s.
    url = feed_server.add("/trickle.xml", ATOM, trickle=0.02, headers={"X-Padding": "x" * 1200})
    settings = loopback_fetch(timeout=0.5, connect_timeout=0.5)
    outcome = read(url, settings, clock)
    assert outcome.report.status == "error"
    assert outcome.report.error == "timed out after 0.5 s (fetch.timeout)"
    assert feed_server.wait_hung_up("/trickle.xml")  # we closed it while it still trickled
    assert loopback_only.outside == []


def test_the_deadline_covers_the_whole_redirect_chain(
    feed_server: FeedServer, clock: FixedClock
) -> None:
    feed_server.add("/slow-end.xml", ATOM, trickle=0.02, headers={"X-Padding": "x" * 1200})
    url = feed_server.redirect("/start.xml", "/slow-end.xml", status=302)
    settings = loopback_fetch(timeout=0.5, connect_timeout=0.5)
    assert read(url, settings, clock).report.error == "timed out after 0.5 s (fetch.timeout)"
    assert feed_server.wait_hung_up("/slow-end.xml")


def test_the_deadline_covers_a_name_lookup_that_never_answers(
    clock: FixedClock, loopback_only: Guard
) -> None:
    answer = threading.Event()

    def stuck(host: str) -> list[str]:
        answer.wait(30)  # a DNS server that does not answer
        return ["127.0.0.1"]

    settings = loopback_fetch(timeout=0.3, connect_timeout=5)
    try:
        with make_client(settings, resolve=stuck) as client:
            outcome = read_feed("http://slow-dns.test/feed.xml", client, settings, None, clock)
    finally:
        answer.set()
    assert outcome.report.error == "timed out after 0.3 s (fetch.timeout)"
    assert loopback_only.outside == []


# --- 10. no private addresses unless allowed --------------------------------------------------


def test_a_loopback_feed_is_refused_by_default_before_any_request(
    feed_server: FeedServer, clock: FixedClock, loopback_only: Guard
) -> None:
    url = feed_server.add("/feed.xml", ATOM)
    outcome = read(url, FetchSettings(), clock)
    assert outcome.report.status == "error"
    assert outcome.report.error == (
        "refused: 127.0.0.1 is a loopback address "
        "(a feed there needs fetch.allow_private or the host in fetch.allow_hosts)"
    )
    by_name = read(f"http://localhost:{feed_server.port}/feed.xml", FetchSettings(), clock)
    assert (by_name.report.error or "").startswith("refused: localhost resolves to ")
    assert feed_server.requests == []
    assert loopback_only.outside == []


def test_every_spelling_of_a_loopback_first_url_is_refused(
    feed_server: FeedServer, clock: FixedClock, loopback_only: Guard
) -> None:
    feed_server.add("/feed.xml", ATOM)
    port = feed_server.port
    for host in ("0177.0.0.1", "2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]", "[::1]"):
        outcome = read(f"http://{host}:{port}/feed.xml", FetchSettings(), clock)
        assert (outcome.report.error or "").startswith("refused: "), (host, outcome.report)
        assert "a loopback address" in (outcome.report.error or "")
    assert feed_server.requests == []
    assert loopback_only.outside == []


def test_private_feeds_stay_possible_by_setting_or_allow_list(
    feed_server: FeedServer, clock: FixedClock, loopback_only: Guard
) -> None:
    url = feed_server.add("/feed.xml", ATOM)
    for settings in (
        FetchSettings(allow_private=True),
        FetchSettings(allow_hosts=("127.0.0.1",)),
        FetchSettings(allow_hosts=("127.0.0.0/8",)),
    ):
        assert read(url, settings, clock).report.status == "ok", settings
    by_name = f"http://LocalHost:{feed_server.port}/feed.xml"
    assert read(by_name, FetchSettings(allow_hosts=("localhost",)), clock).report.status == "ok"
    assert feed_server.hits("/feed.xml") == 4
    assert loopback_only.outside == []


def test_the_bundled_example_file_reads_with_default_settings(clock: FixedClock) -> None:
    outcome = read(str(EXAMPLE), FetchSettings(), clock)
    assert outcome.report.status == "ok"
    assert outcome.report.entries > 0


def test_a_redirect_to_the_admin_port_on_loopback_is_refused(
    feed_server: FeedServer, clock: FixedClock, loopback_only: Guard
) -> None:
    """The reported attack: a public feed redirects to 127.0.0.1's admin port."""
    feed_server.add("/admin", ADMIN)
    feed_server.redirect("/feed.xml", feed_server.url("/admin"), status=302)
    settings = FetchSettings(allow_hosts=("localhost",))  # the feed's own host only
    outcome = read(f"http://localhost:{feed_server.port}/feed.xml", settings, clock)
    assert outcome.report.status == "error"
    assert (outcome.report.error or "").startswith("refused: 127.0.0.1 is a loopback address")
    assert outcome.posts == []
    assert feed_server.hits("/feed.xml") == 1
    assert feed_server.hits("/admin") == 0
    assert loopback_only.outside == []


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("http://10.0.0.1/feed", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://192.168.1.1:8080/", "a private address"),
        ("http://100.64.0.1/", "a non-public address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://240.0.0.1/", "a reserved address"),
        ("http://0.0.0.0:{port}/admin", "an unspecified address"),
        ("http://[::1]:{port}/admin", "a loopback address"),
        ("http://[::ffff:127.0.0.1]:{port}/admin", "a loopback address"),
        ("http://[::ffff:169.254.169.254]/", "a link-local address"),
        ("http://[fe80::1]/", "a link-local address"),
        ("http://[fc00::1]/", "a private address"),
        ("http://[2002:a00:1::]/", "a private address"),  # 6to4 around 10.0.0.1
        ("http://[64:ff9b::a9fe:a9fe]/", "a link-local address"),  # NAT64 around 169.254...
        ("http://2130706433:{port}/admin", "a loopback address"),  # decimal 127.0.0.1
        ("http://0x7f.1:{port}/admin", "a loopback address"),  # hex, short form
        ("http://127.1:{port}/admin", "a loopback address"),
    ],
)
def test_redirects_to_non_public_addresses_are_refused_before_any_connection(
    feed_server: FeedServer, clock: FixedClock, loopback_only: Guard, target: str, kind: str
) -> None:
    feed_server.add("/admin", ADMIN)
    feed_server.redirect("/feed.xml", target.format(port=feed_server.port), status=302)
    settings = FetchSettings(allow_hosts=("localhost",))
    outcome = read(f"http://localhost:{feed_server.port}/feed.xml", settings, clock)
    assert outcome.report.status == "error"
    assert (outcome.report.error or "").startswith("refused: "), outcome.report.error
    assert kind in (outcome.report.error or "")
    assert feed_server.hits("/admin") == 0
    assert loopback_only.outside == []  # not even a lookup left this machine


def test_names_resolving_to_private_addresses_are_refused_before_any_connection(
    feed_server: FeedServer, clock: FixedClock, loopback_only: Guard
) -> None:
    dns = FakeDNS(
        {
            "feeds.test": [["127.0.0.1"]],
            "metadata.test": [["169.254.169.254"]],
            "intranet.test": [["10.1.2.3"]],
            "mixed.test": [["93.184.216.34", "10.0.0.1"]],  # one private answer is enough
            "mapped.test": [["::ffff:10.0.0.1"]],
        }
    )
    feed_server.add("/admin", ADMIN)
    settings = FetchSettings(allow_hosts=("feeds.test",))
    for name, address in [
        ("metadata.test", "169.254.169.254"),
        ("intranet.test", "10.1.2.3"),
        ("mixed.test", "10.0.0.1"),
        ("mapped.test", "::ffff:a00:1"),
    ]:
        feed_server.redirect("/feed.xml", f"http://{name}/admin", status=302)
        outcome = read(f"http://feeds.test:{feed_server.port}/feed.xml", settings, clock, dns)
        assert (outcome.report.error or "").startswith(f"refused: {name} resolves to {address},"), (
            outcome.report.error
        )
        first = read(f"http://{name}:{feed_server.port}/admin", settings, clock, dns)
        assert (first.report.error or "").startswith(f"refused: {name} resolves to")
    assert feed_server.hits("/admin") == 0
    assert feed_server.hits("/feed.xml") == 4
    assert loopback_only.outside == []


def test_the_connection_goes_to_the_address_that_was_checked(
    feed_server: FeedServer, clock: FixedClock, loopback_only: Guard
) -> None:
    """DNS rebinding: the first answer is allowed, the next one is not. Each connection uses
    the one lookup that was checked; nothing looks the name up again behind the check."""
    dns = FakeDNS({"feeds.test": [["127.0.0.1"], ["10.0.0.1"]]})
    feed_server.add("/feed.xml", ATOM)
    settings = FetchSettings(allow_hosts=("127.0.0.0/8",))
    url = f"http://feeds.test:{feed_server.port}/feed.xml"
    with make_client(settings, resolve=dns) as client:
        first = read_feed(url, client, settings, None, clock)
        assert first.report.status == "ok"
        assert dns.lookups == ["feeds.test"]
        assert feed_server.requests[-1].headers["host"] == f"feeds.test:{feed_server.port}"
        second = read_feed(url, client, settings, None, clock)  # a new connection (HTTP/1.0)
    assert (second.report.error or "").startswith("refused: feeds.test resolves to 10.0.0.1,")
    assert dns.lookups == ["feeds.test", "feeds.test"]
    assert feed_server.hits("/feed.xml") == 1
    assert loopback_only.outside == []


def test_public_addresses_pass_and_every_spelling_is_judged() -> None:
    policy = AddressPolicy.from_settings(FetchSettings())
    for public in ("93.184.216.34", "2606:4700:4700::1111", "::ffff:93.184.216.34"):
        assert non_public(ipaddress.ip_address(public)) is None
        assert policy.refusal("blog.example", ipaddress.ip_address(public)) is None
    for spelling in ("2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"):
        address = ip_literal(spelling)
        assert address is not None, spelling
        assert policy.refusal(spelling, address) is not None, spelling
    assert ip_literal("blog.example") is None
    assert ip_literal("feed") is None
    allowed = AddressPolicy.from_settings(FetchSettings(allow_hosts=("10.1.0.0/16", "Wiki.Corp")))
    assert allowed.refusal("wiki.corp.", ipaddress.ip_address("10.9.9.9")) is None
    assert allowed.refusal("x.corp", ipaddress.ip_address("10.1.2.3")) is None
    assert allowed.refusal("x.corp", ipaddress.ip_address("10.2.0.1")) is not None


def test_allow_hosts_entries_are_checked() -> None:
    with pytest.raises(ValueError, match="is not a host name, an address or a network"):
        FetchSettings(allow_hosts=("http://intranet/feed",))


# --- 13. feed URLs are masked in what the reader reports --------------------------------------


def test_a_feed_url_with_credentials_is_masked_in_errors_but_used_for_fetching(
    feed_server: FeedServer, clock: FixedClock
) -> None:
    url = f"http://reader:hunter2@127.0.0.1:{feed_server.port}/missing.xml?key=s3cret&page=2"
    outcome = read(url, loopback_fetch(), clock)
    masked = f"http://•••@127.0.0.1:{feed_server.port}/missing.xml?key=•••&page=2"
    assert outcome.report.error == f"HTTP 404 Not Found from {masked}"
    assert outcome.report.url == url  # the real URL stays the feed's name in the archive
    seen = feed_server.requests[-1]
    assert seen.path == "/missing.xml?key=s3cret&page=2"  # fetched with the real values
    assert seen.headers["authorization"] == "Basic cmVhZGVyOmh1bnRlcjI="


def test_credentials_in_the_feed_url_never_reach_a_post(
    feed_server: FeedServer, clock: FixedClock
) -> None:
    body = (
        b"<rss version='2.0'><channel><title>Members</title><item><title>A</title>"
        b"<link>/posts/1</link><description>&lt;a href='/rel'&gt;x&lt;/a&gt; "
        b"&lt;a href='#top'&gt;top&lt;/a&gt;&lt;img src='i.png' alt=''&gt;</description></item>"
        b"</channel></rss>"
    )
    feed_server.add("/members.xml?page=1&token=s3cret", body)
    url = f"http://reader:hunter2@127.0.0.1:{feed_server.port}/members.xml?page=1&token=s3cret"
    outcome = read(url, loopback_fetch(), clock)
    assert outcome.report.status == "ok", outcome.report
    (post,) = outcome.posts
    base = f"http://127.0.0.1:{feed_server.port}"
    assert post.link == f"{base}/posts/1"
    assert f'href="{base}/rel"' in post.content_html
    assert f'href="{base}/members.xml?page=1#top"' in post.content_html
    assert f'src="{base}/i.png"' in post.content_html
    for secret in ("hunter2", "reader:", "s3cret"):
        assert secret not in post.model_dump_json()


def test_backfill_warnings_mask_the_feed_url(feed_server: FeedServer, clock: FixedClock) -> None:
    url = feed_server.url("/paged.xml") + "?api_key=zzz999"
    feed_server.add("/paged.xml?api_key=zzz999", page(1, "/broken.xml?token=abc123"))
    settings = loopback_fetch()
    with make_client(settings) as client:
        outcome = backfill(url, client, settings, clock)
    stopped = [w for w in outcome.report.warnings if w.startswith("backfill stopped at")]
    assert len(stopped) == 1
    assert "abc123" not in stopped[0]
    assert "token=•••" in stopped[0]
    assert feed_server.hits("/broken.xml?token=abc123") == 1


def test_mask_url_hides_userinfo_and_secret_parameters_only() -> None:
    assert mask_url("https://u:pw@h.example:8443/f?api_key=1&page=2&X-Amz-Signature=s#t") == (
        "https://•••@h.example:8443/f?api_key=•••&page=2&X-Amz-Signature=•••#t"
    )
    assert mask_url("https://h.example/feed?paged=3") == "https://h.example/feed?paged=3"
    assert mask_url("https://h.example/cb#access_token=abc&x=1") == (
        "https://h.example/cb#access_token=•••&x=1"
    )
    assert mask_url("examples/feed.xml") == "examples/feed.xml"
    line = "backfill stopped at https://h.example/f?token=abc: HTTP 404 (see https://x.example/)."
    assert mask_urls(line) == (
        "backfill stopped at https://h.example/f?token=•••: HTTP 404 (see https://x.example/)."
    )
