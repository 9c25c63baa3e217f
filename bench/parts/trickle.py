"""The trickle: one event a second, enqueue -> Xero invoice created."""

from __future__ import annotations

import argparse
import time
from typing import Any

from parts.common import (
    Latencies,
    Report,
    created_at,
    created_count,
    header,
    running,
    seed,
    start_workers,
    wait_until,
    xero_usage,
)
from zxsync.stack import LocalConnection, LocalStack


def trickle(report: Report, args: argparse.Namespace) -> None:
    """Part 2: one event a second; latency from enqueue to the Xero invoice created."""
    seconds = args.trickle_seconds
    limits = args.trickle_limits == "on"
    header(
        f"trickle: 1 event/s for {seconds} s, sandbox latency 0",
        dataset=f"{seconds} invoices over {args.trickle_accounts} accounts and "
        f"{args.trickle_products} products, all new to Xero",
        xero_limits="real (60/minute, 5 in flight)" if limits else "off",
        latency="enqueue (submit) -> invoice created in the Xero sandbox (its UpdatedDateUTC)",
    )
    env = {"ZXS_BATCHING": "true", **args.env}
    with running(
        report, "trickle", ["trickle"], limits=limits, env=env, concurrency=args.concurrency
    ) as s:
        conn = s.connections[0]
        invoices = seed(s, conn, seconds, args.trickle_accounts, args.trickle_products, 4)
        start_workers(s, args.workers, args.concurrency)
        lat = trickle_events(s, conn, invoices, args.trickle_tail)
        calls, limited, _ = xero_usage(s, conn)
    report.add(
        "trickle",
        "events created",
        f"{len(lat.created)}/{seconds}",
        note=f"{calls - limited} Xero calls ({(calls - limited) / seconds:.2f} per event), "
        f"{limited} 429s, limits {args.trickle_limits}",
    )
    report.add("trickle", "latency p50", lat.at(50), "s", goal="< 0.3 s", ok=lat.below(50, 0.3))
    report.add("trickle", "latency p99", lat.at(99), "s", goal="< 1 s", ok=lat.below(99, 1))


def trickle_events(
    s: LocalStack, conn: LocalConnection, invoices: list[dict[str, Any]], tail: float
) -> Latencies:
    """Send one invoice a second, then wait up to `tail` seconds for the last ones."""
    from workers.pipeline import submit_records

    sent: dict[str, float] = {}
    start = time.time()
    for i, inv in enumerate(invoices):
        time.sleep(max(0.0, start + i - time.time()))
        sent[inv["Invoice_Number"]] = time.time()
        submit_records(conn.name, [str(inv["id"])], "trickle")
    wait_until(lambda: created_count(s, conn) >= len(invoices), tail, 0.2)
    stopped = time.time()
    made = created_at(s, conn)
    return Latencies(
        [made[ref] - at for ref, at in sent.items() if ref in made],
        [stopped - at for ref, at in sent.items() if ref not in made],
    )
