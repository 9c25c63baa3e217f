"""Shared fixtures: real Redis (127.0.0.1:6379, else embedded) and whole local stacks."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

CLAIM_KEY = "zxs:test:owner"


def shared_file(*parts: str) -> Path:
    """A file of the project's `shared/` folder, found beside the checkout or an ancestor of it
    (a worktree sits one level deeper than the main checkout)."""
    for folder in Path(__file__).resolve().parents:
        candidate = folder.joinpath("shared", *parts)
        if candidate.exists():
            return candidate
    return Path(__file__).resolve().parents[2].joinpath("shared", *parts)


def _claim_database(host_url: str) -> int | None:
    """A Redis database no other test session on this machine is using (each session flushes
    its own; workers of two sessions sharing queues would steal each other's jobs)."""
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{host_url}/{db}", socket_connect_timeout=1)
        if client.set(CLAIM_KEY, os.getpid(), nx=True, ex=3600):
            client.flushdb()
            client.set(CLAIM_KEY, os.getpid(), ex=3600)
            return db
    return None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of the machine's Redis claimed for this session, or an embedded server."""
    host = "redis://127.0.0.1:6379"
    try:
        db = _claim_database(host)
    except redis.RedisError:
        db = None
    if db is not None:
        yield f"{host}/{db}"
        client = redis.Redis.from_url(f"{host}/{db}")
        client.flushdb()
        return
    from sandbox.server import free_port
    from workers.redis import start_embedded, stop_embedded

    yield start_embedded(Path(tmp_path_factory.mktemp("redis")), free_port())
    stop_embedded()


@pytest.fixture
def make_stack(redis_url: str) -> Iterator[Callable[..., object]]:
    """Build a started LocalStack with fresh connection names (no state shared with others);
    `tenants=2` gives two connections, each its own Xero tenant and Zoho org."""
    from zxsync.stack import LocalConnection, LocalStack

    stacks: list[LocalStack] = []

    def factory(
        options: dict[str, object] | None = None, tenants: int = 1, **kwargs: object
    ) -> LocalStack:
        conns = []
        for _ in range(tenants):
            suffix = uuid.uuid4().hex[:8]
            conns.append(
                LocalConnection(
                    f"it-{suffix}", str(uuid.uuid4()), f"org-{suffix}", options or {}
                )
            )
        stack = LocalStack(conns, redis_url=redis_url, **kwargs)  # type: ignore[arg-type]
        stacks.append(stack)
        return stack.start()

    yield factory
    for stack in stacks:
        stack.stop()


Outcomes = dict[str, tuple[str, str]]


@pytest.fixture
def wait_for_outcomes() -> Callable[..., Outcomes]:
    """Poll record outcomes until every key has one (or fail naming what is missing)."""
    from workers.history import RecordHistory
    from workers.redis import get_redis

    def wait(connection: str, keys: list[str], timeout: float = 60.0) -> Outcomes:
        history = RecordHistory(get_redis())
        deadline = time.monotonic() + timeout
        while True:
            outcomes = {k: v for k, v in history.outcomes(connection).items() if k in keys}
            if len(outcomes) == len(keys):
                return outcomes
            if time.monotonic() > deadline:
                missing = sorted(set(keys) - set(outcomes))
                raise AssertionError(f"no outcome after {timeout}s for {missing}")
            time.sleep(0.1)

    return wait
