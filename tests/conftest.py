"""Shared fixtures: real Redis (127.0.0.1:6379, else embedded) and whole local stacks."""

from __future__ import annotations

import functools
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

if TYPE_CHECKING:
    from workers.store import Database

CLAIM_KEY = "zxs:test:owner"
# the tests never touch an operator's data (~/.zxsync: its SQLite system of record, perhaps
# migrated by another checkout): the session's default data directory is a fresh one
os.environ["ZXS_DATA_DIR"] = tempfile.mkdtemp(prefix="zxs-tests-")


def shared_file(*parts: str) -> Path:
    """A file of the project's `shared/` folder, found beside the checkout or an ancestor of it
    (a worktree sits one level deeper than the main checkout)."""
    for folder in Path(__file__).resolve().parents:
        candidate = folder.joinpath("shared", *parts)
        if candidate.exists():
            return candidate
    return Path(__file__).resolve().parents[2].joinpath("shared", *parts)


@functools.cache
def xero_spec() -> dict[str, Any]:
    """The official Xero Accounting API spec (../shared/xero), read once per test process and
    kept as JSON in the temp dir, keyed by the file's size and time: even libyaml's loader
    takes most of a second over its 900 KB (two in a busy run), JSON a twentieth of that. In
    JSON the dates of its response examples are strings; no test reads the examples."""
    import json

    import yaml

    path = shared_file("xero", "xero_accounting.yaml")
    if not path.exists():
        pytest.skip(f"Xero spec not found at {path}")
    stat = path.stat()
    cached = Path(tempfile.gettempdir(), f"zxs-xero-spec-{stat.st_size}-{stat.st_mtime_ns}.json")
    try:
        spec: dict[str, Any] = json.loads(cached.read_text())
        return spec
    except (OSError, ValueError):
        pass
    spec = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    partial = cached.with_suffix(f".{os.getpid()}.tmp")  # two test processes may write at once
    partial.write_text(json.dumps(spec, default=str))
    partial.replace(cached)
    return spec


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
    """Build a started LocalStack with fresh connection names and a Redis namespace of its own
    (no state shared with others, queues included); `tenants=2` gives two connections, each its
    own Xero tenant and Zoho org. Its workers' warm shutdown (~3 s) overlaps the next test."""
    from zxsync.stack import LocalConnection, LocalStack

    stacks: list[LocalStack] = []

    def factory(
        options: dict[str, object] | None = None, tenants: int = 1, **kwargs: object
    ) -> LocalStack:
        conns = []
        for _ in range(tenants):
            suffix = uuid.uuid4().hex[:8]
            conns.append(
                LocalConnection(f"it-{suffix}", str(uuid.uuid4()), f"org-{suffix}", options or {})
            )
        extra_env = {
            "ZXS_REDIS_NAMESPACE": f"t{uuid.uuid4().hex[:8]}",
            **(kwargs.pop("extra_env", None) or {}),  # type: ignore[dict-item]
        }
        stack = LocalStack(conns, redis_url=redis_url, extra_env=extra_env, **kwargs)  # type: ignore[arg-type]
        stacks.append(stack)
        return stack.start()

    yield factory
    for stack in stacks:
        stack.stop(wait=False)


@pytest.fixture
def wide_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's rich consoles 200 columns wide: a Console made while COLUMNS is set keeps that
    width (pytest-xdist's workers have COLUMNS=80), so `COLUMNS` at invoke time is not enough."""
    from rich.console import Console

    import console.commands
    import zxsync.connections

    for module in (console.commands, zxsync.connections):
        monkeypatch.setattr(module, "out", Console(width=200))


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


POSTGRES = "postgresql://{user}@127.0.0.1:5432/test"


def postgres_url(schema: str) -> str | None:
    """The machine's PostgreSQL (trust auth, database `test`) with a schema of our own, created
    here: parallel sessions never share tables. None when it does not answer."""
    import getpass

    import sqlalchemy

    for user in ("postgres", getpass.getuser(), "root"):
        base = POSTGRES.format(user=user)
        try:
            engine = sqlalchemy.create_engine(
                base.replace("postgresql://", "postgresql+psycopg://"),
                connect_args={"connect_timeout": 2},
            )
            with engine.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            engine.dispose()
        except sqlalchemy.exc.SQLAlchemyError:
            continue
        return f"{base}?options=-csearch_path%3D{schema}"
    return None


def drop_postgres_schema(url: str, schema: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture(autouse=True)
def fresh_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """A unit test gets a database of its own, as it gets a fakeredis of its own. A test with
    real workers (it uses `redis_url`, or is marked integration) uses what its workers use: its
    stack's embedded SQLite file under the stack's ZXS_DATA_DIR, as `make demo` does (or
    DATABASE_URL when the caller set one). tests/test_store.py runs the store on PostgreSQL."""
    if "redis_url" in request.fixturenames or request.node.get_closest_marker("integration"):
        yield
        return
    from workers.store import use_database

    use_database(memory_database())
    yield
    use_database(None)


_MIGRATED: list[Database] = []


def memory_database() -> Database:
    """A fresh in-memory SQLite database at the newest schema: a copy of one migrated once per
    session (running Alembic for each of ~400 unit tests cost ~20 ms each, 8 s of a run)."""
    from workers.store import Database

    if not _MIGRATED:
        _MIGRATED.append(Database("sqlite://"))
    database = Database("sqlite://", create=False)
    with _MIGRATED[0].engine.connect() as source, database.engine.connect() as copy:
        template, target = source.connection.driver_connection, copy.connection.driver_connection
        assert isinstance(template, sqlite3.Connection) and isinstance(target, sqlite3.Connection)
        template.backup(target)
    return database
