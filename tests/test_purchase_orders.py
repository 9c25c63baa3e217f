"""Purchase orders end to end on real parts: workers, Redis, and the sandboxes over HTTP.

Assertions read the sandboxes' own state (what Xero and Zoho hold), never our bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from sandbox.seed import build_dataset, load_dataset
from workers import keys

pytestmark = pytest.mark.integration
MODULE = "Purchase_Orders"


def send(connection: str, record_ids: list[str], event: str = "insert", repeats: int = 1) -> None:
    from workers.app import app

    for _ in range(repeats):
        for record_id in record_ids:
            app.send_task(
                "zxsync.ingest",
                args=[
                    {
                        "connection": connection,
                        "module": MODULE,
                        "record_id": record_id,
                        "event": event,
                        "event_id": f"{event}-{record_id}",
                    }
                ],
            )


def outcome_of(connection: str, record_id: str, timeout: float = 60) -> tuple[str, str]:
    """The record's next outcome (the previous one is cleared first by `clear`)."""
    from workers.history import RecordHistory
    from workers.redis import get_redis

    key = f"{connection}:{MODULE}:{record_id}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = RecordHistory(get_redis()).outcomes(connection).get(key)
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no outcome for {key} after {timeout}s")


def clear(connection: str, record_id: str) -> None:
    from workers.redis import get_redis

    get_redis().hdel(keys.OUTCOMES(connection), f"{connection}:{MODULE}:{record_id}")


def poll_statuses(stack: Any, record_id: str, status: str, timeout: float = 30) -> None:
    """Run the beat task once (as beat would) and wait for the status to reach Zoho."""
    from workers.app import app

    conn = stack.connections[0]
    app.send_task("zxsync.po_status_poll", args=[conn.name])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.zoho.get(conn.zoho_org_id, MODULE, record_id)["Xero_PO_Status"] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"Xero_PO_Status of {record_id} never became {status}")


def test_new_vendor_and_items_make_one_matching_purchase_order_and_billing_comes_back(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    stack = make_stack()
    conn = stack.connections[0]
    tenant = conn.xero_tenant_id
    dataset = load_dataset(
        stack.zoho,
        conn.zoho_org_id,
        build_dataset(invoices=0, accounts=1, products=4, purchase_orders=4, vendors=2, seed=5),
    )
    # one supplier is already in Xero under its name: it must be matched, not duplicated
    known = stack.xero.add_contact(tenant, {"Name": dataset.vendors[0]["Vendor_Name"]})
    stack.start_worker(concurrency=2)
    ids = [str(po["id"]) for po in dataset.purchase_orders]
    send(conn.name, ids, repeats=3)
    outcomes = wait_for_outcomes(conn.name, [f"{conn.name}:{MODULE}:{i}" for i in ids], 90)
    assert {o for o, _ in outcomes.values()} == {"created"}, outcomes

    orders = stack.xero.purchase_orders(tenant)
    assert len(orders) == len(ids)
    by_ref = {po["Reference"]: po for po in orders}
    for record_id in ids:
        zoho = stack.zoho.get(conn.zoho_org_id, MODULE, record_id)
        xero = by_ref[zoho["PO_Number"]]
        assert xero["Status"] == "AUTHORISED"
        assert Decimal(str(xero["Total"])) == Decimal(str(zoho["Grand_Total"]))
        assert xero["DeliveryDateString"].startswith(zoho["Due_Date"])
        assert xero["DeliveryAddress"].startswith("12 Dock Road")
        assert [(li["AccountCode"], li["TaxType"]) for li in xero["LineItems"]] == [
            ("300", "INPUT")
        ] * len(zoho["Purchase_Items"])
        assert [Decimal(str(li["Quantity"])) for li in xero["LineItems"]] == [
            Decimal(str(li["Quantity"])) for li in zoho["Purchase_Items"]
        ]
        assert (zoho["Xero_Purchase_Order_ID"], zoho["Xero_Purchase_Order_Number"]) == (
            xero["PurchaseOrderID"],
            xero["PurchaseOrderNumber"],
        )
        assert (zoho["Xero_PO_Status"], zoho["Xero_Sync_Status"]) == ("AUTHORISED", "Synced")
    contacts = stack.xero.contacts(tenant)
    names = [c["Name"] for c in contacts]
    assert len(names) == len(set(names)), "a supplier was duplicated"
    vendors = {str(v["id"]): v for v in stack.zoho.records(conn.zoho_org_id, "Vendors")}
    used = {po["Vendor_Name"]["id"] for po in dataset.purchase_orders}
    assert {vendors[v]["Xero_Contact_ID"] for v in used} <= {c["ContactID"] for c in contacts}
    if str(dataset.vendors[0]["id"]) in used:
        assert vendors[str(dataset.vendors[0]["id"])]["Xero_Contact_ID"] == known["ContactID"]
    items = stack.xero.items(tenant)
    assert len({i["Code"] for i in items}) == len(items), "an item was duplicated"
    assert all(i["PurchaseDetails"]["AccountCode"] == "300" for i in items)

    billed = by_ref[dataset.purchase_orders[0]["PO_Number"]]
    stack.xero.bill_purchase_order(tenant, billed["PurchaseOrderID"])
    poll_statuses(stack, ids[0], "BILLED")
    others = [stack.zoho.get(conn.zoho_org_id, MODULE, i)["Xero_PO_Status"] for i in ids[1:]]
    assert others == ["AUTHORISED"] * (len(ids) - 1)


def test_edits_update_cancellations_delete_and_a_billed_order_refuses_edits(
    make_stack: Callable[..., Any],
) -> None:
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    stack = make_stack()
    conn = stack.connections[0]
    org, tenant = conn.zoho_org_id, conn.xero_tenant_id
    dataset = load_dataset(
        stack.zoho,
        org,
        build_dataset(invoices=0, accounts=1, products=3, purchase_orders=3, vendors=1, seed=8),
    )
    stack.start_worker(concurrency=2)
    edited, cancelled, billed = (str(po["id"]) for po in dataset.purchase_orders)
    send(conn.name, [edited, cancelled, billed])
    for record_id in (edited, cancelled, billed):
        assert outcome_of(conn.name, record_id)[0] == "created"

    product = dataset.products[0]
    new_lines = [
        {
            "Product_Name": {"id": product["id"], "name": product["Product_Name"]},
            "Quantity": Decimal("7"),
            "List_Price": Decimal("12.50"),
            "Line_Tax": [{"name": "GST", "percentage": Decimal("10")}],
        }
    ]
    for record_id in (edited, cancelled, billed):
        clear(conn.name, record_id)
    stack.zoho.update(org, MODULE, edited, {"Purchase_Items": new_lines})
    stack.zoho.update(org, MODULE, cancelled, {"Status": "Cancelled"})
    order = next(
        po
        for po in stack.xero.purchase_orders(tenant)
        if po["Reference"] == dataset.purchase_orders[2]["PO_Number"]
    )
    stack.xero.bill_purchase_order(tenant, order["PurchaseOrderID"])
    poll_statuses(stack, billed, "BILLED")
    stack.zoho.update(org, MODULE, billed, {"Purchase_Items": new_lines})
    send(conn.name, [edited, cancelled, billed], event="update")

    assert outcome_of(conn.name, edited)[0] == "updated"
    assert outcome_of(conn.name, cancelled)[0] == "deleted"
    assert outcome_of(conn.name, billed)[0] == "failed"
    orders = {po["Reference"]: po for po in stack.xero.purchase_orders(tenant)}
    assert len(orders) == 3
    updated = orders[dataset.purchase_orders[0]["PO_Number"]]
    assert updated["Total"] == Decimal("96.25") and updated["Status"] == "AUTHORISED"
    assert orders[dataset.purchase_orders[1]["PO_Number"]]["Status"] == "DELETED"
    assert stack.zoho.get(org, MODULE, cancelled)["Xero_PO_Status"] == "DELETED"
    letters = [
        dl
        for dl in DeadLetterStore(get_redis()).list(10_000)
        if dl.connection == conn.name and dl.record_id == billed
    ]
    assert len(letters) == 1 and letters[0].error_kind == "invalid_record"
    assert "BILLED and cannot be edited" in letters[0].error
