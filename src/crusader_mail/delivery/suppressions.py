"""Pull SendGrid's suppression lists into the subscriber list before sending.

``sync_suppressions(settings, readers, clock, factory) -> dict[str, int]``.

Lists pulled (each a SendGrid v3 ``GET``), and what a reader on it becomes:

    group          /v3/asm/groups/{sendgrid.asm_group_id}/suppressions   unsubscribed
    unsubscribes   /v3/suppression/unsubscribes                           unsubscribed
    bounces        /v3/suppression/bounces                                bounced
    spam_reports   /v3/suppression/spam_reports                           complained
    invalid_emails /v3/suppression/invalid_emails                         bounced

The ``/v3/suppression/*`` lists are paged with ``limit`` (500, the documented maximum) and
``offset`` until a short page; the group list is one array of addresses (the API documents no
paging for it). The lists are fetched concurrently, ``sendgrid.concurrency`` at a time, one
client per thread; faults are retried as for sending. Then ONE ``Roster.update_many()`` applies
them with ``via=Source.SENDGRID`` (a reader who already left keeps the status they have; see
:mod:`crusader_mail.storage.rules`): it streams the list, so a million-reader list costs memory
for the suppressions only. Addresses SendGrid knows but the list does not are ignored; readers
are matched by mailbox key (:func:`~crusader_mail.storage.rules.mailbox_key`: case ignored).

The result counts what each list held (``group``, ``unsubscribes``, ``bounces``,
``spam_reports``, ``invalid_emails``) and how many readers changed (``unsubscribed``,
``bounced``, ``complained``). No address is returned or logged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from crusader_mail.clock import Clock
from crusader_mail.delivery.client import ClientFactory, PerThreadClients, Retrier
from crusader_mail.errors import SendError
from crusader_mail.models import Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage.contract import Roster, RosterChanges
from crusader_mail.storage.rules import mailbox_key, staying

PAGE = 500  # the documented maximum page size


@dataclass(frozen=True)
class SuppressionList:
    name: str  # key in the result
    path: tuple[str, ...]  # URL segments after /v3
    status: Status  # what a reader on it becomes
    paged: bool = True


def lists_for(settings: Settings) -> list[SuppressionList]:
    lists = []
    group = settings.sendgrid.asm_group_id
    if group is not None:
        path = ("asm", "groups", str(group), "suppressions")
        lists.append(SuppressionList("group", path, Status.UNSUBSCRIBED, paged=False))
    lists += [
        SuppressionList("unsubscribes", ("suppression", "unsubscribes"), Status.UNSUBSCRIBED),
        SuppressionList("bounces", ("suppression", "bounces"), Status.BOUNCED),
        SuppressionList("spam_reports", ("suppression", "spam_reports"), Status.COMPLAINED),
        SuppressionList("invalid_emails", ("suppression", "invalid_emails"), Status.BOUNCED),
    ]
    return lists


def fetch_list(clients: PerThreadClients, what: SuppressionList, retrier: Retrier) -> list[str]:
    """Every address on one suppression list, following the pages."""
    addresses: list[str] = []
    offset = 0
    timeout = retrier.settings.timeout
    while True:
        params = {"limit": PAGE, "offset": offset} if what.paged else None

        def call(params: dict[str, int] | None = params) -> Any:
            endpoint = clients.get().client
            for segment in what.path:
                endpoint = endpoint._(segment)
            return endpoint.get(query_params=params, timeout=timeout)

        response = retrier.call(f"the {what.name} suppression list", call)
        page = _page(response, what.name)
        addresses.extend(page)
        if not what.paged or len(page) < PAGE:
            return addresses
        offset += PAGE


def _page(response: Any, name: str) -> list[str]:
    try:
        data = response.to_dict
    except ValueError:
        raise SendError(f"SendGrid's {name} suppression list is not JSON") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise SendError(f"SendGrid's {name} suppression list is not a JSON array")
    addresses = []
    for item in data:
        email = item.get("email") if isinstance(item, dict) else item
        if isinstance(email, str) and "@" in email:
            addresses.append(email)
    return addresses


def apply_suppressions(
    readers: Roster, lists: list[SuppressionList], fetched: list[list[str]]
) -> dict[str, int]:
    """Apply the fetched lists to the subscriber list in one streaming update; how many readers
    became ``unsubscribed``, ``bounced``, ``complained``. SendGrid compares addresses
    case-insensitively (and lowercases them): readers are matched by mailbox key."""
    wanted: dict[str, list[SuppressionList]] = {}
    for what, found in zip(lists, fetched, strict=True):
        for email in found:
            wanted.setdefault(mailbox_key(email.strip()), []).append(what)
    changed = {"unsubscribed": 0, "bounced": 0, "complained": 0}

    def apply(roster: RosterChanges, email: str) -> None:
        for what in wanted[mailbox_key(email)]:
            before = roster.get(email)
            if before is None or before.status == what.status:
                continue
            if what.status == Status.UNSUBSCRIBED and not staying(before):
                continue  # already left (bounced/complained): keep that reason
            ref = f"sendgrid:{what.name}"
            if what.status == Status.UNSUBSCRIBED:
                after = roster.unsubscribe(email, via=Source.SENDGRID, ref=ref)
            else:
                after = roster.mark(email, what.status, via=Source.SENDGRID, ref=ref)
            if after is not None and after.status != before.status:
                changed[after.status.value] += 1

    if wanted:
        readers.update_many(wanted, apply, match=mailbox_key)
    return changed


def sync_suppressions(
    settings: Settings,
    readers: Roster,
    clock: Clock,
    factory: ClientFactory,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> dict[str, int]:
    """Pull every suppression list and apply it to the subscriber list (module docstring)."""
    lists = lists_for(settings)
    clients = PerThreadClients(factory)
    retrier = Retrier(settings.sendgrid, clock, sleep)
    if rng is not None:
        retrier.rng = rng
    workers = max(1, min(settings.sendgrid.concurrency, len(lists)))
    with ThreadPoolExecutor(workers, thread_name_prefix="crusader-mail-suppressions") as pool:
        fetched = list(pool.map(lambda what: fetch_list(clients, what, retrier), lists))
    result = {what.name: len(found) for what, found in zip(lists, fetched, strict=True)}
    return {**result, **apply_suppressions(readers, lists, fetched)}
