"""Bodies we send to Xero conform to Xero's official OpenAPI spec of the Accounting API
(xero_accounting.yaml from XeroAPI/Xero-OpenAPI, looked for in a `shared/xero/` folder beside the
checkout; skipped when there is none).

Checks both the schema (types, enums, lengths) and that every field we send is one the spec
defines, since the spec does not forbid unknown properties itself.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from typing import Any

import pytest
from conftest import shared_file, xero_spec

from schemas.connection import Connection
from schemas.mapping import contact_from_account, item_from_product, map_invoice
from schemas.zoho import ZohoAccount, ZohoContact, ZohoProduct, ZohoSalesDocument

SPEC = shared_file("xero", "xero_accounting.yaml")
pytestmark = pytest.mark.skipif(not SPEC.exists(), reason=f"Xero spec not found at {SPEC}")


@pytest.fixture(scope="module")
def components() -> dict[str, Any]:
    return {"components": xero_spec()["components"]}


def validate(components: dict[str, Any], schema_name: str, body: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    schema = {**components, "$ref": f"#/components/schemas/{schema_name}"}
    errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    unknown = list(
        unknown_fields(components, components["components"]["schemas"][schema_name], body)
    )
    assert not unknown, f"fields not in the spec: {unknown}"
    read_only = list(
        read_only_fields(components, components["components"]["schemas"][schema_name], body)
    )
    assert not read_only, f"fields the spec marks readOnly (Xero refuses them): {read_only}"


def read_only_fields(components: dict[str, Any], schema: dict[str, Any], body: Any, path: str = ""):
    """Fields we send that the spec marks `readOnly` (e.g. Contact Website)."""
    schema = resolve(components, schema)
    if isinstance(body, dict):
        properties = schema.get("properties", {})
        for key, value in body.items():
            if key in properties:
                if properties[key].get("readOnly"):
                    yield f"{path}.{key}"
                yield from read_only_fields(components, properties[key], value, f"{path}.{key}")
    elif isinstance(body, list):
        for index, value in enumerate(body):
            yield from read_only_fields(
                components, schema.get("items", {}), value, f"{path}[{index}]"
            )


def resolve(components: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


def unknown_fields(components: dict[str, Any], schema: dict[str, Any], body: Any, path: str = ""):
    schema = resolve(components, schema)
    if isinstance(body, dict):
        properties = schema.get("properties", {})
        for key, value in body.items():
            if key not in properties:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(components, properties[key], value, f"{path}.{key}")
    elif isinstance(body, list):
        for index, value in enumerate(body):
            yield from unknown_fields(
                components, schema.get("items", {}), value, f"{path}[{index}]"
            )


CONN = Connection(
    name="t",
    xero_tenant_id="x",
    zoho_org_id="z",
    tax_types={"GST": "OUTPUT"},
    untaxed_tax_type="BASEXCLUDED",
    rounding="rounding_line",
)
PRODUCT = ZohoProduct.model_validate(
    {
        "id": "1",
        "Product_Name": "Widget",
        "Product_Code": "W-1",
        "Unit_Price": "9.95",
        "Description": "A widget",
    }
)


def test_invoice_body_conforms(components: dict[str, Any]) -> None:
    doc = ZohoSalesDocument.model_validate(
        {
            "id": "1",
            "Invoice_Number": "ZINV-1",
            "Account_Name": {"id": "5", "name": "Acme"},
            "Invoice_Date": date(2026, 11, 25),
            "Due_Date": date(2026, 12, 9),
            "Currency": "USD",
            "Exchange_Rate": "0.65",
            "Invoiced_Items": [
                {
                    "Product_Name": {"id": "1"},
                    "Quantity": "3",
                    "List_Price": "0.35",
                    "Discount": "0.05",
                    "Line_Tax": [{"name": "GST", "percentage": "10", "value": "0.10"}],
                }
            ],
            "Sub_Total": "1.00",
            "Discount": "0.10",
            "Adjustment": "0.20",
            "Grand_Total": "1.19",
        }
    )
    mapped = map_invoice(
        "Invoices",
        doc,
        "00000000-0000-4000-8000-000000000001",
        {"1": PRODUCT},
        CONN,
        {"OUTPUT": D(10), "BASEXCLUDED": D(0)},
    )
    validate(components, "Invoices", {"Invoices": [mapped.invoice.body()]})


def test_contact_body_conforms(components: dict[str, Any]) -> None:
    account = ZohoAccount.model_validate(
        {
            "id": "5843000000000001",
            "Account_Name": "Acme",
            "Phone": "+61 2 5550 1234",
            "Website": "https://acme.test",
            "Billing_Street": "1 George St",
            "Billing_City": "Sydney",
            "Billing_State": "NSW",
            "Billing_Code": "2000",
            "Billing_Country": "Australia",
        }
    )
    person = ZohoContact.model_validate(
        {"id": "9", "First_Name": "Ann", "Last_Name": "Lee", "Email": "ann@acme.test"}
    )
    validate(components, "Contacts", {"Contacts": [contact_from_account(account, person).body()]})


def test_item_body_conforms(components: dict[str, Any]) -> None:
    validate(components, "Items", {"Items": [item_from_product(PRODUCT, CONN).body()]})


def test_the_check_catches_a_wrong_field(components: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match="UnitPrice"):
        validate(components, "Items", {"Items": [{"Code": "A", "UnitPrice": D(1)}]})
    with pytest.raises(AssertionError):
        validate(components, "Invoices", {"Invoices": [{"Type": "SALES"}]})


def test_purchase_order_bodies_conform(components: dict[str, Any]) -> None:
    from schemas.purchase_mapping import contact_from_vendor, map_purchase_order
    from schemas.zoho import ZohoPurchaseOrder, ZohoVendor

    order = ZohoPurchaseOrder.model_validate(
        {
            "id": "7",
            "PO_Number": "ZPO-7",
            "Vendor_Name": {"id": "9", "name": "Parts Pty"},
            "PO_Date": date(2026, 11, 25),
            "Due_Date": date(2026, 12, 2),
            "Currency": "USD",
            "Exchange_Rate": "0.65",
            "Shipping_Street": "12 Dock Road",
            "Purchase_Items": [
                {
                    "Product_Name": {"id": "1"},
                    "Quantity": "3",
                    "List_Price": "10.00",
                    "Discount": "3.00",
                    "Line_Tax": [{"name": "GST", "percentage": "10", "value": "2.70"}],
                }
            ],
            "Sub_Total": "27.00",
            "Adjustment": "0.50",
            "Grand_Total": "30.20",
        }
    )
    conn = CONN.model_copy(update={"purchase_tax_types": {"GST": "INPUT"}})
    mapped = map_purchase_order(
        order,
        "00000000-0000-4000-8000-000000000009",
        {"1": PRODUCT},
        conn,
        {"INPUT": D(10), "BASEXCLUDED": D(0)},
    )
    validate(components, "PurchaseOrders", {"PurchaseOrders": [mapped.purchase_order.body()]})
    validate(components, "PurchaseOrders", {"PurchaseOrders": [{"Status": "DELETED"}]})
    vendor = ZohoVendor.model_validate(
        {"id": "9", "Vendor_Name": "Parts Pty", "Phone": "+61 3 5550 0000", "City": "Hobart"}
    )
    validate(components, "Contacts", {"Contacts": [contact_from_vendor(vendor).body()]})
    purchased = item_from_product(PRODUCT, conn, D("4.20"))
    validate(components, "Items", {"Items": [purchased.body()]})


def test_writes_send_only_the_query_parameters_the_spec_defines() -> None:
    """`unitdp` is not defined on Contacts or PurchaseOrders, nor `summarizeErrors` on a
    single-record POST (before: both were sent on every write)."""
    from clients.xero import write_params

    assert write_params("Contacts") == {"summarizeErrors": "false"}
    assert write_params("PurchaseOrders") == {"summarizeErrors": "false"}
    assert write_params("PurchaseOrders/abc") == {}
    assert write_params("Invoices") == {"summarizeErrors": "false", "unitdp": "4"}
    assert write_params("Invoices/abc") == {"unitdp": "4"}
    assert write_params("Items") == {"summarizeErrors": "false", "unitdp": "4"}


def test_if_modified_since_is_sent_in_utc() -> None:
    from datetime import datetime, timedelta, timezone

    from clients.xero import if_modified_since

    sydney = datetime(2026, 12, 1, 21, 30, 5, tzinfo=timezone(timedelta(hours=11)))
    assert if_modified_since(sydney) == "2026-12-01T10:30:05"
