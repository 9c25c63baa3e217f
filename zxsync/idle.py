"""Xero calls of an idle tenant over a simulated day, and how late a lost webhook is caught
(`bench/idle.py` prints the figures; tests/test_idle_budget.py holds them to the budget).

Runs the safety-net polls (payment reconcile, PO status) exactly as beat does, tick by tick, on a
simulated clock over the real sandboxes and Redis (no Celery: the polls run inline). Tenant A
stays idle all day; tenant B has one linked invoice whose payment webhook is lost (no relay runs)
at `--lose-at` seconds. Figures: Xero calls per tenant (the sandbox's own count), and the
simulated seconds between the lost payment and Zoho showing it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from sandbox.config import SandboxConfig, XeroLimits
from zxsync.stack import LocalConnection, LocalStack

# A simulated day runs in seconds of real time: minute limits (ours and the sandbox's) are lifted
# so they do not stand in for the day being counted.
SIM_SANDBOX = SandboxConfig(xero_limits=XeroLimits(per_minute=1_000_000))
SIM_ENV = {"ZXS_XERO_PER_MINUTE": "1000000"}


@dataclass(frozen=True)
class IdleDay:
    calls: dict[str, int]  # connection -> Xero calls over the day
    caught_after: float | None  # simulated seconds from the lost payment to Zoho; None: never
    polls: dict[str, int]  # poll kind -> polls run on the idle tenant


def seed_linked_invoice(stack: LocalStack, conn: LocalConnection) -> tuple[str, str]:
    """A Zoho invoice linked to an AUTHORISED Xero invoice, as the pipeline leaves it; (Xero
    InvoiceID, Zoho record id). Seeded directly: no Xero call is spent."""
    from schemas.links import INVOICE_XERO, InvoiceRecord
    from workers.context import build_context

    account = stack.zoho.insert(conn.zoho_org_id, "Accounts", {"Account_Name": "Idle Pty"})
    product = stack.zoho.insert(
        conn.zoho_org_id,
        "Products",
        {
            "Product_Name": "Work",
            "Product_Code": "WORK-1",
            "Unit_Price": Decimal("100"),
        },
    )
    record = stack.zoho.insert(
        conn.zoho_org_id,
        "Invoices",
        {
            "Subject": "idle",
            "Account_Name": {"id": account["id"], "name": "Idle Pty"},
            "Invoiced_Items": [
                {
                    "Product_Name": {"id": product["id"], "name": "Work"},
                    "Quantity": Decimal("1"),
                    "List_Price": Decimal("100.00"),
                }
            ],
        },
    )
    contact = stack.xero.add_contact(conn.xero_tenant_id, {"Name": "Idle Pty"})
    with stack.xero.lock:
        invoice, errors = stack.xero.save_invoice(
            conn.xero_tenant_id,
            {
                "Type": "ACCREC",
                "Status": "AUTHORISED",
                "Contact": {"ContactID": contact["ContactID"]},
                "Date": "2026-12-01",
                "DueDate": "2026-12-31",
                "LineAmountTypes": "NoTax",
                "LineItems": [
                    {"Description": "Work", "Quantity": 1, "UnitAmount": 100, "AccountCode": "200"}
                ],
            },
            create_only=True,
            unitdp=2,
        )
    assert invoice is not None, errors
    ctx = build_context(conn.name)
    ctx.idempotency.set_links(
        INVOICE_XERO,
        conn.name,
        {
            invoice["InvoiceID"]: InvoiceRecord(
                module="Invoices", record_id=str(record["id"]), account_id=str(account["id"])
            )
        },
    )
    return str(invoice["InvoiceID"]), str(record["id"])


def simulate(
    stack: LocalStack,
    hours: float = 24,
    tick: float = 60,
    lose_at: float = 36000,
) -> IdleDay:
    """One simulated day of beat ticks; see the module docstring."""
    from tasks.payment_feedback import reconcile_and_schedule, reconcile_schedule
    from tasks.po_status_poll import po_schedule, poll_and_schedule
    from workers.context import build_context
    from workers.redis import get_redis

    idle, busy = stack.connections[0], stack.connections[1]
    xero_id, record_id = seed_linked_invoice(stack, busy)
    names = [c.name for c in stack.connections]
    redis_client = get_redis()
    before = dict(stack.xero.stats()["calls"])
    polls = {"payments": 0, "po_status": 0}
    start = time.time()
    paid_at: float | None = None
    caught: float | None = None
    for n in range(int(hours * 3600 / tick)):
        now = start + n * tick
        if paid_at is None and now - start >= lose_at:
            stack.xero.add_payment(busy.xero_tenant_id, xero_id, Decimal("100"))
            paid_at = now  # no relay runs: the INVOICE webhook is lost
        for name in reconcile_schedule(redis_client).claim_due(names, now):
            reconcile_and_schedule(build_context(name), now)
            polls["payments"] += name == idle.name
        for name in po_schedule(redis_client).claim_due(names, now):
            poll_and_schedule(build_context(name), now)
            polls["po_status"] += name == idle.name
        if paid_at is not None and caught is None:
            record = stack.zoho.get(busy.zoho_org_id, "Invoices", record_id) or {}
            if record.get("Xero_Payment_Status") == "Paid":
                caught = now - paid_at
    after = stack.xero.stats()["calls"]
    calls = {
        c.name: after.get(c.xero_tenant_id, 0) - before.get(c.xero_tenant_id, 0)
        for c in stack.connections
    }
    return IdleDay(calls, caught, polls)
