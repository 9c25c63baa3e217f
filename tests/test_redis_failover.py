"""Issue #22.7: Redis failures that lose claims. Real redis-server processes on loopback:
a restart (as after an AOF crash) and a Sentinel failover."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tasks.invoice_create  # noqa: F401  (registers the invoices kind)
from sandbox.server import free_port
from workers.batching import Buffer
from workers.redis import connect

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


def _promoted(sentinel_port: int, replica: Server) -> None:
    """Wait until the Sentinel names the replica as the master and it takes writes."""
    sentinel = redis.Redis(port=sentinel_port, decode_responses=True)
    promoted = redis.Redis(port=replica.port)
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "the Sentinel never promoted the replica"
        address = sentinel.sentinel_get_master_addr_by_name("mymaster")
        on_replica = isinstance(address, tuple) and int(address[1]) == replica.port
        if on_replica and promoted.info("replication")["role"] == "master":
            return
        time.sleep(0.1)


@pytest.mark.integration  # a master, a replica and a Sentinel
def test_a_command_cut_off_by_the_masters_death_finishes_on_the_promoted_replica(
    servers: list[Server], tmp_path: Path
) -> None:
    """redis-py reconnects a connection that dropped inside a command's retries at the address
    it last had (redis/redis-py#3874): after a failover that is the dead master, every retry is
    refused, and after the ~30 s of retries the stage that sent the command was dead-lettered
    as a bug (the failover test's "duplicate": an open dead letter beside an invoice created
    once). The client asks the Sentinels where the master is on every reconnect."""
    master, replica = _master_and_replica(servers, tmp_path)
    sentinel_port = free_port()
    servers.append(Server(tmp_path / "sentinel", sentinel_port, sentinel_of=master.port).start())
    client = connect(f"sentinel://127.0.0.1:{sentinel_port}/0", "mymaster")
    client.ping()
    answer: dict[str, Any] = {}

    def wait_for_work() -> None:
        try:
            answer["value"] = client.blpop(["zxs:test:work"], timeout=25)
        except redis.RedisError as exc:
            answer["error"] = f"{type(exc).__name__}: {exc}"

    waiting = threading.Thread(target=wait_for_work)
    waiting.start()
    time.sleep(0.5)  # the BLPOP is on the master now
    master.kill()
    _promoted(sentinel_port, replica)
    redis.Redis(port=replica.port).rpush("zxs:test:work", "after the failover")
    waiting.join(60)
    assert answer == {"value": ("zxs:test:work", "after the failover")}


def test_a_broker_connection_dropped_while_redis_is_down_is_closed_without_killing_the_worker(
    servers: list[Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery 5.7's consumer, on losing the broker, runs `collect()` then `close()`; with Redis
    still down the first close of its channel fails halfway and `collect()` drops the channel's
    transport, then the second close restores the unacknowledged messages through parameters
    read from the dropped transport: an AttributeError, which Celery takes as unrecoverable (the
    worker exited at a failover and, alone, left 4, 10 and 20 invoices of the failover test
    never created). The app's broker connection closes with a connection error instead, which
    kombu ignores, and the message stays in Redis for the visibility timeout to bring back."""
    from celery import Celery
    from kombu import Exchange, Queue
    from kombu.common import ignore_errors

    import workers.app
    from workers.settings import Settings

    server = Server(tmp_path / "broker", free_port()).start()
    servers.append(server)
    url = f"redis://127.0.0.1:{server.port}/0"
    monkeypatch.setattr(workers.app, "get_settings", lambda: Settings(redis_url=url))
    app = Celery("dropped-broker")
    workers.app._resolve_broker(app)
    connection = app.connection_for_read()
    assert connection.as_uri().startswith("redis://")  # the scheme the banner and Flower read
    queue = Queue("work", Exchange("work", type="direct"), routing_key="work")
    with connection.Producer() as producer:
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key="work", declare=[queue])
    delivered: list[Any] = []
    connection.Consumer([queue], callbacks=[lambda _body, m: delivered.append(m)]).consume()
    connection.drain_events(timeout=5)
    assert len(delivered) == 1  # delivered, not acknowledged
    server.kill()
    connection._do_close_transport()  # what collect() leaves when the channel's close failed
    ignore_errors(connection, connection.close)  # Celery's second close: must not raise
    server.start()
    unacked = redis.Redis(port=server.port).hlen("unacked")
    assert unacked == 1  # kept for the visibility timeout to restore


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
    assert report.exact and report.created == 60, report.lines()
    promoted = redis.Redis(port=replica_port).info("replication")["role"]
    assert promoted == "master"


@pytest.mark.integration  # a Redis, a Sentinel and two `zxsync health` processes
def test_the_health_check_reaches_redis_through_a_sentinel_url(
    servers: list[Server], tmp_path: Path
) -> None:
    """`zxsync health --redis` (beat's and Flower's probes, compose and deploy/k8s) asks the
    Sentinels for the master of a `sentinel://` REDIS_URL like every other process does."""
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
