"""Related posts: which older posts to show under an issue.

Contract::

    choose_related(issue_posts, candidates, avoid, count) -> list[Post]

How the choice is made (pure Python, deterministic, no numpy):

1. Text similarity, BM25 style. Every document is its title (counted ``TITLE_WEIGHT`` times) plus
   the first ``CONTENT_WORDS`` words of its plain-text content. For each issue post, its
   ``QUERY_TERMS`` most distinctive terms (tf x idf) form a query; each candidate is scored with
   BM25 against it and the score is divided by the best score a document could get, so it lies
   in 0..1 whatever the archive.
2. Shared categories and tags add to it, weighted by how rare each one is (a tag on every post
   says little): ``CATEGORY_WEIGHT`` x (idf share of the issue post's categories the candidate
   shares), the same for tags with ``TAG_WEIGHT``.
3. Each issue post, newest first, in turn takes its best candidate not chosen yet (round robin),
   so a three-post issue gets related posts for each of its posts.

Eligibility, in order of preference (a later tier is used only when the earlier ones run out):

1. similar (score >= ``MIN_SCORE``) and not in ``avoid``;
2. recent older posts (published desc) not in ``avoid``: the small-archive fallback;
3. posts in ``avoid`` (shown as related in the last few issues), similar first, then recent.

Never a post of this issue (same id or same link), never one post twice. Ties are broken by
date (newer first) then id, so the same input always gives the same choice.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from crusader_mail.models import Post
from crusader_mail.util.html_text import html_words

TITLE_WEIGHT = 3
CONTENT_WORDS = 250
QUERY_TERMS = 25
CATEGORY_WEIGHT = 0.5
TAG_WEIGHT = 0.5
MIN_SCORE = 0.12
BM25_K1 = 1.2
BM25_B = 0.75

_WORD_RE = re.compile(r"\w+")
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")

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


def tokenize(text: str) -> list[str]:
    """Lower-cased words without stopwords, numbers or one-letter words; CJK runs become
    character bigrams (CJK text has no spaces between words)."""
    tokens: list[str] = []
    for word in _WORD_RE.findall(text.casefold()):
        token = _token(word)
        if isinstance(token, str):
            tokens.extend((token,) if token else ())
        else:
            tokens.extend(token)
    return tokens


def _token(word: str) -> str | tuple[str, ...]:
    """A word's token ("" when it carries no topic); CJK words give several bigrams."""
    if _CJK_RE.search(word):
        return tuple(_cjk_bigrams(word))
    if len(word) > 1 and word not in STOPWORDS and not word.isdigit():
        return _stem(word)
    return ""


def _stem(word: str) -> str:
    """A very light plural fold: posts/post, classes/class, stories/story."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("sses"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _cjk_bigrams(word: str) -> list[str]:
    if len(word) == 1:
        return [word]
    return [word[i : i + 2] for i in range(len(word) - 1)]


def plain_text(content_html: str, max_words: int = CONTENT_WORDS) -> str:
    """The first ``max_words`` words of sanitized HTML as plain text (code blocks left out)."""
    head = content_html[: max_words * 12]  # HTML enough for max_words nearly always
    return " ".join(html_words(head, skip_code=True)[:max_words])


def _labels(values: Iterable[str]) -> frozenset[str]:
    return frozenset(
        unicodedata.normalize("NFKC", value).strip().casefold() for value in values if value.strip()
    )


@dataclass(frozen=True)
class _Doc:
    post: Post
    words: Counter[str]  # raw words of the plain-text content (counted in C by Counter)
    title_words: Counter[str]
    categories: frozenset[str]
    tags: frozenset[str]


def _doc(post: Post) -> _Doc:
    body = plain_text(post.content_html or post.summary_html) or post.excerpt
    return _Doc(
        post=post,
        words=Counter(_WORD_RE.findall(body.casefold())),
        title_words=Counter(_WORD_RE.findall(post.title.casefold())),
        categories=_labels(post.categories),
        tags=_labels(post.tags),
    )


Memo = dict[str, str | tuple[str, ...]]


def _terms(doc: _Doc, memo: Memo, only: set[str] | None = None) -> dict[str, int]:
    """Token counts of ``doc`` (title counted TITLE_WEIGHT times), limited to words in ``only``."""
    terms: dict[str, int] = {}
    get = terms.get
    for source, weight in ((doc.words, 1), (doc.title_words, TITLE_WEIGHT)):
        words = source.keys() if only is None else source.keys() & only
        for word in words:
            token = memo[word]
            n = source[word] * weight
            if isinstance(token, str):
                if token:
                    terms[token] = get(token, 0) + n
            else:
                for bigram in token:
                    terms[bigram] = get(bigram, 0) + n
    return terms


def _idf(df: int, n: int) -> float:
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


class _Scorer:
    """BM25 over the candidates plus weighted shared categories and tags.

    Speed: a candidate's words are counted once in C (``Counter``); only the words whose
    token occurs in an issue post are then looked at in Python (set intersection in C).
    """

    def __init__(
        self, docs: Sequence[_Doc], queries: Sequence[_Doc], use_labels: bool = True
    ) -> None:
        self.docs = docs
        self.n = max(len(docs), 1)
        vocabulary: set[str] = set()
        for d in (*docs, *queries):
            vocabulary.update(d.words)
            vocabulary.update(d.title_words)
        memo: Memo = {word: _token(word) for word in vocabulary}
        self.query_terms = [_terms(q, memo) for q in queries]
        wanted: set[str] = set().union(*self.query_terms)
        relevant = {
            word
            for word, token in memo.items()
            if (token in wanted if isinstance(token, str) else not wanted.isdisjoint(token))
        }
        self.doc_terms = [_terms(d, memo, relevant) for d in docs]
        self.lengths = [
            sum(d.words.values()) + TITLE_WEIGHT * sum(d.title_words.values()) for d in docs
        ]
        self.avg_len = max(sum(self.lengths) / len(docs), 1.0) if docs else 1.0
        self.df: Counter[str] = Counter()
        for terms in self.doc_terms:
            self.df.update(terms.keys())
        self.label_df: Counter[str] = Counter()
        if use_labels:
            for d in docs:
                self.label_df.update("c:" + c for c in d.categories)
                self.label_df.update("t:" + t for t in d.tags)
        self.use_labels = use_labels

    def scores(self, index: int, query_doc: _Doc) -> list[float]:
        """One score per candidate (in order) for issue post number ``index``."""
        qterms = self.query_terms[index]
        idf = {t: _idf(self.df.get(t, 0), self.n) for t in qterms}
        query = sorted(qterms, key=lambda t: (-qterms[t] * idf[t], t))[:QUERY_TERMS]
        best = sum(idf[t] * (BM25_K1 + 1) for t in query) or 1.0
        cat_weights = self._label_weights("c:", query_doc.categories)
        tag_weights = self._label_weights("t:", query_doc.tags)
        cat_total = sum(cat_weights.values())
        tag_total = sum(tag_weights.values())
        out: list[float] = []
        k1, b, avg = BM25_K1, BM25_B, self.avg_len
        for d, terms, length in zip(self.docs, self.doc_terms, self.lengths, strict=True):
            norm = k1 * (1 - b + b * length / avg)
            text = 0.0
            for t in query:
                tf = terms.get(t)
                if tf:
                    text += idf[t] * tf * (k1 + 1) / (tf + norm)
            score = text / best
            if cat_total and d.categories:
                shared = sum(w for c, w in cat_weights.items() if c in d.categories)
                score += CATEGORY_WEIGHT * shared / cat_total
            if tag_total and d.tags:
                shared = sum(w for t, w in tag_weights.items() if t in d.tags)
                score += TAG_WEIGHT * shared / tag_total
            out.append(score)
        return out

    def _label_weights(self, prefix: str, labels: frozenset[str]) -> dict[str, float]:
        if not self.use_labels:
            return {}
        return {label: _idf(self.label_df.get(prefix + label, 0), self.n) for label in labels}


def _recency_key(post: Post) -> tuple[float, str]:
    return (-post.published.timestamp(), post.id)


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
    if count <= 0 or not candidates:
        return []
    in_issue = {p.id for p in issue_posts} | {p.link for p in issue_posts}
    pool: list[Post] = []
    seen: set[str] = set()
    for post in candidates:
        if post.id in in_issue or post.link in in_issue or post.id in seen:
            continue
        seen.add(post.id)
        pool.append(post)
    if not pool:
        return []
    pool.sort(key=_recency_key)  # the deterministic base order: newest first, then id
    docs = [_doc(post) for post in pool]
    queries = [_doc(post) for post in sorted(issue_posts, key=_recency_key)]
    scorer = _Scorer(docs, queries, use_labels=use_labels)
    per_post = [scorer.scores(i, query) for i, query in enumerate(queries)]

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


def _round_robin(
    pool: Sequence[Post], per_post: Sequence[Sequence[float]], wanted: Callable[[Post], bool]
) -> list[Post]:
    """Similar posts (score >= MIN_SCORE) interleaved: each issue post's best, then second..."""
    rankings = []
    for scores in per_post:
        order = sorted(range(len(pool)), key=lambda i, s=scores: (-s[i], i))  # type: ignore[misc]
        rankings.append([pool[i] for i in order if scores[i] >= MIN_SCORE and wanted(pool[i])])
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
