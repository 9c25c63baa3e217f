"""Xero calls of an idle tenant over a simulated day, and how late a lost webhook is caught.

    .venv/bin/python bench/idle.py [--hours 24] [--tick 60] [--lose-at 36000]

The simulation is zxsync/idle.py: beat's ticks on a simulated clock, the safety-net polls run
inline over the real sandboxes and Redis; tenant A idle all day, tenant B's payment webhook lost.
"""

from __future__ import annotations

import argparse
import json
import uuid

from zxsync.idle import SIM_ENV, SIM_SANDBOX, simulate
from zxsync.stack import LocalConnection, LocalStack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--tick", type=float, default=60)
    parser.add_argument("--lose-at", type=float, default=36000)
    args = parser.parse_args()
    conns = [
        LocalConnection(f"idle-{n}", str(uuid.uuid5(uuid.NAMESPACE_URL, n)), f"org-idle-{n}")
        for n in "ab"
    ]
    with LocalStack(conns, SIM_SANDBOX, extra_env=SIM_ENV) as stack:
        day = simulate(stack, args.hours, args.tick, args.lose_at)
    result = {
        "xero_calls": day.calls,
        "idle_polls": day.polls,
        "lost_payment_caught_after_seconds": day.caught_after,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
