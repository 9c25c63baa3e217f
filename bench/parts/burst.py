"""The burst: 1,000 new invoices through the batched path against Xero's real limits."""

from __future__ import annotations

import argparse
import time

from parts.common import (
    REAL_MINUTE_LIMIT,
    STARTED,
    CpuMeter,
    Report,
    created_at,
    created_count,
    dead_letters,
    enqueue,
    header,
    outcomes,
    ready,
    routes,
    running,
    wait_until,
    xero_usage,
)


def burst(report: Report, args: argparse.Namespace) -> None:
    """Part 1: the batched path against Xero's real limits."""

    n = args.invoices
    header(
        f"burst: {n} new invoices, {args.accounts} accounts, {args.products} products, "
        "Xero's real limits",
        sandbox=f"{REAL_MINUTE_LIMIT} calls/minute, 5 in flight, 5000/day, a real 60 s minute",
        latency=str(args.latency),
        settings="ZXS_BATCHING=true, connection sender=none (bulk import: no per-invoice send)",
        workers=f"{args.workers} x concurrency {args.concurrency}",
        deadline=f"{args.burst_timeout:.0f} s",
    )
    env = {"ZXS_BATCHING": "true", **args.env}
    with running(
        report,
        "burst",
        ["burst"],
        limits=True,
        env=env,
        concurrency=args.concurrency,
        latency=args.latency,
    ) as s:
        conn, invoices = ready(s, n, args.accounts, args.products, args)
        meter = CpuMeter(STARTED[id(s)])
        meter.start()
        first = enqueue(conn.name, invoices, "burst")
        enqueued = time.time() - first
        finished = wait_until(
            lambda: created_count(s, conn) >= n or len(outcomes(conn.name)) >= n,
            args.burst_timeout - enqueued,
            0.2,
        )
        stop = time.time()
        meter.stop()
        made = created_at(s, conn)
        calls, limited, by_limit = xero_usage(s, conn)
        used = calls - limited
        last = max(made.values()) if made else stop
        wall = (last - first) if finished and len(made) >= n else stop - first
        print(f"   enqueue of {n} jobs took {enqueued:.1f} s; calls by route: {routes(s)}")
        report.add(
            "burst",
            "invoices created",
            f"{len(made)}/{n}",
            note="" if finished else f"deadline {args.burst_timeout:.0f} s reached",
        )
        issue = n == 1000  # the goals are the issue's, for its 1,000 invoices
        report.add(
            "burst",
            "Xero calls used",
            used,
            goal="<= 40" if issue else "",
            ok=used <= 40 and len(made) >= n,
        )
        report.add(
            "burst",
            "429s received",
            limited,
            note=", ".join(f"{k} {v}" for k, v in by_limit.items()),
        )
        done_all = finished and len(made) >= n
        report.add(
            "burst",
            "wall time, first enqueue -> last created",
            wall,
            "s",
            goal="<= 20 s" if issue else "",
            ok=done_all and wall <= 20,
            note="" if done_all else "not all created: time to the deadline",
        )
        report.add("burst", "invoices per minute", len(made) / wall * 60 if wall else None, "/min")
        report.add(
            "burst",
            "CPU per invoice",
            meter.per_invoice_ms(len(made)),
            "ms",
            note=meter.note(len(made)),
        )
        letters = dead_letters()
        for reason, count in letters.most_common(3):
            print(f"   dead letter: {count} x {reason}")
