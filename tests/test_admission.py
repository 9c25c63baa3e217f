"""Admission per tenant (workers/admission.py): the window, FIFO waiting rooms, atomic release,
stale slots; then end to end, a tenant's burst does not hold another tenant's few jobs back.

The admission script is Lua, so the unit tests run it on real Redis (fakeredis without `lupa`
runs no scripts), like the rate limiter's tests.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from schemas.history import HistoryEvent
from schemas.jobs import StageMessage, SyncJob
from workers import admission
from workers.admission import TenantWindows
from workers.history import RecordHistory, inflight_key, progress_key, record_key
from workers.outcomes import record_history
from workers.pipeline import submit_records
from workers.settings import Settings


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record ids whose pipeline admission started, in order (no broker needed)."""
    calls: list[str] = []
    monkeypatch.setattr(
        admission, "start_pipeline", lambda message: calls.append(message.job.record_id)
    )
    return calls


def tenant() -> str:
    return f"adm-{uuid.uuid4().hex[:8]}"


def message(connection: str, record_id: int | str, event_id: str = "") -> StageMessage:
    job = SyncJob(
        connection=connection,
        module="Invoices",
        record_id=str(record_id),
        event="insert",
        event_id=event_id or f"ev-{record_id}",
    )
    return StageMessage(job=job)


def key(connection: str, record_id: int | str) -> str:
    return record_key(connection, "Invoices", str(record_id))


def offer(windows: TenantWindows, history: RecordHistory, msg: StageMessage) -> bool:
    """What the door does: the job in flight, then admission. True: admitted now."""
    job = msg.job
    history.start(job.connection, key(job.connection, job.record_id), job.model_dump(mode="json"))
    own, others = windows.admit(
        job.connection, key(job.connection, job.record_id), msg.model_dump(mode="json")
    )
    assert others == []  # nothing waited before this job in these tests
    return own


def test_the_window_admits_up_to_its_size_and_the_rest_wait_in_order(
    client: redis.Redis,
) -> None:
    windows, history, conn = TenantWindows(client, 3, 900), RecordHistory(client), tenant()
    admitted = [offer(windows, history, message(conn, i)) for i in range(1, 7)]
    assert admitted == [True, True, True, False, False, False]
    assert windows.counts(conn) == (3, 3)
    assert [e.key for e in windows.waiting(conn)] == [key(conn, i) for i in (4, 5, 6)]
    # FIFO: each release admits the oldest waiting job, and only one
    assert [e.key for e in windows.release(conn, key(conn, 2))] == [key(conn, 4)]
    assert [e.key for e in windows.release(conn, key(conn, 1))] == [key(conn, 5)]
    assert windows.counts(conn) == (3, 1)
    # a release of a record that holds no slot frees nothing
    assert windows.release(conn, key(conn, 99)) == []
    assert windows.counts(conn) == (3, 1)


def test_one_tenants_full_window_does_not_hold_another_tenant(client: redis.Redis) -> None:
    windows, history = TenantWindows(client, 2, 900), RecordHistory(client)
    a, b = tenant(), tenant()
    assert [offer(windows, history, message(a, i)) for i in range(5)] == [True, True] + [False] * 3
    assert offer(windows, history, message(b, 1)) is True
    assert windows.counts(a) == (2, 3) and windows.counts(b) == (1, 0)


def test_a_redriven_job_of_an_admitted_record_shares_its_slot(client: redis.Redis) -> None:
    windows, history, conn = TenantWindows(client, 2, 900), RecordHistory(client), tenant()
    assert offer(windows, history, message(conn, 1))
    assert offer(windows, history, message(conn, 2))
    # window full, yet a re-drive (or replay) of record 1 starts at once, without a second slot
    assert offer(windows, history, message(conn, 1, event_id="redrive-1"))
    assert not offer(windows, history, message(conn, 3))
    assert windows.counts(conn) == (2, 1)


def test_a_waiting_job_is_not_in_flight_until_admitted(
    client: redis.Redis,
) -> None:
    windows, history, conn = TenantWindows(client, 1, 900), RecordHistory(client), tenant()
    assert offer(windows, history, message(conn, 1))
    assert not offer(windows, history, message(conn, 2))
    time.sleep(0.05)
    # waiting is not in flight: not re-driven (it is in Redis and will be admitted), and not
    # counted among the jobs in the pipeline
    assert [k for k, _ in history.stalled(conn, idle_seconds=0.01)] == [key(conn, 1)]
    assert not client.hexists(inflight_key(conn), key(conn, 2))
    [entry] = windows.release(conn, key(conn, 1))
    assert entry.key == key(conn, 2) and entry.message["job"]["record_id"] == "2"
    # admitted: in flight with its job, moving from now on (a lost start would be re-driven)
    time.sleep(0.05)
    stalled = dict(history.stalled(conn, idle_seconds=0.01))
    assert stalled[key(conn, 2)]["event_id"] == "ev-2"


def test_a_lost_jobs_slot_is_reclaimed_and_a_moving_or_parked_one_is_kept(
    client: redis.Redis,
) -> None:
    windows, history, conn = TenantWindows(client, 3, 0.3), RecordHistory(client), tenant()
    for i in (1, 2, 3):
        assert offer(windows, history, message(conn, i))
    assert not offer(windows, history, message(conn, 4))
    assert not offer(windows, history, message(conn, 5))
    time.sleep(0.4)
    history.log(key(conn, 1), "zxsync.fetch_record", HistoryEvent.DONE)  # moving
    history.quiet_until(key(conn, 2), time.time() + 3600)  # parked until Xero's next day
    # record 3 said nothing for longer than the stall time: its slot goes to record 4
    assert [e.key for e in windows.fill(conn)] == [key(conn, 4)]
    assert windows.counts(conn) == (3, 1)
    # a finished record whose release was lost (worker killed) gives its slot back too
    client.zrem(progress_key(conn), key(conn, 1))
    time.sleep(0.4)
    history.log(key(conn, 4), "zxsync.fetch_record", HistoryEvent.DONE)
    assert [e.key for e in windows.fill(conn)] == [key(conn, 5)]
    assert windows.counts(conn) == (3, 0)


def test_concurrent_releases_never_over_admit_or_start_a_job_twice(client: redis.Redis) -> None:
    window, total = 5, 300
    windows, history, conn = TenantWindows(client, window, 900), RecordHistory(client), tenant()
    running = [key(conn, i) for i in range(total) if offer(windows, history, message(conn, i))]
    assert len(running) == window
    starts: Counter[str] = Counter(running)
    lock = threading.Lock()
    peak = [len(running)]
    errors: list[BaseException] = []

    def worker() -> None:
        rng = random.Random()
        try:
            while True:
                with lock:
                    if not running:
                        if sum(starts.values()) >= total:
                            return
                        mine = None
                    else:
                        mine = running.pop(rng.randrange(len(running)))
                if mine is None:
                    time.sleep(0.001)
                    continue
                admitted = windows.release(conn, mine)
                with lock:
                    starts.update(e.key for e in admitted)
                    running.extend(e.key for e in admitted)
                    peak[0] = max(peak[0], len(running))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(starts) == total and set(starts.values()) == {1}  # each started exactly once
    assert peak[0] <= window  # never more running than the window
    assert windows.counts(conn) == (0, 0)


def test_finishing_a_record_starts_the_next_waiting_job_and_pump_unsticks_a_lost_release(
    client: redis.Redis, started: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tenant(), tenant()
    settings = Settings(
        zxs_tenant_window=1,
        zxs_connections=json.dumps(
            [{"name": n, "xero_tenant_id": f"t-{n}", "zoho_org_id": f"o-{n}"} for n in (a, b)]
        ),
    )
    monkeypatch.setattr(admission, "get_settings", lambda: settings)
    history = record_history(client)  # as the workers build it: finishing frees the slot
    for conn in (a, b):
        for i in (1, 2, 3):
            msg = message(conn, i)
            history.start(conn, key(conn, i), msg.job.model_dump(mode="json"))
            admission.admit(client, settings, msg)
    assert started == ["1", "1"]
    assert history.entries(key(a, 2))[-1]["event"] == "queued"
    # finishing frees the slot and starts the tenant's next job, FIFO
    history.finish(a, key(a, 1), "created")
    assert started == ["1", "1", "2"]
    assert history.entries(key(a, 2))[-1]["event"] == "admitted"
    # a release lost with its worker (slot gone, nothing started): the pump admits
    client.zrem(admission.admitted_key(b), key(b, 1))
    assert admission.pump(client, settings) == 1
    assert started == ["1", "1", "2", "2"]
    assert admission.pump(client, settings) == 0


def test_status_shows_the_tenants_window_and_the_records_place(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zxsync.ops import _tenant_window

    monkeypatch.setattr(admission, "get_settings", lambda: Settings(zxs_tenant_window=1))
    windows, history, conn = TenantWindows(client, 1, 900), RecordHistory(client), tenant()
    for i in (1, 2, 3):
        offer(windows, history, message(conn, i))
    assert _tenant_window(client, conn, key(conn, 3)) == (
        f"{conn}: 1 of 1 jobs admitted, 2 waiting (this record is number 2)"
    )
    assert _tenant_window(client, conn, key(conn, 1)).endswith("2 waiting")


# --- end to end ---------------------------------------------------------------------------


@pytest.fixture
def _restore_environment() -> Iterator[None]:
    """LocalStack.start() writes the stack's settings (our small window too) into os.environ."""
    import os

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def finish_times(connection: str, keys: list[str]) -> dict[str, float]:
    """When each record finished: the time of the last entry of its history."""
    from datetime import datetime

    from workers.redis import get_redis

    history = RecordHistory(get_redis())
    return {k: datetime.fromisoformat(history.entries(k)[-1]["at"]).timestamp() for k in keys}


WINDOW = 5


@pytest.mark.integration
@pytest.mark.usefixtures("_restore_environment")
def test_a_burst_of_one_tenant_does_not_hold_back_another_tenants_few_jobs(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    from sandbox.config import SandboxConfig, XeroLimits
    from sandbox.seed import build_dataset, load_dataset
    from workers.app import STAGE_QUEUES
    from workers.redis import get_redis

    stage_queues = sorted(set(STAGE_QUEUES.values()) - {"zxs.ingest"})
    limits = XeroLimits(per_minute=10**6, per_day=10**7, app_per_minute=10**7)
    stack = make_stack(
        tenants=2,
        # real APIs take tens of milliseconds: a burst is slower than the door, as in production
        sandbox=SandboxConfig(enforce_limits=False, xero_limits=limits, latency_seconds=0.03),
        extra_env={
            "ZXS_TENANT_WINDOW": str(WINDOW),
            "ZXS_XERO_PER_MINUTE": "1000000",
            "ZXS_XERO_PER_DAY": "1000000",
            # a window of 5 never fills a batch: flush soon (batching is not under test here)
            "ZXS_BATCH_MAX_WAIT": "0.05",
        },
    )
    conn_a, conn_b = stack.connections
    ids = {}
    for conn, count, seed in ((conn_a, 40, 21), (conn_b, 3, 22)):
        data = build_dataset(invoices=count, accounts=min(6, count), products=8, seed=seed)
        loaded = load_dataset(stack.zoho, conn.zoho_org_id, data)
        ids[conn.name] = [str(inv["id"]) for inv in loaded.invoices]
    keys_a = [key(conn_a.name, i) for i in ids[conn_a.name]]
    keys_b = [key(conn_b.name, i) for i in ids[conn_b.name]]
    history, windows = RecordHistory(get_redis()), TenantWindows(get_redis(), WINDOW, 900)
    # the door on its own worker (as compose's worker-door): a burst passes it at once instead
    # of sharing the worker's turns with the stage queues, and waits in Redis
    stack.start_worker(concurrency=1, name="door", queues=["zxs.ingest"])
    stack.start_worker(concurrency=3, name="stages", queues=stage_queues)
    submit_records(conn_a.name, ids[conn_a.name], "fair")
    # B's events arrive while A's burst is through the door: A's window is full, the rest waits
    deadline = time.monotonic() + 60
    while sum(windows.counts(conn_a.name)) + len(history.outcomes(conn_a.name)) < len(keys_a):
        assert time.monotonic() < deadline, "A's burst was not through the door in 60 s"
        time.sleep(0.02)
    waiting_a = windows.counts(conn_a.name)[1]
    submit_records(conn_b.name, ids[conn_b.name], "fair")
    outcomes_b = wait_for_outcomes(conn_b.name, keys_b, timeout=60)
    outcomes_a = wait_for_outcomes(conn_a.name, keys_a, timeout=120)
    assert {o for o, _ in outcomes_a.values()} == {"created"}, outcomes_a
    assert {o for o, _ in outcomes_b.values()} == {"created"}, outcomes_b

    done_a = sorted(finish_times(conn_a.name, keys_a).values())
    done_b = max(finish_times(conn_b.name, keys_b).values())
    print(
        f"\nA: {waiting_a} of {len(keys_a)} waiting when B sent 3; B done after "
        f"{sum(t < done_b for t in done_a)} of A's"
    )
    assert waiting_a > len(keys_a) // 2  # the burst did wait (in Redis)
    # B's jobs never waited for A's, and were done while at least a window of A's still ran
    assert not [e for k in keys_b for e in history.entries(k) if e["event"] == "queued"]
    assert done_b < done_a[-WINDOW], (done_b, done_a)
    # every invoice once in Xero; every A job that waited was admitted exactly once
    for conn in (conn_a, conn_b):
        references = Counter(inv["Reference"] for inv in stack.xero.invoices(conn.xero_tenant_id))
        assert len(references) == len(ids[conn.name]) and set(references.values()) == {1}
    waits = Counter(
        e["event"] for k in keys_a for e in history.entries(k) if e["stage"] == admission.STAGE
    )
    assert waits["queued"] == waits["admitted"] >= waiting_a, waits
    assert windows.counts(conn_a.name) == (0, 0)
