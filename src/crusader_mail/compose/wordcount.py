"""Counting the tokens of many texts fast: each word read once in numpy, tokenized once.

::

    codes = TokenCodes(tokenize)                 words -> token codes, each word tokenized once
    count_tokens(texts, codes) -> (text, token, times)   every (text, token) pair, counted

No Python object a word: in numpy, over the UTF-8 bytes about a megabyte at a time, words are
cut where ``str.split()`` cuts them and a word of up to 16 bytes is two integers (its bytes)
given an id by a hash table (``_Spellings``; a longer word, or one with a NUL, is a ``str``).
Each distinct word is turned into tokens once, in Python, in the order first read, so token ids
are those of a plain word-by-word reading, bit for bit (tests/test_ranking.py). The (text,
token) pairs are counted by one sort a chunk. Used by :class:`.ranking.TextIndex`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Keys = npt.NDArray[np.uint64]
_INT = np.int64
_CHUNK_BYTES = 1 << 20  # UTF-8 text read at once (count_tokens)


class TokenCodes(dict[str, int]):
    """Words as written and their codes, each word turned into tokens once (on first lookup; a
    new token gets the next id): a one-token word's code is its token's id, any other's
    ``-1 - k`` for its tokens ``flat[first[k]:first[k + 1]]`` (k = 0: none, a stopword...)."""

    def __init__(self, tokenize: Callable[[str], list[str]]) -> None:
        super().__init__()
        self._tokenize = tokenize
        self.vocabulary: dict[str, int] = {}
        self.first = array("q", [0, 0])
        self.flat = array("q")

    def __missing__(self, word: str) -> int:
        vocabulary = self.vocabulary
        ids = [vocabulary.setdefault(t, len(vocabulary)) for t in self._tokenize(word)]
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


def count_tokens(texts: Iterable[str], words: TokenCodes) -> tuple[Ints, Ints, Ints]:
    """Every (text, token) pair of the texts' words (as ``str.split()`` gives them) turned into
    tokens by ``words``, by text then token, and how many times the token is in the text.

    Each distinct word is looked up in ``words`` once, in the order first read, so token ids
    are those of a word-by-word reading. In numpy, about a megabyte of UTF-8 at a time: a word
    of up to 16 bytes is its bytes as two integers (``_Spellings``), a longer word (or one with
    a NUL) a ``str`` (rare)."""
    spellings = _Spellings()
    longer: dict[str, int] = {}  # word: its number among the longer words
    # The code (TokenCodes) of each word of the table, and of each longer word.
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
