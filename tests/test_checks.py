"""Start-up checks name every connection setting the Xero organisation would refuse."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from schemas.checks import connection_problems
from schemas.connection import Connection
from schemas.xero import XeroAccount, XeroTrackingCategory

ACCOUNTS = [
    XeroAccount(Code="200", Name="Sales", Type="REVENUE"),
    XeroAccount(Code="300", Name="Purchases", Type="DIRECTCOSTS"),
    XeroAccount(Code="260", Name="Rounding", Type="CURRLIAB"),
    XeroAccount(Code="400", Name="Advertising", Type="EXPENSE"),
]
RATES = {"OUTPUT": D(10), "INPUT": D(10), "BASEXCLUDED": D(0)}
TRACKING = [
    XeroTrackingCategory.model_validate(
        {"Name": "Region", "Options": [{"Name": "North"}, {"Name": "South"}]}
    )
]


def test_a_fitting_connection_has_no_problems() -> None:
    conn = Connection(
        name="c",
        xero_tenant_id="t",
        zoho_org_id="o",
        tax_types={"GST": "OUTPUT"},
        purchase_tax_types={"GST": "INPUT"},
        untaxed_tax_type="BASEXCLUDED",
        tracking={"Region": "North"},
        rounding="rounding_line",
    )
    assert connection_problems(conn, ACCOUNTS, RATES, TRACKING) == []


def test_every_misfit_is_named() -> None:
    conn = Connection(
        name="c",
        xero_tenant_id="t",
        zoho_org_id="o",
        sales_account_code="400",
        product_account_codes={"P-1": "999"},
        tax_types={"VAT": "OUTPUT2"},
        untaxed_tax_type="OUTPUT",
        tracking={"Region": "East", "Team": "A"},
    )
    problems = connection_problems(conn, ACCOUNTS, RATES, TRACKING)
    assert problems == [
        "sales_account_code: account 400 (Advertising) is a EXPENSE account, not one of "
        "OTHERINCOME, REVENUE, SALES",
        "product_account_codes[P-1]: Xero has no active account with code '999'",
        "tax_types[VAT]: Xero has no active TaxType 'OUTPUT2'",
        "untaxed_tax_type: TaxType OUTPUT is 10%, not 0%",
        "tracking: category 'Region' has no active option 'East'",
        "tracking: Xero has no active tracking category 'Team'",
    ]


@pytest.mark.integration
def test_zxsync_check_against_the_sandbox(make_stack) -> None:
    from typer.testing import CliRunner

    from zxsync.cli import app

    make_stack(options={"sales_account_code": "999", "tracking": {"Region": "North"}})
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 1, result.output
    assert "sales_account_code: Xero has no active account with code '999'" in result.output
    assert "tracking" not in result.output
