"""The one claim-then-send loop of the create handlers (invoices, credit notes): each request
claims its elements' link rows first, sends only what the claim let out, and stores Xero's
answer per element, so the exactly-once rules are written once (issue #15.5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from schemas.errors import SyncError
from schemas.links import L, LinkKind, Stored
from workers.batching import Element, Later, Results
from workers.context import StageContext

T = TypeVar("T")
# Xero's answers to one request, in the request's order: the document, or why it was refused
Answers = list[tuple[T | None, list[str]]]


def send_claimed(
    ctx: StageContext,
    link_kind: LinkKind[L],
    requests: list[tuple[str, list[Element]]],
    digests: dict[str, str],
    looked_up: frozenset[str],
    create: Callable[[list[Element], str], Answers[T]],
    created: Callable[[Element, T], tuple[L, Stored]],
    refused: Callable[[Element, list[str]], SyncError],
) -> Results:
    """Send each (Idempotency-Key, elements) request whose elements the database's claim lets
    out; an element another create holds the claim of goes back as a suspect (`Later`), to be
    adopted or looked up after it. `created` gives an answered element's (link, outcome);
    `refused` its error (nothing was saved in Xero, so its claim is given back)."""
    assert ctx.flush is not None, "a batch handler runs in a flush"
    margin = ctx.settings.zxs_lookup_margin_seconds
    results: Results = {}
    for key, claimed in requests:
        held = ctx.flush.sending(
            claimed,
            key,
            {e.id: digests[e.id] for e in claimed},
            claim=link_kind,
            looked_up=looked_up,
            margin=margin,
        )
        results.update({eid: Later(time.time() + margin) for eid in held})
        group = [e for e in claimed if e.id not in held]
        if not group:
            continue
        links: dict[str, L] = {}
        settled: list[str] = []
        for element, (document, errors) in zip(group, create(group, key), strict=True):
            settled.append(element.id)  # Xero answered for it: created, or refused and not saved
            if document is None:
                results[element.id] = refused(element, errors)
            else:
                links[element.id], results[element.id] = created(element, document)
        ctx.flush.store(link_kind, links, settled)
    return results
