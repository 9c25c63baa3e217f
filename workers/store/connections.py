"""Connections as data: `zxsync connections add|edit|remove|list` keep them in the database,
validated as `schemas.connection.Connection`, the secret fields (refresh tokens, webhook keys)
Fernet-encrypted with ZXS_TOKEN_KEY. `ZXS_CONNECTIONS` / `ZXS_CONNECTIONS_FILE` stay a bootstrap:
their connections are imported (and kept up to date: the environment wins for the names it
defines) and the database adds the rest. Every process re-reads them every
`REFRESH_SECONDS`, so a worker picks up an added or edited connection without a restart."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import structlog
from cryptography.fernet import InvalidToken
from pydantic import SecretStr, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from clients.tokens import TokenCipher
from schemas.connection import Connection
from schemas.errors import ConfigurationError
from workers.store import Database
from workers.store.schema import connections as table

REFRESH_SECONDS = 5.0
SECRET_FIELDS = tuple(
    name for name, field in Connection.model_fields.items() if "SecretStr" in str(field.annotation)
)
log = structlog.get_logger(__name__)


def validate(data: dict[str, Any], label: str) -> Connection:
    """A Connection, or a ConfigurationError naming the field, never echoing a value."""
    try:
        return Connection.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "(the connection)"
        raise ConfigurationError(
            f"connection '{label}', field {where}: {error['msg']}",
            field=where,
            hint="README 'Connections' lists every option.",
        ) from None


class ConnectionStore:
    def __init__(self, database: Database, cipher: TokenCipher) -> None:
        self.database, self.cipher = database, cipher

    def all(self) -> dict[str, Connection]:
        with self.database.begin() as conn:
            rows = conn.execute(select(table.c.settings, table.c.secrets)).fetchall()
        return {c.name: c for c in (self._connection(s, x) for s, x in rows)}

    def get(self, name: str) -> Connection | None:
        return self.all().get(name)

    def add(self, data: dict[str, Any]) -> Connection:
        connection = validate(data, str(data.get("name", "?")))
        if self.get(connection.name) is not None:
            raise ConfigurationError(
                f"connection '{connection.name}' exists",
                field="name",
                hint="Use `zxsync connections edit`.",
            )
        self.put(connection)
        return connection

    def edit(self, name: str, changes: dict[str, Any]) -> Connection:
        current = self.get(name)
        if current is None:
            raise ConfigurationError(f"no connection '{name}'", field="name")
        if "name" in changes and changes["name"] != name:
            raise ConfigurationError("a connection's name cannot change", field="name")
        connection = validate({**_plain(current), **changes}, name)
        self.put(connection)
        return connection

    def remove(self, name: str) -> bool:
        with self.database.begin() as conn:
            return bool(conn.execute(delete(table).where(table.c.name == name)).rowcount)

    def put(self, connection: Connection) -> None:
        plain = _plain(connection)
        secrets = {k: plain.pop(k) for k in SECRET_FIELDS if plain.get(k) is not None}
        for k in SECRET_FIELDS:
            plain.pop(k, None)
        row = {
            "name": connection.name,
            "settings": json.dumps(plain, sort_keys=True),
            "secrets": self.cipher.encrypt(json.dumps(secrets, sort_keys=True)),
            "updated_at": time.time(),
        }
        with self.database.begin() as conn:
            conn.execute(delete(table).where(table.c.name == connection.name))
            conn.execute(table.insert(), [row])

    def _connection(self, settings: str, secrets: str) -> Connection:
        return Connection.model_validate(
            {**json.loads(settings), **json.loads(self.cipher.decrypt(secrets))}
        )


def _plain(connection: Connection) -> dict[str, Any]:
    """Every field as JSON values, secrets revealed (to be encrypted or re-validated)."""
    data = connection.model_dump(mode="json")
    for name in SECRET_FIELDS:
        value = getattr(connection, name)
        data[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return data


_cache: dict[tuple[str, str], tuple[float, dict[str, Connection]]] = {}
_cache_lock = threading.Lock()


def effective(
    bootstrap: dict[str, Connection], database: Database, cipher: TokenCipher
) -> dict[str, Connection]:
    """The bootstrap's connections (imported when new or changed) plus the database's own,
    re-read at most every REFRESH_SECONDS. A database that cannot be read leaves the bootstrap
    (logged): the environment's connections keep working."""
    key = (database.url, repr(sorted((n, _plain(c)) for n, c in bootstrap.items())))
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    store = ConnectionStore(database, cipher)
    try:
        stored = store.all()
        for name, connection in bootstrap.items():
            if stored.get(name) != connection:
                store.put(connection)
        found = {**stored, **bootstrap}
    except (SQLAlchemyError, OSError, InvalidToken) as exc:
        log.warning("connections.database_unavailable", error=type(exc).__name__)
        found = dict(bootstrap)
    with _cache_lock:
        _cache.clear()
        _cache[key] = (now + REFRESH_SECONDS, found)
    return found
