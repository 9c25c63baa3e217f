"""Elements that may exist in Xero already (suspects), and what a handler does with them:
send an unanswered request again under its key while Xero keeps it, else look the elements up,
not before the lookup margin (`Later` until then)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from schemas.errors import SyncError
from workers.batching.buffer import Element


@dataclass(frozen=True)
class SuspectPlan:
    """What to do with elements that may exist in Xero (see `plan_suspects`)."""

    resend: dict[str, list[Element]]  # Idempotency-Key -> the same request's elements, again
    lookup: list[Element]  # look up before creating
    later: dict[str, float]  # element id -> when it may be looked up


def plan_suspects(
    elements: list[Element], digests: dict[str, str], now: float, window: float, margin: float
) -> SuspectPlan:
    """Decide, per earlier request, between sending it again and looking its elements up.

    Within Xero's idempotency window (less the margin, so the key cannot lapse on the way) an
    earlier request whose elements are all here again with the same content (`digests`: element
    id -> digest of its body now) is sent again with the same key: Xero answers it with its first
    answer, or runs it if it never arrived. Otherwise its elements are looked up, but not before
    `margin` seconds after it was sent: a create that timed out may still be committing in Xero,
    and a lookup too soon would find nothing and create it twice. Elements without a mark (a
    retry, a replay, an orphan) are looked up at once."""
    resend: dict[str, list[Element]] = {}
    lookup: list[Element] = []
    later: dict[str, float] = {}
    by_key: dict[str, list[Element]] = {}
    for element in elements:
        if element.sent is None:
            lookup.append(element)
        else:
            by_key.setdefault(str(element.sent["key"]), []).append(element)
    for key, group in by_key.items():
        mark = group[0].sent or {}
        age = now - float(mark["at"])
        whole = sorted(e.id for e in group) == list(mark["ids"])
        same = all(mark.get("digests", {}).get(e.id) == digests.get(e.id) for e in group)
        if whole and same and age < window - margin:
            resend[key] = sorted(group, key=lambda e: e.id)
        elif age < margin:
            later.update(dict.fromkeys((e.id for e in group), float(mark["at"]) + margin))
        else:
            lookup += group
    return SuspectPlan(resend, lookup, later)


def plan_unlinked(
    elements: list[Element],
    linked: Iterable[str],
    digest: Callable[[Element], str],
    window: float,
    margin: float,
) -> tuple[list[Element], dict[str, str], SuspectPlan]:
    """The elements with no link yet (in id order), their body digests, and the plan for those
    that may exist in Xero already: the first steps every create handler takes."""
    skip = set(linked)
    todo = sorted((e for e in elements if e.id not in skip), key=lambda e: e.id)
    digests = {e.id: digest(e) for e in todo}
    suspects = [e for e in todo if e.may_exist or e.payload["suspect"]]
    return todo, digests, plan_suspects(suspects, digests, time.time(), window, margin)


class Later(SyncError):
    """This element may not be looked up yet (its create may still be committing in Xero): it
    goes back to the buffer, which holds until `until`, without spending an attempt."""

    kind = "transient"
    retryable = True

    def __init__(self, until: float):
        super().__init__("waiting before the lookup of a create that got no answer")
        self.until = until
