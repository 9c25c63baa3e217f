"""Many tenants (issue #19.3): a few connections burst while many others trickle, on one app.

The issue's size is 200 connections, 20 of them bursting 500 invoices each while the other 180
send one event a second, against the per-app limit of 10,000 calls a minute. That is 180 events
a second on top of 10,000 burst invoices, more than a 2-core machine serves, so `--tenants-scale
F` divides the connections and the app limit by F (the burst size, the rate per quiet tenant and
the per-tenant limits stay): F=10 is 20 connections, 2 bursting 500, 18 quiet at one event a
second, an app limit of 1,000 a minute. 18 quiet tenants at one event a second spend 1,080 calls
a minute at least (a lone event's invoice is a call of its own), more than that app limit, as
180 do against 10,000: the app limit binds in both.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from typing import Any

from parts.common import (
    CpuMeter,
    Latencies,
    Report,
    created_at,
    created_count,
    enqueue,
    header,
    running,
    seed,
    start_workers,
    wait_until,
)
from sandbox.config import XeroLimits
from zxsync.stack import LocalConnection, LocalStack

APP_PER_MINUTE = XeroLimits().app_per_minute  # 10,000
Invoices = dict[str, list[dict[str, Any]]]  # connection -> its seeded Zoho invoices
SETTLING = 10.0  # seconds of the run the settled latencies leave out
# onboarded: invoices seeded past the timed ones, to draw the onboarding ones from; and
# the seconds from the onboarding's start before the run (past the app minute it began)
WARM_EXTRA = 20
ONBOARD_SETTLE = 65.0


def _seconds(value: float | str | None) -> str:
    return f"{value:.2f} s" if isinstance(value, float) else str(value)


class CallSampler(threading.Thread):
    """The Xero sandbox's answered calls (all tenants, one app) every second, for the most
    calls in any 60 s: a sliding window, stricter than the sandbox's fixed minute."""

    def __init__(self, stack: LocalStack) -> None:
        super().__init__(daemon=True)
        self.stack, self.samples = stack, [(time.time(), 0)]
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(1.0):
            self.samples.append((time.time(), sum(self.stack.xero.stats()["calls"].values())))

    def stop(self) -> int:
        self._halt.set()
        self.join()
        peak, j = 0, 0
        for at, calls in self.samples:
            while self.samples[j][0] < at - 60:
                j += 1
            peak = max(peak, calls - self.samples[j][1])
        return peak


def tenants(report: Report, args: argparse.Namespace) -> None:
    """Part 6: bursting and quiet tenants on one app; the quiet ones' latency and the app limit,
    every quiet tenant new to Xero (its first events create its contacts and items)."""
    _tenants(report, args, "tenants", onboarded=False)


def onboarded(report: Report, args: argparse.Namespace) -> None:
    """Part 7: the same with the quiet tenants onboarded first (their contacts and items linked
    by untimed invoices, then a fresh app minute): their steady state without the cold start."""
    _tenants(report, args, "onboarded", onboarded=True)


def _tenants(report: Report, args: argparse.Namespace, part: str, onboarded: bool) -> None:
    scale = max(1, args.tenants_scale)
    total = math.ceil(args.tenants / scale)
    bursting = max(1, math.ceil(args.tenants_bursting / scale))
    quiet = total - bursting
    app_limit = math.ceil(APP_PER_MINUTE / scale)
    seconds = args.tenants_seconds
    header(
        f"tenants: {total} connections, {bursting} bursting {args.tenants_burst} each, {quiet} "
        f"sending 1 event/s for {seconds} s"
        + (f" (the issue's size / {scale})" if scale > 1 else ""),
        xero_limits=f"real per tenant (60/minute, 5 in flight), app limit {app_limit:,}/minute "
        "across all tenants (sandbox and workers)",
        latency=str(args.latency),
        workers=f"{args.workers} x concurrency {args.concurrency}",
        quiet=f"{args.fair_accounts} accounts and {args.fair_products} products each, "
        + (
            "onboarded first (linked by untimed invoices, then a fresh app minute)"
            if onboarded
            else "new to Xero (each tenant's first events create its contacts and items)"
        ),
        figures="quiet tenants' enqueue -> created; app-limit 429s from the sandbox; CPU of "
        "workers, sandboxes and Redis over the whole run",
    )
    names = [f"burst{i}" for i in range(bursting)] + [f"quiet{i}" for i in range(quiet)]
    env = {"ZXS_BATCHING": "true", **args.env}
    with running(
        report,
        part,
        names,
        limits=True,
        env=env,
        concurrency=args.concurrency,
        latency=args.latency,
        app_per_minute=app_limit,
    ) as s:
        loud, calm = s.connections[:bursting], s.connections[bursting:]
        burst_invoices = {
            c.name: seed(s, c, args.tenants_burst, args.accounts, args.products, args.seed + i)
            for i, c in enumerate(loud)
        }
        extra = WARM_EXTRA if onboarded else 0
        quiet_invoices = {
            c.name: seed(s, c, seconds + extra, args.fair_accounts, args.fair_products, 50 + i)
            for i, c in enumerate(calm)
        }
        procs = start_workers(s, args.workers, args.concurrency)
        if onboarded:
            quiet_invoices = _onboard(s, calm, quiet_invoices, seconds)
        meter, calls = CpuMeter(procs), CallSampler(s)
        meter.start()
        calls.start()
        first = time.time()
        for c in loud:
            enqueue(c.name, burst_invoices[c.name], "burst")
        lat, settled = _quiet_events(s, calm, quiet_invoices, args.tenants_tail)
        n_burst = args.tenants_burst * bursting
        wait_until(lambda: sum(created_count(s, c) for c in loud) >= n_burst, args.tenants_tail)
        wall = time.time() - first
        peak = calls.stop()
        meter.stop()
        made_burst = sum(created_count(s, c) for c in loud)
        stats = s.xero.stats()
        app_429 = stats["rate_limited"].get("appminute", 0)
        other_429 = sum(stats["rate_limited"].values()) - app_429
        created = made_burst + len(lat.created)
    report.add(part, "quiet tenants: events created", f"{len(lat.created)}/{quiet * seconds}")
    report.add(
        part, "quiet tenants: latency p50", lat.at(50), "s", goal="< 1 s", ok=lat.below(50, 1)
    )
    report.add(
        part, "quiet tenants: latency p99", lat.at(99), "s", goal="< 2 s", ok=lat.below(99, 2)
    )
    report.add(
        part,
        f"quiet tenants: p50 / p99 after the first {SETTLING:.0f} s",
        f"{_seconds(settled.at(50))} / {_seconds(settled.at(99))}",
        note="the start: every tenant's first calls (tokens, tax rates, new contacts and items) "
        "while the bursts enter",
    )
    report.add(
        part,
        "bursting tenants: invoices created",
        f"{made_burst}/{n_burst}",
        note=f"{wall:.0f} s from the first enqueue",
    )
    report.add(
        part,
        "app-limit 429s",
        app_429,
        goal="0",
        ok=app_429 == 0,
        note=f"the sandbox's app minute of {app_limit:,}; other 429s {other_429}",
    )
    report.add(
        part,
        "most Xero calls in any 60 s",
        peak,
        note=f"all tenants, sampled each second; app limit {app_limit:,} per fixed minute",
    )
    report.add(
        part,
        "CPU per invoice",
        meter.per_invoice_ms(created),
        "ms",
        note=meter.note(created),
    )


def _covering(invoices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Invoices that between them name every account and product of `invoices` (greedy, in
    order): what a tenant's onboarding (or its earlier weeks) would have linked already."""
    accounts: set[str] = set()
    products: set[str] = set()
    chosen = []
    for inv in invoices:
        names = {str(line["Product_Name"]["name"]) for line in inv["Invoiced_Items"]}
        account = str(inv["Account_Name"]["name"])
        if account not in accounts or names - products:
            chosen.append(inv)
            accounts.add(account)
            products |= names
    return chosen


def _onboard(
    s: LocalStack,
    calm: list[LocalConnection],
    invoices: Invoices,
    seconds: int,
) -> Invoices:
    """Each quiet tenant's contacts and items linked before the measured run, through the
    pipeline (untimed invoices that cover its accounts and products), then one app minute
    and more waited so the run starts on a fresh one. Returns the `seconds` invoices to time
    per tenant, each naming only linked accounts and products."""
    from workers.pipeline import submit_records

    timed: Invoices = {}
    expected = 0
    began = time.time()
    for conn in calm:
        warm = _covering(invoices[conn.name])
        warm_ids = {inv["id"] for inv in warm}
        timed[conn.name] = [inv for inv in invoices[conn.name] if inv["id"] not in warm_ids]
        timed[conn.name] = timed[conn.name][:seconds]
        submit_records(conn.name, [str(inv["id"]) for inv in warm], "onboard")
        expected += len(warm)
    done = wait_until(lambda: sum(created_count(s, c) for c in calm) >= expected, 120, 0.25)
    print(
        f"   onboarding: {expected} untimed invoices linked the quiet tenants' accounts and "
        f"products in {time.time() - began:.1f} s" + ("" if done else " (not all created)")
    )
    time.sleep(max(0.0, began + ONBOARD_SETTLE - time.time()))
    return timed


def _quiet_events(
    s: LocalStack,
    calm: list[LocalConnection],
    invoices: Invoices,
    tail: float,
) -> tuple[Latencies, Latencies]:
    """Each quiet tenant sends one invoice a second (spread over the second), then the bench
    waits up to `tail` seconds for the last. The latencies of all events, and of those sent
    after the first `SETTLING` seconds."""
    from workers.pipeline import submit_records

    before = sum(created_count(s, c) for c in calm)
    sent: dict[tuple[str, str], float] = {}
    rounds = max((len(v) for v in invoices.values()), default=0)
    start = time.time()
    for i in range(rounds):
        for j, conn in enumerate(calm):
            time.sleep(max(0.0, start + i + j / len(calm) - time.time()))
            inv = invoices[conn.name][i]
            sent[(conn.name, inv["Invoice_Number"])] = time.time()
            submit_records(conn.name, [str(inv["id"])], "quiet")
    # the onboarding's invoices (part onboarded) are in Xero already
    expected = sum(len(v) for v in invoices.values()) + before
    wait_until(lambda: sum(created_count(s, c) for c in calm) >= expected, tail, 0.25)
    stopped = time.time()
    made = {(c.name, ref): at for c in calm for ref, at in created_at(s, c).items()}
    return Latencies(
        [made[key] - at for key, at in sent.items() if key in made],
        [stopped - at for key, at in sent.items() if key not in made],
    ), Latencies(
        [made[key] - at for key, at in sent.items() if key in made and at >= start + SETTLING],
        [stopped - at for key, at in sent.items() if key not in made and at >= start + SETTLING],
    )
