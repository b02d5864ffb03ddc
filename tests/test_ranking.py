"""The text index's fast reading (compose/wordcount.py) gives exactly what a plain reading word by
word gives: every word as ``str.split()`` splits it (any whitespace, long words, NUL, lone
surrogates, across chunks, with a hash that always collides), the same (post, token) pairs in
the same token order on real feeds; pairs counted."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.compose import wordcount
from crusader_mail.compose.ranking import TextIndex, post_words, tokenize
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import read_feed
from crusader_mail.models import Post
from crusader_mail.settings import FetchSettings
from tests.support.golden import make_post

PIECES = [
    "a",
    "Zebra",
    "é",
    "数据",
    "😀",
    "x" * 7,
    "y" * 8,
    "z" * 9,
    "q" * 16,
    "r" * 17,
    "naïveté" * 2,
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\ud800",
    "&amp;",
    *(chr(c) for c in range(0x110000) if chr(c).isspace()),
]


class Spelled(wordcount.TokenCodes):
    """Each word as written its own token, every lookup recorded."""

    def __init__(self) -> None:
        super().__init__(tokenize)
        self.looked_up: list[str] = []

    def __getitem__(self, word: str) -> int:
        self.looked_up.append(word)
        return super().__getitem__(word)

    def __missing__(self, word: str) -> int:
        code = self[word] = self.vocabulary.setdefault(word, len(self.vocabulary))
        return code


def words_read(texts: list[str]) -> list[Counter[str]]:
    """Each text's words as the fast reader counts them, checking that each distinct word is
    looked up once, in the order first read, and the pairs come once each, in order."""
    words = Spelled()
    doc, token, times = wordcount.count_tokens(texts, words)
    assert words.looked_up == list(dict.fromkeys(w for text in texts for w in text.split()))
    pairs = list(zip(doc.tolist(), token.tolist(), strict=True))
    assert pairs == sorted(set(pairs))
    spelled = list(words.vocabulary)
    out: list[Counter[str]] = [Counter() for _ in texts]
    for d, t, n in zip(doc.tolist(), token.tolist(), times.tolist(), strict=True):
        out[d][spelled[t]] += n
    return out


def random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        words = rng.randint(0, 12)
        texts.append("".join(rng.choice(PIECES) + rng.choice(PIECES) for _ in range(words)))
    # Many distinct words: the hash table grows several times.
    texts += [" ".join(f"w{n}x{m}" for m in range(rng.randint(0, 40))) for n in range(300)]
    texts += ["", " ", "\u3000\n", "one"]
    return texts


def test_whitespace_is_what_str_split_splits_on() -> None:
    ascii_ = [c for c in range(128) if chr(c).isspace()]
    assert np.flatnonzero(wordcount._SEPARATOR).tolist() == ascii_
    wide = "".join(chr(c) for c in range(128, 0x110000) if chr(c).isspace())
    assert wide == wordcount._WIDE_SPACE_CHARS


def test_every_character_splits_a_word_as_str_split_does() -> None:
    text = "".join(f"a{chr(c)}b\n" for c in range(0x110000))
    assert words_read([text]) == [Counter(text.split())]


@pytest.mark.parametrize("chunk", [1, 50, 1 << 22])
def test_the_words_read_are_those_of_str_split(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(wordcount, "_CHUNK_BYTES", chunk)
    texts = random_texts(chunk, 400)
    assert words_read(texts) == [Counter(text.split()) for text in texts]


def test_the_words_read_are_exact_when_every_hash_collides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hash of 0 for every key: every word probes the one chain, and new words are found
    one at a time (_read's loop); the ids stay exact."""
    monkeypatch.setattr(wordcount, "_MIX", (np.uint64(0), np.uint64(0)))
    monkeypatch.setattr(wordcount, "_CHUNK_BYTES", 200)
    texts = random_texts(7, 60)[:100]
    assert words_read(texts) == [Counter(text.split()) for text in texts]


def test_no_text_no_word() -> None:
    assert words_read([]) == []
    index = TextIndex([], title_weight=2)
    assert index.size == 0
    assert len(index.token) == 0


def plain_reading(posts: list[Post], title_weight: int) -> list[tuple[int, int, int]]:
    """(post, token, count), token ids in the order a word-by-word reading meets them."""
    vocabulary: dict[str, int] = {}
    pairs = []
    for i, post in enumerate(posts):
        counts: Counter[int] = Counter()
        for word in post_words(post) + post.title.split() * title_weight:
            for token in tokenize(word):
                counts[vocabulary.setdefault(token, len(vocabulary))] += 1
        pairs += [(i, token, count) for token, count in sorted(counts.items())]
    return pairs


def check_index(posts: list[Post], title_weight: int) -> None:
    index = TextIndex(posts, title_weight=title_weight)
    pairs = plain_reading(posts, title_weight)
    assert list(zip(index.doc.tolist(), index.token.tolist(), strict=True)) == [
        (doc, token) for doc, token, _ in pairs
    ]
    # The counts: tf = 1 and tf = 2 weigh 1 : 1 + ln 2 (same token, same idf).
    n = len(posts)
    df = Counter(token for _, token, _ in pairs)
    raw = [(1 + np.log(tf)) * (np.log((1 + n) / (1 + df[t])) + 1) for _, t, tf in pairs]
    norms = np.sqrt(np.bincount([d for d, _, _ in pairs], np.square(raw), n))
    norms[norms == 0] = 1.0
    want = np.array(raw) / norms[[d for d, _, _ in pairs]] if pairs else np.zeros(0)
    assert index.weight.tolist() == pytest.approx(want.tolist(), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("title_weight", [0, 2])
def test_the_index_is_a_plain_reading_of_awkward_posts(
    monkeypatch: pytest.MonkeyPatch, title_weight: int
) -> None:
    monkeypatch.setattr(wordcount, "_CHUNK_BYTES", 120)
    texts = random_texts(3, 80)
    posts = [
        make_post(n, texts[-n - 1] or "Untitled", content=f"<p>{text}</p>")
        for n, text in enumerate(texts)
    ]
    check_index(posts, title_weight)


@pytest.mark.corpus
@pytest.mark.parametrize(
    "feed",
    [
        "archive/pybites_pybites.github.io__feeds_all.rss.xml",
        "feeds/rss2email_rss2email__bbc-chinese_feed.atom",
        "feeds/siddontang_siddontang.github.com__atom.xml",
        "feeds/miniflux_v2__urdu_UTF8.xml",
        "feeds/miniflux_v2__large_rss.xml",
        "feeds/rss2email_rss2email__tumblr_feed.rss",
        "feeds/Ranchero-Software_RSParser__dcrainmaker.xml",
        "nasty/WordPress_theme-test-data__themeunittestdata.wordpress.xml",
    ],
)
def test_the_index_is_a_plain_reading_of_real_feeds(
    corpus: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, feed: str
) -> None:
    monkeypatch.setattr(wordcount, "_CHUNK_BYTES", 1 << 14)  # several chunks a feed
    settings = FetchSettings()
    with make_client(settings) as client:
        posts = read_feed(str(corpus / feed), client, settings, None, clock).posts
    assert posts
    check_index(posts, 2)


@pytest.mark.parametrize("wide", [False, True])
def test_pairs_are_counted(wide: bool) -> None:
    rng = np.random.default_rng(5)
    outer = rng.integers(0, 1 << 31 if wide else 50, 3000)
    inner = rng.integers(0, 1 << 31 if wide else 30, 3000)
    outer[:1500], inner[:1500] = outer[1500:], inner[1500:]  # pairs seen twice
    want = Counter(zip(outer.tolist(), inner.tolist(), strict=True))
    got = wordcount._merge(outer, inner)
    assert list(zip(*(a.tolist() for a in got), strict=True)) == [
        (o, i, t) for (o, i), t in sorted(want.items())
    ]
