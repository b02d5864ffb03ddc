"""Text similarity of an archive's posts: TF-IDF cosine, and LSA for small archives (numpy).

::

    tokenize(text) -> list[str]                  the tokens of plain text
    post_words(post) -> list[str]                the words of a post's text as written
    TextIndex(posts, title_weight=k)             built once
    index.cosine(i) -> array                     post i's cosine with every post
    index.latent_cosine(rank) -> matrix          every two posts' cosine in a latent space

A post is its title (counted ``title_weight`` times) plus its whole text, code left out, as
:func:`tokenize` tokens. Each of a post's tokens weighs ``(1 + ln tf) * idf``, with
``idf = ln((1 + N) / (1 + df)) + 1`` over the N posts; the cosine of two posts' weights is 0
(no token in common) to 1, whatever their length. A token only one post has still counts in
that post's length: a post with many words of its own is less about what it shares.

Speed (5,000 long posts, 5 million words: ``bench/bench_compose.py --realistic``): a post's
text is read with two regular expressions over its sanitized HTML (not an HTML parser), its
words counted in numpy (:mod:`.wordcount`: each distinct word tokenized once); the (post, token)
counts are weighed and normalized, and a cosine with every post is one pass of
``numpy.bincount``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from crusader_mail.compose.wordcount import TokenCodes, count_tokens
from crusader_mail.models import Post

# Scripts written without spaces between words: their runs become character bigrams.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD_RE = re.compile(f"[^\\W{_CJK}]+")  # a run of letters and digits outside those scripts
_CJK_ANY_RE = re.compile(f"[{_CJK}]")
_CJK_PAIR_RE = re.compile(f"(?=([{_CJK}]{{2}}))")  # overlapping bigrams, found in C
_CJK_ALONE_RE = re.compile(f"(?<![{_CJK}])[{_CJK}](?![{_CJK}])")
# Chinese function characters (particles, pronouns, "is", "and"...): they end a run, so no
# bigram straddles them ("我们的数据" gives 数据, not 的数).
_CJK_FUNCTION_RE = re.compile("[的了是在和与及或也都就而把被让着过吧呢吗啊我你他她它们这那]+")

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
    """The words of ``text``, lower-cased, unfolded, stopwords kept; CJK runs as bigrams (a lone
    character alone), cut at function characters."""
    lowered = text.casefold()
    words = _WORD_RE.findall(lowered)
    if _CJK_ANY_RE.search(lowered):
        lowered = _CJK_FUNCTION_RE.sub(" ", lowered)
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
    if text.isascii() and text.isalnum():  # one word of letters and digits, the most common
        token = _stem(text.lower())
        return [token] if _telling(token) else []
    return [token for token in map(_stem, _words(text)) if _telling(token)]


# Left out with everything inside (as html_words(skip_code=True) does), or a word boundary: the
# tags that start a line in html_text. Other tags join the text around them (<em>a</em>b: ab).
_DROPPED_OR_LINE = re.compile(  # one "<" first: the engine skips to the next "<" at once
    r"<(?:(pre|code|script|style|iframe|object|template|title)\b[^>]*>.*?</\1\s*>|!--.*?-->"
    r"|/?(?:p|div|br|hr|li|ul|ol|dl|dt|dd|h[1-6]|tr|td|th|table|thead|tbody|tfoot|caption"
    r"|blockquote|pre|figure|figcaption|section|article|header|footer|aside|address|nav)\b[^>]*>)",
    re.S | re.I,
)
_TAG = re.compile(r"<[^>]*>")


def post_words(post: Post) -> list[str]:
    """The words of a post's content (its summary when it has none, its excerpt when neither
    has text), code left out, as written (case and punctuation kept).

    Two regular expressions over the sanitized HTML: well-formed, so the words are those of
    ``html_words(markup, skip_code=True)`` (tests/test_related.py checks it on real feeds),
    several times faster."""
    return _post_text(post).split()


def _post_text(post: Post) -> str:
    """The text whose words (``str.split()``) are :func:`post_words`."""
    markup = post.content_html or post.summary_html
    text = _TAG.sub("", _DROPPED_OR_LINE.sub(" ", markup))
    if "&" in text:
        text = html.unescape(text)
    return post.excerpt if text.isspace() or not text else text


Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
_INT = np.int64


class TextIndex:
    """The posts' TF-IDF weights (see the module doc), each post's normalized to length 1."""

    def __init__(self, posts: Sequence[Post], *, title_weight: int) -> None:
        n = len(posts)
        self.size = n
        # Every word of every post as written (its title's words title_weight times at its end)
        # turned into tokens: the (post, token) pairs and their counts.
        words = TokenCodes(tokenize)
        self.doc, self.token, tf = count_tokens(
            (_post_text(post) + ("\n" + post.title) * title_weight for post in posts), words
        )
        vocabulary = words.vocabulary
        width = max(len(vocabulary), 1)
        df = np.bincount(self.token, minlength=width)
        idf = np.log((1 + n) / (1 + df)) + 1
        weight = (1 + np.log(tf)) * idf[self.token]
        norms = np.sqrt(np.bincount(self.doc, weights=weight * weight, minlength=n))
        norms[norms == 0] = 1.0
        self.weight: Floats = weight / norms[self.doc]
        self.starts: Ints = np.searchsorted(self.doc, np.arange(n + 1))
        self.width = width

    def cosine(self, i: int) -> Floats:
        """Post ``i``'s cosine with every post (itself included), 0 to 1."""
        query = np.zeros(self.width)
        mine = slice(self.starts[i], self.starts[i + 1])
        query[self.token[mine]] = self.weight[mine]
        products = self.weight * query[self.token]
        return np.bincount(self.doc, products, self.size).astype(np.float64, copy=False)

    def latent_cosine(self, rank: int) -> Floats:
        """Every two posts' cosine in a ``rank``-dimensional latent space (LSA), a matrix.

        The posts' weights factored by SVD and cut to their ``rank`` strongest dimensions:
        posts whose words keep company with the same words come close, shared words or not.
        Taken from the cosine matrix ``X X^T`` (its eigenvectors are the SVD's left singular
        vectors): only the tokens at least two posts have enter, a dense n x m product."""
        n = self.size
        shared = np.bincount(self.token, minlength=self.width) >= 2
        column = np.cumsum(shared) - 1
        keep = shared[self.token]
        dense = np.zeros((n, int(shared.sum())))
        dense[self.doc[keep], column[self.token[keep]]] = self.weight[keep]
        gram = dense @ dense.T
        np.fill_diagonal(gram, 1.0)  # every post's own words, those no other post has included
        values, vectors = np.linalg.eigh(gram)  # ascending
        top = slice(max(n - rank, 0), n)
        latent = vectors[:, top] * np.sqrt(np.clip(values[top], 0.0, None))
        lengths = np.linalg.norm(latent, axis=1)
        lengths[lengths == 0] = 1.0
        latent /= lengths[:, None]
        result: Floats = latent @ latent.T
        return result
