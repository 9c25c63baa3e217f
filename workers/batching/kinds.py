"""What can be batched: each kind's handler, and the stages the flusher may finish itself.

A batch handler (the code that writes one flushed batch of a kind: tasks/batch_handlers/)
registers with `batch_handler`; a stage that needs a write raises `AwaitingBatch`, which the
stage middleware hands to `enqueue` (workers/batching/policy.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from schemas.errors import SyncError
from schemas.links import Stored
from workers.context import StageContext
from workers.pipeline import Chained

if TYPE_CHECKING:
    from workers.batching.buffer import Element


class AwaitingBatch(Exception):
    """Raised by a stage: these elements must be written in a batch before the stage can go on."""

    def __init__(
        self,
        kind: str,
        elements: dict[str, dict[str, Any]],
        carry: dict[str, Any] | None = None,
    ):
        super().__init__(f"waiting for {len(elements)} {kind}")
        self.kind = kind
        self.elements = elements
        self.carry = carry  # the message to resume with, if the stage learned something

    def __reduce__(self) -> tuple[Any, ...]:
        return (AwaitingBatch, (self.kind, self.elements, self.carry))


# per element: an outcome for the waiting stages (schemas/links.py), or the error that refused it
Results = dict[str, "Stored | SyncError"]
Handler = Callable[[StageContext, "list[Element]"], Results]


@dataclass(frozen=True)
class Kind:
    handler: Handler
    xero: bool  # sized by ZXS_BATCH_SIZE; otherwise a Zoho kind of up to 100 records
    latest_wins: bool  # a newer payload replaces a waiting one (write-backs), else first wins


KINDS: dict[str, Kind] = {}
T = TypeVar("T")


# task name -> finishes that stage (its message and chain) in the flusher with a resume's batch
# and attempt, and the stages after it that can, returning what is left of its chain to send, or
# None when the task must run instead (registered by workers/stage.py)
Continuation = Callable[[Chained, dict[str, Any], int], "Chained | None"]
CONTINUATIONS: dict[str, Continuation] = {}


@dataclass(frozen=True)
class Prefetch:
    """Tenant data a stage the flusher runs on reads, where it may not call the API: fetched
    on a thread beside a flush's Xero batches while `due` says so (it also claims the fetch)."""

    due: Callable[[StageContext], bool]
    fetch: Callable[[StageContext], object]


PREFETCHES: list[Prefetch] = []


def prefetched_by_flushes(
    due: Callable[[StageContext], bool],
) -> Callable[[Callable[[StageContext], T]], Callable[[StageContext], T]]:
    """Register a fetch that a tenant's Xero flushes run ahead of the stages that read it."""

    def register(fetch: Callable[[StageContext], T]) -> Callable[[StageContext], T]:
        PREFETCHES.append(Prefetch(due, fetch))
        return fetch

    return register


def batch_handler(
    kind: str, *, xero: bool = True, latest_wins: bool = False
) -> Callable[[Handler], Handler]:
    """Register the function that writes one batch of `kind` (tasks/batch_handlers/)."""

    def register(fn: Handler) -> Handler:
        KINDS[kind] = Kind(fn, xero, latest_wins)
        return fn

    return register
