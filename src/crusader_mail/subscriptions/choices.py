"""What a reader asks for on the preferences page, as :class:`Preferences` (pure functions).

The page (:mod:`crusader_mail.web.app`) sends one of :data:`ACTIONS` with its fields:
``save`` (``frequency``: ``""`` for the editor's cadence, ``every_post`` or ``weekly``;
``topics``: any of ``newsletter.topics``), ``pause`` (``weeks``: one of :data:`PAUSE_WEEKS`),
``resume``, or ``leave`` (the page unsubscribes). Anything else is refused with one line,
and nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from crusader_mail.models import Frequency, Preferences

ACTIONS = ("save", "pause", "resume", "leave")
PAUSE_WEEKS = (4, 8, 12)


class ChoiceError(ValueError):
    """A preferences form that asks for something the page does not offer."""


def chosen(
    current: Preferences,
    action: str,
    *,
    frequency: str,
    topics: Sequence[str],
    weeks: str,
    offered: Sequence[str],
    now: datetime,
) -> Preferences:
    """The preferences ``action`` makes of ``current`` (``leave`` is not a preference: the
    caller unsubscribes). Topics are matched to ``offered`` in any case and kept as offered."""
    if action == "save":
        names = {topic.lower(): topic for topic in offered}
        unknown = [topic for topic in topics if topic.lower() not in names]
        if unknown:
            raise ChoiceError("a topic that is not offered was sent: nothing changed")
        if frequency and frequency not in {f.value for f in Frequency}:
            raise ChoiceError("a frequency that is not offered was sent: nothing changed")
        return current.model_copy(
            update={
                "frequency": Frequency(frequency) if frequency else None,
                "topics": tuple(names[topic.lower()] for topic in topics),
            }
        )
    if action == "pause":
        if not weeks.isdigit() or int(weeks) not in PAUSE_WEEKS:
            raise ChoiceError("a pause of 4, 8 or 12 weeks only: nothing changed")
        return current.model_copy(update={"paused_until": now + timedelta(weeks=int(weeks))})
    if action == "resume":
        return current.model_copy(update={"paused_until": None})
    raise ChoiceError("that is not something this page does: nothing changed")


def describe(prefs: Preferences, *, cadence: str, now: datetime) -> str:
    """One sentence saying what the reader gets now."""
    if prefs.paused(now) and prefs.paused_until is not None:
        until = prefs.paused_until
        return f"Paused: nothing comes until {until.day} {until:%B %Y}."
    if prefs.frequency is Frequency.EVERY_POST:
        what = "An email for every new post"
    elif prefs.frequency is Frequency.WEEKLY:
        what = "One weekly digest"
    else:
        what = "Every issue, as the editor sends them" + (
            " (one for each new post)" if cadence == "per_post" else ""
        )
    if prefs.topics:
        return f"{what}, only about {', '.join(prefs.topics)}."
    return f"{what}, about everything."
