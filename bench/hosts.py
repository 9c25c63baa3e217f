"""Across hosts (issue #19.4): workers on two hosts, one killed whole mid-burst; exits 1 unless
every invoice is created exactly once. Needs root and `ip` (network namespaces).

.venv/bin/python bench/hosts.py [invoices] [timeout seconds]
    1,000 invoices (default): Redis and the sandboxes on one host, a worker (2 pool processes)
    on each of two more; once Xero holds the first invoices, the worker host whose invoice
    batches Xero is working on is SIGKILLed (the first host at half of them, if none is).
"""

from __future__ import annotations

import sys

from zxsync.hosts import Hosts, unavailable


def main() -> None:
    args = sys.argv[1:]
    invoices = int(args[0]) if args else 1000
    timeout = float(args[1]) if len(args) > 1 else max(120.0, invoices / 3)
    reason = unavailable()
    if reason:
        sys.exit(f"cannot run: {reason}")
    hosts = Hosts()
    try:
        report = hosts.create().run(invoices=invoices, timeout=timeout)
    finally:
        hosts.destroy()
    print("\n".join(report.lines()))
    print(f"invoices/second {report.invoices / report.seconds:.1f}")
    sys.exit(0 if report.exact else 1)


if __name__ == "__main__":
    main()
