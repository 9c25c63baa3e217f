"""Seed data: deterministic, internally consistent, and loadable at benchmark size."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from sandbox.config import SandboxConfig
from sandbox.seed import build_dataset, load_dataset
from sandbox.zoho_app import ZohoSandbox

CENT = Decimal("0.01")


def test_same_seed_same_data_other_seed_other_data() -> None:
    assert build_dataset(seed=3) == build_dataset(seed=3)
    assert build_dataset(seed=3).invoices != build_dataset(seed=4).invoices


def test_dataset_shape() -> None:
    ds = build_dataset(invoices=60, accounts=6, products=10)
    assert (len(ds.accounts), len(ds.products), len(ds.invoices)) == (6, 10, 60)
    assert 6 <= len(ds.contacts) <= 12
    assert [p["Product_Code"] for p in ds.products][:2] == ["P-1001", "P-1002"]
    assert ds.invoices[0]["Invoice_Number"] == "ZINV-00001"
    lines = [line for inv in ds.invoices for line in inv["Invoiced_Items"]]
    assert all(1 <= len(inv["Invoiced_Items"]) <= 5 for inv in ds.invoices)
    assert any(line["Quantity"] % 1 for line in lines)
    assert any("Discount" in line for line in lines)
    assert any(line["List_Price"] % 1 for line in lines)
    assert all(a["Billing_Country"] and a["Website"] for a in ds.accounts)


def test_loaded_invoices_point_at_stored_records_and_totals_add_up() -> None:
    zs = ZohoSandbox(SandboxConfig())
    loaded = load_dataset(zs, "org", build_dataset(tax_percentage=Decimal("15"), currency="NZD"))
    accounts = {a["id"]: a["Account_Name"] for a in zs.records("org", "Accounts")}
    products = {p["id"] for p in zs.records("org", "Products")}
    contacts = {c["id"]: c for c in zs.records("org", "Contacts")}
    for invoice in loaded.invoices:
        assert accounts[invoice["Account_Name"]["id"]] == invoice["Account_Name"]["name"]
        contact = contacts[invoice["Contact_Name"]["id"]]
        assert contact["Account_Name"]["id"] == invoice["Account_Name"]["id"]
        assert invoice["Currency"] == "NZD"
        sub_total = tax = Decimal(0)
        for line in invoice["Invoiced_Items"]:
            assert line["Product_Name"]["id"] in products
            total = (line["Quantity"] * line["List_Price"]).quantize(CENT, ROUND_HALF_UP)
            after_discount = total - line["Discount"]
            line_tax = (after_discount * Decimal("0.15")).quantize(CENT, ROUND_HALF_UP)
            assert (line["Total_After_Discount"], line["Tax"]) == (after_discount, line_tax)
            assert after_discount >= 0
            sub_total += after_discount
            tax += line_tax
        assert (invoice["Sub_Total"], invoice["Tax"]) == (sub_total, tax)
        expected = sub_total - invoice["Discount"] + tax + invoice["Adjustment"]
        assert invoice["Grand_Total"] == expected
    assert zs.get("org", "Invoices", loaded.invoices[0]["id"]) == loaded.invoices[0]
    assert zs.stats()["calls"] == {}  # seeding spends no API credits


def test_benchmark_size_loads() -> None:
    zs = ZohoSandbox(SandboxConfig())
    ds = build_dataset(invoices=1000, accounts=200, products=100)
    loaded = load_dataset(zs, "bench", ds)
    assert len(zs.records("bench", "Invoices")) == 1000
    assert len({a["Account_Name"] for a in loaded.accounts}) == 200
    assert len({p["Product_Code"] for p in loaded.products}) == 100
