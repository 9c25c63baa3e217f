"""Issue #17 benchmark: a client's history brought across by `zxsync backfill`. Prints figures.

    .venv/bin/python bench/backfill.py [--invoices 2000 --accounts 200 --products 50]

The target is 20,000 invoices over 2,000 accounts and 500 products, 30% of them already in
Xero (their contacts with ContactNumber = the Zoho account id, their items by Code, the invoice
with the Zoho number as Reference and the Zoho total). A run of that size takes longer than a
bench may, so the default measures a tenth of it with the same proportions (10 invoices an
account, 4 products per 100 invoices... the same mix) through the real pipeline (LocalStack:
embedded Redis, the sandboxes on loopback, a real `celery worker`), with the sandbox's limits
off so it runs at full speed, and EXTRAPOLATES linearly to 20,000 (said so in the output):
every Xero call the backfill makes is per page of 100 read or per batch of 50 written, so calls
scale with the counts. "Xero calls" are those the Xero sandbox answered for the tenant.

Wall time under Xero's real limits is the calls at 60 a minute; days are the calls over the
tier's day less `ZXS_BACKFILL_RESERVE` (200) kept for live traffic: Starter 1,000 a day, the
paid tiers 5,000.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# limits off on both sides, exactly as the throughput bench's raw part has them
from parts.common import UNLIMITED_ENV
from parts.common import UNLIMITED_SANDBOX as UNLIMITED

from sandbox.seed import build_dataset, load_dataset, seed_xero_history
from zxsync.stack import LocalConnection, LocalStack

TARGET = 20_000
RESERVE = 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--burst-wait",
        type=float,
        default=None,
        help="ZXS_BATCH_BURST_WAIT for the workers (default: the setting's 5 s).",
    )
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help="Only the dry run's plan (reading costs at full size), no worker.",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from workers.context import build_context
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis
    from zxsync.backfill import build_plan, run

    name = f"bf-{uuid.uuid4().hex[:6]}"
    conn = LocalConnection(name, str(uuid.uuid4()), f"org-{name}", {"sender": "xero"})
    env = dict(UNLIMITED_ENV)
    if args.burst_wait is not None:
        env["ZXS_BATCH_BURST_WAIT"] = str(args.burst_wait)
    with LocalStack([conn], UNLIMITED, concurrency=args.concurrency, extra_env=env) as stack:
        t0 = time.monotonic()
        ds = load_dataset(
            stack.zoho,
            conn.zoho_org_id,
            build_dataset(invoices=args.invoices, accounts=args.accounts, products=args.products),
        )
        existing = set(seed_xero_history(stack.xero, conn.xero_tenant_id, ds, args.fraction))
        print(
            f"seeded {args.invoices} Zoho invoices, {len(existing)} of them in Xero "
            f"({time.monotonic() - t0:.0f} s)",
            flush=True,
        )
        before = len(stack.xero.invoices(conn.xero_tenant_id))
        calls0 = stack.xero.stats()["calls"].get(conn.xero_tenant_id, 0)
        ctx = build_context(name)
        start = time.monotonic()
        plan = build_plan(ctx, "Invoices")
        plan_calls = stack.xero.stats()["calls"].get(conn.xero_tenant_id, 0) - calls0
        if args.plan_only:
            print(
                f"plan of {args.invoices}: {plan.count('adopt')} adopt, {plan.count('create')} "
                f"create, {plan.count('ambiguous')} ambiguous, {plan.count('skip')} skip; "
                f"{plan_calls} Xero calls and {plan.zoho_credits_read} Zoho credits to read, "
                f"about {plan.create_calls(ctx.settings.zxs_batch_size)} Xero calls to create; "
                f"{time.monotonic() - start:.1f} s"
            )
            return 0
        stack.start_worker(concurrency=args.concurrency)
        code = run(
            ctx,
            "Invoices",
            plan,
            wait=False,
            slice_size=ctx.settings.zxs_backfill_slice,
            poll_seconds=0.5,
            on_progress=lambda *a: None,
        )
        wall = time.monotonic() - start
        calls = stack.xero.stats()["calls"].get(conn.xero_tenant_id, 0) - calls0
        after = stack.xero.invoices(conn.xero_tenant_id)
        refs = Counter(i.get("Reference") for i in after)
        dead = len(DeadLetterStore(get_redis()).list())
        routes = {
            r: n
            for r, n in stack.xero.stats()["by_route"].items()
            if not r.startswith(("POST /connect", "GET /conn"))
        }
    creates, adopts = plan.count("create"), plan.count("adopt")
    scale = TARGET / args.invoices
    full_calls = calls * scale
    figures = {
        "batch_burst_wait": args.burst_wait or 5.0,
        "invoices": args.invoices,
        "accounts": args.accounts,
        "products": args.products,
        "already_in_xero": len(existing),
        "adopted": adopts,
        "created_planned": creates,
        "created": len(after) - before,
        "ambiguous": plan.count("ambiguous"),
        "duplicates": sum(n - 1 for n in refs.values() if n > 1),
        "dead_letters": dead,
        "exit": code,
        "xero_calls_plan": plan_calls,
        "xero_calls_total": calls,
        "calls_per_invoice": round(calls / args.invoices, 4),
        "wall_seconds_unlimited": round(wall, 1),
        "extrapolated_20000_calls": round(full_calls),
        "extrapolated_minutes_at_60_a_minute": round(full_calls / 60, 1),
        "days_starter": math.ceil(full_calls / (1000 - RESERVE)),
        "days_paid": math.ceil(full_calls / (5000 - RESERVE)),
        "routes": routes,
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(f"(20,000-invoice figures are extrapolated x{scale:g} from this run)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if figures["duplicates"] == 0 and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
