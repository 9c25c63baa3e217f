"""A flusher's fenced hold on a buffer (issue #22): every write a handler makes goes through
`Flush`, checked against the buffer's fencing token in one Lua script, so a flusher whose lease
expired writes nothing and sends no create; and the marks a create leaves on its elements until
Xero's answer is stored."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from schemas.links import L, LinkKind
from schemas.wire import dumps
from workers.batching.buffer import Buffer, Element
from workers.idempotency import idempotency_key
from workers.store import get_database


class LeaseLost(Exception):
    """This flusher's lease on the buffer expired and another flusher took it: it must neither
    write links nor send a create again (the new flusher takes its elements back as suspects)."""


# Check the flusher's fencing token, then write marks and clear marks in one step (links go to
# the database): KEYS fence, sent marks; ARGV token, n marks, (id, mark)..., ids whose marks go.
_FENCED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
for j = 1, n do
  redis.call('HSET', KEYS[2], ARGV[1 + 2 * j], ARGV[2 + 2 * j])
end
for j = 3 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[j])
end
return 1
"""


@dataclass(frozen=True)
class Flush:
    """One flusher's hold on a buffer: every write a handler makes goes through here, checked
    against the buffer's fencing token (a flusher whose lease expired while it waited on Xero
    finds a newer token and stops), and the "a create may have reached Xero" marks live here:
    set before a create is sent, cleared only once Xero's answer for the element is stored or a
    lookup has told what Xero holds. A mark survives every path (retry, redelivery, a later event,
    a replay, a dead letter), so the element stays a suspect until then."""

    buffer: Buffer
    token: int

    def sending(
        self,
        elements: list[Element],
        key: str,
        digests: dict[str, str] | None = None,
        *,
        claim: LinkKind[Any] | None = None,
        looked_up: frozenset[str] = frozenset(),
        margin: float = 0.0,
    ) -> set[str]:
        """Mark these elements before their create is sent (raises LeaseLost if fenced out):
        the key, when, the request's element ids and each body's digest (`plan_suspects`).

        With `claim` (a link kind) the database first claims each element's link row under
        the key (workers/store `claim_creates`): the ids it refuses (linked, or claimed by a
        create that may still be committing; a claim older than `margin` is taken over by an
        element `looked_up` and not found) are returned, their marks dropped, and must not be
        sent."""
        self.check()
        refused: set[str] = set()
        if claim is not None:
            refused = get_database().claim_creates(
                claim.name,
                self.buffer.connection,
                sorted(e.id for e in elements),
                key,
                take_over=set(looked_up),
                older_than=time.time() - margin,
            )
        going = [e for e in elements if e.id not in refused]
        ids = sorted(e.id for e in going)
        mark = dumps({"key": key, "at": time.time(), "ids": ids, "digests": digests or {}})
        # the database holds what was let out: a refused element's mark is an older request's,
        # dropped so it is looked up next time rather than sent again under a key the claim no
        # longer has (refused at every flush until the mark aged out of the window)
        self._write({e.id: mark for e in going}, sorted(refused))
        return refused

    def store(self, link_kind: LinkKind[L], links: dict[str, L], settled: list[str]) -> None:
        """Store the links Xero's answers gave and clear the marks of the elements now settled
        (created, adopted, found absent, or refused: Xero's answer is known). The links go to
        the database once the fence holds: a true answer of Xero is never wrong to keep; a
        settled element without a link (Xero refused it) gives its pending claim back."""
        self.check()
        database = get_database()
        wire = {zid: link.wire() for zid, link in links.items()}
        database.set_links(link_kind.name, self.buffer.connection, wire)
        database.release_claims(
            link_kind.name, self.buffer.connection, [s for s in settled if s not in links]
        )
        self._write({}, settled)

    def check(self) -> None:
        """Raise LeaseLost unless this flusher still holds the buffer."""
        self._write({}, [])

    def _write(self, marks: dict[str, str], settled: list[str]) -> None:
        buffer = self.buffer
        args: list[Any] = [self.token, len(marks)]
        for element_id, mark in marks.items():
            args += [element_id, mark]
        args += settled
        keys = [buffer.key("fence"), buffer.key("sent")]
        if not buffer.redis.eval(_FENCED, len(keys), *keys, *args):
            raise LeaseLost(f"{buffer.member}: another flusher holds the buffer")


def flush_key(kind: str, connection: str, elements: list[Element], content: str) -> str:
    """The Idempotency-Key of a new batched write. Xero caches errors under a key for 6 minutes,
    so a content-only key would answer a replay made after a fix with the old refusal: a new
    request gets a new key, and an unanswered one is sent again under the key its elements'
    marks keep (`plan_suspects`)."""
    return idempotency_key(kind, connection, elements[0].flush if elements else "", content)
