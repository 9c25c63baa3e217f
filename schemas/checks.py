"""Start-up checks: does a connection's mapping fit its Xero organisation?

Users of other integrations meet a wrong account code or tax type one failed invoice at a time;
we compare the connection's settings with the organisation's Accounts, TaxRates and
TrackingCategories once, before any document moves, and name every mismatch.
"""

from __future__ import annotations

from decimal import Decimal

from schemas.connection import Connection
from schemas.xero import XeroAccount, XeroTrackingCategory

SALES_TYPES = {"REVENUE", "SALES", "OTHERINCOME"}


def connection_problems(
    conn: Connection,
    accounts: list[XeroAccount],
    tax_rates: dict[str, Decimal],
    tracking: list[XeroTrackingCategory],
) -> list[str]:
    """Every setting of `conn` that the organisation would refuse, in plain words."""
    active = {a.Code: a for a in accounts if a.Code and a.Status == "ACTIVE"}
    problems: list[str] = []

    def account(setting: str, code: str, types: set[str] | None = None) -> None:
        found = active.get(code)
        if found is None:
            problems.append(f"{setting}: Xero has no active account with code '{code}'")
        elif types and found.Type not in types:
            problems.append(
                f"{setting}: account {code} ({found.Name}) is a {found.Type} account, "
                f"not one of {', '.join(sorted(types))}"
            )

    def tax_type(setting: str, code: str, zero: bool = False) -> None:
        if code not in tax_rates:
            problems.append(f"{setting}: Xero has no active TaxType '{code}'")
        elif zero and tax_rates[code] != 0:
            problems.append(f"{setting}: TaxType {code} is {tax_rates[code]}%, not 0%")

    account("sales_account_code", conn.sales_account_code, SALES_TYPES)
    account("purchase_account_code", conn.purchase_account_code)
    for product, code in sorted(conn.product_account_codes.items()):
        account(f"product_account_codes[{product}]", code, SALES_TYPES)
    if conn.rounding == "rounding_line":
        account("rounding_account_code", conn.rounding_account_code)
    for name, code in sorted(conn.tax_types.items()):
        tax_type(f"tax_types[{name}]", code)
    for name, code in sorted(conn.purchase_tax_types.items()):
        tax_type(f"purchase_tax_types[{name}]", code)
    tax_type("untaxed_tax_type", conn.untaxed_tax_type, zero=True)
    if conn.default_tax_type:
        tax_type("default_tax_type", conn.default_tax_type)
    categories = {c.Name: c for c in tracking if c.Status == "ACTIVE"}
    for name, option in sorted(conn.tracking.items()):
        category = categories.get(name)
        if category is None:
            problems.append(f"tracking: Xero has no active tracking category '{name}'")
        elif option not in {o.Name for o in category.Options if o.Status == "ACTIVE"}:
            problems.append(f"tracking: category '{name}' has no active option '{option}'")
    return problems
