"""The relay under hostile traffic on loopback (issue #14.3): the real `zxsync relay` process,
real Redis and broker. Bounded: about 15 s of attack.

- Redis stalled (accepts, never answers) or down: a webhook is answered 503 within 2 s, and
  /health is 503.
- Attack: 200 connections dripping a request head at 1 byte/s, 50 dripping a body, 8 sending
  300 MB bodies (4 declared, 4 chunked), all at once; meanwhile good webhooks keep arriving.
  The relay's memory stays under a ceiling, every good request is served, the slow connections
  are cut at their deadlines. The figures are printed (README "Security" quotes them).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from conftest import CLAIM_KEY, _claim_database

from relay.cli import HEADER_TIMEOUT_SECONDS
from sandbox.server import free_port

pytestmark = pytest.mark.integration
TOKEN = "load-test-token-0123456789"
ROOT = Path(__file__).resolve().parent.parent
MEMORY_CEILING_MB = 60.0  # growth over the idle relay's resident memory
HUGE = 300 * 1024 * 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Relay:
    """`zxsync relay` in a subprocess on a free loopback port."""

    def __init__(self, redis_url: str, tmp: Path, connection: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conns = [
            {
                "name": connection,
                "xero_tenant_id": f"t-{connection}",
                "zoho_org_id": "o",
                "zoho_webhook_token": TOKEN,
            }
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZXS_", "REDIS"))}
        env.update(
            REDIS_URL=redis_url,
            ZXS_CONNECTIONS=json.dumps(conns),
            ZXS_DATA_DIR=str(tmp / "data"),
            ZXS_LOG_LEVEL="INFO",
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        self.log = (tmp / "relay.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "zxsync.cli", "relay", "--port", str(self.port)],
            cwd=tmp,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                assert self.process.poll() is None, (tmp / "relay.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the relay did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


def webhook(relay: Relay, connection: str, record: int, timeout: float = 10) -> httpx.Response:
    return httpx.post(
        f"{relay.url}/webhooks/zoho/{connection}",
        json={"module": "Invoices", "id": str(record), "operation": "edit"},
        headers={"x-zxs-token": TOKEN},
        timeout=timeout,
    )


@pytest.fixture
def own_db() -> Iterator[str]:
    """A Redis database of its own: the jobs enqueued here must not reach other tests' workers."""
    db = _claim_database("redis://127.0.0.1:6379")
    if db is None:
        pytest.skip("no free database on the machine's Redis")
    url = f"redis://127.0.0.1:6379/{db}"
    yield url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.delete(CLAIM_KEY)


class StalledRedis:
    """Accepts connections and reads, never answers: a Redis stuck in a long command or a
    network that drops replies."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("trouble", ["stalled", "down"])
def test_redis_trouble_is_a_503_within_two_seconds(tmp_path: Path, trouble: str) -> None:
    stalled = StalledRedis()
    port = stalled.port if trouble == "stalled" else free_port()
    relay = Relay(f"redis://127.0.0.1:{port}/0", tmp_path, "acme")
    try:
        for attempt in range(3):
            started = time.monotonic()
            answer = webhook(relay, "acme", 100 + attempt)
            took = time.monotonic() - started
            assert answer.status_code == 503 and took < 2.0, (answer.status_code, took)
        started = time.monotonic()
        health = httpx.get(f"{relay.url}/health", timeout=10)
        assert health.status_code == 503 and time.monotonic() - started < 2.0
    finally:
        relay.stop()
        stalled.close()


async def _slow_head(port: int, results: list[float], started: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /webhooks/zoho/x HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
    try:
        while True:
            await asyncio.sleep(1.0)
            writer.write(b"a")
            await writer.drain()
            if reader.at_eof():
                break
            try:
                if await asyncio.wait_for(reader.read(1), 0.01) == b"":
                    break
            except TimeoutError:
                continue
    except (ConnectionError, OSError):
        pass
    results.append(time.monotonic() - started)
    writer.close()


async def _slow_body(
    port: int, connection: str, results: list[tuple[float, bytes]], started: float
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /webhooks/zoho/{connection} HTTP/1.1\r\nHost: relay\r\n"
        f"X-Zxs-Token: {TOKEN}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n{".encode()
    )
    answer = b""
    try:
        while not answer:
            await asyncio.sleep(1.0)
            writer.write(b" ")
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(200), 0.01)
            except TimeoutError:
                continue
            if not answer:
                break
    except (ConnectionError, OSError):
        pass
    results.append((time.monotonic() - started, answer[:12]))
    writer.close()


async def _huge(port: int, connection: str, chunked: bool, sent: list[int]) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HUGE}"
    writer.write(
        f"POST /webhooks/zoho/{connection} HTTP/1.1\r\nHost: relay\r\n"
        f"X-Zxs-Token: {TOKEN}\r\n{length}\r\n\r\n".encode()
    )
    chunk = b"x" * 65536
    frame = b"10000\r\n" + chunk + b"\r\n" if chunked else chunk
    total = 0
    try:
        while total < HUGE:
            writer.write(frame)
            await writer.drain()
            total += len(chunk)
    except (ConnectionError, OSError):
        pass
    sent.append(total)
    writer.close()


async def _attack(relay: Relay, connection: str, seconds: float) -> dict[str, Any]:
    started = time.monotonic()
    heads: list[float] = []
    bodies: list[tuple[float, bytes]] = []
    huge: list[int] = []
    peak = [rss_mb(relay.process.pid)]
    latencies: list[float] = []
    statuses: list[int] = []

    async def sample() -> None:
        while time.monotonic() - started < seconds:
            peak.append(rss_mb(relay.process.pid))
            await asyncio.sleep(0.1)

    async def good() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            record = 1
            while time.monotonic() - started < seconds:
                record += 1
                t0 = time.monotonic()
                answer = await client.post(
                    f"{relay.url}/webhooks/zoho/{connection}",
                    json={"module": "Invoices", "id": str(record), "operation": "edit"},
                    headers={"x-zxs-token": TOKEN},
                )
                latencies.append(time.monotonic() - t0)
                statuses.append(answer.status_code)
                await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(_slow_head(relay.port, heads, started)) for _ in range(200)]
    tasks += [
        asyncio.create_task(_slow_body(relay.port, connection, bodies, started)) for _ in range(50)
    ]
    tasks += [
        asyncio.create_task(_huge(relay.port, connection, i % 2 == 1, huge)) for i in range(8)
    ]
    await asyncio.gather(sample(), good())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "heads": heads,
        "bodies": bodies,
        "huge": huge,
        "peak": max(peak),
        "latencies": latencies,
        "statuses": statuses,
    }


def test_hostile_traffic_leaves_memory_bounded_and_good_requests_served(
    tmp_path: Path, own_db: str
) -> None:
    connection = f"load-{uuid.uuid4().hex[:6]}"
    relay = Relay(own_db, tmp_path, connection)
    try:
        for record in range(5):  # warm up: first imports, broker connection
            assert webhook(relay, connection, 10_000 + record).status_code == 200
        idle = rss_mb(relay.process.pid)
        seconds = HEADER_TIMEOUT_SECONDS + 5
        figures = asyncio.run(_attack(relay, connection, seconds))
        latencies = sorted(figures["latencies"])
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        growth = float(figures["peak"]) - idle
        heads = figures["heads"]
        bodies = figures["bodies"]
        print(
            f"\nrelay under attack: idle {idle:.0f} MB, peak {figures['peak']:.0f} MB "
            f"(+{growth:.0f} MB); good requests {len(latencies)}, p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; slow heads cut: "
            f"{len(heads)}/200 by {max(heads, default=0):.1f} s; slow bodies answered: "
            f"{len(bodies)}/50; huge bodies: sent at most "
            f"{max(figures['huge'], default=0) / 1e6:.1f} MB before the relay closed"
        )
        assert set(figures["statuses"]) == {200}, "every good request was served"
        assert len(latencies) >= 50 and p99 < 1.0
        assert growth < MEMORY_CEILING_MB
        assert len(heads) == 200 and max(heads) < HEADER_TIMEOUT_SECONDS + 3
        assert len(bodies) == 50
        assert all(answer.startswith(b"HTTP/1.1 408") for _, answer in bodies)
        assert len(figures["huge"]) == 8
        assert max(figures["huge"]) < 50 * 1024 * 1024
        assert relay.process.poll() is None
    finally:
        relay.stop()
