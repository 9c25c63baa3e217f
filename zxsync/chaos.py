"""Chaos run: invoices flow while worker processes are SIGKILLed and Redis restarts.

The proof that at-least-once delivery plus idempotent stages make the pipeline effectively
exactly-once: afterwards every Zoho invoice has exactly one Xero invoice or exactly one dead
letter with a reason; nothing is lost, nothing duplicated. Used by tests/test_chaos.py (small)
and bench/chaos.py (large, figures printed).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.config import SandboxConfig, XeroLimits
from sandbox.seed import build_dataset, load_dataset
from zxsync.stack import LocalConnection, LocalStack

if TYPE_CHECKING:
    from workers.deadletter import DeadLetter

CONNECTION = LocalConnection("chaos", "c4a05000-0000-4000-8000-000000000001", "org-chaos")


@dataclass(frozen=True)
class ChaosReport:
    invoices: int
    created: int
    dead_lettered: int
    lost: int
    duplicated: int
    kills: int
    redis_restarts: int
    seconds: float
    anomalies: tuple[str, ...] = ()  # each lost or duplicated record: what Xero and we hold

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicated == 0

    def lines(self) -> list[str]:
        return [
            f"invoices {self.invoices}: created once {self.created}, dead-lettered "
            f"{self.dead_lettered}, lost {self.lost}, duplicated {self.duplicated}",
            f"worker SIGKILLs {self.kills}, Redis restarts {self.redis_restarts}, "
            f"wall time {self.seconds:.1f} s",
            *self.anomalies,
        ]


def run_chaos(
    invoices: int = 500,
    workers: int = 2,
    concurrency: int = 2,
    kill_every: float = 3.0,
    timeout: float = 600.0,
    seed: int = 1,
    redis_url: str | None = None,
    fail_redis: Callable[[], None] | None = None,
) -> ChaosReport:
    """Run the pipeline under kills (none if `kill_every` <= 0) and one Redis failure (a
    restart of the embedded Redis, or `fail_redis`, e.g. killing a Sentinel set's master, with
    `redis_url` pointing at it); count what came out."""
    rng = random.Random(seed)
    env = {  # short waits, so killed workers' tasks come back within seconds
        "ZXS_VISIBILITY_TIMEOUT": "15",
        "ZXS_RETRY_BACKOFF_MAX": "5",
        "ZXS_LOCK_SECONDS": "10",
        "ZXS_MAX_DELIVERIES": "8",
        "ZXS_STALL_SECONDS": "30",
        # limits off (sandbox and our limiter): this run is about faults, not throughput
        "ZXS_XERO_PER_MINUTE": "1000000",
        "ZXS_XERO_PER_DAY": "1000000",
        # calls are free here: a straggler need not wait long for a fuller batch
        "ZXS_BATCH_BURST_WAIT": "1",
        # at least six batches of invoices, so the Redis failure (once a third have outcomes)
        # lands mid-run: a small run's one or two answers of 50 would all come at once
        "ZXS_BATCH_SIZE": str(min(50, max(5, invoices // 6))),
    }
    unlimited = XeroLimits(per_minute=10**6, per_day=10**7, app_per_minute=10**7)
    # Xero's time per call (as the bench's), so one flush's batches answer apart from the next's
    config = SandboxConfig(enforce_limits=False, xero_limits=unlimited, xero_call_seconds=0.3)
    with LocalStack(
        [CONNECTION], config, redis_url=redis_url, concurrency=concurrency, extra_env=env
    ) as stack:
        dataset = load_dataset(
            stack.zoho,
            CONNECTION.zoho_org_id,
            build_dataset(
                invoices=invoices, accounts=max(3, invoices // 10), products=20, seed=seed
            ),
        )
        ids = [str(inv["id"]) for inv in dataset.invoices]
        pool = [stack.start_worker(name=f"chaos{i}") for i in range(workers)]
        started = time.monotonic()
        _enqueue(ids)
        fail = fail_redis or stack.restart_redis
        kills, restarts = _torment(stack, pool, ids, rng, kill_every, timeout, fail)
        _wait_for_outcomes(ids, started + timeout)
        seconds = time.monotonic() - started
        return _count(stack, dataset.invoices, kills, restarts, seconds)


def _enqueue(ids: list[str]) -> None:
    from workers.pipeline import submit_records

    submit_records(CONNECTION.name, ids, "chaos")


def _done(ids: list[str]) -> int:
    from workers.history import RecordHistory
    from workers.redis import get_redis

    outcomes = RecordHistory(get_redis()).outcomes(CONNECTION.name)
    return sum(1 for rid in ids if f"{CONNECTION.name}:Invoices:{rid}" in outcomes)


def _torment(
    stack: LocalStack,
    pool: list[subprocess.Popen[bytes]],
    ids: list[str],
    rng: random.Random,
    kill_every: float,
    timeout: float,
    fail_redis: Callable[[], None],
) -> tuple[int, int]:
    """Every `kill_every` seconds SIGKILL a random worker process: mostly a pool process (its
    parent replaces it), every fourth time a whole worker (restarted here). Restart Redis once a
    third of the work is done. Stops when every invoice has an outcome."""
    kills = restarts = 0
    deadline = time.monotonic() + timeout
    next_kill = time.monotonic() + kill_every
    while time.monotonic() < deadline:
        done = _done_or_none(ids)
        if done is not None and done >= len(ids):
            break
        if restarts == 0 and done is not None and done >= len(ids) // 3:
            fail_redis()
            restarts += 1
        _beat()
        if kill_every > 0 and time.monotonic() >= next_kill:
            kills += 1
            if kills % 4 == 0:
                victim = pool.pop(rng.randrange(len(pool)))
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait()
                pool.append(stack.start_worker(name=f"chaos{kills}k"))
            else:
                children = [c for w in pool for c in _children(w.pid)]
                if children:
                    os.kill(rng.choice(children), signal.SIGKILL)
            next_kill = time.monotonic() + kill_every
        time.sleep(0.2)
    return kills, restarts


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def _done_or_none(ids: list[str]) -> int | None:
    import redis

    try:
        return _done(ids)
    except redis.RedisError:  # Redis is restarting
        return None


def _wait_for_outcomes(ids: list[str], deadline: float) -> None:
    while time.monotonic() < deadline and (_done_or_none(ids) or 0) < len(ids):
        _beat()
        time.sleep(0.2)


_last_beat = [0.0]


def _beat() -> None:
    """What `celery beat` does in production, done by the driver (beat is not under test):
    re-drive jobs that stopped moving, re-trigger batches whose flush died with a worker."""
    import redis

    from workers.batching import sweep_batches
    from workers.redrive import redrive_stalled

    if time.monotonic() - _last_beat[0] < 5:
        return
    _last_beat[0] = time.monotonic()
    with contextlib.suppress(redis.RedisError):  # Redis may be restarting
        redrive_stalled()
        sweep_batches()


def _count(
    stack: LocalStack, invoices: list[dict[str, object]], kills: int, restarts: int, seconds: float
) -> ChaosReport:
    """Judge by the sandboxes and the dead-letter store, not by our own outcomes."""
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    live = [
        inv
        for inv in stack.xero.invoices(CONNECTION.xero_tenant_id)
        if inv.get("Status") not in ("DELETED", "VOIDED")
    ]
    references = Counter(str(inv.get("Reference")) for inv in live)
    letters = [
        dl
        for dl in DeadLetterStore(get_redis()).list(1_000_000)
        if dl.connection == CONNECTION.name
    ]
    letter_count = Counter(dl.record_id for dl in letters)
    created = dead = lost = duplicated = 0
    anomalies: list[str] = []
    for invoice in invoices:
        in_xero = references[str(invoice["Invoice_Number"])]
        dead_letters = letter_count[str(invoice["id"])]
        if in_xero == 1 and dead_letters == 0:
            created += 1
        elif in_xero == 0 and dead_letters == 1:
            dead += 1
        else:
            if in_xero == 0 and dead_letters == 0:
                lost += 1
            else:
                duplicated += 1
            anomalies.append(_anomaly(invoice, live, letters))
    return ChaosReport(
        len(invoices), created, dead, lost, duplicated, kills, restarts, seconds, tuple(anomalies)
    )


def _anomaly(
    invoice: dict[str, object], live: list[dict[str, object]], letters: list[DeadLetter]
) -> str:
    """One lost or duplicated record in words: its Xero invoices, dead letters and history, so
    a failed run says which path went wrong."""
    from workers.store import get_database

    record, number = str(invoice["id"]), str(invoice["Invoice_Number"])
    xero = [
        f"{x.get('InvoiceNumber')} {x.get('InvoiceID')}"
        for x in live
        if x.get("Reference") == number
    ]
    dead = [
        f"{dl.error_kind}: {dl.error} [{' | '.join(dl.traceback.strip().splitlines()[-12:])}]"
        for dl in letters
        if dl.record_id == record
    ]
    history = get_database().history(f"{CONNECTION.name}:Invoices:{record}")
    steps = "; ".join(
        f"{h['at'][11:23]} {h['stage']} {h['event']} {h.get('detail', '')}".strip() for h in history
    )
    return f"Invoices {record} ({number}): Xero {xero}, dead letters {dead}, history: {steps}"


# ------------------------------------------------------------------ Xero's faults (issue #22)


@dataclass(frozen=True)
class FaultReport:
    """What a fault run left in the sandboxes, judged by their own state."""

    invoices: int
    created: int  # exactly one live Xero invoice
    dead_lettered: int  # none in Xero, a dead letter with the reason
    lost: int  # none in Xero, no dead letter
    duplicated: int  # more than one live Xero invoice
    merged: int  # Xero contacts that carry invoices of more than one Zoho account
    wrongly_voided: int  # voided or deleted although the Zoho record was never deleted
    injected: dict[str, int]
    seconds: float

    @property
    def exact(self) -> bool:
        return not (self.lost or self.duplicated or self.merged or self.wrongly_voided)

    def lines(self) -> list[str]:
        return [
            f"invoices {self.invoices}: created exactly once {self.created}, dead-lettered "
            f"{self.dead_lettered}, lost {self.lost}, duplicated {self.duplicated}, merged "
            f"{self.merged}, wrongly voided {self.wrongly_voided}",
            f"faults injected {self.injected}, wall time {self.seconds:.1f} s",
        ]


def run_faults(
    invoices: int = 200,
    seed: int = 1,
    timeout: float = 600.0,
    batch_size: int = 50,
    lookup_fault_rate: float = 0.1,
) -> FaultReport:
    """The invoices flow while Xero fails 20% of writes (half after saving them) and 10% of
    reads, every retry of a create is looked up (as after Xero's 6 minutes), and access tokens
    last 20 s; every record also gets a duplicate event, a tenth an edit and an update event
    sent out of order, a twentieth a delete event although the record exists; every fifth
    account shares its name with another one (another city)."""
    rng = random.Random(seed)
    env = {
        "ZXS_VISIBILITY_TIMEOUT": "15",
        "ZXS_RETRY_BACKOFF_MAX": "3",
        "ZXS_LOCK_SECONDS": "10",
        "ZXS_STALL_SECONDS": "30",
        "ZXS_XERO_PER_MINUTE": "1000000",
        "ZXS_XERO_PER_DAY": "1000000",
        "ZXS_BATCH_BURST_WAIT": "1",
        # the sandbox commits at once: a short margin keeps the run short (README)
        "ZXS_LOOKUP_MARGIN_SECONDS": "2",
        "ZXS_BATCH_SIZE": str(batch_size),  # smaller batches: more requests to fail
        # every retry as if Xero had forgotten its key: looked up, the harder path
        "ZXS_IDEMPOTENCY_WINDOW_SECONDS": "0",
    }
    unlimited = XeroLimits(per_minute=10**6, per_day=10**7, app_per_minute=10**7)
    config = SandboxConfig(
        enforce_limits=False,
        xero_limits=unlimited,
        write_fault_rate=0.2,
        write_fault_after_share=0.5,
        lookup_fault_rate=lookup_fault_rate,
        xero_access_token_seconds=20,
        zoho_access_token_seconds=20,
        seed=seed,
    )
    with LocalStack([CONNECTION], config, concurrency=2, extra_env=env) as stack:
        data = build_dataset(
            invoices=invoices, accounts=max(4, invoices // 10), products=20, seed=seed
        )
        for index in range(4, len(data.accounts), 5):  # namesakes in another city
            data.accounts[index]["Account_Name"] = data.accounts[index - 1]["Account_Name"]
            data.accounts[index]["Billing_City"] = f"Other {index}"
        dataset = load_dataset(stack.zoho, CONNECTION.zoho_org_id, data)
        ids = [str(inv["id"]) for inv in dataset.invoices]
        worker = stack.start_worker(name="faults")
        started = time.monotonic()
        _send_with_noise(stack, ids, rng)
        _wait_for_outcomes(ids, started + timeout)
        _settle(started + timeout)
        seconds = time.monotonic() - started
        worker.poll()
        return _judge(stack, dataset.invoices, seconds)


def _send_with_noise(stack: LocalStack, ids: list[str], rng: random.Random) -> None:
    """Every record's insert, a duplicate of it, out-of-order updates, edits and deletes of
    records that still exist."""
    from workers.pipeline import submit_records

    edited = rng.sample(ids, max(1, len(ids) // 10))
    submit_records(CONNECTION.name, edited, "early", event="update")  # before their insert
    submit_records(CONNECTION.name, ids, "insert")
    for record_id in edited:
        record = stack.zoho.get(CONNECTION.zoho_org_id, "Invoices", record_id) or {}
        stack.zoho.update(
            CONNECTION.zoho_org_id, "Invoices", record_id, {"Due_Date": record.get("Invoice_Date")}
        )
    submit_records(CONNECTION.name, rng.sample(ids, len(ids)), "dup")
    submit_records(CONNECTION.name, edited, "edit", event="update")
    submit_records(CONNECTION.name, rng.sample(ids, max(1, len(ids) // 20)), "rm", event="delete")


def _settle(deadline: float) -> None:
    """Every record has an outcome; wait until no job is in flight any more (later events)."""
    from workers.history import inflight_key
    from workers.redis import get_redis

    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        _beat()
        if get_redis().hlen(inflight_key(CONNECTION.name)):
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 3:
            return
        time.sleep(0.3)


def _judge(stack: LocalStack, invoices: list[dict[str, object]], seconds: float) -> FaultReport:
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    tenant = CONNECTION.xero_tenant_id
    in_xero = stack.xero.invoices(tenant)
    live = Counter(
        str(i.get("Reference")) for i in in_xero if i.get("Status") not in ("DELETED", "VOIDED")
    )
    voided = sum(1 for i in in_xero if i.get("Status") in ("DELETED", "VOIDED"))
    letters = {
        dl.record_id
        for dl in DeadLetterStore(get_redis()).list(1_000_000)
        if dl.connection == CONNECTION.name
    }
    account_of = {
        str(inv["Invoice_Number"]): str(dict(inv["Account_Name"])["id"])  # type: ignore[call-overload]
        for inv in invoices
    }
    accounts_on: dict[str, set[str]] = {}
    for invoice in in_xero:
        account = account_of.get(str(invoice.get("Reference")))
        if account is not None:
            accounts_on.setdefault(str(invoice["Contact"]["ContactID"]), set()).add(account)
    created = dead = lost = duplicated = 0
    for invoice in invoices:
        count = live[str(invoice["Invoice_Number"])]
        if count == 1:
            created += 1
        elif count > 1:
            duplicated += 1
        elif str(invoice["id"]) in letters:
            dead += 1
        else:
            lost += 1
    merged = sum(1 for accounts in accounts_on.values() if len(accounts) > 1)
    injected = {k: int(v) for k, v in stack.xero.faults.injected.items() if v}
    return FaultReport(
        len(invoices), created, dead, lost, duplicated, merged, voided, injected, seconds
    )
