"""Issue #8 benchmark: burst, naive path, trickle latency, raw throughput, fairness. Prints figures.

    .venv/bin/python bench/throughput.py all            # every part, about 10 minutes (make bench)
    .venv/bin/python bench/throughput.py burst|naive|trickle|raw|fairness [options]

Every part runs the real pipeline through `LocalStack` (embedded Redis, the Xero and Zoho
sandboxes on loopback, real `celery worker` processes) and reads its figures from the sandboxes:

- "Xero calls used" are the calls the Xero sandbox admitted for the tenant (`stats()["calls"]`
  minus the 429s it answered); "429s" are the sandbox's `stats()["rate_limited"]`.
- "Invoice created" is the moment the Xero sandbox created the invoice: its `UpdatedDateUTC`
  (ms), set at creation and not touched again here (sender `none`: no e-mail, online link or
  PDF call per invoice, nothing pays or edits them). Latency is that minus the enqueue time.
- "Enqueue" is `workers.pipeline.submit()`, the door a relay uses, one job per Zoho invoice.

Parts:

1. burst     1,000 new invoices over 200 accounts and 100 products, Xero's real limits (60 calls
             a minute, 5 in flight, a real 60-second minute), ZXS_BATCHING=true.
2. naive     The same 1,000 with ZXS_BATCHING=false: every Xero call counted with limits off,
             plus a time-boxed sample under the real limits; the wall time at 60 calls a minute
             is extrapolated from the counted calls (printed as such).
3. trickle   One event a second for 60 s, sandbox latency 0: p50/p99 enqueue -> invoice created.
4. raw       Limits off: 10,000 invoices queued at once, invoices/s end to end, worker RSS
             (the celery processes' VmRSS from /proc) idle, with everything queued, and peak.
5. fairness  Tenant A bursts 1,000 while tenant B sends one event a second; B's latency vs B alone
             (Xero's real limits, per tenant).

Options are listed by `--help`; `--json FILE` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.config import SandboxConfig, XeroLimits, ZohoLimits
from sandbox.seed import build_dataset, load_dataset
from zxsync.stack import LocalConnection, LocalStack

REAL_MINUTE_LIMIT = XeroLimits().per_minute  # 60
# the bench's own settings on every stack: sender none is the bulk-import choice (no per-invoice
# Xero e-mail, online-invoice or PDF call that no batch can cover); a quiet log
CONNECTION_OPTIONS: dict[str, Any] = {"sender": "none"}
BASE_ENV = {"ZXS_LOG_LEVEL": "WARNING"}
# the workers' own limiter must not hold back what the sandbox lets through when limits are off
UNLIMITED_ENV = {
    "ZXS_XERO_PER_MINUTE": str(10**7),
    "ZXS_XERO_PER_DAY": str(10**8),
    "ZXS_XERO_APP_PER_MINUTE": str(10**8),
    "ZXS_XERO_CONCURRENT": str(10**4),
    "ZXS_ZOHO_PER_DAY": str(10**8),
    "ZXS_ZOHO_CONCURRENT": str(10**4),
}
UNLIMITED_SANDBOX = SandboxConfig(
    enforce_limits=False,
    xero_limits=XeroLimits(per_minute=10**7, per_day=10**8, concurrent=10**4, app_per_minute=10**8),
    zoho_limits=ZohoLimits(credits_per_day=10**8, concurrent=10**4),
)


# --------------------------------------------------------------------------- figures


@dataclass
class Figure:
    part: str
    name: str
    value: float | int | str | None
    unit: str = ""
    how: str = "measured"  # measured | extrapolated
    goal: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, part: str, name: str, value: Any, unit: str = "", **kw: Any) -> Figure:
        fig = Figure(part, name, value, unit, **kw)
        self.figures.append(fig)
        shown = _fmt(value)
        extra = []
        if fig.how != "measured":
            extra.append(fig.how.upper())
        if fig.goal:
            extra.append(f"goal {fig.goal}: {'met' if fig.ok else 'NOT met'}")
        if fig.note:
            extra.append(fig.note)
        tail = f"   [{'; '.join(extra)}]" if extra else ""
        print(f"  {part:<9} {name:<44} {shown:>10} {unit:<12}{tail}", flush=True)
        return fig

    def summary(self) -> str:
        rows = [
            "| part | figure | value | how | goal |",
            "|---|---|---:|---|---|",
        ]
        for f in self.figures:
            goal = f"{f.goal} ({'met' if f.ok else 'not met'})" if f.goal else ""
            rows.append(f"| {f.part} | {f.name} | {_fmt(f.value)} {f.unit} | {f.how} | {goal} |")
        return "\n".join(rows)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def header(title: str, **settings: Any) -> None:
    print(f"\n== {title}  (load average {os.getloadavg()[0]:.1f})", flush=True)
    for key, value in settings.items():
        print(f"   {key}: {value}", flush=True)


# --------------------------------------------------------------------------- the stack


def make_stack(
    names: Iterable[str], *, limits: bool, env: dict[str, str], concurrency: int
) -> LocalStack:
    """One LocalStack with a connection (Xero tenant + Zoho org) per name."""
    conns = [
        LocalConnection(
            n, str(uuid.uuid5(uuid.NAMESPACE_URL, n)), f"org-{n}", options=dict(CONNECTION_OPTIONS)
        )
        for n in names
    ]
    if limits:
        # Xero's published limits and a real 60-second minute; latency 0, no faults
        config = SandboxConfig()
        extra = {**BASE_ENV, **env}
    else:
        config = UNLIMITED_SANDBOX
        extra = {**BASE_ENV, **UNLIMITED_ENV, **env}
    return LocalStack(conns, config, concurrency=concurrency, extra_env=extra)


STARTED: dict[int, list[subprocess.Popen[bytes]]] = {}  # id(stack) -> its worker processes


@contextmanager
def running(
    report: Report,
    part: str,
    names: Iterable[str],
    *,
    limits: bool,
    env: dict[str, str],
    concurrency: int,
) -> Iterator[LocalStack]:
    """A stack for one part; on the way out, says whether a worker process died meanwhile (a
    dead worker makes the part's figures meaningless)."""
    stack = make_stack(names, limits=limits, env=env, concurrency=concurrency)
    with stack:
        yield stack
        dead = [(p.pid, p.poll()) for p in STARTED.pop(id(stack), []) if p.poll() is not None]
        if dead:
            report.add(
                part,
                "WARNING: worker exited during the run",
                str(dead),
                note="pid, exit status: these figures are not valid",
            )
            for line in stack.worker_logs().splitlines()[-12:]:
                print(f"   | {line[:160]}")


def start_workers(
    stack: LocalStack, workers: int, concurrency: int
) -> list[subprocess.Popen[bytes]]:
    """Start the worker processes and wait until each answers a ping (boot is not bench time)."""
    from workers.app import app

    procs = [stack.start_worker(concurrency=concurrency) for _ in range(workers)]
    STARTED.setdefault(id(stack), []).extend(procs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a worker exited at start:\n{stack.worker_logs()[-3000:]}")
        ready = all(len(children(p.pid)) >= concurrency for p in procs)
        if ready and len(app.control.ping(timeout=1.0) or []) >= workers:
            return procs
        time.sleep(0.2)
    raise RuntimeError(f"workers not ready in 60 s:\n{stack.worker_logs()[-3000:]}")


def seed(
    stack: LocalStack,
    conn: LocalConnection,
    invoices: int,
    accounts: int,
    products: int,
    seed_value: int,
) -> list[dict[str, Any]]:
    data = build_dataset(invoices=invoices, accounts=accounts, products=products, seed=seed_value)
    return load_dataset(stack.zoho, conn.zoho_org_id, data).invoices


def ready(
    s: LocalStack, invoices: int, accounts: int, products: int, args: argparse.Namespace
) -> tuple[LocalConnection, list[dict[str, Any]]]:
    """The stack's connection with its Zoho invoices seeded and the workers up (neither counts
    as bench time)."""
    conn = s.connections[0]
    seeded = seed(s, conn, invoices, accounts, products, args.seed)
    start_workers(s, args.workers, args.concurrency)
    return conn, seeded


def enqueue(connection: str, invoices: list[dict[str, Any]], prefix: str) -> float:
    """Every invoice through the door, as a relay would send them; returns when it began."""
    from workers.pipeline import submit_records

    first = time.time()
    submit_records(connection, [str(inv["id"]) for inv in invoices], prefix)
    return first


def created_count(stack: LocalStack, conn: LocalConnection) -> int:
    return len(stack.xero.tenant(conn.xero_tenant_id).invoices)


def created_at(stack: LocalStack, conn: LocalConnection) -> dict[str, float]:
    """Reference (the Zoho invoice number) -> when the Xero sandbox created the invoice (epoch s),
    from its UpdatedDateUTC; read-only, under the sandbox's own lock."""
    with stack.xero.lock:
        raw = [
            (i.get("Reference", ""), i["UpdatedDateUTC"])
            for i in stack.xero.tenant(conn.xero_tenant_id).invoices.values()
            if i.get("Type") == "ACCREC"
        ]
    out: dict[str, float] = {}
    for reference, stamp in raw:
        at = int(stamp[6:].split("+")[0].split(")")[0]) / 1000
        out[reference] = min(at, out.get(reference, at))
    return out


def outcomes(connection: str) -> dict[str, tuple[str, str]]:
    from workers.history import RecordHistory
    from workers.redis import get_redis

    return RecordHistory(get_redis()).outcomes(connection)


def dead_letters() -> Counter[str]:
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    return Counter(f"{d.stage}: {d.error[:100]}" for d in DeadLetterStore(get_redis()).list())


def xero_usage(stack: LocalStack, conn: LocalConnection) -> tuple[int, int, dict[str, int]]:
    """(calls the tenant was answered, 429s in the whole sandbox, 429s by limit)."""
    stats = stack.xero.stats()
    limited = {k: v for k, v in stats["rate_limited"].items() if v}
    return stats["calls"].get(conn.xero_tenant_id, 0), sum(limited.values()), limited


def routes(stack: LocalStack) -> str:
    by_route = stack.xero.stats()["by_route"]
    top = sorted(by_route.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{r} {n}" for r, n in top if not r.startswith(("POST /connect", "GET /conn")))


def wait_until(done: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(step)
    return done()


@dataclass
class Latencies:
    """Enqueue -> created of the events created, and lower bounds for those still waiting when
    the bench stopped looking (their latency is at least that)."""

    created: list[float]
    pending: list[float]

    def at(self, q: float) -> float | str | None:
        """The q-th percentile over all events; "> x" when it falls among the waiting ones."""
        total = len(self.created) + len(self.pending)
        if not total:
            return None
        rank = max(1, math.ceil(q / 100 * total))
        if rank <= len(self.created):
            return sorted(self.created)[rank - 1]
        bound = sorted(self.created + self.pending)[rank - 1]  # a lower bound of the true value
        return f"> {bound:.1f}"

    def below(self, q: float, goal: float) -> bool:
        value = self.at(q)
        return isinstance(value, float) and value < goal


# --------------------------------------------------------------------------- processes


def children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the fields after the command name (which may hold spaces) start at the last ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry))
    return kids


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def workers_rss(procs: list[subprocess.Popen[bytes]]) -> tuple[float, int]:
    """Total VmRSS (MiB) of the celery worker processes and their pool children, and how many."""
    pids = [p.pid for p in procs]
    pids += [kid for p in procs for kid in children(p.pid)]
    return sum(rss_mib(pid) for pid in pids), len(pids)


class RssSampler(threading.Thread):
    def __init__(self, procs: list[subprocess.Popen[bytes]], every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.procs, self.every = procs, every
        self.peak, self.peak_processes = 0.0, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            total, count = workers_rss(self.procs)
            if total > self.peak:
                self.peak, self.peak_processes = total, count
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def admission_waiting(connection: str) -> int:
    """Jobs held at the door by a per-tenant admission window (0 where the code has none)."""
    from workers.redis import get_redis

    key = f"zxs:admit:{connection}"
    r = get_redis()
    return int(r.llen(key)) if r.type(key) == "list" else 0


def queued_messages() -> int:
    """Messages waiting in the stage queues in Redis (not those reserved by workers)."""
    from workers.app import STAGE_QUEUES
    from workers.redis import get_redis

    r = get_redis()
    return sum(int(r.llen(q)) for q in set(STAGE_QUEUES.values()))


# --------------------------------------------------------------------------- the parts


def provenance() -> dict[str, Any]:
    import workers
    from workers.settings import Settings

    root = Path(workers.__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()[:90]
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--",
                "workers",
                "tasks",
                "clients",
                "sandbox",
                "schemas",
                "zxsync",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        head, dirty = "unknown", ""
    fields = Settings.model_fields
    code = [root / "workers" / "batching", root / "workers" / "batching.py"]  # package, or before
    has_batching = "zxs_batching" in fields and any(path.exists() for path in code)
    return {
        "code": f"{root} at {head or 'no git'}"
        + (f" + uncommitted changes in {len(dirty.splitlines())} files" if dirty else ""),
        "batching code": "present (ZXS_BATCHING honoured)"
        if has_batching
        else "absent: ZXS_BATCHING is ignored, every run is the per-document path",
        "tenant window": f"ZXS_TENANT_WINDOW={os.environ.get('ZXS_TENANT_WINDOW', 'default')}"
        + ("" if "zxs_tenant_window" in fields else " (not in this code)"),
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
    }


def burst(report: Report, args: argparse.Namespace) -> None:
    """Part 1: the batched path against Xero's real limits."""

    n = args.invoices
    header(
        f"burst: {n} new invoices, {args.accounts} accounts, {args.products} products, "
        "Xero's real limits",
        sandbox=f"{REAL_MINUTE_LIMIT} calls/minute, 5 in flight, 5000/day, a real 60 s minute, "
        "latency 0",
        settings="ZXS_BATCHING=true, connection sender=none (bulk import: no per-invoice send)",
        workers=f"{args.workers} x concurrency {args.concurrency}",
        deadline=f"{args.burst_timeout:.0f} s",
    )
    env = {"ZXS_BATCHING": "true", **args.env}
    with running(
        report, "burst", ["burst"], limits=True, env=env, concurrency=args.concurrency
    ) as s:
        conn, invoices = ready(s, n, args.accounts, args.products, args)
        first = enqueue(conn.name, invoices, "burst")
        enqueued = time.time() - first
        finished = wait_until(
            lambda: created_count(s, conn) >= n or len(outcomes(conn.name)) >= n,
            args.burst_timeout - enqueued,
            0.2,
        )
        stop = time.time()
        made = created_at(s, conn)
        calls, limited, by_limit = xero_usage(s, conn)
        used = calls - limited
        last = max(made.values()) if made else stop
        wall = (last - first) if finished and len(made) >= n else stop - first
        print(f"   enqueue of {n} jobs took {enqueued:.1f} s; calls by route: {routes(s)}")
        report.add(
            "burst",
            "invoices created",
            f"{len(made)}/{n}",
            note="" if finished else f"deadline {args.burst_timeout:.0f} s reached",
        )
        issue = n == 1000  # the goals are the issue's, for its 1,000 invoices
        report.add(
            "burst",
            "Xero calls used",
            used,
            goal="<= 40" if issue else "",
            ok=used <= 40 and len(made) >= n,
        )
        report.add(
            "burst",
            "429s received",
            limited,
            note=", ".join(f"{k} {v}" for k, v in by_limit.items()),
        )
        done_all = finished and len(made) >= n
        report.add(
            "burst",
            "wall time, first enqueue -> last created",
            wall,
            "s",
            goal="< 90 s" if issue else "",
            ok=done_all and wall < 90,
            note="" if done_all else "not all created: time to the deadline",
        )
        report.add("burst", "invoices per minute", len(made) / wall * 60 if wall else None, "/min")
        letters = dead_letters()
        for reason, count in letters.most_common(3):
            print(f"   dead letter: {count} x {reason}")


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


def trickle(report: Report, args: argparse.Namespace) -> None:
    """Part 2: one event a second; latency from enqueue to the Xero invoice created."""
    seconds = args.trickle_seconds
    limits = args.trickle_limits == "on"
    header(
        f"trickle: 1 event/s for {seconds} s, sandbox latency 0",
        dataset=f"{seconds} invoices over {args.trickle_accounts} accounts and "
        f"{args.trickle_products} products, all new to Xero",
        xero_limits="real (60/minute, 5 in flight)" if limits else "off",
        latency="enqueue (submit) -> invoice created in the Xero sandbox (its UpdatedDateUTC)",
    )
    env = {"ZXS_BATCHING": "true", **args.env}
    with running(
        report, "trickle", ["trickle"], limits=limits, env=env, concurrency=args.concurrency
    ) as s:
        conn = s.connections[0]
        invoices = seed(s, conn, seconds, args.trickle_accounts, args.trickle_products, 4)
        start_workers(s, args.workers, args.concurrency)
        lat = trickle_events(s, conn, invoices, args.trickle_tail)
        calls, limited, _ = xero_usage(s, conn)
    report.add(
        "trickle",
        "events created",
        f"{len(lat.created)}/{seconds}",
        note=f"{calls - limited} Xero calls ({(calls - limited) / seconds:.2f} per event), "
        f"{limited} 429s, limits {args.trickle_limits}",
    )
    report.add("trickle", "latency p50", lat.at(50), "s", goal="< 1 s", ok=lat.below(50, 1))
    report.add("trickle", "latency p99", lat.at(99), "s", goal="< 2 s", ok=lat.below(99, 2))


def trickle_events(
    s: LocalStack, conn: LocalConnection, invoices: list[dict[str, Any]], tail: float
) -> Latencies:
    """Send one invoice a second, then wait up to `tail` seconds for the last ones."""
    from workers.pipeline import submit_records

    sent: dict[str, float] = {}
    start = time.time()
    for i, inv in enumerate(invoices):
        time.sleep(max(0.0, start + i - time.time()))
        sent[inv["Invoice_Number"]] = time.time()
        submit_records(conn.name, [str(inv["id"])], "trickle")
    wait_until(lambda: created_count(s, conn) >= len(invoices), tail, 0.2)
    stopped = time.time()
    made = created_at(s, conn)
    return Latencies(
        [made[ref] - at for ref, at in sent.items() if ref in made],
        [stopped - at for ref, at in sent.items() if ref not in made],
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
        rss="VmRSS of the celery worker processes (main + pool), /proc/<pid>/status",
    )
    env = {"ZXS_BATCHING": "true", **args.env}
    with running(report, "raw", ["raw"], limits=False, env=env, concurrency=args.concurrency) as s:
        conn = s.connections[0]
        started = time.time()
        invoices = seed(s, conn, n, args.accounts, args.products, args.seed)
        print(f"   seeded {n} Zoho invoices in {time.time() - started:.1f} s")
        procs = start_workers(s, args.workers, args.concurrency)
        idle, count = workers_rss(procs)
        sampler = RssSampler(procs)
        sampler.start()
        first = enqueue(conn.name, invoices, "raw")
        enqueued = time.time()
        queued_rss, _ = workers_rss(procs)
        depth, waiting = queued_messages(), admission_waiting(conn.name)
        at_enqueue = created_count(s, conn)
        finished = wait_until(lambda: created_count(s, conn) >= n, args.raw_seconds, 0.25)
        stop = time.time()
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
    report.add("raw", "worker RSS idle", idle, "MiB", note=f"{count} processes, before any job")
    report.add("raw", f"worker RSS with {n} just queued", queued_rss, "MiB")
    report.add(
        "raw",
        "worker RSS peak",
        sampler.peak,
        "MiB",
        note=f"{sampler.peak_processes} processes, sampled every 0.5 s",
    )


def fairness(report: Report, args: argparse.Namespace) -> None:
    """Part 4: tenant B's latency while tenant A bursts, against B alone."""

    b_events = args.fair_seconds
    header(
        f"fairness: tenant B sends 1 event/s for {b_events} s, alone, then while tenant A bursts "
        f"{args.fair_burst}",
        xero_limits="real (60/minute per tenant, 5 in flight), one stack, both tenants on the "
        "same workers and queues",
        tenant_b=f"{b_events} invoices over {args.fair_accounts} accounts and "
        f"{args.fair_products} products (a small steady tenant), the same in both phases",
        tenant_a=f"{args.fair_burst} invoices over {args.accounts} accounts and {args.products} "
        "products, all new",
        latency="B's enqueue -> B's invoice created in the Xero sandbox",
        window=f"A is enqueued at once, then B's first event; B's events are given "
        f"{args.fair_tail:.0f} s after the last",
    )
    env = {"ZXS_BATCHING": "true", **args.env}
    results: dict[str, tuple[Latencies, str]] = {}
    for phase in ("alone", "with A bursting"):
        with running(
            report,
            "fairness",
            ["fairA", "fairB"],
            limits=True,
            env=env,
            concurrency=args.concurrency,
        ) as s:
            a, b = s.connections
            a_invoices = (
                []
                if phase == "alone"
                else seed(s, a, args.fair_burst, args.accounts, args.products, args.seed)
            )
            b_invoices = seed(s, b, b_events, args.fair_accounts, args.fair_products, 5)
            start_workers(s, args.workers, args.concurrency)
            enqueue(a.name, a_invoices, "fairA")
            lat = trickle_events(s, b, b_invoices, args.fair_tail)
            b_calls = s.xero.stats()["calls"].get(b.xero_tenant_id, 0)
            note = f"{len(lat.created)}/{b_events} created, B: {b_calls} Xero calls answered"
            if phase != "alone":
                note += f"; A: {created_count(s, a)}/{args.fair_burst} created by then"
            results[phase] = (lat, note)
    for phase, (lat, note) in results.items():
        tag = "B alone" if phase == "alone" else "B, A bursting"
        report.add("fairness", f"{tag}: latency p50", lat.at(50), "s", note=note)
        report.add("fairness", f"{tag}: latency p99", lat.at(99), "s")
    alone, busy = results["alone"][0].at(50), results["with A bursting"][0].at(50)
    if isinstance(alone, float) and isinstance(busy, float) and alone > 0:
        report.add("fairness", "B's p50, A bursting / alone", busy / alone, "x")


PARTS: dict[str, Callable[[Report, argparse.Namespace], None]] = {
    "burst": burst,
    "naive": naive,
    "trickle": trickle,
    "raw": raw,
    "fairness": fairness,
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
        "issue #8 throughput benchmark",
        **info,
        extra_settings=", ".join(f"{k}={v}" for k, v in args.env.items()) or "none",
    )
    began = time.monotonic()
    parts = list(PARTS) if args.part == "all" else [args.part]
    for name in parts:
        t0 = time.monotonic()
        try:
            PARTS[name](report, args)
        except Exception as exc:  # one broken part must not hide the others' figures
            report.add(name, "FAILED", type(exc).__name__, note=str(exc).splitlines()[0][:120])
        print(f"   ({name} took {time.monotonic() - t0:.0f} s)", flush=True)
    print(f"\n== summary ({time.monotonic() - began:.0f} s in all)\n")
    print(report.summary())
    if args.json:
        args.json.write_text(
            json.dumps({"info": info, "figures": [f.__dict__ for f in report.figures]}, indent=2)
        )
    # goals missed are figures, not errors; a part that broke is
    sys.exit(1 if any(f.name == "FAILED" for f in report.figures) else 0)


if __name__ == "__main__":
    main()
