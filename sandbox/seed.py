"""Deterministic sample data for the Zoho sandbox: accounts, contacts, products, invoices, and
(when asked for) vendors and purchase orders.

`build_dataset` only draws from `random.Random(seed)`, so a seed always gives the same data (demo,
tests and benchmarks compare runs). Amounts are Decimals with cents, quantities include fractions
(1.5, 0.25) and some lines carry discounts, because those are where Zoho's and Xero's rounding
can part (peers.md #5). `load_dataset` stores it through the admin API, so seeding spends no API
credits, and Zoho computes the totals as it would for a user.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sandbox.xero_state import XeroSandbox
from sandbox.zoho_state import Record, ZohoSandbox, cents

REF = "$seed_ref"  # a lookup's target before load: "<module>:<index>"

_PREFIXES = [
    "Acacia",
    "Bluegum",
    "Coastal",
    "Dingo",
    "Eucalypt",
    "Harbour",
    "Ironbark",
    "Jacaranda",
    "Kookaburra",
    "Lyrebird",
    "Mallee",
    "Nullarbor",
    "Outback",
    "Paperbark",
    "Quokka",
    "Redgum",
    "Saltbush",
    "Tasman",
    "Wattle",
    "Yarra",
]
_TRADES = [
    "Plumbing",
    "Electrical",
    "Landscaping",
    "Joinery",
    "Logistics",
    "Dental",
    "Printing",
    "Roofing",
    "Catering",
    "Tiling",
    "Glazing",
    "Fencing",
    "Cleaning",
    "Surveying",
    "Motors",
]
_CITIES = (
    ("Sydney", "NSW", "2000"),
    ("Melbourne", "VIC", "3000"),
    ("Brisbane", "QLD", "4000"),
    ("Perth", "WA", "6000"),
    ("Adelaide", "SA", "5000"),
    ("Hobart", "TAS", "7000"),
    ("Canberra", "ACT", "2600"),
    ("Darwin", "NT", "0800"),
)
_STREETS = [
    "George",
    "Collins",
    "Queen",
    "Hay",
    "King",
    "Elizabeth",
    "Murray",
    "Flinders",
    "Pitt",
    "Market",
]
_FIRST = [
    "Olivia",
    "Jack",
    "Charlotte",
    "Noah",
    "Amelia",
    "William",
    "Isla",
    "Oliver",
    "Mia",
    "Thomas",
    "Ava",
    "Lucas",
]
_LAST = [
    "Smith",
    "Jones",
    "Williams",
    "Brown",
    "Wilson",
    "Taylor",
    "Nguyen",
    "Johnson",
    "Martin",
    "White",
    "Walker",
    "Kelly",
]
_MATERIALS = [
    "Copper",
    "Steel",
    "Timber",
    "Nylon",
    "Brass",
    "Ceramic",
    "Vinyl",
    "Aluminium",
    "Rubber",
    "Cedar",
]
_ITEMS = [
    "Pipe",
    "Bracket",
    "Panel",
    "Hinge",
    "Valve",
    "Sealant",
    "Fitting",
    "Cable",
    "Bolt",
    "Gasket",
    "Flange",
    "Clamp",
]
_QUANTITIES = (1, 1, 1, 2, 3, 5, 10, 12, Decimal("1.5"), Decimal("0.5"), Decimal("2.25"))
_START = date(2026, 7, 1)


@dataclass
class ZohoDataset:
    """Records as `ZohoSandbox.insert` takes them; after `load_dataset`, as stored (with ids)."""

    accounts: list[Record] = field(default_factory=list)
    contacts: list[Record] = field(default_factory=list)
    products: list[Record] = field(default_factory=list)
    invoices: list[Record] = field(default_factory=list)
    vendors: list[Record] = field(default_factory=list)
    purchase_orders: list[Record] = field(default_factory=list)


def _price(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low, high)) / 100


def _account_names(rng: random.Random, count: int) -> list[str]:
    combos = [f"{p} {t}" for p in _PREFIXES for t in _TRADES]
    rng.shuffle(combos)
    names = []
    for i in range(count):
        # Past the 300 combinations, a branch number keeps names unique (lookups by name work).
        branch = f" {i // len(combos) + 1}" if i >= len(combos) else ""
        names.append(f"{combos[i % len(combos)]}{branch} Pty Ltd")
    return names


def _account(rng: random.Random, name: str) -> Record:
    city, state, code = rng.choice(_CITIES)
    slug = "".join(ch for ch in name.lower().removesuffix(" pty ltd") if ch.isalnum())
    return {
        "Account_Name": name,
        "Phone": f"+61 2 {rng.randint(9000, 9999)} {rng.randint(1000, 9999)}",
        "Website": f"https://www.{slug}.com.au",
        "Billing_Street": f"{rng.randint(1, 400)} {rng.choice(_STREETS)} Street",
        "Billing_City": city,
        "Billing_State": state,
        "Billing_Code": code,
        "Billing_Country": "Australia",
    }


def _contact(rng: random.Random, account: Record, index: int) -> Record:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    domain = account["Website"].removeprefix("https://www.")
    return {
        "First_Name": first,
        "Last_Name": last,
        "Email": f"{first}.{last}{index}@{domain}".lower(),
        "Account_Name": {"name": account["Account_Name"], REF: f"Accounts:{index}"},
    }


def _product(rng: random.Random, index: int, tax_name: str) -> Record:
    material = _MATERIALS[index % len(_MATERIALS)]
    item = _ITEMS[(index // len(_MATERIALS)) % len(_ITEMS)]
    size = index // (len(_MATERIALS) * len(_ITEMS))
    name = f"{material} {item}" + (f" Mk{size + 1}" if size else "")
    return {
        "Product_Name": name,
        "Product_Code": f"P-{1001 + index}",
        "Unit_Price": _price(rng, 150, 250_000),
        "Description": f"{name}, sold each",
        "Taxable": True,
        "Tax": [tax_name],
        "Product_Active": True,
    }


def _line(
    rng: random.Random, products: list[Record], tax_name: str, tax_percentage: Decimal
) -> Record:
    index = rng.randrange(len(products))
    product = products[index]
    quantity = rng.choice(_QUANTITIES)
    price = product["Unit_Price"] if rng.random() < 0.8 else _price(rng, 99, 99_999)
    line: Record = {
        "Product_Name": {"name": product["Product_Name"], REF: f"Products:{index}"},
        "Quantity": Decimal(quantity),
        "List_Price": price,
        "Description": product["Description"],
        "Line_Tax": [{"name": tax_name, "percentage": tax_percentage}],
    }
    if rng.random() < 0.25:
        line["Discount"] = min(_price(rng, 100, 5_000), cents(line["Quantity"] * price))
    return line


def _vendor(rng: random.Random, index: int) -> Record:
    city, state, code = rng.choice(_CITIES)
    name = f"{_PREFIXES[(index * 7) % len(_PREFIXES)]} {_MATERIALS[index % len(_MATERIALS)]}"
    name += " Supply Co" + (f" {index // 20 + 1}" if index >= 20 else "")  # names stay unique
    slug = "".join(ch for ch in name.lower() if ch.isalnum())
    return {
        "Vendor_Name": name,
        "Email": f"orders@{slug}.com.au",
        "Phone": f"+61 3 {rng.randint(9000, 9999)} {rng.randint(1000, 9999)}",
        "Website": f"https://www.{slug}.com.au",
        "Street": f"{rng.randint(1, 400)} {rng.choice(_STREETS)} Road",
        "City": city,
        "State": state,
        "Zip_Code": code,
        "Country": "Australia",
    }


def _purchase_order(
    rng: random.Random,
    number: int,
    ds: ZohoDataset,
    currency: str,
    tax_name: str,
    tax_percentage: Decimal,
) -> Record:
    """A purchase order at cost prices; a line discount is a whole percentage, as Xero takes."""
    index = rng.randrange(len(ds.vendors))
    issued = _START + timedelta(days=rng.randint(0, 120))
    lines = []
    for _ in range(rng.randint(1, 4)):
        line = _line(rng, ds.products, tax_name, tax_percentage)
        line["List_Price"] = cents(line["List_Price"] * Decimal("0.6"))
        gross = cents(line["Quantity"] * line["List_Price"])
        line.pop("Discount", None)
        if rng.random() < 0.25:
            line["Discount"] = cents(gross * rng.choice((5, 10, 15)) / 100)
        lines.append(line)
    return {
        "Subject": f"Purchase order ZPO-{number:05d} to {ds.vendors[index]['Vendor_Name']}",
        "PO_Number": f"ZPO-{number:05d}",
        "Vendor_Name": {"name": ds.vendors[index]["Vendor_Name"], REF: f"Vendors:{index}"},
        "Status": "Approved",
        "Currency": currency,
        "Exchange_Rate": Decimal(1),
        "PO_Date": issued.isoformat(),
        "Due_Date": (issued + timedelta(days=rng.choice((7, 14, 21)))).isoformat(),
        "Shipping_Street": "12 Dock Road",
        "Shipping_City": "Port Melbourne",
        "Shipping_State": "VIC",
        "Shipping_Code": "3207",
        "Shipping_Country": "Australia",
        "Purchase_Items": lines,
    }


def build_dataset(
    invoices: int = 24,
    accounts: int = 6,
    products: int = 10,
    seed: int = 7,
    currency: str = "AUD",
    tax_name: str = "GST",
    tax_percentage: Decimal = Decimal("10"),
    purchase_orders: int = 0,
    vendors: int = 3,
) -> ZohoDataset:
    """A consistent dataset: invoices point at accounts, their contacts and products by index;
    purchase orders (none unless asked for, drawn last) at vendors and the same products."""
    rng = random.Random(seed)
    ds = ZohoDataset()
    contacts_of: list[list[int]] = []
    for name in _account_names(rng, accounts):
        account = _account(rng, name)
        index = len(ds.accounts)
        ds.accounts.append(account)
        contacts_of.append([])
        for _ in range(rng.randint(1, 2)):
            contacts_of[index].append(len(ds.contacts))
            ds.contacts.append(_contact(rng, account, index))
    ds.products = [_product(rng, i, tax_name) for i in range(products)]
    for number in range(1, invoices + 1):
        index = rng.randrange(accounts)
        account, contact_index = ds.accounts[index], rng.choice(contacts_of[index])
        contact = ds.contacts[contact_index]
        issued = _START + timedelta(days=rng.randint(0, 120))
        invoice: Record = {
            "Subject": f"Invoice ZINV-{number:05d} for {account['Account_Name']}",
            "Invoice_Number": f"ZINV-{number:05d}",
            "Account_Name": {"name": account["Account_Name"], REF: f"Accounts:{index}"},
            "Contact_Name": {
                "name": f"{contact['First_Name']} {contact['Last_Name']}",
                REF: f"Contacts:{contact_index}",
            },
            "Status": "Created",
            "Currency": currency,
            "Exchange_Rate": Decimal(1),
            "Invoice_Date": issued.isoformat(),
            "Due_Date": (issued + timedelta(days=rng.choice((7, 14, 30)))).isoformat(),
            "Invoiced_Items": [
                _line(rng, ds.products, tax_name, tax_percentage) for _ in range(rng.randint(1, 5))
            ],
        }
        if rng.random() < 0.15:
            invoice.update(Discount=Decimal(0), Adjustment=Decimal(0))
        ds.invoices.append(invoice)
    if purchase_orders:
        ds.vendors = [_vendor(rng, i) for i in range(vendors)]
        ds.purchase_orders = [
            _purchase_order(rng, number, ds, currency, tax_name, tax_percentage)
            for number in range(1, purchase_orders + 1)
        ]
    return ds


def _resolve(value: Any, ids: dict[str, list[str]]) -> Any:
    """Replace seed references with the stored ids, recursing into line items."""
    if isinstance(value, dict) and REF in value:
        module, index = value[REF].split(":")
        return {"id": ids[module][int(index)], "name": value["name"]}
    if isinstance(value, list):
        return [_resolve(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, ids) for k, v in value.items()}
    return value


def load_dataset(zs: ZohoSandbox, org_id: str, ds: ZohoDataset) -> ZohoDataset:
    """Insert accounts, contacts, products, invoices, vendors, then purchase orders; returns
    the stored records."""
    ids: dict[str, list[str]] = {}
    loaded = ZohoDataset()
    for module, attr in (
        ("Accounts", "accounts"),
        ("Contacts", "contacts"),
        ("Products", "products"),
        ("Invoices", "invoices"),
        ("Vendors", "vendors"),
        ("Purchase_Orders", "purchase_orders"),
    ):
        stored = [zs.insert(org_id, module, _resolve(r, ids)) for r in getattr(ds, attr)]
        ids[module] = [r["id"] for r in stored]
        setattr(loaded, attr, stored)
    return loaded


def seed_xero_history(
    xs: XeroSandbox, tenant_id: str, loaded: ZohoDataset, fraction: float, seed: int = 11
) -> list[str]:
    """Put `fraction` of the loaded Zoho invoices into Xero as if an earlier tool (or a person)
    had: their accounts as contacts whose ContactNumber is the account id, their products as
    items with the same Code, the invoice with the Zoho number as Reference and the Zoho total
    (one line, no tax). Returns the Zoho ids of the invoices put in Xero (for backfill tests)."""
    rng = random.Random(seed)
    chosen = [i for i in loaded.invoices if rng.random() < fraction]
    accounts = {a["id"]: a for a in loaded.accounts}
    contact_of: dict[str, str] = {}
    for invoice in chosen:
        account = accounts[invoice["Account_Name"]["id"]]
        if account["id"] not in contact_of:
            contact = xs.add_contact(
                tenant_id, {"Name": account["Account_Name"], "ContactNumber": account["id"]}
            )
            contact_of[account["id"]] = contact["ContactID"]
    codes = {line["Product_Name"]["id"] for i in chosen for line in i["Invoiced_Items"]}
    for product in loaded.products:
        if product["id"] in codes and product.get("Product_Code"):
            xs.add_item(
                tenant_id, {"Code": product["Product_Code"], "Name": product["Product_Name"][:50]}
            )
    for invoice in chosen:
        body = {
            "Type": "ACCREC",
            "Status": "AUTHORISED",
            "LineAmountTypes": "NoTax",
            "Contact": {"ContactID": contact_of[invoice["Account_Name"]["id"]]},
            "Reference": invoice["Invoice_Number"],
            "Date": invoice["Invoice_Date"],
            "DueDate": invoice["Due_Date"],
            "LineItems": [
                {
                    "Description": invoice["Subject"],
                    "Quantity": Decimal(1),
                    "UnitAmount": invoice["Grand_Total"],
                    "AccountCode": "200",
                }
            ],
        }
        with xs.lock:
            saved, errors = xs.save_invoice(tenant_id, body, create_only=True, unitdp=2)
        if saved is None:
            raise ValueError(f"seeding Xero invoice {invoice['Invoice_Number']}: {errors}")
    return [i["id"] for i in chosen]
