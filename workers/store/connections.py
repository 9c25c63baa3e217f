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
from collections.abc import Iterable
from dataclasses import dataclass
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import structlog
from cryptography.fernet import InvalidToken
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from clients.tokens import TokenCipher
from schemas.connection import Connection
from schemas.errors import ConfigurationError
from workers.store import Database
from workers.store.schema import connections as table

REFRESH_SECONDS = 5.0
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FieldShape:
    """How a Connection field is written as text (`--set FIELD=VALUE`, a console form input),
    read off the model so the CLI and the console cannot disagree."""

    name: str
    secret: bool  # write-only: never shown, stored encrypted
    json: bool  # a list or a map, written as JSON
    optional: bool  # may be none: written as empty text (or `null`)
    choices: tuple[str, ...]  # a Literal's values
    description: str


def _shape(name: str, field: FieldInfo) -> FieldShape:
    annotation = field.annotation
    union = get_origin(annotation) in (Union, UnionType)
    args = get_args(annotation) if union else (annotation,)
    return FieldShape(
        name=name,
        secret=SecretStr in args,
        json=any(get_origin(a) in (dict, list) for a in args),
        optional=type(None) in args,
        choices=tuple(v for a in args if get_origin(a) is Literal for v in get_args(a)),
        description=field.description or "",
    )


FIELDS = {name: _shape(name, field) for name, field in Connection.model_fields.items()}
SECRET_FIELDS = tuple(name for name, shape in FIELDS.items() if shape.secret)


def from_text(field: str, text: str) -> Any:
    """A field's value from text: JSON for lists and maps (and for a name the model does not
    know, so that validation names it), none for an optional field's empty or `null` text, else
    the text itself: validation reads numbers from it, Decimals exactly, and keeps account
    codes such as 201 text."""
    shape = FIELDS.get(field)
    if shape is None or shape.json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if shape is None:
                return text
            raise ConfigurationError(
                f"field {field}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                field=field,
            ) from None
    if shape.optional and text in ("", "null"):
        return None
    return text


def refuse_bootstrap(name: str, bootstrap: Iterable[str]) -> None:
    """The environment wins for the names it defines: an edit here would be overwritten."""
    if name in bootstrap:
        raise ConfigurationError(
            f"connection '{name}' is defined in ZXS_CONNECTIONS(_FILE), which wins",
            field="name",
            hint="Change it there, or remove it there to manage it here.",
        )


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

    def changed(self) -> dict[str, float]:
        """When each connection's row was last written (epoch seconds): the console's
        "last change"."""
        with self.database.begin(read=True) as conn:
            rows = conn.execute(select(table.c.name, table.c.updated_at))
            return {name: updated_at for name, updated_at in rows}

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
# the bootstrap's text per set of parsed connections, holding them (so no id is reused while
# cached): every stage reads its connection, and dumping every connection at each read cost
# more than the rest of that read with 20 connections (issue #19)
_fingerprints: dict[tuple[tuple[str, int], ...], tuple[list[Connection], str]] = {}


def _fingerprint(bootstrap: dict[str, Connection]) -> str:
    """The bootstrap's content as text (the cache's key: an edit of any field is a new key)."""
    ids = tuple((name, id(connection)) for name, connection in bootstrap.items())
    with _cache_lock:
        known = _fingerprints.get(ids)
    if known is not None:
        return known[1]
    text = repr(sorted((n, _plain(c)) for n, c in bootstrap.items()))
    with _cache_lock:
        if len(_fingerprints) >= 8:
            _fingerprints.clear()
        _fingerprints[ids] = (list(bootstrap.values()), text)
    return text


def effective(
    bootstrap: dict[str, Connection], database: Database, cipher: TokenCipher
) -> dict[str, Connection]:
    """The bootstrap's connections (imported when new or changed) plus the database's own,
    re-read at most every REFRESH_SECONDS. A database that cannot be read leaves the bootstrap
    (logged): the environment's connections keep working."""
    key = (database.url, _fingerprint(bootstrap))
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
