"""Chaos benchmark: 5,000 invoices under worker SIGKILLs and a Redis restart; prints the counts.

.venv/bin/python bench/chaos.py [invoices] [seconds between kills]
"""

from __future__ import annotations

import sys

from zxsync.chaos import run_chaos


def main() -> None:
    invoices = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    kill_every = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    report = run_chaos(
        invoices=invoices,
        workers=2,
        concurrency=2,
        kill_every=kill_every,
        timeout=max(600.0, invoices / 5),
    )
    print("\n".join(report.lines()))
    print(f"invoices/second {report.invoices / report.seconds:.1f}")
    sys.exit(0 if report.exact else 1)


if __name__ == "__main__":
    main()
