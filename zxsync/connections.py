"""`zxsync connections`: every connection's health (no subcommand, as before), and managing the
connections kept in the database (add, edit, remove, list; workers/store/connections.py)."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from console import audit
from console.commands import connections as health_table
from schemas.errors import ConfigurationError

app = typer.Typer(help="Connections: health (no subcommand), add, edit, remove, list.")
out = Console()


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context) -> None:
    """Every connection's health (as the console shows it); exit 1 when any is unhealthy."""
    if ctx.invoked_subcommand is None:
        health_table()


def _store() -> Any:
    from workers.context import token_cipher
    from workers.store import get_database
    from workers.store.connections import ConnectionStore

    return ConnectionStore(get_database(), token_cipher())


def _bootstrap() -> set[str]:
    from workers.settings import get_settings

    return set(get_settings().bootstrap_connections())


def _read(source: str) -> dict[str, Any]:
    """JSON text, `@file` or `-` (stdin): a file or stdin keeps secrets out of shell history."""
    if source == "-":
        text, where = sys.stdin.read(), "stdin"
    elif source.startswith("@"):
        text, where = Path(source[1:]).read_text(), source[1:]
    else:
        text, where = source, "the argument"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{where}: a connection is one JSON object")
    return data


def _pairs(assignments: list[str]) -> dict[str, Any]:
    from workers.store.connections import from_text

    changes: dict[str, Any] = {}
    for item in assignments:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise ConfigurationError(f"--set {field or item!r}: expected FIELD=VALUE", field=field)
        changes[field] = from_text(field, value)
    return changes


def _managed_here(name: str) -> None:
    from workers.store.connections import refuse_bootstrap

    refuse_bootstrap(name, _bootstrap())


@app.command()
def add(
    source: Annotated[str, typer.Argument(help="The connection as JSON, @FILE or - (stdin).")],
) -> None:
    """Add a connection (validated; its tokens and webhook keys stored encrypted)."""
    connection = _store().add(_read(source))
    audit.record(getpass.getuser(), "connections.add", connection.name)
    out.print(f"added {connection.name}", markup=False)


@app.command()
def edit(
    name: str,
    assignments: Annotated[
        list[str], typer.Option("--set", help="FIELD=VALUE (a JSON value, else text).")
    ],
) -> None:
    """Change fields of a connection kept in the database; workers see it within seconds."""
    _managed_here(name)
    changes = _pairs(assignments)
    _store().edit(name, changes)
    audit.record(getpass.getuser(), "connections.edit", name, ",".join(sorted(changes)))
    out.print(f"edited {name}: {', '.join(sorted(changes))}", markup=False)


@app.command()
def remove(name: str) -> None:
    """Remove a connection kept in the database."""
    _managed_here(name)
    if not _store().remove(name):
        raise ConfigurationError(f"no connection '{name}' in the database", field="name")
    audit.record(getpass.getuser(), "connections.remove", name)
    out.print(f"removed {name}", markup=False)


@app.command(name="list")
def list_connections() -> None:
    """Every connection, where it is defined, and which secrets it has (never their values)."""
    from workers.settings import get_settings
    from workers.store.connections import SECRET_FIELDS

    bootstrap = _bootstrap()
    table = Table()
    for column in ("name", "source", "xero tenant", "zoho org", "secrets set"):
        table.add_column(column)
    for name, conn in sorted(get_settings().connections().items()):
        secrets = [f for f in SECRET_FIELDS if getattr(conn, f) is not None]
        source = "ZXS_CONNECTIONS" if name in bootstrap else "database"
        table.add_row(name, source, conn.xero_tenant_id, conn.zoho_org_id, ", ".join(secrets))
    out.print(table)
