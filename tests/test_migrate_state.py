"""Issue #20.5: `zxsync migrate-state` brings what Redis held before the system of record into
the database, idempotently, and the next edit of a migrated record updates its invoice."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from sandbox.seed import build_dataset, load_dataset
from schemas.wire import dumps
from workers import keys
from workers.pipeline import submit_records
from workers.redis import get_redis
from workers.store import get_database
from workers.store.schema import history, links
from zxsync.cli import app


@pytest.mark.integration
def test_links_history_and_dead_letters_move_from_redis_and_an_edit_creates_no_duplicate(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    stack = make_stack()
    conn = stack.connections[0]
    data = load_dataset(
        stack.zoho, conn.zoho_org_id, build_dataset(invoices=1, accounts=1, products=2, seed=20)
    )
    record_id = str(data.invoices[0]["id"])
    key = f"{conn.name}:Invoices:{record_id}"
    stack.start_worker(concurrency=2)
    submit_records(conn.name, [record_id], "before")
    assert wait_for_outcomes(conn.name, [key], timeout=60)[key][0] == "created"

    # the layout of the Redis-backed stores: links in hashes, history in lists, a DLQ stream
    database, redis_client = get_database(), get_redis()
    with database.begin() as db:
        rows = db.execute(
            links.select().where(links.c.connection == conn.name, links.c.value.is_not(None))
        ).fetchall()
        entries = db.execute(history.select().where(history.c.record_key == key)).fetchall()
        db.execute(links.delete().where(links.c.connection == conn.name))
        db.execute(history.delete().where(history.c.record_key == key))
    assert {r.kind for r in rows} >= {"invoice", "contact", "item"}
    for row in rows:
        redis_client.hset(keys.LEGACY_LINKS(conn.name, row.kind), row.zoho_id, row.value)
    for entry in entries:
        redis_client.rpush(
            keys.LEGACY_HISTORY(key),
            dumps({"at": entry.at, "stage": entry.stage, "event": entry.event}),
        )
    old_letter = {
        "stage": "zxsync.fetch_record",
        "connection": conn.name,
        "module": "Invoices",
        "record_id": "old-1",
        "error_kind": "invalid_record",
        "error": "was bad",
        "hint": "",
        "field": "Invoice_Date",
        "attempts": "1",
        "payload": "{}",
        "traceback": "",
        "failed_at": "2026-01-01T00:00:00+00:00",
    }
    redis_client.xadd(keys.LEGACY_DLQ(), old_letter)  # type: ignore[arg-type]  # redis-py: invariant dict

    first = CliRunner().invoke(app, ["migrate-state"])
    assert first.exit_code == 0, first.output
    assert f"links: {len(rows)} read, {len(rows)} new" in first.output, first.output
    assert "dead letters: 1 read, 1 new" in first.output, first.output
    again = CliRunner().invoke(app, ["migrate-state"])
    assert again.exit_code == 0, again.output
    for line in again.output.strip().splitlines():
        assert line.endswith(" 0 new"), again.output  # nothing twice
    with database.begin() as db:
        moved = db.execute(
            links.select().where(links.c.connection == conn.name, links.c.value.is_not(None))
        ).fetchall()
    assert len(moved) == len(rows), first.output
    assert len(database.history(key)) == len(entries)
    letters = [d for d in stack_letters() if d.record_id == "old-1" and d.connection == conn.name]
    assert len(letters) == 1 and letters[0].field == "Invoice_Date"

    stack.zoho.update(conn.zoho_org_id, "Invoices", record_id, {"Invoice_Number": "EDITED-20"})
    submit_records(conn.name, [record_id], "edit", event="update")
    deadline = time.monotonic() + 60
    outcome = ""
    while time.monotonic() < deadline and outcome != "updated":
        outcome = wait_for_outcomes(conn.name, [key], timeout=60)[key][0]
        time.sleep(0.2)
    assert outcome == "updated"
    assert len(stack.xero.invoices(conn.xero_tenant_id)) == 1


def stack_letters() -> list[Any]:
    from workers.deadletter import DeadLetterStore

    return DeadLetterStore(get_redis()).list(10_000)
