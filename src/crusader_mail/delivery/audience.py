"""Who of the active readers an issue goes to, from what readers chose (their preferences).

Readers are grouped by what they get. Their **series** is whose cadence they follow: a reader
who chose no frequency, or the one ``cadence.mode`` gives anyway (every post with
``per_post``, weekly with ``digest``), follows the editor's series (``None``); the others are
the every-post series (with ``digest``) or the weekly series (with ``per_post``), which get
issues of their own (:mod:`crusader_mail.compose.groups` plans them). Within a series a
reader with topics gets, of an issue's posts (its **source**), those with a category or tag
among their topics (:func:`picked`, case-insensitively): all of them, the issue itself; none,
nothing; some, the **variant** of the issue carrying exactly those (composed once per distinct
set, never per reader). A paused reader (``paused_until`` after now) gets nothing; nothing is
written when the pause ends.

So an issue of ``posts`` made from ``source`` for ``series`` goes to the readers of that series,
not paused, whose topics pick exactly ``posts`` from ``source`` (:func:`audience`). Preferences
are sparse (most readers choose nothing), so the editor's own issue (series ``None``,
``posts`` = ``source``) is told by the few mailboxes it leaves out (:attr:`Audience.left_out`:
``paused``, ``other_topics``, ``topics_variant``, or the series they follow, ``every_post`` or
``weekly``); every other issue is for a few, told by the mailboxes it is for
(:attr:`Audience.only`). The send looks each streamed reader up in one of the two (one lookup,
no model object); a reader who chose nothing costs the editor's issue nothing new.

An issue's ledger keeps each reader once, so a resumed send sends nobody twice; it goes to the
readers its definition picks then (the same, unless their preferences changed meanwhile).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from crusader_mail.models import Frequency, Post, Preferences

Mode = Literal["digest", "per_post"]


@dataclass(frozen=True)
class Audience:
    """The mailboxes (keys) an issue leaves out and why (a key of the report's ``skipped``),
    or, for an issue made for a group, the only mailboxes it goes to."""

    left_out: Mapping[str, str] = field(default_factory=dict)  # mailbox key -> reason
    """The send looks each reader up by ``address.lower()`` (:func:`~crusader_mail.storage.
    rules.mailbox_key`, inlined in the hot loop of :mod:`crusader_mail.delivery.engine`)."""
    only: frozenset[str] | None = None  # None: every reader not left out


EVERYONE = Audience()


def issue_topics(posts: Iterable[Post]) -> frozenset[str]:
    """The categories and tags of ``posts``, lowercased."""
    return frozenset(name.lower() for post in posts for name in (*post.categories, *post.tags))


def series_of(prefs: Preferences, mode: Mode) -> Frequency | None:
    """The series a reader follows: ``None`` for the editor's, else their frequency."""
    frequency = prefs.frequency
    if frequency is None:
        return None
    editors = Frequency.EVERY_POST if mode == "per_post" else Frequency.WEEKLY
    return None if frequency == editors else frequency


def picked(prefs: Preferences, source: Sequence[Post]) -> tuple[str, ...]:
    """The ids of the posts of ``source`` a reader gets: all without topics, else those with
    a category or tag among them."""
    if not prefs.topics:
        return tuple(post.id for post in source)
    wanted = {topic.lower() for topic in prefs.topics}
    return tuple(post.id for post in source if wanted & issue_topics([post]))


def _readers(
    preferences: Mapping[str, Preferences], series: Frequency | None, mode: Mode, now: datetime
) -> Iterable[tuple[str, Preferences]]:
    """The readers with preferences who follow ``series`` and are not paused."""
    for key, prefs in preferences.items():
        if not prefs.paused(now) and series_of(prefs, mode) == series:
            yield key, prefs


def variants(
    preferences: Mapping[str, Preferences],
    series: Frequency | None,
    source: Sequence[Post],
    mode: Mode,
    now: datetime,
) -> list[tuple[str, ...]]:
    """The distinct post sets (ids, in ``source``'s order) that readers of ``series`` with
    topics pick from ``source`` other than all and none: one variant issue each."""
    every = tuple(post.id for post in source)
    sets = {picked(prefs, source) for _, prefs in _readers(preferences, series, mode, now)}
    return sorted(sets - {every, ()})


def has_readers(
    preferences: Mapping[str, Preferences],
    series: Frequency,
    source: Sequence[Post],
    mode: Mode,
    now: datetime,
) -> bool:
    """Does some reader of ``series`` (not the editor's) get anything of ``source``?"""
    return any(picked(prefs, source) for _, prefs in _readers(preferences, series, mode, now))


def audience(
    preferences: Mapping[str, Preferences],
    posts: Sequence[Post],
    now: datetime,
    *,
    mode: Mode = "digest",
    series: Frequency | None = None,
    source: Sequence[Post] | None = None,
) -> Audience:
    """The audience of an issue of ``posts`` made from ``source`` (default: ``posts``) for
    ``series``, sent at ``now`` (see the module docstring)."""
    source = posts if source is None else source
    ids = frozenset(post.id for post in posts)
    whole = ids == {post.id for post in source}
    if series is not None or not whole:
        return Audience(
            only=frozenset(
                key
                for key, prefs in _readers(preferences, series, mode, now)
                if frozenset(picked(prefs, source)) == ids
            )
        )
    left_out: dict[str, str] = {}
    for key, prefs in preferences.items():
        own = series_of(prefs, mode)
        if prefs.paused(now):
            left_out[key] = "paused"
        elif own is not None:
            left_out[key] = own.value  # they get the issues of their own series
        elif prefs.topics:
            chosen = picked(prefs, source)
            if not chosen:
                left_out[key] = "other_topics"
            elif frozenset(chosen) != ids:
                left_out[key] = "topics_variant"  # they get the variant of their posts
    return Audience(left_out) if left_out else EVERYONE
