"""Fairness: tenant B's latency while tenant A bursts, against B alone."""

from __future__ import annotations

import argparse

from parts.common import (
    Latencies,
    Report,
    created_count,
    enqueue,
    header,
    running,
    seed,
    start_workers,
)
from parts.trickle import trickle_events


def fairness(report: Report, args: argparse.Namespace) -> None:
    """Part 4: tenant B's latency while tenant A bursts, against B alone."""

    b_events = args.fair_seconds
    header(
        f"fairness: tenant B sends 1 event/s for {b_events} s, alone, then while tenant A bursts "
        f"{args.fair_burst}",
        xero_limits="real (60/minute per tenant, 5 in flight), one stack, both tenants on the "
        "same workers and queues",
        tenant_b=f"{b_events} invoices over {args.fair_accounts} accounts and "
        f"{args.fair_products} products (a small steady tenant), the same in both phases",
        tenant_a=f"{args.fair_burst} invoices over {args.accounts} accounts and {args.products} "
        "products, all new",
        latency="B's enqueue -> B's invoice created in the Xero sandbox",
        window=f"A is enqueued at once, then B's first event; B's events are given "
        f"{args.fair_tail:.0f} s after the last",
    )
    env = {"ZXS_BATCHING": "true", **args.env}
    results: dict[str, tuple[Latencies, str]] = {}
    for phase in ("alone", "with A bursting"):
        with running(
            report,
            "fairness",
            ["fairA", "fairB"],
            limits=True,
            env=env,
            concurrency=args.concurrency,
        ) as s:
            a, b = s.connections
            a_invoices = (
                []
                if phase == "alone"
                else seed(s, a, args.fair_burst, args.accounts, args.products, args.seed)
            )
            b_invoices = seed(s, b, b_events, args.fair_accounts, args.fair_products, 5)
            start_workers(s, args.workers, args.concurrency)
            enqueue(a.name, a_invoices, "fairA")
            lat = trickle_events(s, b, b_invoices, args.fair_tail)
            b_calls = s.xero.stats()["calls"].get(b.xero_tenant_id, 0)
            note = f"{len(lat.created)}/{b_events} created, B: {b_calls} Xero calls answered"
            if phase != "alone":
                note += f"; A: {created_count(s, a)}/{args.fair_burst} created by then"
            results[phase] = (lat, note)
    for phase, (lat, note) in results.items():
        tag = "B alone" if phase == "alone" else "B, A bursting"
        report.add("fairness", f"{tag}: latency p50", lat.at(50), "s", note=note)
        report.add("fairness", f"{tag}: latency p99", lat.at(99), "s")
    alone, busy = results["alone"][0].at(50), results["with A bursting"][0].at(50)
    if isinstance(alone, float) and isinstance(busy, float) and alone > 0:
        report.add("fairness", "B's p50, A bursting / alone", busy / alone, "x")
