"""How related are the related posts? Judged on real blog archives, tags kept and stripped.

    .venv/bin/python bench/related_eval.py [--corpus ../shared/corpus]
                                            [--archives ../shared/related-archives] [--only NAME]
                                            [--ideas]

The archives are read in place (never copied into the repository); one that is absent is
skipped. ``../shared/related-archives/SOURCES.md`` says where each file there comes from.

Truth: a related post is right when it shares a category or a tag with the post (the feed's
labels, case folded; WordPress's "Uncategorized" is no label; PyBites: the all-posts feed's
labels plus the per-category feeds that list the post). Every post with a label is judged: 3
related posts are chosen for it from all the other posts, and the figure is the share of chosen
posts that share a label with it. "Tags stripped" removes every category and tag from the posts
the chooser sees; the labels only judge the result.

- ranking        what ``choose_related`` does (``RelatedIndex.choose``, built once per archive)
- TF-IDF cosine  plain TF-IDF over title + text (raw counts, smooth idf, l2 norm, the tokens of
                 ``tokenize``), the 3 most similar posts; text only, so the same both ways
- 3 newest       the 3 newest posts published before the post (what a blog without ranking
                 shows under it; the oldest posts take the next ones after them)
- chance         the share of all other posts that share a label (a random pick)
- best possible  the share when every choice shares a label wherever 3 such posts exist

Targets: tags kept >= 0.95; tags stripped >= 0.70 and never below TF-IDF cosine. Where even
the best possible share is below 0.95 or 0.70, the target is the best possible share. The output
ends with every archive's three figures beside their targets (``bench/report.py``).

``--ideas`` then judges other text-only rankings, tags stripped, on every archive (``IDEAS``,
dense numpy over the same tokens; Pythonic Perambulations, held out, last): the weighting
before, title weights, BM25, Rocchio feedback, bigrams, a title-only signal, rank fusion with
plain TF-IDF, LSA, prefix stemming, names, nearness in time, hubness
correction, keywords, French stopwords. The evidence for what ``choose_related`` does (its text
part; its last row adds the links between posts).

null program's posts are Markdown: the loader keeps their links (relative ones made absolute on
nullprogram.com, whose permalinks are ``/blog/YYYY/MM/DD/``), as the blog's feed would.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import feedparser
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))  # for bench.report

from bench.report import Figure as Row  # noqa: E402
from bench.report import against, print_figures  # noqa: E402
from crusader_mail.clock import FixedClock  # noqa: E402
from crusader_mail.compose.ranking import post_words  # noqa: E402
from crusader_mail.compose.related import (  # noqa: E402
    LATENT_POSTS,
    LATENT_WEIGHT,
    TITLE_WEIGHT,
    RelatedIndex,
    latent_rank,
    tokenize,
)
from crusader_mail.feeds.fetch import make_client  # noqa: E402
from crusader_mail.feeds.read import read_feed  # noqa: E402
from crusader_mail.models import Post  # noqa: E402
from crusader_mail.settings import FetchSettings  # noqa: E402
from crusader_mail.util.html_text import html_words  # noqa: E402

COUNT = 3
KEPT_TARGET = 0.95
STRIPPED_TARGET = 0.70
NO_LABEL = frozenset({"uncategorized", "uncategorised"})
HELD_OUT = "Pythonic Perambulations"


@dataclass(frozen=True)
class Archive:
    name: str
    shape: str
    root: str  # "corpus" or "archives": which folder ``path`` is in
    path: str
    kind: str = "feed"  # "feed", "pybites" (feed + per-category feeds), "jekyll" (_posts folder)


ARCHIVES = (
    Archive(
        "PyBites",
        "summaries only (median 118 characters), many tags",
        "corpus",
        "archive/pybites_pybites.github.io__feeds_all.rss.xml",
        "pybites",
    ),
    Archive(
        "null program",
        "long-form, English, tags",
        "archives",
        "skeeto_skeeto.github.com___posts",
        "jekyll",
    ),
    Archive(
        "notmyidea",
        "long-form, French and English, few labels (5 categories, rare tags)",
        "archives",
        "almet_notmyidea__feeds_all.atom.xml",
    ),
    Archive(
        "X-Wei",
        "non-English (Chinese and English), long-form, categories and tags",
        "archives",
        "X-Wei_x-wei.github.com__feeds_all.atom.xml",
    ),
    Archive(
        "Pythonic Perambulations",
        "mostly short summaries, tags; fits the issue's held-out archive: not tuned on",
        "archives",
        "jakevdp_jakevdp.github.io__feeds_all.atom.xml",
    ),
    Archive(
        "Siddon's Blog",
        "non-English (Chinese), full content, small (20 posts)",
        "corpus",
        "feeds/siddontang_siddontang.github.com__atom.xml",
    ),
    Archive(
        "dustri.org",
        "few tags, small (25 posts)",
        "corpus",
        "feeds/miniflux_v2__large_rss.xml",
    ),
    Archive(
        "Google Testing Blog",
        "author and series tags, small (25 posts)",
        "corpus",
        "feeds/rbren_rss-parser__many-links.rss",
    ),
    Archive(
        "RSS.com blog",
        "summaries only, few categories (most posts Uncategorized)",
        "corpus",
        "feeds/simplepie_simplepie__feed_rss-2.0_for_file_mock.xml",
    ),
)


# --- loading ----------------------------------------------------------------------------------


def read(path: Path) -> list[Post]:
    settings = FetchSettings()
    clock = FixedClock(datetime(2026, 11, 23, tzinfo=UTC))
    with make_client(settings) as client:
        outcome = read_feed(str(path), client, settings, None, clock)
    if outcome.report.status != "ok":
        raise SystemExit(f"{path}: {outcome.report.error}")
    return outcome.posts


def load_pybites(path: Path) -> list[Post]:
    """The all-posts feed's labels become tags; the per-category feeds listing a post (by
    link) its categories."""
    categories: dict[str, set[str]] = {}
    for feed in sorted((path.parent / "pybites-categories").glob("*.xml")):
        name = feed.name.removeprefix("pybites_pybites.github.io__feeds_")
        for entry in feedparser.parse(feed.read_bytes()).entries:
            categories.setdefault(entry.get("link", ""), set()).add(name.removesuffix(".rss.xml"))
    return [
        post.model_copy(
            update={
                "tags": (*post.categories, *post.tags),
                "categories": tuple(sorted(categories.get(post.link, ()))),
            }
        )
        for post in read(path)
    ]


_FENCE = re.compile(
    r"^(```|~~~).*?^\1[ \t]*$|\{%\s*highlight.*?\{%\s*endhighlight\s*%\}", re.S | re.M
)
_LIQUID = re.compile(r"\{[{%].*?[%}]\}", re.S)
_LINK_DEFINITION = re.compile(r"^\s*\[([^\]]+)\]:\s*(\S+).*$", re.M)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\](?:\(([^)\s]*)[^)]*\)|\[([^\]]*)\])")
NULL_PROGRAM = "https://nullprogram.com"


def _markdown_html(text: str) -> str:
    """Enough of Markdown for judging topics: paragraphs of text and their links (made absolute
    on nullprogram.com); code, images and Liquid tags left out."""
    text = _IMAGE.sub("", _LIQUID.sub("", _FENCE.sub("", text)))
    targets = {m[1].casefold(): m[2] for m in _LINK_DEFINITION.finditer(text)}
    text = _LINK_DEFINITION.sub("", text)
    links: list[str] = []

    def link(match: re.Match[str]) -> str:
        words, inline, ref = match[1], match[2], match[3]
        url = inline if inline is not None else targets.get((ref or words).casefold(), "")
        if url.startswith("/"):
            url = NULL_PROGRAM + url
        if not url.startswith(("http://", "https://")):
            return words
        anchor = f'<a href="{html.escape(url)}">{html.escape(words, quote=False)}</a>'
        links.append(anchor)
        return f"\x00{len(links) - 1}\x00"

    text = _LINK.sub(link, text)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.split("\n") if not line.startswith(("    ", "\t"))]
        if any(lines):
            paragraphs.append(f"<p>{html.escape(' '.join(lines), quote=False)}</p>")
    return re.sub("\x00(\\d+)\x00", lambda m: links[int(m[1])], "".join(paragraphs))


def load_jekyll(folder: Path) -> list[Post]:
    """A Jekyll ``_posts`` folder: front matter title and tags, Markdown or HTML bodies."""
    posts = []
    for path in sorted(folder.iterdir()):
        _, front, body = path.read_text(encoding="utf-8").split("---\n", 2)
        meta = dict(
            line.split(":", 1) for line in front.splitlines() if ":" in line and line[0] != " "
        )
        title = meta.get("title", path.stem).strip().strip("'\"")
        tags = tuple(t.strip() for t in meta.get("tags", "").strip(" []").split(",") if t.strip())
        day = datetime.strptime(path.name[:10], "%Y-%m-%d").replace(tzinfo=UTC)
        if path.suffix == ".html":  # links made absolute, as a feed reader leaves them
            content = _LIQUID.sub("", body).replace('href="/', f'href="{NULL_PROGRAM}/')
        else:
            content = _markdown_html(body)
        link = f"{NULL_PROGRAM}/blog/{day:%Y/%m/%d}/"  # the blog's permalinks: one post a day
        posts.append(
            Post(
                id=link,
                title=title,
                link=link,
                published=day,
                updated=day,
                tags=tags,
                summary_html=content,
                content_html=content,
                feed=str(folder),
                first_seen=day,
            )
        )
    return posts


def load(archive: Archive, path: Path) -> list[Post]:
    if archive.kind == "pybites":
        return load_pybites(path)
    if archive.kind == "jekyll":
        return load_jekyll(path)
    return read(path)


# --- choosers ---------------------------------------------------------------------------------


def labels(post: Post) -> frozenset[str]:
    every = (label.strip().casefold() for label in (*post.categories, *post.tags))
    return frozenset(label for label in every if label and label not in NO_LABEL)


def stripped(post: Post) -> Post:
    return post.model_copy(update={"categories": (), "tags": ()})


Choices = Callable[[int], list[int]]  # the positions chosen for the post at a position


def ranking(posts: Sequence[Post]) -> Choices:
    index = RelatedIndex(posts)
    position = {post.id: i for i, post in enumerate(posts)}

    def choose(i: int) -> list[int]:
        return [position[p.id] for p in index.choose([posts[i]], posts, (), COUNT)]

    return choose


def tfidf(posts: Sequence[Post]) -> Choices:
    counts = [
        Counter(tokenize(p.title + " " + " ".join(html_words(p.content_html, skip_code=True))))
        for p in posts
    ]
    n = len(posts)
    df = Counter(token for c in counts for token in c)
    idf = {token: math.log((1 + n) / (1 + k)) + 1 for token, k in df.items()}
    vectors = []
    for c in counts:
        weights = {token: k * idf[token] for token, k in c.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        vectors.append({token: w / norm for token, w in weights.items()})

    def choose(i: int) -> list[int]:
        query = vectors[i]
        scores = [
            (
                -sum(w * query[t] for t, w in v.items() if t in query),
                -posts[j].published.timestamp(),
                j,
            )
            for j, v in enumerate(vectors)
            if j != i
        ]
        return [j for *_, j in sorted(scores)[:COUNT]]

    return choose


def newest(posts: Sequence[Post]) -> Choices:
    """The 3 newest posts published before the post (then the oldest after it): the posts an
    issue carrying it would show without ranking, as ``choose_related``'s fallback does."""
    order = sorted(range(len(posts)), key=lambda j: (posts[j].published, posts[j].id), reverse=True)

    def choose(i: int) -> list[int]:
        before = [j for j in order if j != i and posts[j].published <= posts[i].published]
        after = [j for j in reversed(order) if posts[j].published > posts[i].published]
        return (before + after)[:COUNT]

    return choose


# --- ideas (--ideas): other text-only rankings, judged the same way ------------------------------

Matrix = npt.NDArray[np.float64]
FRENCH_STOPWORDS = frozenset(
    """le la les de des du un une et est en que qu qui pour dans pas sur au aux avec ce cet
    cette ces il ils elle elles on nous vous je ne se sont plus par mais ou donc ni car sa son
    ses leur leurs mon ma mes notre nos votre vos été être avoir ai avons ont fait comme tout
    tous toute toutes bien aussi très même sans sous entre encore alors après avant quand si
    ça cela ceci celui celle ceux dont lui moi peu moins autre autres était sera peut faut""".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Terms:
    """An archive's token counts (posts x tokens), tags stripped: titles, bodies, and bodies
    with the pairs of neighbouring tokens added; the posts and their tokens (title twice, then
    the body) for ideas that count something else."""

    title: Matrix
    body: Matrix
    with_bigrams: Matrix
    posts: Sequence[Post]
    tokens: list[list[str]]


def terms(posts: Sequence[Post], drop: frozenset[str] = frozenset()) -> Terms:
    titles = [[t for t in tokenize(p.title) if t not in drop] for p in posts]
    bodies = [[t for t in tokenize(" ".join(post_words(p))) if t not in drop] for p in posts]
    pairs = [[f"{a} {b}" for a, b in pairwise(body)] for body in bodies]
    vocabulary: dict[str, int] = {}
    for tokens in (*titles, *bodies, *pairs):
        for token in tokens:
            vocabulary.setdefault(token, len(vocabulary))

    def matrix(rows: Sequence[Sequence[str]]) -> Matrix:
        out = np.zeros((len(posts), len(vocabulary)))
        for i, tokens in enumerate(rows):
            for token, k in Counter(tokens).items():
                out[i, vocabulary[token]] = k
        return out

    body = matrix(bodies)
    every = [title * 2 + words for title, words in zip(titles, bodies, strict=True)]
    return Terms(matrix(titles), body, body + matrix(pairs), posts, every)


def counted(rows: Sequence[Sequence[str]]) -> Matrix:
    """Token counts, posts x tokens."""
    vocabulary: dict[str, int] = {}
    for tokens in rows:
        for token in tokens:
            vocabulary.setdefault(token, len(vocabulary))
    out = np.zeros((len(rows), max(len(vocabulary), 1)))
    for i, tokens in enumerate(rows):
        for token, k in Counter(tokens).items():
            out[i, vocabulary[token]] = k
    return out


def with_latent(counts: Matrix) -> Matrix:
    """The ranking's text score (log tf, LSA for 20 to 200 posts) over other tokens."""
    weights = weigh(counts)
    now = cosines(weights)
    n = counts.shape[0]
    low, high = LATENT_POSTS
    if not low <= n <= high:
        return now
    latent = np.clip(lsa(weights, latent_rank(n)), 0.0, None)
    out: Matrix = (now + LATENT_WEIGHT * (now > 0) * latent) / (1 + LATENT_WEIGHT)
    return out


def prefixes(t: Terms, size: int = 6) -> Matrix:
    """Latin-script tokens cut to ``size`` letters: a crude stemmer (simulating, simulation)."""
    return counted([[x[:size] if x.isascii() else x for x in row] for row in t.tokens])


_NAME_EDGE = "\"'()[]{}<>,.;:!?*“”‘’«»"


def names(t: Terms) -> Matrix:
    """The body's capitalized words not at a sentence start (names: tools, places, people)."""
    rows = []
    for post in t.posts:
        found, before = [], "."
        for word in post_words(post):
            core = word.strip(_NAME_EDGE)
            if core[:1].isupper() and not before.endswith((".", "!", "?", ":")):
                found += tokenize(core)
            before = word
        rows.append(found)
    return cosines(weigh(counted(rows)))


def near_in_time(t: Terms, scale: float = 5.0) -> Matrix:
    """``exp(-d / scale)``, d: how many posts apart two posts were published."""
    posts = t.posts
    order = sorted(range(len(posts)), key=lambda j: (posts[j].published, posts[j].id))
    place = np.empty(len(posts))
    place[order] = np.arange(len(posts))
    out: Matrix = np.exp(-np.abs(place[:, None] - place[None, :]) / scale)
    return out


def csls(similar: Matrix, k: int = 10) -> Matrix:
    """Hubness corrected (CSLS): ``2 cos - r_i - r_j``, r the mean of a post's k best cosines."""
    masked = similar.copy()
    np.fill_diagonal(masked, -np.inf)
    r = np.sort(masked, axis=1)[:, -k:].mean(axis=1)
    out: Matrix = 2 * similar - r[:, None] - r[None, :]
    return out


def keywords(t: Terms, k: int = 25) -> Matrix:
    """Each post as its ``k`` heaviest tokens (shared by two posts at least): "more like this"."""
    counts = 2 * t.title + t.body
    weights = weigh(counts) * ((counts > 0).sum(axis=0) >= 2)
    top = np.argsort(-weights, axis=1)[:, :k]
    kept = np.zeros_like(weights)
    np.put_along_axis(kept, top, np.take_along_axis(weights, top, axis=1), axis=1)
    return cosines(kept)


def weigh(counts: Matrix, *, log_tf: bool = True, every_token: bool = True) -> Matrix:
    """TF-IDF weights: smooth idf; ``every_token=False`` keeps only the tokens some but not all
    posts have (the ranking before issue 12's second pass)."""
    n = counts.shape[0]
    df = (counts > 0).sum(axis=0)
    idf = np.log((1 + n) / (1 + df)) + 1
    if not every_token:
        idf = idf * ((df > 1) & (df < n))
    tf = np.where(counts > 0, 1 + np.log(np.maximum(counts, 1)), 0.0) if log_tf else counts
    weights: Matrix = tf * idf
    return weights


def unit(weights: Matrix) -> Matrix:
    norms = np.linalg.norm(weights, axis=1, keepdims=True)
    out: Matrix = weights / np.where(norms == 0, 1.0, norms)
    return out


def cosines(weights: Matrix) -> Matrix:
    rows = unit(weights)
    out: Matrix = rows @ rows.T
    return out


def lsa(weights: Matrix, rank: int) -> Matrix:
    u, s, _ = np.linalg.svd(unit(weights), full_matrices=False)
    return cosines(u[:, :rank] * s[:rank])


def bm25(counts: Matrix, k1: float = 1.2, b: float = 0.75) -> Matrix:
    """Okapi BM25 of each post's tokens (log tf x idf as the query's weights) against each post."""
    n = counts.shape[0]
    df = (counts > 0).sum(axis=0)
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    length = counts.sum(axis=1)
    saturated = counts * (k1 + 1) / (counts + k1 * (1 - b + b * length / length.mean())[:, None])
    out: Matrix = weigh(counts) @ (saturated * idf).T
    return out


def rocchio(weights: Matrix, k: int = 5, beta: float = 0.5) -> Matrix:
    """Pseudo-relevance feedback: each post's vector plus ``beta`` x the mean of its ``k`` most
    similar posts' vectors, compared again."""
    rows, first = unit(weights), cosines(weights)
    np.fill_diagonal(first, -np.inf)
    nearest = np.argsort(-first, axis=1, kind="stable")[:, :k]
    out: Matrix = unit(rows + beta * rows[nearest].mean(axis=1)) @ rows.T
    return out


def fused(*similarities: Matrix, k: int = 10) -> Matrix:
    """Reciprocal rank fusion: the sum of 1 / (k + rank) over the rankings."""
    total = np.zeros_like(similarities[0])
    for similar in similarities:
        masked = similar.copy()
        np.fill_diagonal(masked, -np.inf)
        order = np.argsort(-masked, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(order.shape[1])[None, :], axis=1)
        total += 1 / (k + 1 + ranks)
    return total


def _ranking_text(t: Terms) -> Matrix:
    """This ranking's text part: log tf, title x2, every token, LSA for 20 to 200 posts."""
    n = t.body.shape[0]
    now = cosines(weigh(t.title * TITLE_WEIGHT + t.body))
    low, high = LATENT_POSTS
    if not low <= n <= high:
        return now
    latent = np.clip(lsa(weigh(t.title * TITLE_WEIGHT + t.body), latent_rank(n)), 0.0, None)
    out: Matrix = now + LATENT_WEIGHT * (now > 0) * latent
    return out


IDEAS: tuple[tuple[str, Callable[[Terms], Matrix]], ...] = (
    ("plain TF-IDF (tf, title x1)", lambda t: cosines(weigh(t.title + t.body, log_tf=False))),
    (
        "before: log tf, title x2, df 2..N-1",
        lambda t: cosines(weigh(2 * t.title + t.body, every_token=False)),
    ),
    ("every token weighs (now, no LSA)", lambda t: cosines(weigh(2 * t.title + t.body))),
    ("title x1", lambda t: cosines(weigh(t.title + t.body))),
    ("title x3", lambda t: cosines(weigh(3 * t.title + t.body))),
    ("BM25 k1 1.2 b 0.75", lambda t: bm25(2 * t.title + t.body)),
    ("BM25 k1 2.0 b 0.3", lambda t: bm25(2 * t.title + t.body, 2.0, 0.3)),
    ("Rocchio: top 5 x0.5", lambda t: rocchio(weigh(2 * t.title + t.body))),
    ("+ bigrams", lambda t: cosines(weigh(2 * t.title + t.with_bigrams))),
    (
        "+ title-only cosine x0.1",
        lambda t: cosines(weigh(2 * t.title + t.body)) + 0.1 * cosines(weigh(t.title)),
    ),
    (
        "rank fusion with plain TF-IDF",
        lambda t: fused(
            cosines(weigh(2 * t.title + t.body)), cosines(weigh(t.title + t.body, log_tf=False))
        ),
    ),
    (
        "LSA alone (N/4 <= 50 dims)",
        lambda t: lsa(weigh(2 * t.title + t.body), latent_rank(len(t.body))),
    ),
    (
        "+ LSA x0.5 at any size",
        lambda t: (
            cosines(w := weigh(2 * t.title + t.body))
            + LATENT_WEIGHT * np.clip(lsa(w, latent_rank(len(t.body))), 0.0, None)
        ),
    ),
    ("+ LSA x0.5, 20-200 posts (now, text)", _ranking_text),
    # Issue 12, third pass: what else a blog's text offers (none holds on every archive).
    ("6-letter prefixes as tokens", lambda t: with_latent(prefixes(t))),
    ("now + names cosine x0.25", lambda t: _ranking_text(t) + 0.25 * names(t)),
    ("now x (1 + 0.25 near in time)", lambda t: _ranking_text(t) * (1 + 0.25 * near_in_time(t))),
    ("now, hubness corrected (CSLS 10)", lambda t: csls(_ranking_text(t))),
    ("keywords: top 25 tokens", keywords),
)


def chosen_by(similar: Matrix, posts: Sequence[Post]) -> Choices:
    """The 3 most similar other posts (ties: newer first, then position)."""

    def choose(i: int) -> list[int]:
        order = sorted(
            (j for j in range(len(posts)) if j != i),
            key=lambda j: (-similar[i, j], -posts[j].published.timestamp(), j),
        )
        return order[:COUNT]

    return choose


def ideas(loaded: Sequence[tuple[Archive, list[Post]]]) -> None:
    """Print, tags stripped, each idea's share on every archive (the held-out one last)."""
    loaded = sorted(loaded, key=lambda item: item[0].name == HELD_OUT)
    columns = [archive.name[:10] for archive, _ in loaded]
    print(f"\nideas, tags stripped ({HELD_OUT} last: held out, never tuned on)")
    print(f"  {'idea':<36}" + "".join(f"{c:>11}" for c in columns))
    judged_sets = []
    for _, posts in loaded:
        truth = [labels(p) for p in posts]
        judged_sets.append((truth, [i for i, t in enumerate(truth) if t]))

    def by_idea(f: Callable[[Terms], Matrix]) -> Callable[[list[Post]], Choices]:
        return lambda posts: chosen_by(f(terms(posts)), posts)

    rows = [(name, by_idea(f)) for name, f in IDEAS]
    rows.append(
        (
            "French stopwords (now, no LSA)",
            lambda posts: chosen_by(
                cosines(weigh(2 * (t := terms(posts, FRENCH_STOPWORDS)).title + t.body)), posts
            ),
        )
    )
    rows.append(("the ranking (choose_related)", ranking))
    for name, make in rows:
        shares = [
            judge(truth, judged, make([stripped(p) for p in posts])).share
            for (truth, judged), (_, posts) in zip(judged_sets, loaded, strict=True)
        ]
        print(f"  {name:<36}" + "".join(f"{x:>11.3f}" for x in shares), flush=True)


# --- figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    good: list[int]  # per judged post: how many of its related posts share a label
    picks: int

    @property
    def share(self) -> float:
        return sum(self.good) / self.picks if self.picks else 0.0

    @property
    def error(self) -> float:
        """The standard error of ``share`` (a binomial estimate): what noise alone moves."""
        p = self.share
        return math.sqrt(p * (1 - p) / self.picks) if self.picks else 0.0


def judge(truth: Sequence[frozenset[str]], judged: Sequence[int], choices: Choices) -> Figure:
    good, picks = [], 0
    for i in judged:
        chosen = choices(i)
        picks += len(chosen)
        good.append(sum(bool(truth[i] & truth[j]) for j in chosen))
    return Figure(good, picks)


def chance(truth: Sequence[frozenset[str]], judged: Sequence[int]) -> float:
    n = len(truth)
    per_post = (
        sum(bool(truth[i] & truth[j]) for j in range(n) if j != i) / (n - 1) for i in judged
    )
    return sum(per_post) / len(judged)


def best_possible(truth: Sequence[frozenset[str]], judged: Sequence[int]) -> float:
    n = len(truth)
    per_post = (
        min(COUNT, sum(bool(truth[i] & truth[j]) for j in range(n) if j != i)) for i in judged
    )
    return sum(per_post) / (COUNT * len(judged))


def share_target(name: str, value: float, target: float, ceiling: float) -> Row:
    """``value >= target``, or ``>= ceiling`` where no chooser can reach ``target``."""
    if ceiling < target:
        text = f"best possible {ceiling:.3f} ({target:.2f} unreachable)"
        return against(name, value, "≥", ceiling - 1e-9, digits=3, bound_text=text)
    return against(name, value, "≥", target, digits=3, bound_text=f"{target:.2f}")


def evaluate(archive: Archive, posts: list[Post]) -> list[Row]:
    """Print one archive's shares; its figures beside their targets (tags kept, tags
    stripped, tags stripped against TF-IDF)."""
    truth = [labels(p) for p in posts]
    judged = [i for i, t in enumerate(truth) if t]
    bare = [stripped(p) for p in posts]
    kept = judge(truth, judged, ranking(posts))
    text_only = judge(truth, judged, ranking(bare))
    baseline = judge(truth, judged, tfidf(bare))
    recency = judge(truth, judged, newest(posts))
    random_pick, ceiling = chance(truth, judged), best_possible(truth, judged)
    better = sum(a > b for a, b in zip(text_only.good, baseline.good, strict=True))
    worse = sum(a < b for a, b in zip(text_only.good, baseline.good, strict=True))
    print(
        f"\n{archive.name}: {len(posts)} posts, {len(judged)} judged (with a label), "
        f"{len(set().union(*truth))} labels; {archive.shape}"
    )
    print(f"  {'chooser':<28} {'tags kept':>10}  {'tags stripped':>13}")
    print(
        f"  {'ranking (choose_related)':<28} {kept.share:>10.3f}  {text_only.share:>13.3f}"
        f"   (+-{text_only.error:.3f}: {text_only.picks} picks)"
    )
    print(f"  {'TF-IDF cosine (title+text)':<28} {baseline.share:>10.3f}  {baseline.share:>13.3f}")
    print(f"  {'3 newest before it':<28} {recency.share:>10.3f}  {recency.share:>13.3f}")
    print(f"  {'chance (random other post)':<28} {random_pick:>10.3f}  {random_pick:>13.3f}")
    print(f"  {'best possible':<28} {ceiling:>10.3f}  {ceiling:>13.3f}")
    print(f"  tags stripped, per post: better than TF-IDF on {better}, worse on {worse}")
    return [
        share_target(f"{archive.name}: tags kept", kept.share, KEPT_TARGET, ceiling),
        share_target(f"{archive.name}: tags stripped", text_only.share, STRIPPED_TARGET, ceiling),
        against(
            f"{archive.name}: tags stripped vs TF-IDF",
            text_only.share,
            "≥",
            baseline.share,
            digits=3,
            bound_text=f"TF-IDF's {baseline.share:.3f}",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="quick check: --only dustri.org --only 'Google Testing Blog'",
    )
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument(
        "--archives", type=Path, default=REPO.parent / "shared" / "related-archives"
    )
    parser.add_argument("--only", action="append", help="an archive's name (repeatable)")
    parser.add_argument(
        "--ideas", action="store_true", help="also judge other text-only rankings (IDEAS)"
    )
    args = parser.parse_args()
    roots = {"corpus": args.corpus, "archives": args.archives}
    figures: list[Row] = []
    loaded: list[tuple[Archive, list[Post]]] = []
    for archive in ARCHIVES:
        if args.only and archive.name not in args.only:
            continue
        path = roots[archive.root] / archive.path
        if not path.exists():
            print(f"\n{archive.name}: skipped, {path} is absent")
            continue
        loaded.append((archive, load(archive, path)))
        figures += evaluate(*loaded[-1])
    if args.ideas:
        ideas(loaded)
    if not figures:
        raise SystemExit("related_eval: no archive found (--corpus, --archives)")
    print_figures(f"related_eval.py ({len(loaded)} of {len(ARCHIVES)} archives)", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
