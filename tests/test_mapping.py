"""The money promise: Xero's Total equals Zoho's Grand_Total, or a clear error."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from schemas.connection import Connection
from schemas.errors import InvalidRecord, TotalMismatch
from schemas.mapping import contact_from_account, item_from_product, map_invoice, product_code
from schemas.money import exclusive_tax, inclusive_tax
from schemas.zoho import ZohoAccount, ZohoContact, ZohoProduct, ZohoSalesDocument

RATES = {"OUTPUT": D("10"), "BASEXCLUDED": D("0"), "EXEMPTOUTPUT": D("0"), "RROUTPUT": D("5")}
CONN = Connection(
    name="t",
    xero_tenant_id="tenant",
    zoho_org_id="org",
    tax_types={"GST": "OUTPUT", "Reduced": "RROUTPUT"},
    untaxed_tax_type="BASEXCLUDED",
)
PRODUCTS = {
    "1": ZohoProduct.model_validate({"id": "1", "Product_Name": "Widget", "Product_Code": "W-1"}),
    "2": ZohoProduct.model_validate({"id": "2", "Product_Name": "Gadget", "Product_Code": "G-2"}),
}


def line(
    pid: str, qty: str, price: str, discount: str = "0", tax: tuple[str, str, str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Product_Name": {"id": pid, "name": PRODUCTS[pid].name},
        "Quantity": qty,
        "List_Price": price,
        "Discount": discount,
    }
    if tax:
        out["Line_Tax"] = [{"name": tax[0], "percentage": tax[1], "value": tax[2]}]
    return out


def doc(lines: list[dict[str, Any]], grand_total: str, **extra: Any) -> ZohoSalesDocument:
    raw = {
        "id": "900",
        "Invoice_Number": "ZINV-1",
        "Account_Name": {"id": "5", "name": "Acme"},
        "Invoice_Date": "2026-11-25",
        "Currency": "AUD",
        "Invoiced_Items": lines,
        "Sub_Total": "0",
        "Grand_Total": grand_total,
        **extra,
    }
    return ZohoSalesDocument.model_validate(raw)


def mapped(d: ZohoSalesDocument, conn: Connection = CONN):
    return map_invoice("Invoices", d, "contact-1", PRODUCTS, conn, RATES)


def test_exclusive_lines_match_grand_total_without_overrides() -> None:
    d = doc(
        [
            line("1", "2", "10.00", tax=("GST", "10", "2.00")),
            line("2", "1.5", "3.33", tax=("GST", "10", "0.50")),
        ],
        "27.50",
    )
    result = mapped(d)
    assert result.xero_total == D("27.50")
    assert [li.TaxAmount for li in result.invoice.LineItems] == [None, None]
    body = result.invoice.body()
    assert body["Type"] == "ACCREC" and body["Status"] == "AUTHORISED"
    assert body["Date"] == "2026-11-25" and body["DueDate"] == "2026-12-25"
    assert body["Reference"] == "ZINV-1" and body["Contact"] == {"ContactID": "contact-1"}
    assert body["LineItems"][0]["ItemCode"] == "W-1"
    assert isinstance(body["LineItems"][1]["Quantity"], D)


def test_line_tax_differing_from_xero_is_sent_as_tax_amount() -> None:
    # 3 x 0.35 = 1.05; Xero: 0.105 -> 0.11; Zoho rounded it to 0.10
    d = doc([line("1", "3", "0.35", tax=("GST", "10", "0.10"))], "1.15")
    result = mapped(d)
    assert result.invoice.LineItems[0].TaxAmount == D("0.10")
    assert result.xero_total == D("1.15")
    assert "Xero would compute 0.11" in result.decisions[0]


def test_tax_rounded_on_total_puts_residue_on_largest_line() -> None:
    # Zoho computed tax on the total: (0.05 + 0.05 + 0.05) * 10% = 0.015 -> 0.02 vs per line 0.03
    lines = [line("1", "1", "0.05", tax=("GST", "10", "0.01")) for _ in range(3)]
    d = doc(lines, "0.17")
    result = mapped(d)
    assert result.xero_total == D("0.17")
    # two lines keep Xero's 0.01; one carries the residue as an explicit TaxAmount of 0.00
    assert [li.TaxAmount for li in result.invoice.LineItems] == [D("0.00"), None, None]


def test_rounding_line_when_configured() -> None:
    conn = CONN.model_copy(update={"rounding": "rounding_line"})
    d = doc([line("1", "3", "0.35", tax=("GST", "10", "0.10"))], "1.15")
    result = mapped(d, conn)
    rounding = result.invoice.LineItems[-1]
    assert rounding.Description == "Rounding" and rounding.UnitAmount == D("-0.01")
    assert rounding.AccountCode == "260" and rounding.TaxType == "BASEXCLUDED"
    assert result.xero_total == D("1.15")


def test_a_real_difference_is_an_error_naming_both_figures() -> None:
    d = doc([line("1", "1", "10.00", tax=("GST", "10", "1.00"))], "12.00")
    with pytest.raises(TotalMismatch) as err:
        mapped(d)
    assert "12.00" in str(err.value) and "11.00" in str(err.value)
    assert err.value.field == "Grand_Total"


def test_line_discount_and_record_discount_and_adjustment() -> None:
    d = doc(
        [line("1", "4", "25.00", discount="10.00", tax=("GST", "10", "9.00"))],
        "93.50",
        Discount="5.00",
        Adjustment="-0.50",
    )
    result = mapped(d)
    first, discount, adjustment = result.invoice.LineItems
    assert first.DiscountAmount == D("10.00")
    assert discount.UnitAmount == D("-5.00") and discount.TaxType == "BASEXCLUDED"
    assert adjustment.UnitAmount == D("-0.50")
    assert result.xero_total == D("93.50")


def test_tax_inclusive_connection_extracts_tax_from_gross_prices() -> None:
    conn = CONN.model_copy(update={"line_amount_types": "Inclusive", "default_tax_type": "OUTPUT"})
    d = doc([line("1", "1", "110.00"), line("2", "3", "3.30")], "119.90")
    result = mapped(d, conn)
    assert result.invoice.LineAmountTypes == "Inclusive"
    assert {li.TaxType for li in result.invoice.LineItems} == {"OUTPUT"}
    assert result.xero_total == D("119.90")
    assert inclusive_tax(D("110.00"), D("10")) == D("10.00")


def test_inclusive_connection_refuses_tax_added_on_top() -> None:
    conn = CONN.model_copy(update={"line_amount_types": "Inclusive"})
    d = doc([line("1", "1", "100.00", tax=("GST", "10", "10.00"))], "110.00")
    with pytest.raises(InvalidRecord, match="tax-inclusive"):
        mapped(d, conn)


def test_multi_currency_sends_rate_only_for_foreign_currency() -> None:
    d = doc(
        [line("1", "1", "100.00", tax=("GST", "10", "10.00"))],
        "110.00",
        Currency="USD",
        Exchange_Rate="0.6543",
    )
    assert mapped(d).invoice.CurrencyCode == "USD"
    assert mapped(d).invoice.CurrencyRate == D("0.6543")
    home = doc([line("1", "1", "100.00", tax=("GST", "10", "10.00"))], "110.00", Exchange_Rate="1")
    assert mapped(home).invoice.CurrencyRate is None


def test_unmapped_tax_names_the_line_and_the_fix() -> None:
    d = doc([line("1", "1", "10.00", tax=("VAT", "20", "2.00"))], "12.00")
    with pytest.raises(InvalidRecord) as err:
        mapped(d)
    assert err.value.field == "line 1.Line_Tax" and "tax_types" in (err.value.hint or "")


def test_tax_rate_disagreement_is_an_error() -> None:
    d = doc([line("1", "1", "10.00", tax=("GST", "15", "1.50"))], "11.50")
    with pytest.raises(InvalidRecord, match="15% but Xero TaxType OUTPUT is 10%"):
        mapped(d)


def test_missing_date_and_too_many_decimals_are_named() -> None:
    with pytest.raises(InvalidRecord, match="Invoice_Date"):
        mapped(doc([line("1", "1", "1.00")], "1.00", Invoice_Date=None))
    with pytest.raises(InvalidRecord, match=r"line 1\.List_Price"):
        mapped(doc([line("1", "1", "1.00001")], "1.00"))


def test_content_version_follows_the_body() -> None:
    a = mapped(doc([line("1", "1", "10.00", tax=("GST", "10", "1.00"))], "11.00"))
    b = mapped(doc([line("1", "1", "10.00", tax=("GST", "10", "1.00"))], "11.00"))
    c = mapped(doc([line("1", "2", "10.00", tax=("GST", "10", "2.00"))], "22.00"))
    assert a.content_version == b.content_version != c.content_version


def test_product_without_code_is_rejected_with_a_hint() -> None:
    product = ZohoProduct.model_validate({"id": "7", "Product_Name": "Visit"})
    with pytest.raises(InvalidRecord) as err:
        product_code(product)
    assert err.value.field == "Product_Code" and "Visit" in (err.value.hint or "")


def test_contact_and_item_bodies() -> None:
    account = ZohoAccount.model_validate(
        {
            "id": "5843000000000001",
            "Account_Name": " Acme Pty ",
            "Phone": "+61 2 5550 1234",
            "Billing_City": "Sydney",
        }
    )
    person = ZohoContact.model_validate({"id": "9", "First_Name": "Ann", "Email": "ann@acme.test"})
    body = contact_from_account(account, person).body()
    assert body["Name"] == "Acme Pty" and body["ContactNumber"] == "5843000000000001"
    assert body["EmailAddress"] == "ann@acme.test" and body["Addresses"][0]["City"] == "Sydney"
    item = item_from_product(PRODUCTS["1"], CONN).body()
    assert item["Code"] == "W-1" and item["SalesDetails"] == {"AccountCode": "200"}


@pytest.mark.parametrize(
    ("amount", "rate", "tax"),
    [
        ("0.05", "10", "0.01"),
        ("0.15", "10", "0.02"),
        ("-0.15", "10", "-0.02"),
        ("19.99", "15", "3.00"),
    ],
)
def test_exclusive_tax_rounds_half_away_from_zero(amount: str, rate: str, tax: str) -> None:
    assert exclusive_tax(D(amount), D(rate)) == D(tax)
