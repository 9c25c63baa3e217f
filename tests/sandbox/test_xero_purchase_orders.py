"""The Xero sandbox's purchase orders: contact must exist, numbering, statuses, totals, filters."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from conftest import xero_spec
from test_xero_sandbox import AU, Sandbox, data, make  # noqa: F401

pytestmark = pytest.mark.integration  # the sandbox served over HTTP, a server per test

D = Decimal


@pytest.fixture
def sb(make: Callable[..., Sandbox]) -> Sandbox:  # noqa: F811
    sandbox = make()
    sandbox.xs.add_contact(AU, {"Name": "Parts Pty", "ContactNumber": "V-1"})
    sandbox.xs.add_item(
        AU,
        {
            "Code": "P-1",
            "Name": "Pump",
            "PurchaseDetails": {"UnitPrice": "40", "AccountCode": "300"},
        },
    )
    return sandbox


def order(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Contact": {"ContactNumber": "V-1"},
        "Date": "2026-11-25",
        "DeliveryDate": "2026-12-02",
        "DeliveryAddress": "12 Dock Road, Port Melbourne VIC 3207",
        "Reference": "ZPO-1",
        "Status": "AUTHORISED",
        "LineItems": [
            {
                "Description": "Valve",
                "Quantity": "3",
                "UnitAmount": "3.33",
                "AccountCode": "300",
                "TaxType": "INPUT",
            },
            {"ItemCode": "P-1", "Quantity": "2", "TaxType": "INPUT", "DiscountRate": "10"},
        ],
    }
    base.update(fields)
    return base


def put(sb: Sandbox, body: dict[str, Any], **params: str) -> Any:
    return data(sb.call("PUT", "/PurchaseOrders", {"PurchaseOrders": [body]}, **params))


def test_create_numbers_totals_and_item_purchase_defaults(sb: Sandbox) -> None:
    first = put(sb, order())["PurchaseOrders"][0]
    second = put(sb, order(Reference="ZPO-2"))["PurchaseOrders"][0]
    assert (first["PurchaseOrderNumber"], second["PurchaseOrderNumber"]) == ("PO-0001", "PO-0002")
    assert first["Status"] == "AUTHORISED" and first["Reference"] == "ZPO-1"
    assert first["DeliveryAddress"].startswith("12 Dock Road")
    assert first["DeliveryDateString"] == "2026-12-02T00:00:00"
    pump = first["LineItems"][1]
    assert (pump["UnitAmount"], pump["AccountCode"], pump["LineAmount"]) == (
        D("40.00"),
        "300",
        D("72.00"),
    )
    assert (first["SubTotal"], first["TotalTax"], first["Total"]) == (
        D("81.99"),
        D("8.20"),
        D("90.19"),
    )
    assert first["TotalDiscount"] == D("8.00")
    taken = put(sb, order(PurchaseOrderNumber="PO-0001"))
    assert taken["ErrorNumber"] == 10
    assert "must be unique" in taken["Elements"][0]["ValidationErrors"][0]["Message"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Contact": {"Name": "Nobody Ltd"}}, "do not create contacts"),
        ({"Contact": {"ContactID": "00000000-0000-4000-8000-000000000000"}}, "was not found"),
        ({"Status": "BILLED"}, "not of valid status"),
        (
            {
                "LineItems": [
                    {
                        "Description": "x",
                        "Quantity": 1,
                        "UnitAmount": 5,
                        "AccountCode": "300",
                        "TaxType": "OUTPUT",
                    }
                ]
            },
            "TaxType code OUTPUT",
        ),
        (
            {
                "LineItems": [
                    {
                        "Description": "x",
                        "Quantity": 1,
                        "UnitAmount": 5,
                        "AccountCode": "300",
                        "DiscountAmount": 1,
                    }
                ]
            },
            "use DiscountRate",
        ),
    ],
)
def test_validation(sb: Sandbox, fields: dict[str, Any], message: str) -> None:
    answer = put(sb, order(**fields), summarizeErrors="false")["PurchaseOrders"][0]
    assert answer["StatusAttributeString"] == "ERROR"
    assert message in answer["ValidationErrors"][0]["Message"]
    assert sb.xs.purchase_orders(AU) == []


def test_status_rules_edits_billing_and_delete(sb: Sandbox) -> None:
    po = put(sb, order())["PurchaseOrders"][0]
    ref = po["PurchaseOrderID"]
    edit = {
        "LineItems": [
            {
                "Description": "Hose",
                "Quantity": 1,
                "UnitAmount": "10",
                "AccountCode": "300",
                "TaxType": "INPUT",
            }
        ]
    }
    edited = data(sb.call("POST", f"/PurchaseOrders/{ref}", edit))["PurchaseOrders"][0]
    assert edited["Total"] == D("11.00") and edited["PurchaseOrderNumber"] == "PO-0001"
    back_to_draft = data(sb.call("POST", f"/PurchaseOrders/{ref}", {"Status": "DRAFT"}))
    assert back_to_draft["ErrorNumber"] == 10
    sb.xs.bill_purchase_order(AU, ref)
    by_number = data(sb.call("GET", "/PurchaseOrders/PO-0001"))["PurchaseOrders"][0]
    assert by_number["Status"] == "BILLED"
    refused = data(sb.call("POST", f"/PurchaseOrders/{ref}", edit))
    assert "billed" in refused["Elements"][0]["ValidationErrors"][0]["Message"]
    draft = put(sb, order(Status="DRAFT", Reference="ZPO-2"))["PurchaseOrders"][0]
    deleted = data(
        sb.call("POST", f"/PurchaseOrders/{draft['PurchaseOrderID']}", {"Status": "DELETED"})
    )["PurchaseOrders"][0]
    assert deleted["Status"] == "DELETED"
    assert sb.call("GET", "/PurchaseOrders/PO-0999").status_code == 404


def test_idempotency_key_replays_the_first_answer(sb: Sandbox) -> None:
    headers = {"Idempotency-Key": "po-key-1"}
    body = {"PurchaseOrders": [order()]}
    first = data(sb.call("PUT", "/PurchaseOrders", body, headers=headers))
    again = data(sb.call("PUT", "/PurchaseOrders", body, headers=headers))
    assert (
        first["PurchaseOrders"][0]["PurchaseOrderID"]
        == again["PurchaseOrders"][0]["PurchaseOrderID"]
    )
    assert len(sb.xs.purchase_orders(AU)) == 1


def test_filters_paging_and_modified_since(sb: Sandbox) -> None:
    for day in ("2026-11-01", "2026-11-15", "2026-11-30"):
        put(sb, order(Date=day, Reference=day))
    put(sb, order(Status="DRAFT", Reference="draft", Date="2026-10-01"))
    in_range = data(sb.call("GET", "/PurchaseOrders", DateFrom="2026-11-10", DateTo="2026-11-30"))
    assert [po["Reference"] for po in in_range["PurchaseOrders"]] == ["2026-11-15", "2026-11-30"]
    drafts = data(sb.call("GET", "/PurchaseOrders", Status="DRAFT"))["PurchaseOrders"]
    assert [po["Reference"] for po in drafts] == ["draft"]
    paged = data(sb.call("GET", "/PurchaseOrders", page="2", pageSize="3"))
    assert paged["pagination"] == {"page": 2, "pageSize": 3, "pageCount": 2, "itemCount": 4}
    assert len(paged["PurchaseOrders"]) == 1 and paged["PurchaseOrders"][0]["LineItems"]
    later = data(
        sb.call("GET", "/PurchaseOrders", headers={"If-Modified-Since": "2100-01-01T00:00:00"})
    )
    assert later["PurchaseOrders"] == []


def test_answers_validate_against_the_official_spec(sb: Sandbox) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    components = xero_spec()
    schema = {"$ref": "#/components/schemas/PurchaseOrders", "components": components["components"]}
    put(sb, order())
    jsonschema.validate(data(sb.call("GET", "/PurchaseOrders", page="1")), schema)
