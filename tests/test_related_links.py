"""Links as a related-posts signal: page keys written one way, links between posts found by
address or slug, shared keys weighed like labels, and the ranking lifted by them only where a
post has no labels; on a real FeedBurner feed, a series found through its posts' links."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.compose import related
from crusader_mail.compose.related import RelatedIndex, choose_related
from crusader_mail.compose.signals import LinkIndex, page_key
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import read_feed
from crusader_mail.models import Post
from crusader_mail.settings import FetchSettings
from tests.support.golden import make_post

SITE = "https://bizcrusader.example"


def linking(n: int, *hrefs: str, title: str | None = None, words: str = "") -> Post:
    links = "".join(f'<a href="{href}" rel="noopener">see</a> ' for href in hrefs)
    return make_post(n, title, content=f"<p>{words} {links}</p>")


def retainers() -> tuple[Post, Post, Post]:
    """An issue post linking an older post, and a newer post with the same words."""
    words = "pricing retainers for consultants"
    issue = linking(1, f"{SITE}/p/40/", title="Retainers, again", words=words)
    linked = linking(40, title="Notes on retainers", words=words)
    newer = linking(30, title="Notes on retainers", words=words)
    return issue, linked, newer


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://www.Example.org/a/b/", "example.org/a/b"),
        ("http://example.org/a/b/index.html#part", "example.org/a/b"),
        ("https://user@example.org:8080/a", "example.org/a"),
        ("https://example.org/a?utm_source=feed&amp;id=3&amp;fbclid=x", "example.org/a?id=3"),
        ("https://youtube.com/watch?v=abc", "youtube.com/watch?v=abc"),
        ("https://example.org", "example.org"),
        ("mailto:ana@example.org", None),
        ("/relative/path", None),
        ("https:///nohost", None),
    ],
)
def test_page_key_writes_an_address_one_way(url: str, key: str | None) -> None:
    assert page_key(url) == key


def test_a_link_to_another_post_and_a_common_target_are_shared_keys() -> None:
    posts = [
        linking(1, f"{SITE}/p/2"),  # links post 2 (its address without the trailing /)
        make_post(2),
        linking(3, f"{SITE}/p/5/", "https://docs.example.org/guide"),
        linking(4, "http://www.bizcrusader.example/p/5", "https://docs.example.org/guide/"),
        make_post(5),
        linking(6, "https://elsewhere.example/only-mine"),
    ]
    index = LinkIndex(posts)
    n = len(posts)
    assert index.shared(0) == {1: pytest.approx(math.log(n / 2) / math.log(n))}
    assert set(index.shared(1)) == {0}
    # 3 and 4 both link post 5 and the same guide: two shared keys; 5 shares one with each.
    assert index.shared(2)[3] == pytest.approx(
        math.log(n / 3) / math.log(n) + math.log(n / 2) / math.log(n)
    )
    assert set(index.shared(4)) == {2, 3}
    assert index.shared(5) == {}  # a page only it links to


def test_a_page_every_post_links_to_weighs_nothing() -> None:
    posts = [linking(n, f"{SITE}/") for n in range(1, 5)]
    index = LinkIndex(posts)
    assert all(weight == 0 for weight in index.shared(0).values())


def test_a_redirected_post_is_found_by_its_slug_unless_two_posts_end_with_it() -> None:
    proxied = [
        make_post(1).model_copy(
            update={"link": "http://feedproxy.example/~r/x/~3/abc/flaky-tests-at-google.html"}
        ),
        make_post(2).model_copy(update={"link": "http://feedproxy.example/~r/x/~3/def/about"}),
        make_post(3).model_copy(update={"link": "http://feedproxy.example/a/same-slug"}),
        make_post(4).model_copy(update={"link": "http://feedproxy.example/b/same-slug"}),
        linking(
            5,
            "https://testing.example/2016/05/flaky-tests-at-google.html",
            "https://testing.example/about",  # no - or _: not a slug
            "https://testing.example/2017/same-slug",  # two posts end with it: neither
        ),
    ]
    index = LinkIndex(proxied)
    assert 0 in index.keys[4]
    assert {1, 2, 3} & index.keys[4] == set()
    assert "testing.example/about" in index.keys[4]


def test_links_lift_a_post_with_words_in_common_only_where_the_post_has_no_labels() -> None:
    issue, linked, newer = retainers()
    silent = linking(20, title="Gardening", words="tomatoes basil")
    silent_linked = silent.model_copy(update={"id": f"{SITE}/p/41", "link": f"{SITE}/p/41/"})
    issue_linking_both = issue.model_copy(
        update={"content_html": issue.content_html + f'<a href="{SITE}/p/41/">x</a>'}
    )
    pool = [newer, linked, silent_linked]
    # Equal texts: the linked post comes first (without the link: the newer one, below).
    assert choose_related([issue], [newer, linked], (), 1) == [linked]
    index = RelatedIndex([issue_linking_both, *pool])
    text_only = index.text.cosine(0)
    scores = index.scores([0], [1, 2, 3])[0]
    assert scores[1] > scores[0] == pytest.approx(text_only[1])
    assert scores[2] == 0  # a link with no word in common: still unrelated
    # With labels, the post is compared by labels and text alone.
    labelled = [p.model_copy(update={"tags": ("pricing",)}) for p in (issue_linking_both, *pool)]
    plain = RelatedIndex(labelled).scores([0], [1, 2, 3])[0]
    assert plain[0] == pytest.approx(plain[1])


def test_without_the_link_signal_equal_texts_fall_back_to_recency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issue, linked, newer = retainers()
    monkeypatch.setattr(related, "POST_LINK_WEIGHT", 0.0)
    assert choose_related([issue], [newer, linked], (), 1) == [newer]


@pytest.mark.corpus
def test_a_feedburner_series_is_found_through_its_links(corpus: Path, clock: FixedClock) -> None:
    """Google Testing Blog (FeedBurner addresses): the Code Health posts link their series'
    first post through the blog's own addresses; with the tags stripped that first post gets
    them as related posts (by text alone: none)."""
    settings = FetchSettings()
    feed = corpus / "feeds" / "rbren_rss-parser__many-links.rss"
    with make_client(settings) as client:
        posts = read_feed(str(feed), client, settings, None, clock).posts
    bare = [p.model_copy(update={"categories": (), "tags": ()}) for p in posts]
    position = {p.title: i for i, p in enumerate(bare)}
    first = position["Code Health: Google's Internal Code Quality Efforts"]
    pillars = [position[t] for t in sorted(position) if t.startswith("Hackable Projects")]
    assert all(p.link.startswith("http://feedproxy.google.com/") for p in bare)
    index = LinkIndex(bare)
    assert len(pillars) == 3
    assert {pillars[0], pillars[1]} <= index.keys[pillars[2]]  # Pillar 3 links 1 and 2
    chosen = RelatedIndex(bare).choose([bare[first]], bare, (), 3)
    series = [p.title for p in chosen if p.title.startswith("Code Health:")]
    assert len(series) >= 2, [p.title for p in chosen]
