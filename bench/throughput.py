"""Issue #8 and #19 benchmark: burst, naive path, trickle latency, raw throughput, fairness, many
tenants. Prints figures.

    .venv/bin/python bench/throughput.py all            # every part, about 12 minutes
    .venv/bin/python bench/throughput.py all --baseline REF  # each part against REF too
    .venv/bin/python bench/throughput.py burst|naive|trickle|raw|fairness|tenants|onboarded [...]

Every part runs the real pipeline through `LocalStack` (embedded Redis, the Xero and Zoho
sandboxes on loopback, real `celery worker` processes) and reads its figures from the sandboxes:

- "Xero calls used" are the calls the Xero sandbox admitted for the tenant (`stats()["calls"]`
  minus the 429s it answered); "429s" are the sandbox's `stats()["rate_limited"]`.
- "Invoice created" is the moment the Xero sandbox created the invoice: its `UpdatedDateUTC`
  (ms), set at creation and not touched again here (sender `none`: no e-mail, online link or
  PDF call per invoice, nothing pays or edits them). Latency is that minus the enqueue time.
- "Enqueue" is `workers.pipeline.submit()`, the door a relay uses, one job per Zoho invoice.
- "CPU per invoice" is the CPU time (/proc utime + stime) of the worker processes, this process
  (which serves both sandboxes) and the embedded redis-server, over the part, per invoice.

Parts (one module each under bench/parts/):

1. burst     1,000 new invoices over 200 accounts and 100 products, Xero's real limits (60 calls
             a minute, 5 in flight, a real 60-second minute), Xero's latency simulated (300 ms a
             call + 10 ms an element, `--latency`), ZXS_BATCHING=true.
2. naive     The same 1,000 with ZXS_BATCHING=false: every Xero call counted with limits off,
             plus a time-boxed sample under the real limits; the wall time at 60 calls a minute
             is extrapolated from the counted calls (printed as such).
3. trickle   One event a second for 60 s, sandbox latency 0: p50/p99 enqueue -> invoice created.
4. raw       Limits off: 10,000 invoices queued at once, invoices/s end to end, CPU per invoice,
             worker RSS (the celery processes' VmRSS from /proc) idle, with everything queued,
             and peak.
5. fairness  Tenant A bursts 1,000 while tenant B sends one event a second; B's latency vs B alone
             (Xero's real limits, per tenant).
6. tenants   Many connections on one app: some burst 500 each while the others send one event a
             second; the quiet ones' p50/p99, app-limit 429s, CPU per invoice (bench/parts/
             tenants.py; the issue's 200 connections divided by `--tenants-scale`), every quiet
             tenant new to Xero: its first events create its contacts and items.
7. onboarded The tenants part with the quiet tenants onboarded first: their contacts and items
             linked by untimed invoices through the pipeline, then a fresh app minute.

`--baseline REF` runs each part twice, interleaved: first with the product code of git commit
REF (a detached `git worktree` under the system's temp dir: workers, tasks, clients, schemas,
zxsync, relay and console from REF), then with this checkout's, both with this checkout's bench
and sandboxes (the same measuring stick, and the same simulated Xero), and prints both figures
side by side. Options are listed by `--help`; `--json FILE` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from parts.burst import burst
from parts.common import Latency, Report, header, provenance
from parts.fairness import fairness
from parts.naive import naive
from parts.raw import raw
from parts.tenants import onboarded, tenants
from parts.trickle import trickle

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# what the baseline takes from REF; the sandboxes and the bench stay this checkout's
PRODUCT = ("workers", "tasks", "clients", "schemas", "zxsync", "relay", "console")

PARTS: dict[str, Callable[[Report, argparse.Namespace], None]] = {
    "burst": burst,
    "naive": naive,
    "trickle": trickle,
    "raw": raw,
    "fairness": fairness,
    "tenants": tenants,
    "onboarded": onboarded,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("part", choices=[*PARTS, "all"])
    parser.add_argument("--invoices", type=int, default=1000, help="burst and naive")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--seed", type=int, default=8, help="dataset seed")
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    parser.add_argument(
        "--burst-timeout", type=float, default=150.0, help="burst: seconds from the first enqueue"
    )
    parser.add_argument(
        "--naive-scale",
        type=int,
        default=5,
        help="count the naive calls on 1/SCALE of the burst (same ratios of "
        "invoices, accounts, products), times SCALE; 1: the whole burst",
    )
    parser.add_argument(
        "--naive-timeout", type=float, default=300.0, help="seconds for the limits-off count"
    )
    parser.add_argument(
        "--naive-sample",
        type=float,
        default=65.0,
        help="seconds of the real-limits sample (0: none)",
    )
    parser.add_argument("--trickle-seconds", type=int, default=60)
    parser.add_argument(
        "--trickle-limits",
        choices=["on", "off"],
        default="off",
        help="Xero's real limits during the trickle (on: new accounts at 1 event/s "
        "need more than the 60 calls a minute)",
    )
    parser.add_argument("--trickle-accounts", type=int, default=20)
    parser.add_argument("--trickle-products", type=int, default=30)
    parser.add_argument(
        "--trickle-tail", type=float, default=20.0, help="seconds to wait for the last events"
    )
    parser.add_argument("--raw-invoices", type=int, default=10_000)
    parser.add_argument(
        "--raw-seconds",
        type=float,
        default=90.0,
        help="raw: how long to keep measuring after the last enqueue",
    )
    parser.add_argument("--fair-burst", type=int, default=1000)
    parser.add_argument("--fair-seconds", type=int, default=30)
    parser.add_argument("--fair-tail", type=float, default=15.0)
    parser.add_argument("--fair-accounts", type=int, default=3, help="tenant B's accounts")
    parser.add_argument("--fair-products", type=int, default=5, help="tenant B's products")
    parser.add_argument(
        "--latency",
        type=_latency,
        default=Latency(0.3, 0.01),
        metavar="CALL,ELEMENT",
        help="burst and tenants: the Xero sandbox's simulated seconds per call and per element "
        "of a batch write (0,0: it answers at once)",
    )
    parser.add_argument("--tenants", type=int, default=200, help="tenants: connections")
    parser.add_argument(
        "--tenants-bursting", type=int, default=20, help="tenants: how many of them burst"
    )
    parser.add_argument("--tenants-burst", type=int, default=500, help="tenants: each burst")
    parser.add_argument(
        "--tenants-seconds", type=int, default=60, help="tenants: the quiet ones' events, 1/s"
    )
    parser.add_argument(
        "--tenants-scale",
        type=int,
        default=10,
        help="tenants: divide the connections and the per-app limit by this (1: the issue's "
        "full size, more than 2 cores serve)",
    )
    parser.add_argument("--tenants-tail", type=float, default=30.0)
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run each part with the product code of this git commit (before this "
        "checkout's run), and print both",
    )
    parser.add_argument("--as-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tenant-window",
        type=int,
        default=None,
        help="ZXS_TENANT_WINDOW for the workers (default: theirs)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="extra worker setting, e.g. --set ZXS_BATCH_MAX_WAIT=0.5",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.env = dict(item.split("=", 1) for item in args.set)
    if args.tenant_window is not None:
        args.env["ZXS_TENANT_WINDOW"] = str(args.tenant_window)
    os.environ.update({k: v for k, v in args.env.items() if k == "ZXS_TENANT_WINDOW"})

    report = Report()
    info = provenance()
    header(
        "issue #8/#19 throughput benchmark" + (" (baseline run)" if args.as_baseline else ""),
        **info,
        extra_settings=", ".join(f"{k}={v}" for k, v in args.env.items()) or "none",
    )
    began = time.monotonic()
    parts = list(PARTS) if args.part == "all" else [args.part]
    baseline = Baseline(args.baseline) if args.baseline else None
    before: list[dict[str, object]] = []
    for name in parts:
        if baseline is not None:
            before += baseline.run(name, sys.argv[1:])
        t0 = time.monotonic()
        try:
            PARTS[name](report, args)
        except Exception as exc:  # one broken part must not hide the others' figures
            report.add(name, "FAILED", type(exc).__name__, note=str(exc).splitlines()[0][:120])
        print(f"   ({name} took {time.monotonic() - t0:.0f} s)", flush=True)
    print(f"\n== summary ({time.monotonic() - began:.0f} s in all)\n")
    print(report.summary() if baseline is None else report.side_by_side(before, baseline.label))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "info": info,
                    "figures": [f.__dict__ for f in report.figures],
                    "baseline": before,
                },
                indent=2,
            )
        )
    # goals missed are figures, not errors; a part that broke is
    sys.exit(1 if any(f.name == "FAILED" for f in report.figures) else 0)


def _latency(text: str) -> Latency:
    call, _, element = text.partition(",")
    return Latency(float(call), float(element or 0))


class Baseline:
    """The product code of a git commit, in a worktree of its own, with this checkout's bench
    and sandboxes laid over it: a directory of links that a subprocess runs in (its cwd and
    PYTHONPATH, which celery's `-m` and the editable install's finder both yield to)."""

    def __init__(self, ref: str) -> None:
        sha = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
        self.label = f"{ref} ({sha[:8]})"
        tree = Path(tempfile.gettempdir()) / f"zxs-baseline-{sha[:12]}"
        if not (tree / ".git").exists():
            _git("worktree", "add", "--detach", "--force", str(tree), sha)
        self.overlay = Path(tempfile.mkdtemp(prefix="zxs-baseline-overlay-"))
        for name in PRODUCT:
            (self.overlay / name).symlink_to(tree / name)
        (self.overlay / "sandbox").symlink_to(ROOT / "sandbox")

    def run(self, part: str, argv: list[str]) -> list[dict[str, object]]:
        """Run one part against the baseline; its figures (empty when it broke)."""
        out = self.overlay / f"{part}.json"
        rest = _without(argv, {"--baseline", "--json"})[1:]  # the part name comes first
        command = [
            sys.executable,
            str(BENCH / "throughput.py"),
            part,
            *rest,
            "--as-baseline",
            "--json",
            str(out),
        ]
        env = {**os.environ, "PYTHONPATH": str(self.overlay)}
        subprocess.run(command, cwd=self.overlay, env=env, check=False)
        if not out.exists():
            return []
        figures: list[dict[str, object]] = json.loads(out.read_text())["figures"]
        return figures


def _without(argv: list[str], options: set[str]) -> list[str]:
    """argv less these options and their values."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif arg.split("=", 1)[0] not in options:
            kept.append(arg)
    return kept


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


if __name__ == "__main__":
    main()
