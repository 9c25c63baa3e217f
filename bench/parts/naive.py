"""The naive path: the same burst with ZXS_BATCHING=false, its calls counted and extrapolated."""

from __future__ import annotations

import argparse
import math
import time

from parts.common import (
    REAL_MINUTE_LIMIT,
    Report,
    created_at,
    created_count,
    enqueue,
    header,
    outcomes,
    ready,
    routes,
    running,
    wait_until,
    xero_usage,
)


def naive(report: Report, args: argparse.Namespace) -> None:
    """Part 1, naive path: every Xero call counted with limits off (on the burst itself, or on a
    smaller dataset with the same ratios), a sample under the real limits, and the wall time at
    60 calls a minute extrapolated from the counted calls."""

    n, scale = args.invoices, max(1, args.naive_scale)
    sn, sa, sp = (math.ceil(x / scale) for x in (n, args.accounts, args.products))
    env = {"ZXS_BATCHING": "false", **args.env}
    counted = f"{sn} invoices over {sa} accounts and {sp} products"
    header(
        "naive: the same burst with ZXS_BATCHING=false (one element per request, no cache)",
        step1=f"{counted} with Xero limits off, every Xero call counted"
        + (f" (1/{scale} of the burst, same ratios; calls x{scale})" if scale > 1 else ""),
        step2=f"{args.naive_sample:.0f} s of {counted} under Xero's real limits (a sample)",
        step3=f"wall time for {n} under the limits = counted calls at "
        f"{REAL_MINUTE_LIMIT} calls/minute (extrapolated)",
    )
    with running(
        report, "naive", ["naive"], limits=False, env=env, concurrency=args.concurrency
    ) as s:
        conn, invoices = ready(s, sn, sa, sp, args)
        first = enqueue(conn.name, invoices, "naive")
        finished = wait_until(
            lambda: created_count(s, conn) >= sn or len(outcomes(conn.name)) >= sn,
            args.naive_timeout,
            0.2,
        )
        made = created_at(s, conn)
        calls, _, _ = xero_usage(s, conn)
        wall_off = (max(made.values()) if made else time.time()) - first
        print(
            f"   limits off: {len(made)}/{sn} created in {wall_off:.1f} s "
            f"({len(made) / wall_off:.1f}/s); calls by route: {routes(s)}"
        )
        if not finished:
            print(f"   (stopped at {args.naive_timeout:.0f} s: calls scaled by invoices created)")
    per_invoice = calls / max(len(made), 1)
    total_calls = round(per_invoice * n)
    exact = len(made) >= sn and scale == 1
    report.add(
        "naive",
        f"Xero calls for {n}, limits off",
        total_calls,
        how="measured" if exact else "extrapolated",
        note=f"{calls} counted for {len(made)} invoices, {per_invoice:.2f} per invoice",
    )

    if args.naive_sample > 0:
        with running(
            report, "naive", ["naive"], limits=True, env=env, concurrency=args.concurrency
        ) as s:
            conn, invoices = ready(s, sn, sa, sp, args)
            first = enqueue(conn.name, invoices, "sample")
            wait_until(
                lambda: created_count(s, conn) >= sn, args.naive_sample - (time.time() - first), 0.2
            )
            seconds = time.time() - first
            created = created_count(s, conn)
            calls_s, limited_s, by_limit = xero_usage(s, conn)
        report.add(
            "naive",
            f"sample: invoices created in {seconds:.0f} s",
            created,
            note=f"real limits; {created / seconds * 60:.1f} per minute",
        )
        report.add("naive", "sample: Xero calls used", calls_s - limited_s, note="real limits")
        report.add(
            "naive",
            "sample: 429s received",
            limited_s,
            note=", ".join(f"{k} {v}" for k, v in by_limit.items()) or "real limits",
        )
    # fixed 60-call windows from the first call: the first window's calls need no wait
    wall = max(0, total_calls - REAL_MINUTE_LIMIT) / REAL_MINUTE_LIMIT * 60
    report.add(
        "naive",
        "Xero calls used, limits on",
        total_calls,
        how="extrapolated",
        note="the calls counted with limits off",
    )
    report.add(
        "naive",
        "wall time, first enqueue -> last created",
        wall,
        "s",
        how="extrapolated",
        note=f"{total_calls} calls at {REAL_MINUTE_LIMIT}/minute = {wall / 60:.1f} min, a floor",
    )
    report.add(
        "naive",
        "invoices per minute",
        n / wall * 60 if wall else None,
        "/min",
        how="extrapolated",
        note="a ceiling",
    )
