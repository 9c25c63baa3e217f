"""Across hosts (issue #19.4): Redis and both sandboxes on one host, Celery workers on two
others, and one worker host killed whole in the middle of a burst.

Users outgrow one machine by pointing workers on more machines at the same Redis. This proves
that works and stays exactly-once when a machine dies: three Linux network namespaces stand in
for three hosts (`ip netns`), joined by veth pairs to a bridge in the hub on 10.77.19.0/24 and
to nothing else, so every byte between workers, Redis and the sandboxes crosses a veth, and the
machine's own network is out of reach. The driver runs in the hub (it enqueues, plays beat and
judges, as zxsync/chaos.py does); killing a host SIGKILLs every process in its namespace, what a
power cut does. Used by tests/test_hosts.py (small) and bench/hosts.py (figures printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kombu.transport.redis import Channel

from sandbox.config import SandboxConfig, XeroLimits
from sandbox.seed import build_dataset, load_dataset
from zxsync.chaos import CONNECTION, _beat, _count, _done_or_none, _enqueue
from zxsync.stack import LocalStack

SUBNET = "10.77.19"  # private; reachable only inside the namespaces, so any /24 would do
HUB_ADDRESS = f"{SUBNET}.1"
KERNEL_FLUSH_SECONDS = 0.5  # the kernel sends a killed process's socket buffers and FINs within it
LINK = "eth0"  # each worker host's one interface


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (the test is skipped with it), or None."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2): cannot make network namespaces"
    if os.geteuid() != 0:
        return "network namespaces need root (`ip netns add`)"
    probe = f"zxsprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def netns_pids(namespace: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def kill_host(namespace: str) -> int:
    """SIGKILL every process in the namespace until none is left (a pool process may be forked
    while we kill); returns how many were killed."""
    killed: set[int] = set()
    for _ in range(100):
        pids = netns_pids(namespace)
        if not pids:
            return len(killed)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.05)
    raise RuntimeError(f"processes in {namespace} survive SIGKILL: {netns_pids(namespace)}")


def traffic(namespace: str) -> tuple[int, int]:
    """Bytes received and sent by the host's interface."""
    stats = json.loads(_ip("-n", namespace, "-s", "-j", "link", "show", LINK))[0]["stats64"]
    return int(stats["rx"]["bytes"]), int(stats["tx"]["bytes"])


class Hosts:
    """A hub namespace (Redis, sandboxes, driver) and `workers` worker-host namespaces.

    Names carry this process's id, so two runs on one machine never meet; `destroy()` kills
    what runs in them and deletes them, whatever state `create()` reached."""

    def __init__(self, workers: int = 2, tag: str | None = None) -> None:
        tag = tag or f"zxs{os.getpid()}"
        self.hub = f"{tag}-hub"
        self.workers = [f"{tag}-w{i + 1}" for i in range(workers)]

    @staticmethod
    def address(index: int) -> str:
        """Worker host `index`'s address (0-based)."""
        return f"{SUBNET}.{11 + index}"

    def create(self) -> Hosts:
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for index, host in enumerate(self.workers):
            _ip("netns", "add", host)
            _ip("-n", host, "link", "set", "lo", "up")
            port = f"h{index + 1}"  # the hub's end of the pair, a port of the bridge
            _ip(
                "-n",
                self.hub,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                LINK,
                "netns",
                host,
            )
            _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
            _ip("-n", host, "addr", "add", f"{self.address(index)}/24", "dev", LINK)
            _ip("-n", host, "link", "set", LINK, "up")
        return self

    def destroy(self) -> None:
        for namespace in (*self.workers, self.hub):
            kill_host(namespace)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)

    def run(self, invoices: int = 150, timeout: float = 100.0, seed: int = 1) -> HostsReport:
        """The burst, driven from inside the hub; the driver's report."""
        with tempfile.TemporaryDirectory(prefix="zxs-hosts-") as folder:
            out = Path(folder) / "report.json"
            command = [
                "ip",
                "netns",
                "exec",
                self.hub,
                sys.executable,
                "-m",
                "zxsync.hosts",
                "--json",
                str(out),
                "--invoices",
                str(invoices),
                "--timeout",
                str(timeout),
                "--seed",
                str(seed),
                *self.workers,
            ]
            subprocess.run(command, check=True, timeout=timeout + 120)
            return HostsReport(**json.loads(out.read_text()))


@dataclass(frozen=True)
class HostsReport:
    invoices: int
    created: int
    dead_lettered: int
    lost: int
    duplicated: int
    killed_host: str
    database: str  # where the system of record was
    killed_processes: int
    created_at_kill: int  # invoices Xero held when the host died
    writes_at_kill: int  # the dead host's invoice batches Xero was working on then
    stranded: int  # messages the dead host held, redelivered after the visibility timeout
    traffic_at_kill: dict[str, list[int]]  # host -> [received, sent] bytes since the burst began
    traffic_after_kill: dict[str, list[int]]  # host -> [received, sent] bytes from the kill on
    outcomes_seconds: float  # from the first enqueue until every invoice had an outcome
    seconds: float  # ... until the dead host's messages had run again and the broker was idle

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicated == 0

    def lines(self) -> list[str]:
        def mib(pair: list[int]) -> str:
            return f"{pair[0] / 2**20:.1f} MiB in / {pair[1] / 2**20:.1f} MiB out"

        return [
            f"invoices {self.invoices}: created once {self.created}, dead-lettered "
            f"{self.dead_lettered}, lost {self.lost}, duplicated {self.duplicated}; "
            f"system of record: {self.database}",
            f"host {self.killed_host} killed ({self.killed_processes} processes, SIGKILL) with "
            f"{self.created_at_kill} invoices in Xero, {self.writes_at_kill} of its invoice "
            f"batches in Xero's hands, holding {self.stranded} messages",
            f"every invoice had an outcome after {self.outcomes_seconds:.1f} s, the broker was "
            f"idle after {self.seconds:.1f} s",
            *(
                f"{host}: before the kill {mib(self.traffic_at_kill[host])}, after "
                f"{mib(self.traffic_after_kill[host])}"
                for host in self.traffic_at_kill
            ),
        ]


class HubDatabase:
    """The system of record on the hub, as real hosts need it: a PostgreSQL of its own
    (`initdb`, run as the `postgres` user, trusting the private /24 only) when the machine has
    one installed, else the SQLite file, which the namespaces share only because they share
    this machine's filesystem (`kind` says which the run used)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "postgres"
        self.kind = "sqlite (a file the hosts share)"
        self.url = ""
        self._server: subprocess.Popen[bytes] | None = None

    def start(self) -> HubDatabase:
        import pwd

        initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            return self
        if not (initdb and pg_ctl and shutil.which("runuser")):
            return self
        self.folder.parent.chmod(0o755)  # a temporary folder is root's alone
        self.folder.mkdir(parents=True)
        os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*as_postgres, initdb, "-D", str(self.folder), "-A", "trust", "-U", "zxsync"],
            check=True,
            capture_output=True,
        )
        with (self.folder / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all zxsync {SUBNET}.0/24 trust\n")
        server = Path(pg_ctl).resolve().parent / "postgres"
        self._server = subprocess.Popen(
            [
                *as_postgres,
                str(server),
                "-D",
                str(self.folder),
                "-h",
                HUB_ADDRESS,
                "-k",
                str(self.folder),
                "-c",
                "fsync=off",
            ],  # a test database: no crash under test
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ready = shutil.which("pg_isready") or str(server.parent / "pg_isready")
        deadline = time.monotonic() + 30
        while subprocess.run([ready, "-h", HUB_ADDRESS, "-q"], check=False).returncode:
            if time.monotonic() > deadline or self._server.poll() is not None:
                raise RuntimeError("the hub's PostgreSQL did not start")
            time.sleep(0.2)
        self.kind = "postgresql on the hub"
        self.url = f"postgresql://zxsync@{HUB_ADDRESS}:5432/postgres"
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        pg_ctl = str(shutil.which("pg_ctl"))
        stop = ["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(self.folder), "stop"]
        subprocess.run([*stop, "-m", "fast"], capture_output=True, check=False, timeout=60)
        self._server.wait(timeout=30)


def drive(hosts: list[str], invoices: int, timeout: float, seed: int) -> HostsReport:
    """In the hub: Redis and sandboxes on the hub's address, one worker per host, the burst,
    the first host killed once Xero holds the first invoices while the workers hold several
    messages (or at half of them), the count."""
    env = {  # short waits, as in the chaos run: the dead host's tasks come back within seconds
        "ZXS_VISIBILITY_TIMEOUT": "15",
        "ZXS_RETRY_BACKOFF_MAX": "5",
        "ZXS_LOCK_SECONDS": "10",
        "ZXS_MAX_DELIVERIES": "8",
        "ZXS_STALL_SECONDS": "30",
        "ZXS_XERO_PER_MINUTE": "1000000",
        "ZXS_XERO_PER_DAY": "1000000",
        "ZXS_BATCH_BURST_WAIT": "1",
        # several invoice batches, each taking Xero's 0.3 s: the outcomes come in over seconds,
        # not in the one flush that a whole fused burst can fit in, so the kill lands mid-burst
        "ZXS_BATCH_SIZE": str(min(50, max(5, invoices // 6))),
    }
    unlimited = XeroLimits(per_minute=10**6, per_day=10**7, app_per_minute=10**7)
    config = SandboxConfig(enforce_limits=False, xero_limits=unlimited, xero_call_seconds=0.3)
    with tempfile.TemporaryDirectory(prefix="zxs-hub-") as folder:
        database = HubDatabase(Path(folder)).start()
        try:
            if database.url:
                env["DATABASE_URL"] = database.url
            return _burst(hosts, invoices, timeout, seed, env, config, database.kind)
        finally:
            database.stop()


def _burst(
    hosts: list[str],
    invoices: int,
    timeout: float,
    seed: int,
    env: dict[str, str],
    config: SandboxConfig,
    database: str,
) -> HostsReport:
    from workers.redis import get_redis  # after the stack's settings, as in zxsync/chaos.py

    with LocalStack([CONNECTION], config, concurrency=2, extra_env=env, host=HUB_ADDRESS) as stack:
        dataset = load_dataset(
            stack.zoho,
            CONNECTION.zoho_org_id,
            build_dataset(
                invoices=invoices, accounts=max(3, invoices // 10), products=20, seed=seed
            ),
        )
        ids = [str(inv["id"]) for inv in dataset.invoices]
        for index, host in enumerate(hosts):
            stack.start_worker(name=f"host{index + 1}-", prefix=["ip", "netns", "exec", host])
        _wait_until_consuming([Hosts.address(i) for i in range(len(hosts))], time.monotonic() + 90)
        start = {host: traffic(host) for host in hosts}
        started = time.monotonic()
        _enqueue(ids)
        # killed once Xero holds the first invoices: the host whose invoice batches are in
        # Xero's hands (writes it will never hear the answers to: the fault that forks or loses
        # documents), or the first host at half of them. One host's flusher sends a tenant's
        # invoice batches (the flush lock), so a fixed victim was that host in about half the
        # runs, and a kill timed on the messages the workers held found it holding none: with
        # the stages fused, the burst's work is in flush threads, not task messages.
        deadline, tenant = started + timeout, CONNECTION.xero_tenant_id
        victim, created, writing = hosts[0], 0, 0
        while time.monotonic() < deadline and created < len(ids) // 2:
            created = len(stack.xero.invoices(tenant))
            sending = {
                host: stack.xero.in_flight_from(Hosts.address(index), "PUT /Invoices")
                for index, host in enumerate(hosts)
            }
            victim, writing = max(sending.items(), key=lambda item: item[1])
            if created and writing:
                break
            _beat()
            time.sleep(0.02)
        held = {str(tag) for tag in get_redis().hkeys(Channel.unacked_key)}
        killed, killed_at = kill_host(victim), time.monotonic()
        # counted once the kernel has sent what the dead processes had written (a batch of 50
        # invoices is tens of KB) and closed their sockets: counted before the kill, the
        # victim's last milliseconds of work (46 KB in one run) read as traffic after it
        time.sleep(KERNEL_FLUSH_SECONDS)
        at_kill = {host: traffic(host) for host in hosts}
        outcomes, stranded = _settle(ids, held, killed_at, deadline)
        end = {host: traffic(host) for host in hosts}
        seconds = time.monotonic() - started
        counted = _count(stack, dataset.invoices, 1, 0, seconds)
        return HostsReport(
            invoices=counted.invoices,
            created=counted.created,
            dead_lettered=counted.dead_lettered,
            lost=counted.lost,
            duplicated=counted.duplicated,
            killed_host=victim,
            database=database,
            killed_processes=killed,
            created_at_kill=created,
            writes_at_kill=writing,
            stranded=stranded,
            traffic_at_kill={h: _minus(at_kill[h], start[h]) for h in hosts},
            traffic_after_kill={h: _minus(end[h], at_kill[h]) for h in hosts},
            outcomes_seconds=outcomes - started,
            seconds=seconds,
        )


def _settle(ids: list[str], held: set[str], killed_at: float, deadline: float) -> tuple[float, int]:
    """Until every invoice has an outcome, no message waits, none is held by a worker and no
    job is in flight: every message the dead host held has come back (after the visibility
    timeout) and run again, so a duplicate it could cause is in Xero before the count.
    Returns when the last outcome came, and how many of the messages held at the kill were
    still unacknowledged 10 s later (the dead host's: the survivor's finish within seconds)."""
    from workers.backlog import queue_backlog
    from workers.history import inflight_key
    from workers.redis import get_redis

    client = get_redis()
    outcomes, stranded = 0.0, -1
    left: dict[str, int] = {}
    while time.monotonic() < deadline:
        now = time.monotonic()
        if stranded < 0 and now >= killed_at + 10:
            stranded = len(held & {str(t) for t in client.hkeys(Channel.unacked_key)})
        missing = 0 if outcomes else len(ids) - (_done_or_none(ids) or 0)
        if not missing:
            outcomes = outcomes or now
        backlog = queue_backlog(client, [CONNECTION.name])
        left = {
            "outcomes missing": missing,
            "held by workers": int(client.hlen(Channel.unacked_key)),
            "in flight": int(client.hlen(inflight_key(CONNECTION.name))),
            **{queue: count for queue, count in backlog.items() if count},
        }
        if stranded >= 0 and not any(left.values()):
            return outcomes, stranded
        _beat()
        time.sleep(0.2)
    raise RuntimeError(f"the run never settled: {left}")


def _minus(later: tuple[int, int], earlier: tuple[int, int]) -> list[int]:
    return [later[0] - earlier[0], later[1] - earlier[1]]


def _wait_until_consuming(addresses: list[str], deadline: float) -> None:
    """Until a client from every worker host waits on the queues (BRPOP): a host still
    importing when the burst starts would take no part in it."""
    from workers.redis import get_redis

    waiting: set[str] = set()
    while time.monotonic() < deadline:
        clients = get_redis().client_list()
        waiting = {
            address
            for address in addresses
            for client in clients
            if client["addr"].startswith(f"{address}:") and client["cmd"] == "brpop"
        }
        if waiting == set(addresses):
            return
        time.sleep(0.2)
    raise RuntimeError(f"workers on {sorted(set(addresses) - waiting)} never consumed")


def main() -> None:
    parser = argparse.ArgumentParser(description="drive the across-hosts run (in the hub)")
    parser.add_argument("hosts", nargs="+", help="the worker hosts' namespaces")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--invoices", type=int, default=150)
    parser.add_argument("--timeout", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = drive(args.hosts, args.invoices, args.timeout, args.seed)
    args.json.write_text(json.dumps(asdict(report)))


if __name__ == "__main__":
    main()
