"""Related posts: which older posts to show under an issue.

Contract::

    choose_related(issue_posts, candidates, avoid, count) -> list[Post]
    RelatedIndex(posts).choose(issue_posts, candidates, avoid, count)   the same, built once

How two posts are compared (numpy, deterministic):

1. Text, TF-IDF cosine (:class:`~.ranking.TextIndex`): a post is its title (counted
   ``TITLE_WEIGHT`` times) plus its whole text, code left out, as :func:`tokenize` tokens, each
   weighing ``(1 + ln tf) * idf`` with ``idf = ln((1 + N) / (1 + df)) + 1`` over the N posts (the
   candidates and the issue's). The cosine is 0 (no token in common) to 1, whatever the length.
   In archives of ``LATENT_POSTS`` posts (small ones: their idf says little), posts with a token
   in common add ``LATENT_WEIGHT`` x their cosine in a latent space (LSA, ``latent_rank(N)``
   dimensions), clipped at 0: words that keep company count as the same topic; the sum is
   divided by ``1 + LATENT_WEIGHT``, so the text score stays 0 to 1.
2. Categories and tags (one set of labels, case and Unicode forms folded) add ``LABEL_WEIGHT``
   x the sum over shared labels of ``ln(N / df) / ln(N)``: a label on every post adds nothing,
   one on fewer than sqrt(N) posts outweighs any text score, so the blog's own labels decide
   first and the text orders posts within them.
3. Links stand in for labels where an issue post has none (a feed without categories, or tags
   hidden): its text score with each candidate is multiplied by ``1 +`` the weight of the
   links they share (:class:`~.signals.LinkIndex`: one links to the other, both link to a third
   post, ``POST_LINK_WEIGHT`` x ``ln(N / df) / ln(N)``; both link to a page elsewhere,
   ``PAGE_LINK_WEIGHT`` x the same), at most 1. The author's own links are the surest sign two
   posts belong together, but a passing link is no topic: a link lifts a post that has words in
   common, never one that has none, and a post with labels is compared by its labels and text
   alone (links would outrank labels shared by many posts). The weights: the best mean share
   over all the archives of ``bench/related_eval.py`` among those tried (post 1, 2, 4; page 0,
   0.5, 1), tags stripped.
4. Each issue post, newest first, in turn takes its best candidate not chosen yet (round
   robin), so a three-post issue gets related posts for each of its posts.

There is no threshold: the best candidates are taken however low their scores, so one-line
summaries rank like long posts (scores are only compared with each other). Eligibility, in
order of preference (a later tier is used only when the earlier ones run out):

1. related (score above 0: a token or a label in common) and not in ``avoid``;
2. recent posts (published desc, older than the issue first) not in ``avoid``: only posts that
   share nothing with the issue land here;
3. posts in ``avoid`` (shown as related in the last few issues), related first, then recent.

Never a post of this issue (same id or same link), never one post twice. Ties are broken by
date (newer first) then id, so the same input always gives the same choice. Judged on real
archives by ``bench/related_eval.py``.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from itertools import chain

import numpy as np

from crusader_mail.compose.ranking import Floats, TextIndex, tokenize
from crusader_mail.compose.signals import LinkIndex
from crusader_mail.models import Post

__all__ = [
    "LABEL_WEIGHT",
    "PAGE_LINK_WEIGHT",
    "POST_LINK_WEIGHT",
    "TITLE_WEIGHT",
    "RelatedIndex",
    "choose_related",
    "tokenize",
]

TITLE_WEIGHT = 2
LABEL_WEIGHT = 2.0
LATENT_WEIGHT = 0.5
LATENT_POSTS = (20, 200)  # from and to (inclusive); bench/related_eval.py --ideas
POST_LINK_WEIGHT = 2.0  # a link between two posts, or to one post from both
PAGE_LINK_WEIGHT = 0.5  # a page elsewhere both link to


def latent_rank(n: int) -> int:
    """The LSA dimensions for ``n`` posts: a quarter of them, at most 50."""
    return min(50, n // 4)


def _labels(values: Iterable[str]) -> frozenset[str]:
    return frozenset(
        unicodedata.normalize("NFKC", value).strip().casefold() for value in values if value.strip()
    )


class RelatedIndex:
    """The posts of an archive made comparable once (:class:`~.ranking.TextIndex`, label
    weights; their links, :class:`~.signals.LinkIndex`, on first need), to choose related posts
    for any issue of them; :func:`choose_related` builds one per call."""

    def __init__(self, posts: Sequence[Post], *, use_labels: bool = True) -> None:
        n = len(posts)
        self.position = {post.id: i for i, post in enumerate(posts)}
        self.text = TextIndex(posts, title_weight=TITLE_WEIGHT)
        low, high = LATENT_POSTS
        self.latent = self.text.latent_cosine(latent_rank(n)) if low <= n <= high else None
        empty: frozenset[str] = frozenset()
        self.labels = [_labels((*p.categories, *p.tags)) if use_labels else empty for p in posts]
        label_df = Counter(chain.from_iterable(self.labels))
        scale = math.log(n) if n > 1 else 1.0
        self.label_weight = {label: math.log(n / k) / scale for label, k in label_df.items()}
        self.posts = posts
        self._links: LinkIndex | None = None  # built when a post without labels needs it

    def scores(self, issue: Sequence[int], candidates: Sequence[int]) -> list[list[float]]:
        """For each issue post (a position), one score per candidate (positions, in order)."""
        at = np.array(candidates, dtype=np.int64)
        out = []
        for i in issue:
            text = self.text.cosine(i)[at]
            if self.latent is not None:
                latent = (text > 0) * np.clip(self.latent[i, at], 0.0, None)
                text = (text + LATENT_WEIGHT * latent) / (1 + LATENT_WEIGHT)  # still 0 to 1
            labels = self.labels[i]
            if not labels:
                text = self._linked(i, candidates, text)
            # Rounded: equal texts score equal whatever the order the sums were taken in.
            scores: list[float] = np.round(text, 12).tolist()
            if labels:
                for k, j in enumerate(candidates):
                    common = labels & self.labels[j]
                    if common:
                        weights = sorted(self.label_weight[x] for x in common)
                        scores[k] += LABEL_WEIGHT * sum(weights)
            out.append(scores)
        return out

    def _linked(self, i: int, candidates: Sequence[int], text: Floats) -> Floats:
        """The text scores times ``1 + `` the weight of the links post ``i`` shares with each
        candidate, at most 1."""
        if self._links is None:
            self._links = LinkIndex(
                self.posts, post_weight=POST_LINK_WEIGHT, page_weight=PAGE_LINK_WEIGHT
            )
        shared = self._links.shared(i)
        if not shared:
            return text
        boost = np.array([shared.get(j, 0.0) for j in candidates])
        out: Floats = np.minimum(text * (1.0 + boost), 1.0)
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
