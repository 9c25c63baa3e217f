"""Calls per minute achieved against Xero's limit, through the shared limiter.

    .venv/bin/python bench/limits.py --invoices 300 --workers 4 --concurrency 2 --minute 6

Runs the real pipeline (embedded Redis, both sandboxes, Celery worker processes) with a scaled
"minute", warms up with one invoice, then times the rest. Figures come from the Xero sandbox:
calls it answered, the 429s it sent by limit, and the invoices it holds.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from sandbox.config import SandboxConfig
from sandbox.seed import build_dataset, load_dataset
from zxsync.stack import LocalConnection, LocalStack


def wait(connection: str, keys: list[str], timeout: float) -> dict[str, tuple[str, str]]:
    from workers.history import RecordHistory
    from workers.redis import get_redis

    history, deadline = RecordHistory(get_redis()), time.monotonic() + timeout
    while True:
        done = {k: v for k, v in history.outcomes(connection).items() if k in keys}
        if len(done) == len(keys) or time.monotonic() > deadline:
            return done
        time.sleep(0.1)


def main() -> None:
    from workers.pipeline import submit_records

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--minute", type=float, default=6.0, help="seconds in a sandbox minute")
    parser.add_argument("--guard", type=float, default=0.3, help="ZXS_LIMIT_GUARD_SECONDS")
    args = parser.parse_args()

    conn = LocalConnection("bench", "b3e7c000-0000-4000-8000-000000000001", "org-bench")
    config = SandboxConfig(minute_seconds=args.minute)
    env = {"ZXS_LIMIT_GUARD_SECONDS": str(args.guard), "ZXS_LOG_LEVEL": "WARNING"}
    with LocalStack([conn], config, extra_env=env) as stack:
        dataset = build_dataset(invoices=args.invoices, accounts=6, products=10)
        ids = [str(i["id"]) for i in load_dataset(stack.zoho, conn.zoho_org_id, dataset).invoices]
        keys = [f"{conn.name}:Invoices:{i}" for i in ids]
        for _ in range(args.workers):
            stack.start_worker(concurrency=args.concurrency)
        submit_records(conn.name, ids[:1], "warm")
        wait(conn.name, keys[:1], 120)
        before = stack.xero.stats()["calls"].get(conn.xero_tenant_id, 0)
        started = time.monotonic()
        submit_records(conn.name, ids[1:], "ev")
        outcomes = wait(conn.name, keys, 30 * args.minute + 600)
        elapsed = time.monotonic() - started
        stats = stack.xero.stats()
        calls = stats["calls"][conn.xero_tenant_id] - before
        limit = config.xero_limits.per_minute
        invoices = Counter(i["Reference"] for i in stack.xero.invoices(conn.xero_tenant_id))
        print(f"invoices       {len(ids)} ({Counter(o for o, _ in outcomes.values())})")
        print(f"workers        {args.workers} x concurrency {args.concurrency}")
        print(f"Xero calls     {calls} in {elapsed:.1f}s (a minute is {args.minute:g}s)")
        print(f"calls/minute   {calls / elapsed * args.minute:.1f} achieved, limit {limit}")
        print(
            f"floor          {max(0, calls - limit) / limit * args.minute:.1f}s "
            "(the first minute's calls need no wait)"
        )
        print(f"429s           {stats['rate_limited']}")
        print(f"exactly once   {len(invoices) == len(ids) and max(invoices.values()) == 1}")
        from workers.deadletter import DeadLetterStore
        from workers.redis import get_redis

        letters = DeadLetterStore(get_redis()).list()
        reasons = Counter(f"{d.stage}: {d.error[:120]}" for d in letters)
        for reason, count in reasons.most_common(5):
            print(f"dead letter    {count} x {reason}")


if __name__ == "__main__":
    main()
