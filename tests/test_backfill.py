"""`zxsync backfill` (issue 17.2): a dry run reads both sides and writes the plan only; the run
adopts what Xero has, creates the rest once through the pipeline (never e-mailed), a re-run
creates nothing, and it stops for the day at the reserve. ETA from the budget (pure)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from zxsync.backfill import STOPPED_FOR_THE_DAY, eta_seconds


def test_the_eta_fits_what_is_left_today_then_waits_for_the_days_it_needs() -> None:
    # 30 calls, 500 left today, 200 kept: half a minute at 60 a minute
    assert eta_seconds(30, 500, 200, 1000, 60, 3600.0) == 30.0
    # 1,000 calls: 300 today, then 700 of the next day's 800: the reset, then 700 calls
    assert eta_seconds(1000, 500, 200, 1000, 60, 3600.0) == 3600.0 + 700.0
    # 2,000: 300 today, 800 tomorrow, 800 the day after, 100 the third day
    assert eta_seconds(2000, 500, 200, 1000, 60, 10.0) == 10.0 + 2 * 86400 + 100.0


def plan_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.integration
def test_backfill_dry_run_then_run_adopts_creates_once_and_resumes(
    make_stack: Callable[..., Any], tmp_path: Path, wait_for_outcomes: Callable[..., Any]
) -> None:
    from typer.testing import CliRunner

    from sandbox.seed import build_dataset, load_dataset, seed_xero_history
    from zxsync.cli import app

    stack = make_stack({"sender": "xero"})
    conn = stack.connections[0]
    org, tenant = conn.zoho_org_id, conn.xero_tenant_id
    ds = load_dataset(stack.zoho, org, build_dataset(invoices=30, accounts=8, products=10))
    existing = set(seed_xero_history(stack.xero, tenant, ds, 0.3))
    assert 3 <= len(existing) <= 20
    # a Zoho invoice whose number Xero holds with another total: ambiguous, left alone
    odd = next(i for i in ds.invoices if i["id"] not in existing)
    contact = stack.xero.add_contact(tenant, {"Name": "Someone Else", "ContactNumber": "x-1"})
    with stack.xero.lock:
        stack.xero.save_invoice(
            tenant,
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": contact["ContactID"]},
                "Reference": odd["Invoice_Number"],
                "LineAmountTypes": "NoTax",
                "LineItems": [
                    {
                        "Description": "x",
                        "Quantity": Decimal(1),
                        "UnitAmount": Decimal("1.00"),
                        "AccountCode": "200",
                    }
                ],
            },
            create_only=True,
            unitdp=2,
        )
    before = {i["InvoiceID"] for i in stack.xero.invoices(tenant)}
    runner = CliRunner()
    args = ["backfill", "--connection", conn.name, "--module", "Invoices"]
    plan_csv = tmp_path / "plan.csv"

    dry = runner.invoke(app, [*args, "--dry-run", "--csv", str(plan_csv)])
    assert dry.exit_code == 0, dry.output
    rows = plan_rows(plan_csv)
    actions = Counter(r["action"] for r in rows)
    creates = 30 - len(existing) - 1
    assert actions == {"adopt": len(existing), "create": creates, "ambiguous": 1}, rows
    assert {r["record_id"] for r in rows if r["action"] == "adopt"} == existing
    assert [r["record_id"] for r in rows if r["action"] == "ambiguous"] == [odd["id"]]
    assert "Xero calls" in dry.output and f"ambiguous Invoices {odd['id']}" in dry.output
    assert {i["InvoiceID"] for i in stack.xero.invoices(tenant)} == before, "wrote nothing"
    assert not any(stack.zoho.get(org, "Invoices", i).get("Xero_Invoice_ID") for i in existing)

    stack.start_worker(concurrency=2)
    done = runner.invoke(app, [*args, "--csv", str(plan_csv), "--no-wait"])
    assert done.exit_code == 0, done.output
    after = stack.xero.invoices(tenant)
    assert len(after) == len(before) + creates, "each create once, nothing adopted is created"
    refs = Counter(i.get("Reference") for i in after)
    assert refs[odd["Invoice_Number"]] == 1, "the ambiguous one is not created"
    assert all(n == 1 for n in refs.values()), "no duplicates"
    by_id = {i["InvoiceID"]: i for i in after}
    # backfill counts a create done once it is linked; the Zoho write-back is the next stage
    created = [r["record_id"] for r in rows if r["action"] == "create"]
    wait_for_outcomes(conn.name, [f"{conn.name}:Invoices:{r}" for r in created], timeout=60)
    for invoice in ds.invoices:
        stored = stack.zoho.get(org, "Invoices", invoice["id"])
        if invoice["id"] == odd["id"]:
            assert not stored.get("Xero_Invoice_ID")
            continue
        xero = by_id[stored["Xero_Invoice_ID"]]
        assert xero["Reference"] == invoice["Invoice_Number"]
        assert (xero["InvoiceID"] in before) == (invoice["id"] in existing)
    emails = sum(n for route, n in stack.xero.stats()["by_route"].items() if "Email" in route)
    assert emails == 0, "history is not e-mailed"

    again = runner.invoke(app, [*args, "--csv", str(plan_csv), "--no-wait"])
    assert again.exit_code == 0, again.output
    assert Counter(r["action"] for r in plan_rows(plan_csv)) == {"skip": 29, "ambiguous": 1}
    assert len(stack.xero.invoices(tenant)) == len(after)


@pytest.mark.integration
def test_backfill_stops_for_the_day_at_the_reserve(make_stack: Callable[..., Any]) -> None:
    from sandbox.seed import build_dataset, load_dataset
    from workers.context import StageContext
    from workers.redis import get_redis
    from workers.settings import get_settings
    from zxsync.backfill import build_plan, cursor_key, run

    stack = make_stack()
    conn = stack.connections[0]
    load_dataset(
        stack.zoho, conn.zoho_org_id, build_dataset(invoices=5, accounts=2, purchase_orders=3)
    )
    settings = get_settings().model_copy(update={"zxs_backfill_reserve": 5000})
    ctx = StageContext(settings.connection(conn.name), settings, get_redis(), 0, False)
    orders = build_plan(ctx, "Purchase_Orders")  # the other modules plan the same way
    assert [v.action for v in orders.verdicts] == ["create"] * 3
    assert build_plan(ctx, "Quotes").verdicts == []
    plan = build_plan(ctx, "Invoices")
    notes: list[str] = []
    code = run(
        ctx,
        "Invoices",
        plan,
        wait=False,
        slice_size=10,
        poll_seconds=0.01,
        on_progress=lambda done, total, eta, note: notes.append(note),
    )
    assert code == STOPPED_FOR_THE_DAY
    assert "stopped for the day" in notes[-1] and "5000 kept for live traffic" in notes[-1]
    assert get_redis().hget(cursor_key(conn.name, "Invoices"), "cursor") is None, "sent nothing"


@pytest.mark.integration
def test_a_backfill_cut_off_midway_carries_on_and_creates_nothing_twice(
    make_stack: Callable[..., Any],
) -> None:
    from sandbox.seed import build_dataset, load_dataset
    from workers.context import build_context
    from workers.redis import get_redis
    from zxsync.backfill import build_plan, cursor_key, run

    stack = make_stack()
    conn = stack.connections[0]
    ds = load_dataset(stack.zoho, conn.zoho_org_id, build_dataset(invoices=12, accounts=3))
    stack.start_worker(concurrency=2)
    ctx = build_context(conn.name)
    calls = 0

    def crash(done: int, total: int, eta: float | None, note: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # after the first slice went to the door
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(
            ctx,
            "Invoices",
            build_plan(ctx, "Invoices"),
            wait=False,
            slice_size=5,
            poll_seconds=0.01,
            on_progress=crash,
        )
    first = sorted((i["id"] for i in ds.invoices), key=int)[:5]
    assert get_redis().hget(cursor_key(conn.name, "Invoices"), "cursor") == first[-1]
    code = run(
        ctx,
        "Invoices",
        build_plan(ctx, "Invoices"),
        wait=False,
        slice_size=5,
        poll_seconds=0.05,
        on_progress=lambda *a: None,
    )
    assert code == 0
    refs = Counter(i.get("Reference") for i in stack.xero.invoices(conn.xero_tenant_id))
    assert len(refs) == 12 and set(refs.values()) == {1}


def test_since_and_until_bound_the_document_date() -> None:
    from datetime import date

    from zxsync.backfill import in_range

    assert in_range("2026-03-01", date(2026, 3, 1), date(2026, 3, 31))
    assert not in_range("2026-04-01", None, date(2026, 3, 31))
    assert in_range("2026-03-05T10:00:00+11:00", date(2026, 3, 5), None)
    assert not in_range(None, date(2026, 1, 1), None) and in_range(None, None, None)


def test_creates_go_to_the_door_in_whole_batches() -> None:
    from zxsync.backfill import fill

    assert fill(200, 0, 50) == 200
    assert fill(200, 120, 50) == 50  # 80 free: one whole batch
    assert fill(200, 170, 50) == 0  # 30 free: wait for a whole batch's room
    assert fill(20, 5, 50) == 0 and fill(20, 0, 50) == 20  # a slice smaller than a batch
