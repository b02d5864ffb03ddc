"""Related posts: which older posts to show under an issue.

Contract::

    choose_related(issue_posts, candidates, avoid, count) -> list[Post]
    RelatedIndex(posts).choose(issue_posts, candidates, avoid, count)   the same, built once

How two posts are compared (pure Python, deterministic, no numpy):

1. Text, TF-IDF cosine. A post is its title (counted ``TITLE_WEIGHT`` times) plus its whole
   plain-text content, code left out, as :func:`tokenize` tokens. A token tells something only
   when some but not all posts have it (the candidates and the issue's posts: N of them); it
   weighs ``(1 + ln tf) * idf`` with ``idf = ln((1 + N) / (1 + df)) + 1``. The text score is the
   cosine of the two posts' weights: 0 (no telling token in common) to 1, whatever the length.
2. Categories and tags (one set of labels, case and Unicode forms folded) add ``LABEL_WEIGHT``
   x the sum over shared labels of ``ln(N / df) / ln(N)``: a label on every post adds nothing,
   one on fewer than sqrt(N) posts outweighs any text score, so the blog's own labels decide
   first and the text orders posts within them.
3. Each issue post, newest first, in turn takes its best candidate not chosen yet (round
   robin), so a three-post issue gets related posts for each of its posts.

There is no threshold: the best candidates are taken however low their scores, so one-line
summaries rank like long posts (scores are only compared with each other). Eligibility, in
order of preference (a later tier is used only when the earlier ones run out):

1. related (score above 0: a telling token or a label in common) and not in ``avoid``;
2. recent posts (published desc, older than the issue first) not in ``avoid``: only posts that
   share nothing with the issue land here;
3. posts in ``avoid`` (shown as related in the last few issues), related first, then recent.

Never a post of this issue (same id or same link), never one post twice. Ties are broken by
date (newer first) then id, so the same input always gives the same choice. Judged on real
archives by ``bench/related_eval.py``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from itertools import chain, repeat
from operator import mul

from crusader_mail.models import Post
from crusader_mail.util.html_text import html_words

TITLE_WEIGHT = 2
LABEL_WEIGHT = 2.0

# Scripts written without spaces between words: their runs become character bigrams.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD_RE = re.compile(f"[^\\W{_CJK}]+")  # a run of letters and digits outside those scripts
_CJK_ANY_RE = re.compile(f"[{_CJK}]")
_CJK_PAIR_RE = re.compile(f"(?=([{_CJK}]{{2}}))")  # overlapping bigrams, found in C
_CJK_ALONE_RE = re.compile(f"(?<![{_CJK}])[{_CJK}](?![{_CJK}])")

# Words too common to say anything about a topic (English; other languages rely on idf).
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further get got had has have having he her here hers herself him himself his how
    i if in into is it its itself just let like me more most my myself no nor not now of off
    on once one only or other our ours ourselves out over own same she should so some such
    than that the their theirs them themselves then there these they this those through to too
    under until up use used using very was we were what when where which while who whom why
    will with would you your yours yourself yourselves new way make many much well""".split()  # noqa: SIM905
)


def _stem(word: str) -> str:
    """A very light plural fold: posts/post, classes/class, stories/story."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("sses"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


_STOP_TOKENS = STOPWORDS | frozenset(map(_stem, STOPWORDS))


def _words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, unfolded, stopwords kept; CJK runs as bigrams."""
    lowered = text.casefold()
    words = _WORD_RE.findall(lowered)
    if _CJK_ANY_RE.search(lowered):
        words += _CJK_PAIR_RE.findall(lowered)
        words += _CJK_ALONE_RE.findall(lowered)
    return words


def _telling(token: str) -> bool:
    """False for stopwords, numbers and one-letter words (a lone CJK character tells)."""
    if len(token) == 1:
        return bool(_CJK_ANY_RE.match(token))
    return not token.isdigit() and token not in _STOP_TOKENS


def tokenize(text: str) -> list[str]:
    """Lower-cased words, plurals folded, without stopwords, numbers or one-letter words; CJK
    runs become character bigrams (CJK text has no spaces between words)."""
    return [token for token in map(_stem, _words(text)) if _telling(token)]


def _labels(values: Iterable[str]) -> frozenset[str]:
    return frozenset(
        unicodedata.normalize("NFKC", value).strip().casefold() for value in values if value.strip()
    )


def _token_counts(posts: Sequence[Post]) -> list[Counter[str]]:
    """Each post's token counts (:func:`tokenize` without the filter: stopwords stay, they weigh
    nothing): its content (code left out) and its title ``TITLE_WEIGHT`` times.

    The words are counted as the HTML has them; each distinct word that is not a token as it
    stands (capitals, punctuation, a plural, CJK) is turned into tokens once, in Python, and
    every post hands its count of such words over to their tokens, in C."""
    every = [
        Counter(html_words(p.content_html or p.summary_html, skip_code=True) or p.excerpt.split())
        for p in posts
    ]
    vocabulary: set[str] = set()
    for counts in every:
        vocabulary.update(counts)
    tokens_of: dict[str, tuple[str, ...]] = {}
    for word in vocabulary:
        tokens = (*map(_stem, _words(word)),)
        if tokens != (word,):
            tokens_of[word] = tokens
    for counts, post in zip(every, posts, strict=True):
        words = [*filter(tokens_of.__contains__, counts)]
        times = [*map(counts.pop, words)]
        counts.update(chain.from_iterable(map(mul, map(tokens_of.__getitem__, words), times)))
        counts.update([*map(_stem, _words(post.title))] * TITLE_WEIGHT)
    return every


class RelatedIndex:
    """The posts of an archive made comparable once (token weights, norms, label weights), to
    choose related posts for any issue of them; :func:`choose_related` builds one per call.

    Speed (5,000 posts in under a second: bench/bench_compose.py): counting, document
    frequencies and the per-candidate sums run in C (``Counter``, ``map``, ``filter``,
    ``math.hypot``); Python loops only over the distinct words and an issue post's tokens.
    """

    def __init__(self, posts: Sequence[Post], *, use_labels: bool = True) -> None:
        n = len(posts)
        self.position = {post.id: i for i, post in enumerate(posts)}
        self.counts = _token_counts(posts)
        df = Counter(chain.from_iterable(self.counts))
        # Every token gets a weight, 0 for one that tells nothing: sums need no test.
        self.idf = {
            token: math.log((1 + n) / (1 + k)) + 1 if 1 < k < n and _telling(token) else 0.0
            for token, k in df.items()
        }
        most = max((max(c.values(), default=0) for c in self.counts), default=0)
        self.tf = [0.0] + [1 + math.log(k) for k in range(1, most + 1)]
        self.norms = [self._norm(c) for c in self.counts]
        empty: frozenset[str] = frozenset()
        self.labels = [_labels((*p.categories, *p.tags)) if use_labels else empty for p in posts]
        label_df = Counter(chain.from_iterable(self.labels))
        scale = math.log(n) if n > 1 else 1.0
        self.label_weight = {label: math.log(n / k) / scale for label, k in label_df.items()}

    def _norm(self, counts: Counter[str]) -> float:
        tf = map(self.tf.__getitem__, counts.values())
        return math.hypot(*map(mul, tf, map(self.idf.__getitem__, counts.keys())))

    def _query(self, i: int) -> dict[str, float]:
        """Post ``i``'s telling tokens and weights, divided by its norm, times the idf the
        candidates' side lacks (candidates' counts are weighed by ``tf`` only)."""
        counts, norm = self.counts[i], self.norms[i]
        query: dict[str, float] = {}
        for token, k in counts.items():
            idf = self.idf[token]
            if idf:
                query[token] = self.tf[k] * idf * idf / norm
        return query

    def scores(self, issue: Sequence[int], candidates: Sequence[int]) -> list[list[float]]:
        """For each issue post (a position), one score per candidate (positions, in order)."""
        queries = [self._query(i) for i in issue]
        inside = {token: 0 for query in queries for token in query}.__contains__
        query_labels = [self.labels[i] for i in issue]
        out: list[list[float]] = [[] for _ in issue]
        tf, zero = self.tf.__getitem__, repeat(0.0)
        for j in candidates:
            counts, labels_j = self.counts[j], self.labels[j]
            shared = [*filter(inside, counts)]  # in the candidate's own order: deterministic
            tfs = [*map(tf, map(counts.__getitem__, shared))]
            for query, labels, scores in zip(queries, query_labels, out, strict=True):
                score = (
                    sum(map(mul, map(query.get, shared, zero), tfs)) / self.norms[j] if tfs else 0.0
                )
                if labels and labels_j:
                    common = labels & labels_j
                    if common:
                        score += LABEL_WEIGHT * sum(self.label_weight[x] for x in sorted(common))
                scores.append(score)
        return out

    def choose(
        self,
        issue_posts: Sequence[Post],
        candidates: Sequence[Post],
        avoid: Collection[str],
        count: int,
    ) -> list[Post]:
        """Up to ``count`` posts from ``candidates`` related to ``issue_posts`` (see the module
        doc); every one of them must be in the index (:class:`KeyError` otherwise)."""
        pool = _pool(issue_posts, candidates)
        if count <= 0 or not pool:
            return []
        queries = sorted(issue_posts, key=_recency_key)
        per_post = self.scores(
            [self.position[p.id] for p in queries], [self.position[p.id] for p in pool]
        )
        avoided = set(avoid)
        recent = _older_than(pool, issue_posts)
        tiers = (
            _round_robin(pool, per_post, lambda post: post.id not in avoided),
            [post for post in recent if post.id not in avoided],
            _round_robin(pool, per_post, lambda post: post.id in avoided),
            [post for post in recent if post.id in avoided],
        )
        chosen: list[Post] = []
        taken: set[str] = set()
        for tier in tiers:
            for post in tier:
                if post.id not in taken:
                    taken.add(post.id)
                    chosen.append(post)
                    if len(chosen) >= count:
                        return chosen
        return chosen


def _recency_key(post: Post) -> tuple[float, str]:
    return (-post.published.timestamp(), post.id)


def _pool(issue_posts: Sequence[Post], candidates: Sequence[Post]) -> list[Post]:
    """The candidates that may be shown, once each, newest first (then by id): never a post
    of the issue (same id or same link)."""
    in_issue = {p.id for p in issue_posts} | {p.link for p in issue_posts}
    pool: list[Post] = []
    seen: set[str] = set()
    for post in candidates:
        if post.id in in_issue or post.link in in_issue or post.id in seen:
            continue
        seen.add(post.id)
        pool.append(post)
    pool.sort(key=_recency_key)  # the deterministic base order
    return pool


def choose_related(
    issue_posts: Sequence[Post],
    candidates: Sequence[Post],
    avoid: Collection[str],
    count: int,
    *,
    use_labels: bool = True,
) -> list[Post]:
    """Up to ``count`` posts from ``candidates`` related to ``issue_posts`` (see module doc).

    ``use_labels=False`` ranks by text alone (used to judge the ranking with tags hidden).
    """
    pool = _pool(issue_posts, candidates)
    if count <= 0 or not pool:
        return []
    index = RelatedIndex([*pool, *issue_posts], use_labels=use_labels)
    return index.choose(issue_posts, pool, avoid, count)


def _round_robin(
    pool: Sequence[Post], per_post: Sequence[Sequence[float]], wanted: Callable[[Post], bool]
) -> list[Post]:
    """Related posts (score above 0) interleaved: each issue post's best, then second..."""
    rankings = []
    for scores in per_post:
        order = sorted(range(len(pool)), key=lambda i, s=scores: (-s[i], i))  # type: ignore[misc]
        rankings.append([pool[i] for i in order if scores[i] > 0 and wanted(pool[i])])
    out: list[Post] = []
    seen: set[str] = set()
    for rank in range(max((len(r) for r in rankings), default=0)):
        for ranking in rankings:
            if rank < len(ranking) and ranking[rank].id not in seen:
                seen.add(ranking[rank].id)
                out.append(ranking[rank])
    return out


def _older_than(pool: Sequence[Post], issue_posts: Sequence[Post]) -> list[Post]:
    """Candidates by recency, those older than the issue's newest post first."""
    if not issue_posts:
        return list(pool)
    newest = max(p.published for p in issue_posts)
    older = [p for p in pool if p.published <= newest]
    newer = [p for p in pool if p.published > newest]
    return older + newer
