"""Chaos benchmarks; each prints its counts and exits 1 unless every bad count is zero.

.venv/bin/python bench/chaos.py [invoices] [seconds between kills]
    5,000 invoices (default) under worker SIGKILLs and a Redis restart.
.venv/bin/python bench/chaos.py faults [invoices] [seeds] [batch size]
    2,000 invoices (default) per seed, seeds 1..3, while Xero fails 20% of writes (half after
    saving), 10% of reads, tokens last 20 s, events come twice and out of order, deletes come
    for records that exist and accounts share names (issue #22).
"""

from __future__ import annotations

import sys

from zxsync.chaos import run_chaos, run_faults


def kills(args: list[str]) -> bool:
    invoices = int(args[0]) if args else 5000
    kill_every = float(args[1]) if len(args) > 1 else 3.0
    report = run_chaos(
        invoices=invoices,
        workers=2,
        concurrency=2,
        kill_every=kill_every,
        timeout=max(600.0, invoices / 5),
    )
    print("\n".join(report.lines()))
    print(f"invoices/second {report.invoices / report.seconds:.1f}")
    return report.exact


def faults(args: list[str]) -> bool:
    invoices = int(args[0]) if args else 2000
    seeds = int(args[1]) if len(args) > 1 else 3
    batch_size = int(args[2]) if len(args) > 2 else 50
    exact = True
    for seed in range(1, seeds + 1):
        report = run_faults(
            invoices=invoices, seed=seed, timeout=max(600.0, invoices / 2), batch_size=batch_size
        )
        print(f"seed {seed}: " + "\n        ".join(report.lines()), flush=True)
        exact = exact and report.exact
    return exact


def main() -> None:
    args = sys.argv[1:]
    exact = faults(args[1:]) if args[:1] == ["faults"] else kills(args)
    sys.exit(0 if exact else 1)


if __name__ == "__main__":
    main()
