"""Network faults the sandboxes inject on API calls, beyond `fault_rate`'s 5xx answers.

The dangerous faults are the ones where the work is done but the answer is lost: the client
cannot tell a timeout after Xero created the invoice from one before, which is what retries,
idempotency keys and the lookup before a late create must survive. So `timeout` and `drop` act
after the handler ran (and after the concurrency slot was released, as when an answer is lost
on the way back); `slow` delays the call while it holds its slot, as a slow server does.

Xero's own failures (issue #22): `write_fault_rate` answers a share of writes 500, half of them
(`write_fault_after_share`) after the work was saved, as Xero does when it fails between saving
and answering; `lookup_fault_rate` answers a share of reads 500. `plan()` scripts the next
answers of one route for a test that must hit one exact sequence (a create saved but answered
500, then its lookup refused).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sandbox.config import SandboxConfig

Lost = Literal["timeout", "drop"]


class DroppedResponse(Response):
    """Starts a 200 answer and closes the connection halfway through its body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"Id":', "more_body": False})


@dataclass
class Planned:
    """A scripted answer: `status` with `body`, given before the handler runs or, with `after`,
    once the handler has done the work (the work stays done, the answer is lost)."""

    status: int
    body: object
    after: bool = False


class Faults:
    """Seeded dice for one sandbox, so a run with the same seed repeats."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed + 1)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self._plans: dict[str, list[Planned]] = {}

    def plan(self, route: str, *answers: Planned) -> None:
        """Answer the next calls of `route` ("PUT /Invoices") with these, in order."""
        with self._lock:
            self._plans.setdefault(route, []).extend(answers)

    def planned(self, route: str, method: str) -> Planned | None:
        """This call's scripted answer, else a dice roll of the write and lookup fault rates."""
        with self._lock:
            queue = self._plans.get(route)
            if queue:
                self.injected["planned"] += 1
                return queue.pop(0)
        if method == "GET":
            if self._roll(self.config.lookup_fault_rate, "lookup_fault"):
                return Planned(500, "An error occurred in Xero.")
            return None
        if not self._roll(self.config.write_fault_rate, "write_fault"):
            return None
        after = self._roll(self.config.write_fault_after_share, "write_fault_after")
        return Planned(500, "An error occurred in Xero.", after=after)

    def _roll(self, rate: float, kind: str) -> bool:
        with self._lock:
            hit = rate > 0 and self._rng.random() < rate
            self.injected[kind] += hit
            return hit

    async def slow_down(self) -> None:
        """Latency of every call, plus `slow_seconds` for a `slow_rate` share of calls."""
        pause = self.config.latency_seconds
        if self._roll(self.config.slow_rate, "slow"):
            pause += self.config.slow_seconds
        if pause > 0:
            await asyncio.sleep(pause)

    def lose(self) -> Lost | None:
        """Whether this call's answer is lost, and how."""
        if self._roll(self.config.timeout_rate, "timeout"):
            return "timeout"
        return "drop" if self._roll(self.config.drop_rate, "drop") else None

    async def deliver(self, response: Response, lost: Lost | None) -> Response:
        """The answer as the client will (not) see it."""
        if lost == "timeout":
            await asyncio.sleep(self.config.timeout_seconds)
        return DroppedResponse() if lost == "drop" else response
