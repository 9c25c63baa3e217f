"""Shared fixtures: real Redis (127.0.0.1:6379, else embedded) and whole local stacks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

TEST_DB = 13


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis (a test database, flushed once) or an embedded redis-server."""
    url = f"redis://127.0.0.1:6379/{TEST_DB}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.flushdb()
        yield url
        return
    except redis.RedisError:
        pass
    from sandbox.server import free_port
    from workers.redis import start_embedded, stop_embedded

    yield start_embedded(Path(tmp_path_factory.mktemp("redis")), free_port())
    stop_embedded()


@pytest.fixture
def make_stack(redis_url: str) -> Iterator[Callable[..., object]]:
    """Build a started LocalStack with a fresh connection name (no state shared with others)."""
    from zxsync.stack import LocalConnection, LocalStack

    stacks: list[LocalStack] = []

    def factory(options: dict[str, object] | None = None, **kwargs: object) -> LocalStack:
        suffix = uuid.uuid4().hex[:8]
        conn = LocalConnection(f"it-{suffix}", f"tenant-{suffix}", f"org-{suffix}", options or {})
        stack = LocalStack([conn], redis_url=redis_url, **kwargs)  # type: ignore[arg-type]
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
