"""`zxsync setup zoho --connection X [--dry-run]`: create the write-back custom fields.

Reads each module's fields once (one Zoho credit per module), creates the missing ones five at a
time (Zoho's per-call maximum (u)), and reports fields that exist with another data type without
touching them. Running it again creates nothing: what exists with the right type is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console

from schemas.zoho_fields import FIELDS_PER_CALL, WRITEBACK_FIELDS, FieldStep, plan_fields

app = typer.Typer(help="One-off setup of a connection's Zoho org.", no_args_is_help=True)
console = Console()


class FieldsApi(Protocol):
    """The two calls setup needs (clients.zoho.ZohoClient has them)."""

    def fields(self, module: str) -> list[dict[str, Any]]: ...

    def create_fields(self, module: str, fields: list[dict[str, Any]]) -> list[list[str]]: ...


def setup_fields(
    zoho: FieldsApi, *, dry_run: bool, say: Callable[[str], None] = print
) -> tuple[list[FieldStep], list[str]]:
    """Plan (and unless `dry_run`, apply) the write-back fields; the steps and any errors."""
    modules = sorted({f.module for f in WRITEBACK_FIELDS})
    existing = {
        module: {str(f["api_name"]): str(f.get("data_type")) for f in zoho.fields(module)}
        for module in modules
    }
    steps = plan_fields(WRITEBACK_FIELDS, existing)
    errors: list[str] = []
    for step in steps:
        say(("would " if dry_run and step.action == "create" else "") + step.describe())
    if dry_run:
        return steps, errors
    for module in modules:
        todo = [s.field for s in steps if s.action == "create" and s.field.module == module]
        for start in range(0, len(todo), FIELDS_PER_CALL):
            chunk = todo[start : start + FIELDS_PER_CALL]
            for wanted, problems in zip(
                chunk, zoho.create_fields(module, [f.body() for f in chunk]), strict=True
            ):
                if problems:
                    errors.append(f"{module}.{wanted.api_name}: {'; '.join(problems)}")
    return steps, errors


@app.command()
def zoho(
    connection: Annotated[str, typer.Option("--connection", "-c", help="Connection name.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; create nothing.")
    ] = False,
) -> None:
    """Create the Xero_* write-back fields in the connection's Zoho org (idempotent)."""
    from workers.context import build_context

    steps, errors = setup_fields(
        build_context(connection).zoho,
        dry_run=dry_run,
        say=lambda line: console.print(line, highlight=False, markup=False),
    )
    creates = sum(s.action == "create" for s in steps)
    wrong = [s for s in steps if s.action == "wrong_type"]
    for error in errors:
        console.print(f"[red]failed[/red] {error}", highlight=False)
    verb = "to create" if dry_run else "created"
    console.print(
        f"{creates - len(errors)} {verb}, {sum(s.action == 'skip' for s in steps)} already "
        f"there, {len(wrong)} with a wrong type, {len(errors)} failed",
        highlight=False,
    )
    if wrong or errors:
        raise typer.Exit(1)
