"""Issue #22.7: Redis failures that lose claims. Real redis-server processes on loopback:
a restart (as after an AOF crash) and a Sentinel failover."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tasks.invoice_create  # noqa: F401  (registers the invoices kind)
from sandbox.server import free_port
from workers.batching import Buffer

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs a redis-server binary")


class Server:
    """One redis-server process (appendonly) in its own directory."""

    def __init__(self, directory: Path, port: int, *extra: str) -> None:
        self.directory, self.port, self.extra = directory, port, extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.directory.mkdir(parents=True, exist_ok=True)
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
             *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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
