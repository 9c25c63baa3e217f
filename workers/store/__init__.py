"""The system of record: links, record history, outcomes, dead letters, the operator audit log
and connections, in PostgreSQL (`DATABASE_URL`) or, without one, an embedded SQLite file under
`ZXS_DATA_DIR` through the same SQLAlchemy code (README "State and storage").

Redis keeps what may be rebuilt or expire: the broker, limiter windows, locks, event claims,
batch buffers and the "a create may have reached Xero" marks. What a business must never lose
lives here, where a constraint, not a convention, refuses a second link.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    exc,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.pool import StaticPool

from schemas.wire import dumps, loads
from workers.store import schema
from workers.store.schema import links

# the Xero id field of a link's value per kind: a second Zoho record owning it is refused
XERO_ID_FIELDS = {
    "invoice": "InvoiceID",
    "contact": "ContactID",
    "item": "ItemID",
    "purchase_order": "PurchaseOrderID",
}
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 20_2026  # the advisory lock id migrations hold on PostgreSQL
HEAD_REVISION = "0002"  # the newest migration (tests/test_store.py checks it is Alembic's head)
_opened: list[Database] = []  # every engine of this process (disposed in a forked child)

# The statements every stage runs, built once: SQLAlchemy's construction of a statement costs
# more CPU than SQLite's running it (issue #19), and each record reads and writes a few times.
_LINKS = select(links.c.zoho_id, links.c.value).where(
    links.c.connection == bindparam("connection"),
    links.c.kind == bindparam("kind"),
    links.c.zoho_id.in_(bindparam("ids", expanding=True)),
    links.c.value.is_not(None),
)
_OWNERS = select(links.c.xero_id, links.c.zoho_id).where(
    links.c.connection == bindparam("connection"),
    links.c.kind == bindparam("kind"),
    links.c.xero_id.in_(bindparam("ids", expanding=True)),
)
_APPEND_HISTORY = insert(schema.history)
_OVERWRITTEN = ("xero_id", "shares_with", "value", "pending_key", "pending_at", "updated_at")


@lru_cache(maxsize=16)
def default_url(data_dir: Path) -> str:
    """The embedded default: one SQLite file beside the embedded Redis's data. Once per data
    dir: `get_database` asks at every call, and its mkdir was a syscall per stage (issue #19)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'zxsync.db'}"


def make_engine(url: str) -> Engine:
    """PostgreSQL through psycopg 3, or SQLite made safe for several worker processes (WAL, a
    busy timeout, and write transactions that take the lock when they begin)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            # durable across a process crash; an OS crash may lose the last commits (README)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        read = conn.get_execution_options().get("zxs_read")
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent; run at first use). A schema
    already there is left without loading Alembic: every worker process opens the store, and
    alembic with mako kept about 7 MiB in each (issue #19)."""
    if _revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # workers starting together migrate one at a time (SQLite: BEGIN IMMEDIATE)
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _revision(engine: Engine) -> str | None:
    """The schema's Alembic revision; None before the first migration."""
    try:
        with engine.connect().execution_options(zxs_read=True) as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except exc.DBAPIError:  # no alembic_version table yet
        return None


class Database:
    """One engine and the statements every store makes; thread-safe, one per process."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        # an in-memory database is one connection (StaticPool), so transactions of several
        # threads (a flush's batches sent together) must take turns on it; a file or a server
        # gives each thread its own connection
        self._one_connection = (
            threading.RLock() if isinstance(self.engine.pool, StaticPool) else None
        )
        self.dialect = self.engine.dialect.name
        if create:
            migrate(self.engine)
        _opened.append(self)

    @contextmanager
    def begin(self, *, read: bool = False) -> Iterator[Connection]:
        """A transaction; `read` ones on SQLite take no write lock (WAL readers never wait)."""
        with self._one_connection or nullcontext(), self.engine.connect() as conn:
            if read:
                conn.execution_options(zxs_read=True)
            with conn.begin():
                yield conn

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    # links ------------------------------------------------------------------------------------

    def links(self, kind: str, connection: str, zoho_ids: Iterable[str]) -> dict[str, Any]:
        ids = list(dict.fromkeys(zoho_ids))
        if not ids:
            return {}
        params = {"connection": connection, "kind": kind, "ids": ids}
        with self.begin(read=True) as conn:
            return {zid: loads(value) for zid, value in conn.execute(_LINKS, params)}

    def set_links(self, kind: str, connection: str, values: dict[str, dict[str, Any]]) -> None:
        """Upsert links in one statement; a pending claim on them is settled by the answer."""
        self._write_links(kind, connection, values, overwrite=True)

    def import_links(self, kind: str, connection: str, values: dict[str, dict[str, Any]]) -> int:
        """Insert the links not stored yet (zxsync migrate-state: a link written since is newer
        than Redis's copy and is kept); returns how many were inserted."""
        return self._write_links(kind, connection, values, overwrite=False)

    def _write_links(
        self, kind: str, connection: str, values: dict[str, dict[str, Any]], *, overwrite: bool
    ) -> int:
        if not values:
            return 0
        field = XERO_ID_FIELDS.get(kind)
        now = time.time()
        with self.begin() as conn:
            owners: dict[str, str] = {}
            wanted = {str(v[field]) for v in values.values() if field and v.get(field)}
            if wanted:
                params = {"connection": connection, "kind": kind, "ids": sorted(wanted)}
                owners = {x: z for x, z in conn.execute(_OWNERS, params)}
            rows = []
            for zoho_id, value in values.items():
                xero_id = str(value[field]) if field and value.get(field) else None
                owner = owners.get(xero_id) if xero_id else None
                shares = owner if owner is not None and owner != zoho_id else None
                if xero_id and shares is None:
                    owners[xero_id] = zoho_id
                rows.append(
                    {
                        "connection": connection,
                        "kind": kind,
                        "zoho_id": zoho_id,
                        "xero_id": None if shares else xero_id,
                        "shares_with": shares,
                        "value": dumps(value),
                        "pending_key": None,
                        "pending_at": None,
                        "updated_at": now,
                    }
                )
            if not overwrite:
                before = self._count_links(conn, kind, connection)
                conn.execute(self._insert(links).on_conflict_do_nothing(), rows)
                return self._count_links(conn, kind, connection) - before
            conn.execute(self._upsert_links, rows)
            return len(rows)

    @cached_property
    def _upsert_links(self) -> Any:
        """Insert or overwrite a link row: built once (building it costs more than running it,
        and every created invoice writes its link)."""
        stmt = self._insert(links)
        return stmt.on_conflict_do_update(
            index_elements=["connection", "kind", "zoho_id"],
            set_={name: stmt.excluded[name] for name in _OVERWRITTEN},
        )

    @staticmethod
    def _count_links(conn: Connection, kind: str, connection: str) -> int:
        query = select(func.count()).where(
            links.c.connection == connection, links.c.kind == kind, links.c.value.is_not(None)
        )
        return int(conn.execute(query).scalar_one())

    def forget_links(self, kind: str, connection: str, zoho_ids: list[str]) -> None:
        if zoho_ids:
            with self.begin() as conn:
                conn.execute(
                    links.delete().where(
                        links.c.connection == connection,
                        links.c.kind == kind,
                        links.c.zoho_id.in_(zoho_ids),
                    )
                )

    def claim_creates(
        self,
        kind: str,
        connection: str,
        ids: list[str],
        key: str,
        *,
        take_over: set[str],
        older_than: float,
    ) -> set[str]:
        """Let creates out: a pending row per id under `key`, in one transaction. Returns the
        ids refused: already linked, or claimed by another request that may still be committing
        in Xero (a claim older than `older_than` may be taken over by an id in `take_over`, an
        element looked up and not found in Xero)."""
        if not ids:
            return set()
        now = time.time()
        with self.begin() as conn:
            stmt = self._insert(links).on_conflict_do_nothing(
                index_elements=["connection", "kind", "zoho_id"]
            )
            conn.execute(
                stmt,
                [
                    {
                        "connection": connection,
                        "kind": kind,
                        "zoho_id": zid,
                        "pending_key": key,
                        "pending_at": now,
                        "updated_at": now,
                    }
                    for zid in ids
                ],
            )
            query = select(
                links.c.zoho_id, links.c.value, links.c.pending_key, links.c.pending_at
            ).where(
                links.c.connection == connection, links.c.kind == kind, links.c.zoho_id.in_(ids)
            )
            if self.dialect == "postgresql":
                query = query.with_for_update()
            refused, taken = set(), []
            for zid, value, pending_key, pending_at in conn.execute(query):
                if value is not None:
                    refused.add(zid)
                elif pending_key == key:
                    continue
                elif zid in take_over and (pending_at or 0) <= older_than:
                    taken.append(zid)
                else:
                    refused.add(zid)
            if taken:
                conn.execute(
                    update(links)
                    .where(
                        links.c.connection == connection,
                        links.c.kind == kind,
                        links.c.zoho_id.in_(taken),
                        links.c.value.is_(None),
                    )
                    .values(pending_key=key, pending_at=now, updated_at=now)
                )
            return refused

    def release_claims(self, kind: str, connection: str, ids: list[str]) -> None:
        """Xero refused these creates (nothing saved): their pending rows go."""
        if ids:
            with self.begin() as conn:
                conn.execute(
                    links.delete().where(
                        links.c.connection == connection,
                        links.c.kind == kind,
                        links.c.zoho_id.in_(ids),
                        links.c.value.is_(None),
                    )
                )

    # history and outcomes ---------------------------------------------------------------------

    def append_history(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            with self.begin() as conn:
                conn.execute(_APPEND_HISTORY, rows)

    def history(self, record_key: str) -> list[dict[str, Any]]:
        h = schema.history
        query = (
            select(h.c.at, h.c.stage, h.c.event, h.c.detail)
            .where(h.c.record_key == record_key)
            .order_by(h.c.id)
        )
        with self.begin(read=True) as conn:
            return [
                {"at": at, "stage": stage, "event": ev, **loads(detail)}
                for at, stage, ev, detail in conn.execute(query)
            ]

    def history_keys(self, record_id: str) -> list[str]:
        """Every record key with history whose record id is `record_id` (any connection)."""
        h = schema.history
        query = select(h.c.record_key).where(h.c.record_key.like(f"%:{record_id}")).distinct()
        with self.begin(read=True) as conn:
            return sorted(k for (k,) in conn.execute(query) if k.rsplit(":", 1)[1] == record_id)

    def links_where(
        self, kind: str, connection: str, field: str, value: str
    ) -> dict[str, dict[str, Any]]:
        """Links of a connection whose value has `field` == `value` (e.g. an InvoiceNumber)."""
        query = select(links.c.zoho_id, links.c.value).where(
            links.c.connection == connection, links.c.kind == kind, links.c.value.is_not(None)
        )
        with self.begin(read=True) as conn:
            found = {zid: loads(raw) for zid, raw in conn.execute(query)}
        return {zid: v for zid, v in found.items() if v.get(field) == value}

    def set_outcome(self, connection: str, key: str, outcome: str, detail: str, at: str) -> None:
        self.record_history([], [(connection, key, outcome, detail, at)])

    def record_history(
        self, rows: list[dict[str, Any]], outcomes: list[tuple[str, str, str, str, str]]
    ) -> None:
        """History rows and outcomes (connection, key, outcome, detail, at) in one transaction:
        a stage's writes together (workers/history.py `gathered`)."""
        if not rows and not outcomes:
            return
        with self.begin() as conn:
            if rows:
                conn.execute(_APPEND_HISTORY, rows)
            for connection, key, outcome, detail, at in outcomes:
                row = {"connection": connection, "record_key": key, "outcome": outcome}
                conn.execute(self._upsert_outcome, {**row, "detail": detail, "at": at})

    @cached_property
    def _upsert_outcome(self) -> Any:
        stmt = self._insert(schema.outcomes)
        return stmt.on_conflict_do_update(
            index_elements=["connection", "record_key"],
            set_={name: stmt.excluded[name] for name in ("outcome", "detail", "at")},
        )


_override: Database | None = None
_lock = threading.Lock()


@lru_cache(maxsize=4)
def _database(url: str) -> Database:
    return Database(url)


def get_database() -> Database:
    """The process's database: DATABASE_URL, else the SQLite file under ZXS_DATA_DIR."""
    if _override is not None:
        return _override
    from workers.settings import get_settings

    settings = get_settings()
    url = settings.database_url.get_secret_value() or default_url(settings.zxs_data_dir)
    with _lock:
        return _database(url)


def _after_fork() -> None:
    """A forked worker must not share its parent's pooled connections."""
    for database in _opened:
        database.engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork)


def use_database(database: Database | None) -> None:
    """Make `database` the process's own (tests give each unit test a fresh one)."""
    global _override
    _override = database
