"""Who of the active readers an issue goes to, from what readers chose (their preferences).

Preferences are sparse (most readers choose nothing), so an issue's audience is told by the
few mailboxes it leaves out: :func:`audience` reads the preferences map once
(:meth:`~crusader_mail.storage.contract.Roster.preferences`, by mailbox key) and returns the
map the send looks each streamed reader up in (:class:`Audience`, one lookup per reader in
the hot loop, no model object). Left out of an issue:

- ``paused``: a reader paused at the time of the send (``paused_until`` after now); nothing
  is written when the pause ends, they simply are in the next issue's audience again;
- ``other_topics``: a reader with topics none of whose names is among the categories and tags
  of the issue's posts (matched case-insensitively).

A reader without preferences, or whose preferences leave them in, gets the issue exactly as
before. Frequency is stored but not honoured yet: every reader gets the editor's issues (with
``cadence.mode = "digest"`` the digest is the weekly issue, as a weekly reader wants). The issue itself is composed once whatever the audience; its ledger keeps each reader
once, so a resumed send leaves out the same readers (as long as their preferences did not
change meanwhile) and never sends one twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from crusader_mail.models import Post, Preferences


@dataclass(frozen=True)
class Audience:
    """The mailboxes (keys) an issue leaves out, and why (a key of the report's ``skipped``)."""

    left_out: Mapping[str, str] = field(default_factory=dict)  # mailbox key -> reason
    """The send looks each reader up by ``address.lower()`` (:func:`~crusader_mail.storage.
    rules.mailbox_key`, inlined in the hot loop of :mod:`crusader_mail.delivery.engine`)."""


EVERYONE = Audience()


def issue_topics(posts: Iterable[Post]) -> frozenset[str]:
    """The categories and tags of ``posts``, lowercased."""
    return frozenset(name.lower() for post in posts for name in (*post.categories, *post.tags))


def audience(
    preferences: Mapping[str, Preferences], posts: Iterable[Post], now: datetime
) -> Audience:
    """The audience of an issue carrying ``posts``, sent at ``now`` (see the module docstring)."""
    if not preferences:
        return EVERYONE
    topics = issue_topics(posts)
    left_out: dict[str, str] = {}
    for key, prefs in preferences.items():
        if prefs.paused(now):
            left_out[key] = "paused"
        elif prefs.topics and not topics & {topic.lower() for topic in prefs.topics}:
            left_out[key] = "other_topics"
    return Audience(left_out) if left_out else EVERYONE
