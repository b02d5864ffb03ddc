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
text is read with two regular expressions over its sanitized HTML (not an HTML parser). No
Python object a word after that: in numpy, over the UTF-8 bytes about a megabyte at a time,
words are cut where ``str.split()`` cuts them and a word of up to 16 bytes is two integers (its
bytes) given an id by a hash table (a longer word, or one with a NUL, is a ``str``). Each
distinct word is turned into tokens once, in Python, in the order first read, so token ids,
weights and cosines are a plain reading's, bit for bit (tests/test_ranking.py). The (post,
token) pairs are counted by one sort a chunk, weighed and normalized; a cosine with every post
is one pass of ``numpy.bincount``.
"""

from __future__ import annotations

import html
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

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
Keys = npt.NDArray[np.uint64]
_INT = np.int64
_CHUNK_BYTES = 1 << 20  # UTF-8 text read at once (_count_tokens)


class TextIndex:
    """The posts' TF-IDF weights (see the module doc), each post's normalized to length 1."""

    def __init__(self, posts: Sequence[Post], *, title_weight: int) -> None:
        n = len(posts)
        self.size = n
        # Every word of every post as written (its title's words title_weight times at its end)
        # turned into tokens: the (post, token) pairs and their counts.
        words = _Words()
        self.doc, self.token, tf = _count_tokens(
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


class _Words(dict[str, int]):
    """Words as written and their codes, each word turned into tokens once (on first lookup; a
    new token gets the next id): a one-token word's code is its token's id, any other's
    ``-1 - k`` for its tokens ``flat[first[k]:first[k + 1]]`` (k = 0: none, a stopword...)."""

    def __init__(self) -> None:
        super().__init__()
        self.vocabulary: dict[str, int] = {}
        self.first = array("q", [0, 0])
        self.flat = array("q")

    def __missing__(self, word: str) -> int:
        vocabulary = self.vocabulary
        ids = [vocabulary.setdefault(t, len(vocabulary)) for t in tokenize(word)]
        if len(ids) == 1:
            code = ids[0]
        elif ids:
            code = -len(self.first)
            self.flat.extend(ids)
            self.first.append(len(self.flat))
        else:
            code = -1
        self[word] = code
        return code

    def tokens_of(self, codes: Ints) -> tuple[Ints, Ints]:
        """Each token of each code's word, in order, with the index of its code (none for a
        word without tokens)."""
        one, many = np.flatnonzero(codes >= 0), np.flatnonzero(codes < -1)
        group = -1 - codes[many]
        first, flat = np.array(self.first, dtype=_INT), np.array(self.flat, dtype=_INT)
        k = first[group + 1] - first[group]
        at = np.repeat(first[group], k) + _ranks(k)
        return np.concatenate([one, np.repeat(many, k)]), np.concatenate([codes[one], flat[at]])


# What str.split() splits on: ASCII bytes, and other characters (as UTF-8: 2 or 3 bytes).
_SEPARATOR = np.zeros(256, dtype=bool)
_SEPARATOR[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_WIDE_SPACE_CHARS = (
    "\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_WIDE_SPACES = [
    (int.from_bytes(space.encode(), "little"), len(space.encode())) for space in _WIDE_SPACE_CHARS
]
_MASKS = np.array([(1 << 8 * k) - 1 for k in range(9)], dtype=np.uint64)  # k bytes
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))


def _count_tokens(texts: Iterable[str], words: _Words) -> tuple[Ints, Ints, Ints]:
    """Every (text, token) pair of the texts' words (as ``str.split()`` gives them) turned into
    tokens by ``words``, by text then token, and how many times the token is in the text.

    Each distinct word is looked up in ``words`` once, in the order first read, so token ids
    are those of a word-by-word reading. In numpy, about a megabyte of UTF-8 at a time: a word
    of up to 16 bytes is its bytes as two integers (``_Spellings``), a longer word (or one with
    a NUL) a ``str`` (rare)."""
    spellings = _Spellings()
    longer: dict[str, int] = {}  # word: its number among the longer words
    # The code (_Words) of each word of the table, and of each longer word.
    codes, longer_codes = np.zeros(0, dtype=_INT), np.zeros(0, dtype=_INT)
    pairs: list[tuple[Ints, Ints, Ints]] = []
    first_text = 0
    for chunk in _chunks(texts):
        data, starts, ends, per_text = _spans(chunk)
        k1, k2, long = _keys(data, starts, ends)
        known = len(spellings.k1)
        ids = spellings.find(k1, k2)
        unknown = np.flatnonzero((ids < 0) & ~long)
        while unknown.size:  # new words (more than one round only if _distinct's hash collides)
            spellings.add(*_distinct(k1[unknown], k2[unknown]))
            ids[unknown] = spellings.find(k1[unknown], k2[unknown])
            unknown = unknown[ids[unknown] < 0]
        new_longer: list[str] = []
        longer_firsts: list[int] = []
        for at in np.flatnonzero(long).tolist():
            spelling = data[starts[at] : ends[at]].decode("utf-8", "surrogatepass")
            fresh = len(longer)
            number = longer.setdefault(spelling, fresh)
            if number == fresh:  # first read here
                new_longer.append(spelling)
                longer_firsts.append(at)
            ids[at] = -1 - number
        # The new words looked up in the order first read in this chunk.
        new = spellings.words(known) + new_longer
        firsts = np.concatenate([_firsts(ids, known), np.array(longer_firsts, dtype=_INT)])
        new_codes = np.empty(len(new), dtype=_INT)
        for k in np.argsort(firsts).tolist():
            new_codes[k] = words[new[k]]
        in_table = len(spellings.k1) - known
        codes = np.concatenate([codes, new_codes[:in_table]])
        longer_codes = np.concatenate([longer_codes, new_codes[in_table:]])
        every = np.concatenate([codes, longer_codes])
        rows, token = words.tokens_of(every[np.where(ids >= 0, ids, len(codes) - 1 - ids)])
        doc = np.repeat(np.arange(first_text, first_text + len(chunk), dtype=_INT), per_text)
        pairs.append(_merge(doc[rows], token))
        first_text += len(chunk)
    if not pairs:
        empty = np.zeros(0, dtype=_INT)
        return empty, empty, empty
    docs, tokens, counts = (np.concatenate(column) for column in zip(*pairs, strict=True))
    return docs, tokens, counts


def _firsts(ids: Ints, known: int) -> Ints:
    """Where each id from ``known`` on is first found in ``ids`` (each one is there)."""
    at = np.flatnonzero(ids >= known)
    bits = len(ids).bit_length()
    grouped = np.sort((ids[at] - known) << bits | at)
    firsts: Ints = grouped[np.diff(grouped >> bits, prepend=-1) != 0] & ((1 << bits) - 1)
    return firsts


def _chunks(texts: Iterable[str]) -> Iterator[list[bytes]]:
    """The texts in UTF-8, about a megabyte at a time."""
    chunk: list[bytes] = []
    size = 0
    for text in texts:
        chunk.append(text.encode("utf-8", "surrogatepass"))
        size += len(chunk[-1])
        if size >= _CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _spans(chunk: list[bytes]) -> tuple[bytes, Ints, Ints, Ints]:
    """The texts joined by newlines (16 NUL bytes after), where each of its words starts and
    ends, and how many words each text has."""
    data = b"\n".join(chunk)
    size = len(data)
    data += bytes(16)
    raw = np.frombuffer(data, dtype=np.uint8, count=size)
    separator = np.ones(size + 2, dtype=bool)
    if np.count_nonzero(raw < 9) or np.count_nonzero(raw - 14 <= 13):  # 0-8 or 14-27 (rare)
        separator[1:-1] = _SEPARATOR[raw]
    else:  # the only bytes up to 32 are whitespace: one comparison (faster than the table)
        np.less_equal(raw, 32, out=separator[1:-1])
    if not data.isascii():
        lead = np.flatnonzero((raw == 0xC2) | (raw - 0xE1 <= 2))  # a wide space's first byte
        code = np.ndarray((size,), dtype="<u4", buffer=data, strides=(1,))[lead]
        for value, length in _WIDE_SPACES:
            at = lead[code & _MASKS[length] == value]
            for k in range(1, length + 1):
                separator[at + k] = True
    change = np.flatnonzero(separator[1:] != separator[:-1])
    starts, ends = change[0::2], change[1::2]
    offsets = np.cumsum([0, *(len(text) + 1 for text in chunk)])
    return data, starts, ends, np.diff(np.searchsorted(starts, offsets))


def _keys(data: bytes, starts: Ints, ends: Ints) -> tuple[Keys, Keys, npt.NDArray[np.bool_]]:
    """Each word's first 8 bytes and next 8 (zero-padded) as little-endian integers, and
    whether it is longer than 16 bytes or has a NUL (its key then says nothing); ``data`` ends
    with 16 NUL bytes of padding."""
    every = np.ndarray((len(data) - 8,), dtype="<u8", buffer=data, strides=(1,))  # at each byte
    length = ends - starts
    k1 = (every[starts] & _MASKS[np.minimum(length, 8)]).astype(np.uint64, copy=False)
    k2 = np.zeros(len(starts), dtype=np.uint64)
    more = np.flatnonzero(length > 8)
    k2[more] = every[starts[more] + 8] & _MASKS[np.minimum(length[more] - 8, 8)]
    long = length > 16
    if data.find(b"\0", 0, len(data) - 16) >= 0:
        nul = np.flatnonzero(np.frombuffer(data, dtype=np.uint8, count=len(data) - 16) == 0)
        long[np.searchsorted(starts, nul, side="right") - 1] = True
    return k1, k2, long


def _distinct(k1: Keys, k2: Keys) -> tuple[Keys, Keys]:
    """The distinct (k1, k2) keys, perhaps not all of them where two keys' hashes collide: those
    of one word (k2 = 0) by one sort, the others by their hash."""
    one = k2 == 0
    short = np.sort(k1[one])
    short = short[np.diff(short, prepend=~short[:1]) != 0]
    k1, k2 = k1[~one], k2[~one]
    _, first = np.unique(k1 * _MIX[0] + k2 * _MIX[1], return_index=True)
    return np.concatenate([short, k1[first]]), np.concatenate([np.zeros_like(short), k2[first]])


class _Spellings:
    """Words of up to 16 UTF-8 bytes (without NUL) as two integers ``(k1, k2)``, each with an
    id (the order added): a hash table in numpy (open addressing, linear probing, at most a
    quarter full); :meth:`find` compares whole keys, so ids are exact."""

    def __init__(self) -> None:
        self.k1: Keys = np.zeros(0, dtype=np.uint64)
        self.k2: Keys = np.zeros(0, dtype=np.uint64)
        self._slots: Ints = np.full(1 << 12, -1, dtype=_INT)

    def _home(self, k1: Keys, k2: Keys) -> Ints:
        shift = np.uint64(65 - len(self._slots).bit_length())
        return ((k1 ^ k2 * _MIX[1]) * _MIX[0] >> shift).astype(_INT)

    def find(self, k1: Keys, k2: Keys) -> Ints:
        """Each key's id, -1 for a key not added."""
        if not len(self.k1):
            return np.full(len(k1), -1, dtype=_INT)
        mask = len(self._slots) - 1
        slot = self._home(k1, k2)
        ids = self._slots[slot]
        same = self._holds(ids, k1, k2)
        probe = np.flatnonzero(~same & (ids >= 0))  # another key there: look further
        ids[~same] = -1
        step = 1
        while probe.size:
            at = self._slots[(slot[probe] + step) & mask]
            same = self._holds(at, k1[probe], k2[probe])
            ids[probe[same]] = at[same]
            probe, step = probe[~same & (at >= 0)], step + 1
        return ids

    def _holds(self, ids: Ints, k1: Keys, k2: Keys) -> npt.NDArray[np.bool_]:
        """Whether each id (-1: none) is that of its key."""
        holds: npt.NDArray[np.bool_] = (ids >= 0) & (self.k1[ids] == k1) & (self.k2[ids] == k2)
        return holds

    def add(self, k1: Keys, k2: Keys) -> None:
        """New keys, distinct, not added before."""
        old = len(self.k1)
        self.k1, self.k2 = np.concatenate([self.k1, k1]), np.concatenate([self.k2, k2])
        if 4 * len(self.k1) > len(self._slots):
            self._slots = np.full(1 << (4 * len(self.k1)).bit_length(), -1, dtype=_INT)
            old = 0
        ids = np.arange(old, len(self.k1), dtype=_INT)
        slot = self._home(self.k1[ids], self.k2[ids])
        mask = len(self._slots) - 1
        while ids.size:  # each free slot to the first key that wants it, the others try the next
            free = np.flatnonzero(self._slots[slot] < 0)
            taken, first = np.unique(slot[free], return_index=True)
            self._slots[taken] = ids[free[first]]
            waiting = np.ones(len(ids), dtype=bool)
            waiting[free[first]] = False
            ids, slot = ids[waiting], (slot[waiting] + 1) & mask

    def words(self, start: int) -> list[str]:
        """The words by id, from ``start`` on."""
        keys = [self.k1[start:], self.k2[start:]]
        raw = np.stack(keys, axis=1).astype("<u8").view("S16").ravel()
        return [word.decode("utf-8", "surrogatepass") for word in raw.tolist()]


def _merge(outer: Ints, inner: Ints) -> tuple[Ints, Ints, Ints]:
    """The distinct (outer, inner) pairs, sorted, and how many times each occurs.

    Each pair is one integer, sorted in C."""
    inner_bits = int(inner.max(initial=0)).bit_length()
    keys = outer << inner_bits | inner
    keys.sort()
    begins = np.flatnonzero(np.diff(keys, prepend=-1))  # where each pair starts
    times = np.diff(begins, append=len(keys))
    keys = keys[begins]
    return keys >> inner_bits, keys & ((1 << inner_bits) - 1), times


def _ranks(spread: Ints) -> Ints:
    """0, 1, ... k-1 for each k of ``spread``, concatenated."""
    ends = np.cumsum(spread)
    return np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) - np.repeat(
        ends - spread, spread
    )
