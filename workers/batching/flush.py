"""`zxsync.flush_batch`: one flusher per kind and connection at a time claims up to a batch of
due elements (several batches while that much is due, up to ZXS_FLUSH_BATCHES, sent together
on threads under its one lock and fencing token), runs the kind's handler on each, and resumes
the waiting stages with the outcomes.

The flusher's lock has a short lease that a thread renews while it works, so a killed flusher
frees the buffer within seconds. A rate-limited batch goes back to the buffer untouched and the
buffer holds until Retry-After; a transient failure puts the elements back as suspects (the
request may have been applied), and an element that failed too often is given up.

A flush spends most of its time waiting on Xero (300 ms and more a call), so once it holds the
lock it runs on a thread of the pool process (up to ZXS_FLUSH_THREADS at once, then inline):
the process takes its next task meanwhile, and flushes of other kinds and tenants are in flight
together. The lock, its lease, the fence and the marks are the same as inline: a process
killed mid-flush is a killed flusher (issue #19), its flush task already acknowledged, so
beat's sweep (every few seconds) sends the next flush once the lease has expired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import structlog
from celery import signals
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from schemas.errors import RateLimited, SyncError
from workers import keys
from workers.app import app
from workers.batching.buffer import Buffer, Element
from workers.batching.fence import Flush, LeaseLost
from workers.batching.kinds import KINDS, PREFETCHES, Prefetch, Results
from workers.batching.policy import batch_size, due_in, schedule_flush, take_pace
from workers.batching.resume import resume
from workers.batching.suspects import Later
from workers.context import StageContext, build_context
from workers.policies import HOUSEKEEPING
from workers.policies.retry import rate_limit_wait, retry_countdown
from workers.redis import get_redis
from workers.settings import Settings, get_settings

FLUSH_LOCK_SECONDS = 10  # renewed every third of it while the flusher lives
FLUSH_DRAIN_SECONDS = 30.0  # how long a stopping pool process waits for its flush threads
log = structlog.get_logger("zxsync.batching")


@app.task(name="zxsync.flush_batch", **HOUSEKEEPING)
def flush_batch(kind: str, connection: str, trigger: str = "sweep") -> int:
    """Write one batch of `kind` for `connection` when it is due; returns elements written (0
    when a thread of this process writes them)."""
    settings = get_settings()
    redis_client = get_redis()
    buffer = Buffer(redis_client, kind, connection)
    if kind not in KINDS:  # a kind this version no longer has: its buffer is nobody's
        log.error("batch.unknown_kind", kind=kind, connection=connection)
        redis_client.srem(keys.BATCH_ACTIVE(), buffer.member)
        return 0
    if trigger in ("due", "scheduled"):
        redis_client.delete(buffer.key(trigger))  # this trigger has arrived
    # not thread-local: the renewer and a flush thread use the token this thread acquired
    lock = redis_client.lock(
        keys.BATCH_LOCK(kind, connection),
        timeout=FLUSH_LOCK_SECONDS,
        blocking_timeout=0,
        thread_local=False,
    )
    if not lock.acquire():
        return 0  # the flusher in flight sends the next flush itself
    renewer = _Renewer(lock)
    if FLUSH_THREADS.start(settings.zxs_flush_threads, lambda: _holding(buffer, lock, renewer)):
        return 0
    return _holding(buffer, lock, renewer)


def _holding(buffer: Buffer, lock: Lock, renewer: _Renewer) -> int:
    """The flush under its lock (inline or on a flush thread); the lock is released after."""
    settings = get_settings()
    redis_client = buffer.redis
    try:
        hold = Flush(buffer, buffer.fence())
        buffer.suspect_after_restart()
        buffer.reclaim_orphans()
        wait = due_in(buffer, settings)
        if wait < 0:
            redis_client.srem(keys.BATCH_ACTIVE(), buffer.member)
            return 0
        if wait > 0:
            schedule_flush(buffer, wait, settings)
            return 0
        written = _flush(hold, batch_size(buffer.kind, settings), settings)
    finally:
        renewer.stop()
        with suppress(LockError):
            lock.release()
    if buffer.pending():
        schedule_flush(buffer, due_in(buffer, settings), settings)
    return written


class _FlushThreads:
    """The flushes in flight on threads of this process: at most `size` at once (a flush
    beyond that runs inline, holding its task, so the broker keeps what waits, not memory)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[threading.Thread] = set()

    def start(self, size: int, work: Callable[[], int]) -> bool:
        """Run `work` on a new thread if fewer than `size` run; False: run it yourself."""
        with self._lock:
            if len(self._running) >= size:
                return False
            thread = threading.Thread(target=self._run, args=(work,), name="zxs-flush", daemon=True)
            self._running.add(thread)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had (a process limit): the task runs it
            with self._lock:
                self._running.discard(thread)
            return False
        return True

    def _run(self, work: Callable[[], int]) -> None:
        try:
            work()
        except Exception:  # no task to fail: its claims come back as a dead flusher's
            log.exception("batch.flush_failed")
        finally:
            with self._lock:
                self._running.discard(threading.current_thread())

    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    def drain(self, timeout: float) -> bool:
        """Wait for the flushes in flight (a pool process that stops finishes them first)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            running = list(self._running)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not self.busy()


FLUSH_THREADS = _FlushThreads()


@signals.worker_process_shutdown.connect(weak=False)
def _finish_flushes(**_: object) -> None:
    """A pool process that stops (recycled, or a warm shutdown) lets its flushes finish, rather
    than leave their elements to come back as suspects (each a Xero lookup)."""
    FLUSH_THREADS.drain(FLUSH_DRAIN_SECONDS)


class _Renewer:
    """Keeps the flush lock's short lease alive from a thread while this process works; a killed
    flusher stops renewing, so its buffer is free again within FLUSH_LOCK_SECONDS."""

    def __init__(self, lock: Lock):
        self._lock = lock
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(FLUSH_LOCK_SECONDS / 3):
            with suppress(LockError, RedisError):
                self._lock.reacquire()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def _flush(hold: Flush, size: int, settings: Settings) -> int:
    """Claim up to `batches_at_once` due batches, send them together, and settle each one's
    answer: a batch's failure (a rate limit, a transient error) is its own, the others' outcomes
    are kept, and every waiting stage is resumed once with all of its outcomes."""
    buffer = hold.buffer
    batches = _claim_due(buffer, size, batches_at_once(buffer.kind, settings), settings)
    if not batches:
        return 0
    sent = _send_all(hold, batches)
    if any(isinstance(s.error, LeaseLost) for s in sent):
        log.warning("batch.lease_lost", kind=buffer.kind, connection=buffer.connection)
        return 0  # the flusher that took the buffer over takes every claimed element back
    settled: Results = {}
    hold_until = 0.0
    for batch in sent:
        resumable, until = _settle(buffer, batch, settings)
        settled.update(resumable)
        hold_until = max(hold_until, until)
    if hold_until:
        buffer.hold(hold_until)
    resume(buffer, settled)
    failed = next((s.error for s in sent if s.error is not None and not _expected(s.error)), None)
    if failed is not None:
        raise failed  # its elements stay claimed: the next flusher takes them back as suspects
    return sum(len(s.elements) for s in sent if s.answered)


def batches_at_once(kind: str, settings: Settings) -> int:
    """How many batches of `kind` one flusher sends at once: ZXS_FLUSH_BATCHES, never more than
    the API lets one tenant have in flight (its limiter would only make the rest wait)."""
    api = settings.zxs_xero_concurrent if KINDS[kind].xero else settings.zxs_zoho_concurrent
    return max(1, min(settings.zxs_flush_batches, api))


def _claim_due(buffer: Buffer, size: int, most: int, settings: Settings) -> list[list[Element]]:
    """The first batch (the flush is due), then one more while what is left is due by the same
    rules (a full batch, every job in flight waiting, the oldest element's wait): a burst's
    backlog goes out together, and a part-full remainder still waits to fill. A part-full batch
    goes only with a token of the tenant's pace (policy.take_pace)."""
    batches: list[list[Element]] = []
    while len(batches) < most:
        if batches and due_in(buffer, settings) != 0:
            break
        elements = buffer.claim(size)
        if not elements:
            break
        if len(elements) < size and take_pace(buffer, settings):
            # another kind of the tenant took the token this flush was due on: back in turn
            buffer.release([e.id for e in elements], suspect=False)
            break
        batches.append(elements)
    return batches


@dataclass
class _Sent:
    """One batch's send: the handler's results, or the exception it raised."""

    elements: list[Element]
    results: Results | None = None
    error: Exception | None = None
    seconds: float = 0.0

    @property
    def answered(self) -> bool:
        """Whether the API's answer settled its elements (written, or refused for good)."""
        error = self.error
        return self.results is not None or (isinstance(error, SyncError) and not error.retryable)


def _send_all(hold: Flush, batches: list[list[Element]]) -> list[_Sent]:
    """Run the kind's handler on each batch at once: the first in this thread, the others on
    threads of their own (one after another if no thread is to be had). Each batch has its own
    context (its own API clients; the HTTP pool, Redis and the database are thread-safe) and
    the one fenced hold, so every write of every batch is checked against this flusher's token;
    the lease is renewed until the last batch is back."""
    sent = [_Sent(elements) for elements in batches]
    helpers = _prefetching(hold.buffer)
    inline = [sent[0]]
    for batch in sent[1:]:
        thread = threading.Thread(target=_send, args=(hold, batch), name="zxs-batch", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had (a process limit): sent here, in turn
            inline.append(batch)
            continue
        helpers.append(thread)
    for batch in inline:
        _send(hold, batch)
    for thread in helpers:
        thread.join()
    return sent


def _prefetching(buffer: Buffer) -> list[threading.Thread]:
    """A thread fetching, beside a Xero kind's batches, the tenant data that a stage the
    flusher runs on after them reads and may not call for (kinds.PREFETCHES), when due."""
    if not PREFETCHES or not KINDS[buffer.kind].xero:
        return []
    try:
        ctx = build_context(buffer.connection)
        due = [p for p in PREFETCHES if p.due(ctx)]
    except Exception:  # never the batches' failure: the stage that reads it fetches it itself
        log.warning("batch.prefetch_failed", connection=buffer.connection, exc_info=True)
        return []
    if not due:
        return []
    thread = threading.Thread(target=_prefetch, args=(ctx, due), name="zxs-prefetch", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: the stage runs as its task and fetches there
        return []
    return [thread]


def _prefetch(ctx: StageContext, due: list[Prefetch]) -> None:
    for prefetch in due:
        try:
            prefetch.fetch(ctx)
        except Exception:  # the stage that reads it fetches it itself, and meets the error
            log.warning("batch.prefetch_failed", connection=ctx.connection.name, exc_info=True)


def _send(hold: Flush, batch: _Sent) -> None:
    buffer = hold.buffer
    ctx = build_context(buffer.connection)
    ctx.flush = hold
    started = time.monotonic()
    try:
        batch.results = KINDS[buffer.kind].handler(ctx, batch.elements)
    except Exception as exc:  # settled by the flusher, beside the other batches' answers
        batch.error = exc
    batch.seconds = time.monotonic() - started


def _expected(error: Exception) -> bool:
    """An error a flush settles (a rate limit, an API error); anything else is a bug."""
    return isinstance(error, SyncError | LeaseLost)


def _settle(buffer: Buffer, batch: _Sent, settings: Settings) -> tuple[Results, float]:
    """One batch's answer: (the outcomes and errors to resume its waiters with, the time the
    buffer must hold until, 0.0 for no hold). A rate-limited batch goes back untouched; a
    transient failure puts its elements back as suspects (the request may have been applied)."""
    elements, error = batch.elements, batch.error
    results = batch.results
    if isinstance(error, RateLimited):
        wait = rate_limit_wait(error)
        buffer.release([e.id for e in elements], suspect=False)
        log.warning("batch.held", kind=buffer.kind, connection=buffer.connection, wait=wait)
        return {}, time.time() + wait
    if isinstance(error, SyncError):
        if error.retryable:
            return _retry_later(buffer, elements, error, settings)
        results = dict.fromkeys((e.id for e in elements), error)
    if results is None:
        return {}, 0.0  # a bug: its elements stay claimed, the error is raised after the others
    log.info(
        "batch.flushed",
        kind=buffer.kind,
        connection=buffer.connection,
        elements=len(elements),
        seconds=round(batch.seconds, 3),
    )
    # an element that may not be looked up yet waits, without spending an attempt
    later = {eid: r.until for eid, r in results.items() if isinstance(r, Later)}
    if later:
        buffer.release_until(later)
    # an element's transient error (its lookup failed) retries that element alone
    transient = {
        eid: r
        for eid, r in results.items()
        if isinstance(r, SyncError) and r.retryable and eid not in later
    }
    given_up: Results = {}
    if transient:
        by_id = {e.id: e for e in elements}
        for error in {id(r): r for r in transient.values()}.values():
            ids = [eid for eid, r in transient.items() if r is error]
            alone, _ = _retry_later(
                buffer, [by_id[eid] for eid in ids], error, settings, alone=True
            )
            given_up.update(alone)
    kept = {eid: r for eid, r in results.items() if eid not in transient and eid not in later}
    return {**kept, **given_up}, 0.0


def _retry_later(
    buffer: Buffer,
    elements: list[Element],
    exc: SyncError,
    settings: Settings,
    *,
    alone: bool = False,
) -> tuple[Results, float]:
    """A transient failure: back to the queue as suspects (the request may have been applied);
    an element that failed too often is given up with this error. Its "create may have reached
    Xero" mark stays: the dead letter's replay, or the record's next event, looks it up first.
    Returns (the elements given up, to resume; when the buffer holds until, 0.0 for `alone`)."""
    given_up: Results = {}
    retry: list[str] = []
    tries = 0
    for element in elements:
        tries = buffer.count_failure(element.id)
        if tries > settings.zxs_max_retries:
            given_up[element.id] = exc
        else:
            retry.append(element.id)
    countdown = retry_countdown(exc, tries, settings.zxs_retry_backoff_max)
    log.warning("batch.retry", kind=buffer.kind, error=str(exc), countdown=round(countdown, 1))
    if alone:  # these elements wait; the rest of the buffer is not held up for them
        buffer.release_until(dict.fromkeys(retry, time.time() + countdown))
        return given_up, 0.0
    buffer.release(retry, suspect=True)
    return given_up, time.time() + countdown
