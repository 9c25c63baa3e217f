"""Purchase orders keep the money promise: Xero's Total equals Zoho's Grand_Total, or an error."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from schemas.connection import Connection
from schemas.errors import InvalidRecord, TotalMismatch
from schemas.mapping import item_from_product
from schemas.purchase_mapping import contact_from_vendor, map_purchase_order
from schemas.zoho import ZohoProduct, ZohoPurchaseOrder, ZohoVendor

RATES = {"INPUT": D("10"), "OUTPUT": D("10"), "BASEXCLUDED": D("0")}
CONN = Connection(
    name="t",
    xero_tenant_id="tenant",
    zoho_org_id="org",
    tax_types={"GST": "OUTPUT"},
    purchase_tax_types={"GST": "INPUT"},
    untaxed_tax_type="BASEXCLUDED",
)
PRODUCTS = {
    "1": ZohoProduct.model_validate({"id": "1", "Product_Name": "Valve", "Product_Code": "V-1"}),
    "2": ZohoProduct.model_validate({"id": "2", "Product_Name": "Hose", "Product_Code": "H-2"}),
}


def line(pid: str, qty: str, price: str, discount: str = "0", tax: str | None = None) -> Any:
    out: dict[str, Any] = {
        "Product_Name": {"id": pid},
        "Quantity": qty,
        "List_Price": price,
        "Discount": discount,
    }
    if tax:
        out["Line_Tax"] = [{"name": "GST", "percentage": "10", "value": tax}]
    return out


def po(lines: list[Any], grand_total: str, **extra: Any) -> ZohoPurchaseOrder:
    return ZohoPurchaseOrder.model_validate(
        {
            "id": "700",
            "PO_Number": "ZPO-7",
            "Vendor_Name": {"id": "9", "name": "Parts Pty"},
            "PO_Date": "2026-11-25",
            "Due_Date": "2026-12-02",
            "Currency": "AUD",
            "Status": "Approved",
            "Shipping_Street": "12 Dock Road",
            "Shipping_City": "Port Melbourne",
            "Shipping_State": "VIC",
            "Shipping_Code": "3207",
            "Purchase_Items": lines,
            "Sub_Total": "0",
            "Grand_Total": grand_total,
            **extra,
        }
    )


def test_purchase_lines_use_purchase_account_and_tax_types() -> None:
    result = map_purchase_order(
        po([line("1", "2", "10.00", tax="2.00"), line("2", "1.5", "3.33", tax="0.50")], "27.50"),
        "contact-9",
        PRODUCTS,
        CONN,
        RATES,
    )
    body = result.purchase_order.body()
    assert result.xero_total == D("27.50") and "Type" not in body
    assert body["Status"] == "AUTHORISED" and body["Reference"] == "ZPO-7"
    assert body["Date"] == "2026-11-25" and body["DeliveryDate"] == "2026-12-02"
    assert body["DeliveryAddress"] == "12 Dock Road, Port Melbourne VIC 3207"
    assert body["Contact"] == {"ContactID": "contact-9"}
    assert [(li["AccountCode"], li["TaxType"], li["ItemCode"]) for li in body["LineItems"]] == [
        ("300", "INPUT", "V-1"),
        ("300", "INPUT", "H-2"),
    ]


def test_line_discount_becomes_a_discount_rate_and_a_ragged_one_is_refused() -> None:
    result = map_purchase_order(
        po([line("1", "3", "33.33", discount="10.00", tax="9.00")], "98.99"),
        "c",
        PRODUCTS,
        CONN,
        RATES,
    )
    [body] = result.purchase_order.body()["LineItems"]
    assert body["DiscountRate"] == D("10.00") and "DiscountAmount" not in body
    with pytest.raises(InvalidRecord, match="percentage") as caught:
        map_purchase_order(
            po([line("1", "1", "10000.00", discount="0.01", tax="1000.00")], "10999.99"),
            "c",
            PRODUCTS,
            CONN,
            RATES,
        )
    assert caught.value.field == "line 1.Discount"


def test_total_tax_rounding_is_carried_and_a_real_mismatch_is_an_error() -> None:
    lines = [line("1", "1", "0.05", tax="0.00"), line("2", "1", "0.05", tax="0.01")]
    result = map_purchase_order(po(lines, "0.11"), "c", PRODUCTS, CONN, RATES)
    assert result.xero_total == D("0.11")
    with pytest.raises(TotalMismatch, match=r"Grand_Total 5\.00"):
        map_purchase_order(
            po([line("1", "1", "1.00", tax="0.10")], "5.00"), "c", PRODUCTS, CONN, RATES
        )


def test_an_unmapped_purchase_tax_names_the_setting() -> None:
    conn = CONN.model_copy(update={"purchase_tax_types": {}})
    with pytest.raises(InvalidRecord, match="no Xero TaxType"):
        map_purchase_order(
            po([line("1", "1", "1.00", tax="0.10")], "1.10"), "c", PRODUCTS, conn, RATES
        )


def test_vendor_contact_and_purchased_item() -> None:
    vendor = ZohoVendor.model_validate(
        {"id": "9", "Vendor_Name": " Parts Pty ", "Email": "o@parts.test", "City": "Hobart"}
    )
    contact = contact_from_vendor(vendor).body()
    assert (contact["Name"], contact["ContactNumber"]) == ("Parts Pty", "9")
    assert contact["Addresses"] == [{"AddressType": "POBOX", "City": "Hobart"}]
    item = item_from_product(PRODUCTS["1"], CONN, D("4.20")).body()
    assert item["PurchaseDetails"] == {"UnitPrice": D("4.20"), "AccountCode": "300"}
    assert item["IsPurchased"] is True
    assert "PurchaseDetails" not in item_from_product(PRODUCTS["1"], CONN).body()
