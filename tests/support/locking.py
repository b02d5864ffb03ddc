"""Two writers of one list at once: the first holds ``edit`` while the second tries its change."""

from __future__ import annotations

import threading
from collections.abc import Callable

from crusader_mail.models import Source
from crusader_mail.storage.files.subscribers import SubscriberList


def while_an_edit_holds(
    readers: SubscriberList, adding: str, second: Callable[[list[str]], None]
) -> list[str]:
    """Run ``second(log)`` on another thread while an ``edit`` of ``readers`` that adds
    ``adding`` holds the list's lock (it lingers 0.3 s, the chance a broken lock would give the
    second writer to get in), and return the log: ``"edit leaves"`` when that edit ends, then
    whatever ``second`` appended. A failure in either thread is raised here."""
    inside, waiting = threading.Event(), threading.Event()
    log: list[str] = []
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with readers.edit() as roster:
                roster.add(adding, via=Source.CLI)
                inside.set()
                waiting.wait(10)
                threading.Event().wait(0.3)
                log.append("edit leaves")
        except BaseException as error:  # pragma: no cover - raised below
            errors.append(error)

    def then() -> None:
        try:
            inside.wait(10)
            waiting.set()
            second(log)
        except BaseException as error:  # pragma: no cover - raised below
            errors.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=then)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]
    return log
