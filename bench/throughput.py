"""Baseline throughput of the per-document pipeline (before per-tenant batching): prints figures.

    .venv/bin/python bench/throughput.py [burst invoices] [trickle seconds]

1. Burst: N new invoices over N/5 accounts and 50 products with Xero's limits off; Xero calls
   per invoice (the figure batching must cut) and invoices per second on this machine.
2. Trickle: one event a second, latency from enqueue to the record's outcome (p50, p99).
"""

from __future__ import annotations

import statistics
import sys
import time

from sandbox.config import SandboxConfig, XeroLimits
from sandbox.seed import build_dataset, load_dataset
from zxsync.stack import LocalConnection, LocalStack

UNLIMITED = {"ZXS_XERO_PER_MINUTE": "1000000", "ZXS_XERO_PER_DAY": "1000000"}


def stack(name: str) -> LocalStack:
    limits = XeroLimits(per_minute=10**6, per_day=10**7, app_per_minute=10**7)
    return LocalStack(
        [LocalConnection(name, f"tenant-{name}", f"org-{name}")],
        SandboxConfig(enforce_limits=False, xero_limits=limits),
        concurrency=2,
        extra_env=UNLIMITED,
    )


def send(connection: str, record_id: str) -> None:
    from schemas.jobs import SyncJob
    from workers.pipeline import submit

    submit(
        SyncJob(
            connection=connection,
            module="Invoices",
            record_id=record_id,
            event="insert",
            event_id=f"bench-{record_id}",
        )
    )


def outcomes(connection: str) -> dict[str, tuple[str, str]]:
    from workers.history import RecordHistory
    from workers.redis import get_redis

    return RecordHistory(get_redis()).outcomes(connection)


def burst(invoices: int) -> None:
    with stack("burst") as s:
        conn = s.connections[0]
        data = load_dataset(
            s.zoho,
            conn.zoho_org_id,
            build_dataset(invoices=invoices, accounts=max(3, invoices // 5), products=50, seed=3),
        )
        s.start_worker()
        time.sleep(3)  # worker boot is not pipeline time
        started = time.monotonic()
        for invoice in data.invoices:
            send(conn.name, str(invoice["id"]))
        while len(outcomes(conn.name)) < invoices and time.monotonic() - started < 600:
            time.sleep(0.2)
        seconds = time.monotonic() - started
        calls = sum(s.xero.stats()["calls"].values())
        created = len(s.xero.invoices(conn.xero_tenant_id))
        print(
            f"burst: {created}/{invoices} invoices in {seconds:.1f} s "
            f"({created / seconds:.1f}/s), {calls} Xero calls "
            f"({calls / max(created, 1):.2f} per invoice; at 60 calls/minute that is "
            f"{calls / 60:.0f} minutes for this burst)"
        )


def trickle(seconds: int) -> None:
    with stack("trickle") as s:
        conn = s.connections[0]
        data = load_dataset(
            s.zoho,
            conn.zoho_org_id,
            build_dataset(invoices=seconds, accounts=5, products=10, seed=4),
        )
        s.start_worker()
        time.sleep(3)
        sent: dict[str, float] = {}
        done: dict[str, float] = {}
        for invoice in data.invoices:
            key = f"{conn.name}:Invoices:{invoice['id']}"
            sent[key] = time.monotonic()
            send(conn.name, str(invoice["id"]))
            tick = time.monotonic() + 1.0
            while time.monotonic() < tick:
                for finished in outcomes(conn.name):
                    done.setdefault(finished, time.monotonic())
                time.sleep(0.02)
        deadline = time.monotonic() + 30
        while len(done) < len(sent) and time.monotonic() < deadline:
            for finished in outcomes(conn.name):
                done.setdefault(finished, time.monotonic())
            time.sleep(0.02)
        latencies = sorted(done[k] - sent[k] for k in sent if k in done)
        p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
        print(
            f"trickle: {len(latencies)}/{len(sent)} events, latency p50 "
            f"{statistics.median(latencies):.2f} s, p99 {p99:.2f} s (enqueue to outcome)"
        )


if __name__ == "__main__":
    burst(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
    trickle(int(sys.argv[2]) if len(sys.argv) > 2 else 30)
