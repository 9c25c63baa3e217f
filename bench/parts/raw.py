"""Raw throughput with every limit off, and the workers' memory."""

from __future__ import annotations

import argparse
import time

from parts.common import (
    CpuMeter,
    MemoryCgroup,
    Report,
    RssSampler,
    admission_waiting,
    created_at,
    created_count,
    enqueue,
    header,
    queued_messages,
    running,
    seed,
    start_workers,
    wait_until,
    workers_pss,
    workers_rss,
)


def raw(report: Report, args: argparse.Namespace) -> None:
    """Part 3: limits off, what the pipeline itself does on this machine, and worker memory."""

    n = args.raw_invoices
    header(
        f"raw: {n} invoices queued at once, Xero and Zoho limits off",
        dataset=f"{args.accounts} accounts, {args.products} products, all new to Xero",
        workers=f"{args.workers} x concurrency {args.concurrency} "
        f"({args.workers * args.concurrency} pool processes)",
        window=f"first enqueue -> last invoice created, or {args.raw_seconds:.0f} s after the "
        "last enqueue",
        rss="VmRSS of the celery worker processes (main + pool), /proc/<pid>/status; PSS from "
        "/proc/<pid>/smaps_rollup (each shared page counted once across them); the kernel's "
        "count in a memory cgroup of the workers' own, where one can be made",
    )
    env = {"ZXS_BATCHING": "true", **args.env}
    cgroup = MemoryCgroup.create("zxs-bench-raw")
    try:
        _run(report, args, env, cgroup)
    finally:
        if cgroup is not None:
            cgroup.remove()


def _run(
    report: Report, args: argparse.Namespace, env: dict[str, str], cgroup: MemoryCgroup | None
) -> None:
    n = args.raw_invoices
    with running(report, "raw", ["raw"], limits=False, env=env, concurrency=args.concurrency) as s:
        conn = s.connections[0]
        started = time.time()
        invoices = seed(s, conn, n, args.accounts, args.products, args.seed)
        print(f"   seeded {n} Zoho invoices in {time.time() - started:.1f} s")
        procs = start_workers(
            s, args.workers, args.concurrency, cgroup.prefix if cgroup is not None else ()
        )
        idle, count = workers_rss(procs)
        idle_pss = workers_pss(procs)
        sampler = RssSampler(procs, cgroup=cgroup)
        sampler.start()
        meter = CpuMeter(procs)
        meter.start()
        first = enqueue(conn.name, invoices, "raw")
        enqueued = time.time()
        queued_rss, _ = workers_rss(procs)
        depth, waiting = queued_messages(), admission_waiting(conn.name)
        at_enqueue = created_count(s, conn)
        finished = wait_until(lambda: created_count(s, conn) >= n, args.raw_seconds, 0.25)
        stop = time.time()
        meter.stop()
        sampler.stop()
        created = created_count(s, conn)
        made = created_at(s, conn) if finished else {}
        end = max(made.values()) if made else stop
        took = enqueued - first
        print(
            f"   enqueue of {n} jobs took {took:.1f} s ({n / took:.0f}/s); "
            f"then {at_enqueue} invoices were created, {depth} messages waited in the stage "
            f"queues and {waiting} jobs in the admission waiting room"
        )
    report.add(
        "raw",
        "invoices created",
        f"{created}/{n}",
        note="" if finished else f"{args.raw_seconds:.0f} s after the last enqueue",
    )
    report.add(
        "raw",
        "invoices per second, end to end",
        created / (end - first),
        "/s",
        goal=">= 60",
        ok=created / (end - first) >= 60,
        note=f"first enqueue -> last created (or window end), "
        f"{args.workers * args.concurrency} pool processes",
    )
    report.add(
        "raw",
        "invoices per second, queue full",
        (created - at_enqueue) / max(end - enqueued, 1e-9),
        "/s",
        note="after the last enqueue: the bench process only serves the sandboxes",
    )
    report.add(
        "raw", "CPU per invoice", meter.per_invoice_ms(created), "ms", note=meter.note(created)
    )
    report.add("raw", "worker RSS idle", idle, "MiB", note=f"{count} processes, before any job")
    report.add("raw", f"worker RSS with {n} just queued", queued_rss, "MiB")
    report.add(
        "raw",
        "worker RSS peak",
        sampler.peak,
        "MiB",
        goal="<= 300",
        ok=sampler.peak <= 300,
        note=f"{sampler.peak_processes} processes, sampled every 0.5 s",
    )
    report.add("raw", "worker PSS idle", idle_pss, "MiB", note="the same processes, before any job")
    report.add(
        "raw",
        "worker PSS peak",
        sampler.peak_pss,
        "MiB",
        goal="<= 300",
        ok=sampler.peak_pss <= 300,
        note="pages the pool shares with the main process counted once (a container's view)",
    )
    if cgroup is None:
        report.add(
            "raw",
            "worker memory in its cgroup",
            "not measured",
            note="no memory cgroup could be made here (needs root and a writable cgroup file "
            "system), or this code's LocalStack cannot start a worker through one",
        )
        return
    report.add(
        "raw",
        "worker memory peak, its cgroup's working set",
        cgroup.peak_working_set,
        "MiB",
        goal="<= 300",
        ok=cgroup.peak_working_set <= 300,
        note="charged less inactive page cache, sampled every 0.5 s: what a container's memory "
        "limit and `kubectl top` count",
    )
    report.add(
        "raw",
        "worker memory peak, its cgroup's anonymous pages / all charged",
        f"{cgroup.peak_anon:.1f} / {cgroup.peak_charged():.1f}",
        "MiB",
        note="the heaps, each page once; the kernel's peak of everything charged, page cache "
        "included",
    )
