"""Zoho CRM sandbox: OAuth, records API envelopes, search, notes, totals and limits."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

with warnings.catch_warnings():
    # Starlette 1.x prefers the `httpx2` package, which this project does not install.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from sandbox.config import SandboxConfig, ZohoLimits
from sandbox.server import ThreadedServer
from sandbox.zoho_app import ZohoSandbox, create_zoho_app
from sandbox.zoho_state import ZohoValidationError

pytestmark = pytest.mark.integration  # the sandbox served over HTTP, a server per test

ORG = "org-1"
CLIENT = {"client_id": "1000.CLIENT", "client_secret": "s3cret", "refresh_token": "1000.rt"}
INVALID_TOKEN = {
    "code": "INVALID_TOKEN",
    "details": {},
    "message": "invalid oauth token",
    "status": "error",
}


class Clock:
    """A hand-driven clock, so token expiry and rolling windows need no sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_sandbox(clock: Clock, **config: Any) -> ZohoSandbox:
    zs = ZohoSandbox(SandboxConfig(**config), clock=clock)
    zs.add_client(CLIENT["client_id"], CLIENT["client_secret"], CLIENT["refresh_token"], ORG)
    return zs


@pytest.fixture
def zs(clock: Clock) -> ZohoSandbox:
    return make_sandbox(clock)


@pytest.fixture
def http(zs: ZohoSandbox) -> Iterator[TestClient]:
    with TestClient(create_zoho_app(zs), follow_redirects=False) as client:
        yield client


def refresh(http: TestClient, **override: str) -> httpx.Response:
    return http.post(
        "/oauth/v2/token", params={"grant_type": "refresh_token", **CLIENT, **override}
    )


def auth(http: TestClient) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {refresh(http).json()['access_token']}"}


def body(response: httpx.Response) -> Any:
    return json.loads(response.content, parse_float=Decimal)


@pytest.fixture
def api(http: TestClient) -> TestClient:
    http.headers.update(auth(http))
    return http


@pytest.fixture
def seeded(zs: ZohoSandbox) -> dict[str, str]:
    """An account, a contact, two products and an invoice; returns their ids."""
    account = zs.insert(ORG, "Accounts", {"Account_Name": "Wattle Tiling Pty Ltd"})
    contact = zs.insert(
        ORG,
        "Contacts",
        {
            "First_Name": "Ava",
            "Last_Name": "Nguyen",
            "Email": "ava@wattle.example",
            "Account_Name": {"id": account["id"]},
        },
    )
    tile = zs.insert(
        ORG, "Products", {"Product_Name": "Tile", "Product_Code": "P-1", "Unit_Price": Decimal(3)}
    )
    grout = zs.insert(ORG, "Products", {"Product_Name": "Grout", "Product_Code": "P-2"})
    invoice = zs.insert(
        ORG,
        "Invoices",
        {
            "Subject": "Bathroom (stage 1), tiles",
            "Invoice_Number": "ZINV-00001",
            "Account_Name": {"id": account["id"]},
            "Contact_Name": {"id": contact["id"]},
            "Invoiced_Items": [
                {
                    "Product_Name": {"id": tile["id"]},
                    "Quantity": Decimal("1.5"),
                    "List_Price": Decimal("10.33"),
                    "Discount": Decimal("1.00"),
                    "Line_Tax": [{"name": "GST", "percentage": Decimal(10)}],
                },
                {
                    "Product_Name": {"id": grout["id"]},
                    "Quantity": 2,
                    "List_Price": Decimal("4.99"),
                    "Line_Tax": [{"name": "GST", "percentage": Decimal(10)}],
                },
            ],
            "Discount": Decimal("2.00"),
            "Adjustment": Decimal("0.05"),
        },
    )
    return {
        "account": account["id"],
        "contact": contact["id"],
        "tile": tile["id"],
        "grout": grout["id"],
        "invoice": invoice["id"],
    }


# --------------------------------------------------------------------------------- OAuth


def test_refresh_token_exchange_names_this_server_as_api_domain(
    http: TestClient, zs: ZohoSandbox
) -> None:
    response = refresh(http)
    assert response.status_code == 200
    payload = response.json()
    assert payload["api_domain"] == "http://testserver"
    assert payload["token_type"] == "Bearer"
    assert payload["expires_in"] == 3600
    assert payload["access_token"].startswith("1000.")
    assert zs.stats()["token_refreshes"] == 1


def test_wrong_secret_is_invalid_client_and_unknown_token_invalid_code(http: TestClient) -> None:
    wrong_secret = refresh(http, client_secret="nope")
    assert (wrong_secret.status_code, wrong_secret.json()) == (200, {"error": "invalid_client"})
    wrong_token = refresh(http, refresh_token="1000.other")
    assert (wrong_token.status_code, wrong_token.json()) == (200, {"error": "invalid_code"})


def test_form_encoded_token_request_is_accepted(http: TestClient) -> None:
    response = http.post("/oauth/v2/token", data={"grant_type": "refresh_token", **CLIENT})
    assert "access_token" in response.json()


def test_expired_or_missing_token_is_401_invalid_token(
    http: TestClient, clock: Clock, seeded: dict[str, str]
) -> None:
    headers = auth(http)
    url = f"/crm/v7/Accounts/{seeded['account']}"
    assert http.get(url, headers=headers).status_code == 200
    clock.now += 3600
    expired = http.get(url, headers=headers)
    assert (expired.status_code, expired.json()) == (401, INVALID_TOKEN)
    assert http.get(url).status_code == 401
    bearer = {"Authorization": headers["Authorization"].replace("Zoho-oauthtoken", "Bearer")}
    assert http.get(url, headers=bearer).status_code == 401


def test_ten_access_tokens_per_ten_minutes_then_access_denied(
    http: TestClient, clock: Clock
) -> None:
    for _ in range(10):
        assert "access_token" in refresh(http).json()
    blocked = refresh(http)
    assert blocked.status_code == 400
    assert blocked.json()["error"] == "Access Denied"
    clock.now += 600
    assert "access_token" in refresh(http).json()


def test_authorization_code_flow_issues_a_refresh_token_once(http: TestClient) -> None:
    consent = http.get(
        "/oauth/v2/auth",
        params={
            "scope": "ZohoCRM.modules.ALL",
            "client_id": CLIENT["client_id"],
            "response_type": "code",
            "access_type": "offline",
            "redirect_uri": "http://localhost:8080/callback",
            "state": "xyz",
        },
    )
    assert consent.status_code == 302
    location = urlsplit(consent.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert location.path == "/callback"
    assert query["state"] == "xyz"
    assert query["location"] == "us"
    assert query["accounts-server"] == "http://testserver"
    grant = {
        "grant_type": "authorization_code",
        "client_id": CLIENT["client_id"],
        "client_secret": CLIENT["client_secret"],
        "code": query["code"],
        "redirect_uri": "http://localhost:8080/callback",
    }
    first = http.post("/oauth/v2/token", params=grant).json()
    assert first["refresh_token"] and first["access_token"] and first["api_domain"]
    assert http.post("/oauth/v2/token", params=grant).json() == {"error": "invalid_code"}
    again = refresh(http, refresh_token=first["refresh_token"]).json()
    assert "access_token" in again and "refresh_token" not in again


# ------------------------------------------------------------------------------- records


def test_get_record_and_204_for_unknown_id(api: TestClient, seeded: dict[str, str]) -> None:
    response = api.get(f"/crm/v7/Invoices/{seeded['invoice']}")
    record = body(response)["data"][0]
    assert record["id"] == seeded["invoice"] and len(record["id"]) == 19
    assert record["Account_Name"] == {"name": "Wattle Tiling Pty Ltd", "id": seeded["account"]}
    assert record["Contact_Name"]["name"] == "Ava Nguyen"
    assert record["Modified_Time"] == "2026-11-25T10:00:00+00:00"
    missing = api.get("/crm/v8/Invoices/5843000000000999001")
    assert (missing.status_code, missing.content) == (204, b"")


def test_unknown_module_and_url(api: TestClient) -> None:
    response = api.get("/crm/v7/Invoicez/1")
    assert response.status_code == 400
    assert response.json() == {
        "code": "INVALID_MODULE",
        "details": {},
        "message": "the module name given seems to be invalid",
        "status": "error",
    }
    assert api.get("/crm/v2/Invoices/1").json()["code"] == "INVALID_URL_PATTERN"


def test_list_requires_fields_and_pages_with_info(api: TestClient, zs: ZohoSandbox) -> None:
    missing = api.get("/crm/v7/Accounts")
    assert (missing.status_code, missing.json()["code"]) == (400, "REQUIRED_PARAM_MISSING")
    assert api.get("/crm/v7/Accounts", params={"fields": "Account_Name"}).status_code == 204
    too_many = ",".join(["Account_Name"] * 51)
    assert api.get("/crm/v7/Accounts", params={"fields": too_many}).status_code == 400
    for n in range(5):
        zs.insert(ORG, "Accounts", {"Account_Name": f"A{n}", "Phone": "1"})
    params = {"fields": "Account_Name", "per_page": "2", "sort_order": "asc"}
    first = api.get("/crm/v7/Accounts", params=params).json()
    assert [r["Account_Name"] for r in first["data"]] == ["A0", "A1"]
    assert set(first["data"][0]) == {"id", "Account_Name"}
    assert first["info"]["more_records"] is True and first["info"]["count"] == 2
    token = first["info"]["next_page_token"]
    second = api.get("/crm/v7/Accounts", params={**params, "page_token": token}).json()
    assert [r["Account_Name"] for r in second["data"]] == ["A2", "A3"]
    third = api.get("/crm/v7/Accounts", params={**params, "page": "3"}).json()
    assert third["info"] == {
        "per_page": 2,
        "count": 1,
        "page": 3,
        "more_records": False,
        "sort_by": "id",
        "sort_order": "asc",
        "next_page_token": None,
    }
    beyond = api.get("/crm/v7/Accounts", params={**params, "per_page": "200", "page": "11"})
    assert beyond.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"


def test_list_by_ids_and_if_modified_since(
    api: TestClient, zs: ZohoSandbox, clock: Clock, seeded: dict[str, str]
) -> None:
    params = {"fields": "Grand_Total,Xero_Invoice_ID", "ids": seeded["invoice"]}
    data = body(api.get("/crm/v7/Invoices", params=params))["data"]
    assert data == [
        {"id": seeded["invoice"], "Grand_Total": Decimal("24.98"), "Xero_Invoice_ID": None}
    ]
    since = {"If-Modified-Since": "2026-11-25T10:00:00+00:00"}
    assert api.get("/crm/v7/Invoices", params=params, headers=since).status_code == 304
    clock.now += 5
    zs.update(ORG, "Invoices", seeded["invoice"], {"Status": "Approved"})
    assert api.get("/crm/v7/Invoices", params=params, headers=since).status_code == 200


def test_update_with_unknown_field_is_invalid_data_naming_it(
    api: TestClient, seeded: dict[str, str]
) -> None:
    response = api.put(
        f"/crm/v7/Invoices/{seeded['invoice']}",
        json={"data": [{"Xero_Invoice_Id": "abc"}], "trigger": []},
    )
    assert response.status_code == 400
    [result] = response.json()["data"]
    assert result["code"] == "INVALID_DATA"
    assert result["message"] == "invalid data"
    assert result["details"]["api_name"] == "Xero_Invoice_Id"
    assert result["status"] == "error"


def test_wrong_types_and_pick_list_values_are_invalid_data(
    api: TestClient, seeded: dict[str, str]
) -> None:
    rows = [
        {"id": seeded["invoice"], "Xero_Amount_Paid": "10.00"},
        {"id": seeded["invoice"], "Xero_Sync_Status": "Done"},
        {"id": seeded["invoice"], "Xero_Last_Payment_Date": "25/11/2026"},
        {"id": seeded["account"] + "9"},
    ]
    results = api.put("/crm/v7/Invoices", json={"data": rows}).json()["data"]
    assert [r["details"].get("api_name") for r in results] == [
        "Xero_Amount_Paid",
        "Xero_Sync_Status",
        "Xero_Last_Payment_Date",
        "id",
    ]
    assert results[0]["details"]["expected_data_type"] == "currency"


def test_mixed_batch_is_207_with_results_in_request_order(
    api: TestClient, zs: ZohoSandbox, seeded: dict[str, str]
) -> None:
    rows = [
        {
            "id": seeded["invoice"],
            "Xero_Invoice_ID": "9f1c",
            "Xero_Amount_Paid": 12.5,
            "Xero_Sync_Status": "Synced",
        },
        {"id": seeded["invoice"], "Bogus": 1},
    ]
    response = api.put("/crm/v7/Invoices", json={"data": rows, "trigger": []})
    assert response.status_code == 207
    ok, failed = response.json()["data"]
    assert ok["code"] == "SUCCESS" and ok["message"] == "record updated"
    assert set(ok["details"]) == {
        "Modified_Time",
        "Modified_By",
        "Created_Time",
        "id",
        "Created_By",
    }
    assert failed["code"] == "INVALID_DATA"
    stored = zs.get(ORG, "Invoices", seeded["invoice"])
    assert stored is not None and stored["Xero_Amount_Paid"] == Decimal("12.5")


def test_insert_is_201_and_reports_missing_and_duplicate_fields(
    api: TestClient, seeded: dict[str, str]
) -> None:
    created = api.post("/crm/v7/Products", json={"data": [{"Product_Name": "Sealant"}]})
    assert created.status_code == 201
    assert created.json()["data"][0]["message"] == "record added"
    rows = [{"Product_Code": "P-9"}, {"Product_Name": "Tile again", "Product_Code": "P-1"}]
    response = api.post("/crm/v7/Products", json={"data": rows})
    assert response.status_code == 400
    missing, duplicate = response.json()["data"]
    assert (missing["code"], missing["details"]["api_name"]) == (
        "MANDATORY_NOT_FOUND",
        "Product_Name",
    )
    assert (duplicate["code"], duplicate["details"]["api_name"]) == (
        "DUPLICATE_DATA",
        "Product_Code",
    )
    assert duplicate["details"]["duplicate_record"]["id"] == seeded["tile"]


def test_more_than_100_records_is_limit_exceeded(api: TestClient) -> None:
    rows = [{"Account_Name": f"A{n}"} for n in range(101)]
    response = api.post("/crm/v7/Accounts", json={"data": rows})
    assert response.status_code == 400
    assert response.json()["code"] == "LIMIT_EXCEEDED"
    assert api.get("/crm/v7/Accounts", params={"fields": "Account_Name"}).status_code == 204


def test_workflow_runs_unless_trigger_leaves_it_out(
    api: TestClient, zs: ZohoSandbox, seeded: dict[str, str]
) -> None:
    url = f"/crm/v7/Invoices/{seeded['invoice']}"
    api.put(url, json={"data": [{"Xero_Sync_Status": "Pending"}], "trigger": []})
    assert zs.workflow_events() == []
    api.put(url, json={"data": [{"Xero_Sync_Status": "Synced"}], "trigger": ["workflow"]})
    api.put(url, json={"data": [{"Xero_Sync_Status": "Failed"}]})
    events = zs.workflow_events()
    assert [(e["operation"], e["fields"]) for e in events] == [
        ("edit", ["Xero_Sync_Status"]),
        ("edit", ["Xero_Sync_Status"]),
    ]
    assert events[0]["id"] == seeded["invoice"] and events[0]["org_id"] == ORG


# -------------------------------------------------------------------------------- search


def test_search_criteria_email_and_word(api: TestClient, zs: ZohoSandbox) -> None:
    for name in ("Acme, Inc", "Acme (West)", "Bluegum"):
        zs.insert(ORG, "Accounts", {"Account_Name": name, "Billing_City": "Perth"})

    def names(**params: str) -> list[str]:
        response = api.get("/crm/v7/Accounts/search", params=params)
        return (
            []
            if response.status_code == 204
            else [r["Account_Name"] for r in response.json()["data"]]
        )

    assert names(criteria=r"(Account_Name:equals:Acme\, Inc)") == ["Acme, Inc"]
    assert names(criteria=r"(Account_Name:equals:Acme \(West\))") == ["Acme (West)"]
    assert sorted(names(criteria="(Account_Name:starts_with:acme)")) == ["Acme (West)", "Acme, Inc"]
    both = (
        "((Account_Name:starts_with:Acme)and(Billing_City:equals:Perth))"
        "or(Account_Name:equals:Bluegum)"
    )
    assert len(names(criteria=both)) == 3
    assert names(criteria="(Account_Name:starts_with:Acme)and(Billing_City:equals:Sydney)") == []
    assert names(word="bluegum") == ["Bluegum"]
    bad = api.get("/crm/v7/Accounts/search", params={"criteria": "(Nope:equals:1)"})
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_QUERY")
    assert api.get("/crm/v7/Accounts/search").json()["code"] == "REQUIRED_PARAM_MISSING"


def test_search_contacts_by_email_and_lookup_id(api: TestClient, seeded: dict[str, str]) -> None:
    by_email = api.get("/crm/v7/Contacts/search", params={"email": "AVA@wattle.example"})
    assert by_email.json()["data"][0]["id"] == seeded["contact"]
    criteria = f"(Account_Name:equals:{seeded['account']})"
    by_lookup = api.get("/crm/v7/Invoices/search", params={"criteria": criteria})
    assert [r["id"] for r in by_lookup.json()["data"]] == [seeded["invoice"]]


# ----------------------------------------------------------------------- notes and files


def test_notes_on_a_record_and_via_parent_id(
    api: TestClient, zs: ZohoSandbox, seeded: dict[str, str]
) -> None:
    url = f"/crm/v7/Invoices/{seeded['invoice']}/Notes"
    assert api.get(url).status_code == 204
    added = api.post(
        url, json={"data": [{"Note_Title": "Xero", "Note_Content": "Synced as INV-1"}]}
    )
    assert added.status_code == 201 and added.json()["data"][0]["code"] == "SUCCESS"
    parent = {"module": {"api_name": "Invoices"}, "id": seeded["invoice"]}
    rows = [
        {"Note_Content": "Paid", "Parent_Id": parent},
        {"Note_Title": "no content", "Parent_Id": parent},
    ]
    mixed = api.post("/crm/v7/Notes", json={"data": rows})
    assert mixed.status_code == 207
    assert mixed.json()["data"][1]["code"] == "MANDATORY_NOT_FOUND"
    listed = api.get(url).json()["data"]
    assert sorted(n["Note_Content"] for n in listed) == ["Paid", "Synced as INV-1"]
    notes = zs.notes(ORG, "Invoices", seeded["invoice"])
    assert [n["Note_Title"] for n in notes] == ["Xero", None]
    assert notes[0]["Parent_Id"]["id"] == seeded["invoice"]


def test_attachments_store_name_size_and_type(
    api: TestClient, zs: ZohoSandbox, seeded: dict[str, str]
) -> None:
    url = f"/crm/v7/Invoices/{seeded['invoice']}/Attachments"
    files = {"file": ("INV-1.pdf", b"%PDF-1.7 hello", "application/pdf")}
    response = api.post(url, files=files)
    assert response.status_code == 200 and response.json()["data"][0]["code"] == "SUCCESS"
    [stored] = zs.attachments(ORG, "Invoices", seeded["invoice"])
    assert (stored["File_Name"], stored["Size"], stored["$content_type"]) == (
        "INV-1.pdf",
        "14",
        "application/pdf",
    )
    assert api.get(url).json()["data"][0]["File_Name"] == "INV-1.pdf"
    assert api.post(url, data={"other": "x"}).json()["code"] == "REQUIRED_PARAM_MISSING"


def test_field_metadata_lists_the_custom_fields(api: TestClient) -> None:
    fields = api.get("/crm/v7/settings/fields", params={"module": "Invoices"}).json()["fields"]
    by_name = {f["api_name"]: f for f in fields}
    assert by_name["Xero_Sync_Status"]["custom_field"] is True
    assert [v["actual_value"] for v in by_name["Xero_Sync_Status"]["pick_list_values"]] == [
        "Pending",
        "Synced",
        "Failed",
    ]
    assert by_name["Account_Name"]["lookup"] == {"module": {"api_name": "Accounts"}}


# -------------------------------------------------------------------------------- totals


def test_totals_follow_line_discount_tax_and_record_adjustments(
    zs: ZohoSandbox, seeded: dict[str, str]
) -> None:
    invoice = zs.get(ORG, "Invoices", seeded["invoice"])
    assert invoice is not None
    tile, grout = invoice["Invoiced_Items"]
    # 1.5 x 10.33 = 15.495 -> 15.50; less 1.00 discount; GST 10% of 14.50 = 1.45.
    assert (tile["Total"], tile["Total_After_Discount"], tile["Tax"], tile["Net_Total"]) == (
        Decimal("15.50"),
        Decimal("14.50"),
        Decimal("1.45"),
        Decimal("15.95"),
    )
    assert tile["Line_Tax"] == [{"name": "GST", "percentage": 10, "value": Decimal("1.45")}]
    assert (grout["Total"], grout["Tax"]) == (Decimal("9.98"), Decimal("1.00"))
    assert (invoice["Sub_Total"], invoice["Tax"]) == (Decimal("24.48"), Decimal("2.45"))
    # 24.48 - 2.00 + 2.45 + 0.05
    assert invoice["Grand_Total"] == Decimal("24.98")
    assert invoice["$line_tax"] == [{"name": "GST", "percentage": 10, "value": Decimal("2.45")}]


def test_api_edit_of_lines_recomputes_and_drops_rows_not_sent(
    api: TestClient, zs: ZohoSandbox, seeded: dict[str, str]
) -> None:
    before = zs.get(ORG, "Invoices", seeded["invoice"])
    assert before is not None
    tile = before["Invoiced_Items"][0]
    rows = [
        {"id": tile["id"], "Quantity": 3},
        {"Product_Name": {"id": seeded["tile"]}, "Quantity": 1},
    ]
    response = api.put(
        f"/crm/v7/Invoices/{seeded['invoice']}",
        json={"data": [{"Invoiced_Items": rows, "Discount": 0}], "trigger": []},
    )
    assert response.status_code == 200
    after = zs.get(ORG, "Invoices", seeded["invoice"])
    assert after is not None
    edited, added = after["Invoiced_Items"]
    assert edited["id"] == tile["id"] and edited["Total_After_Discount"] == Decimal("29.99")
    assert added["List_Price"] == Decimal(3)  # the product's Unit_Price
    # 29.99 + 3.00 (no tax on the new line) + tax 3.00 + adjustment 0.05
    assert after["Grand_Total"] == Decimal("36.04")


def test_planted_totals_are_kept_until_lines_change(
    zs: ZohoSandbox, seeded: dict[str, str]
) -> None:
    planted = zs.insert(
        ORG,
        "Invoices",
        {
            "$zxs_keep_totals": True,
            "Subject": "Rounded by Zoho",
            "Account_Name": {"id": seeded["account"]},
            "Invoiced_Items": [
                {
                    "Product_Name": {"id": seeded["tile"]},
                    "Quantity": 3,
                    "List_Price": Decimal("0.33"),
                    "Total": Decimal("0.99"),
                    "Total_After_Discount": Decimal("0.99"),
                    "Line_Tax": [{"name": "GST", "percentage": 10, "value": Decimal("0.10")}],
                    "Tax": Decimal("0.10"),
                    "Net_Total": Decimal("1.09"),
                }
            ],
            "Sub_Total": Decimal("0.99"),
            "Tax": Decimal("0.10"),
            "Grand_Total": Decimal("1.10"),
        },
    )
    assert planted["Grand_Total"] == Decimal("1.10") and "$zxs_keep_totals" not in planted
    edited = zs.update(ORG, "Invoices", planted["id"], {"Xero_Sync_Status": "Synced"})
    assert edited["Grand_Total"] == Decimal("1.10")


def test_admin_insert_validates_like_the_api(zs: ZohoSandbox) -> None:
    with pytest.raises(ZohoValidationError) as caught:
        zs.insert(ORG, "Products", {"Product_Name": "Float", "Unit_Price": 1.5})
    assert caught.value.body["details"]["api_name"] == "Unit_Price"


# -------------------------------------------------------------------------------- limits


def test_credits_per_rolling_day_then_429(clock: Clock) -> None:
    zs = make_sandbox(clock, zoho_limits=ZohoLimits(credits_per_day=2), minute_seconds=1)
    with TestClient(create_zoho_app(zs)) as http:
        headers = auth(http)
        codes = [http.get("/crm/v7/Accounts/1", headers=headers).status_code for _ in range(3)]
        assert codes == [204, 204, 429]
        assert http.get("/crm/v7/Accounts/1", headers=headers).json() == {
            "code": "TOO_MANY_REQUESTS",
            "details": {},
            "message": "too many requests",
            "status": "error",
        }
        clock.now += 1440  # one sandbox day
        assert http.get("/crm/v7/Accounts/1", headers=headers).status_code == 204
    stats = zs.stats()
    assert stats["calls"] == {ORG: 3}
    assert stats["status"][429] == 2
    assert stats["by_route"]["GET /crm/v7/Accounts/{id}"] == 5


def test_concurrency_slot_per_org(clock: Clock) -> None:
    zs = make_sandbox(clock, zoho_limits=ZohoLimits(concurrent=1))
    assert zs.admit(ORG) is True
    assert zs.admit(ORG) is False
    zs.release(ORG)
    assert zs.admit(ORG) is True


def test_fault_rate_answers_500_internal_error(clock: Clock) -> None:
    zs = make_sandbox(clock, fault_rate=1.0)
    with TestClient(create_zoho_app(zs)) as http:
        response = http.get("/crm/v7/Accounts/1", headers=auth(http))
    assert (response.status_code, response.json()["code"]) == (500, "INTERNAL_ERROR")


def test_reset_keeps_clients_but_drops_data_and_tokens(
    http: TestClient, zs: ZohoSandbox, seeded: dict[str, str]
) -> None:
    headers = auth(http)
    zs.reset()
    assert zs.records(ORG, "Invoices") == []
    assert http.get(f"/crm/v7/Invoices/{seeded['invoice']}", headers=headers).status_code == 401
    assert "access_token" in refresh(http).json()


def test_over_real_http_with_the_returned_api_domain(
    zs: ZohoSandbox, seeded: dict[str, str]
) -> None:
    with ThreadedServer(create_zoho_app(zs)) as server:
        token = httpx.post(
            f"{server.url}/oauth/v2/token", params={"grant_type": "refresh_token", **CLIENT}
        ).json()
        assert token["api_domain"] == server.url
        response = httpx.get(
            f"{token['api_domain']}/crm/v7/Invoices/{seeded['invoice']}",
            headers={"Authorization": f"Zoho-oauthtoken {token['access_token']}"},
        )
    assert body(response)["data"][0]["Grand_Total"] == Decimal("24.98")


def test_a_deleted_record_reads_as_gone_and_is_in_the_deleted_list(
    zs: ZohoSandbox, http: TestClient, clock: Clock
) -> None:
    """FACTS §11 and Zoho's "Get Deleted Records" (v2+): `GET /{module}/deleted?type=...`."""
    headers = auth(http)
    account = zs.insert(ORG, "Accounts", {"Account_Name": "Gone Pty"})
    assert http.get("/crm/v7/Accounts/deleted", headers=headers).status_code == 204
    zs.delete(ORG, "Accounts", account["id"])
    assert http.get(f"/crm/v7/Accounts/{account['id']}", headers=headers).status_code == 204
    listed = http.get("/crm/v7/Accounts/deleted", params={"type": "all"}, headers=headers)
    [entry] = body(listed)["data"]
    assert (entry["id"], entry["type"], entry["display_name"]) == (
        account["id"],
        "recycle",
        "Gone Pty",
    )
    assert entry["deleted_time"].startswith("2026-11-25T")
    assert body(listed)["info"]["more_records"] is False
    permanent = http.get("/crm/v7/Accounts/deleted", params={"type": "permanent"}, headers=headers)
    assert permanent.status_code == 204
    wrong = http.get("/crm/v7/Accounts/deleted", params={"type": "bin"}, headers=headers)
    assert wrong.status_code == 400 and body(wrong)["code"] == "INVALID_DATA"


# --------------------------------------------------------------------------- notification channels


def test_actions_watch_notifies_until_the_channel_expires_and_put_renews(
    zs: ZohoSandbox, api: TestClient, clock: Clock
) -> None:
    """FACTS §7/§11: channels lapse at channel_expiry and Zoho sends nothing after it."""
    import time

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        got.append(json.loads(await request.body()))
        return Response(status_code=200)

    receiver = ThreadedServer(Starlette(routes=[Route("/n", hook, methods=["POST"])])).start()
    try:
        account = zs.insert(ORG, "Accounts", {"Account_Name": "Watch Pty"})
        expiry = datetime.fromtimestamp(clock.now + 3600, UTC).isoformat()
        channel = {
            "channel_id": "1000000068001",
            "events": ["Accounts.all"],
            "notify_url": f"{receiver.url}/n",
            "token": "tok",
            "channel_expiry": expiry,
        }
        week = datetime.fromtimestamp(clock.now + 8 * 86400, UTC).isoformat()
        too_long = api.post(
            "/crm/v8/actions/watch", json={"watch": [{**channel, "channel_expiry": week}]}
        )
        assert too_long.status_code == 400 and too_long.json()["code"] == "INVALID_DATA"
        unknown = api.put("/crm/v8/actions/watch", json={"watch": [channel]})
        assert unknown.status_code == 400, "PUT replaces an existing channel only"
        made = api.post("/crm/v8/actions/watch", json={"watch": [channel]})
        assert made.status_code == 200, made.text
        event = made.json()["watch"][0]["details"]["events"][0]
        assert event["channel_expiry"].startswith(expiry[:19])

        zs.update(ORG, "Accounts", account["id"], {"Account_Name": "Watch Pty Ltd"})
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got and got[0]["ids"] == [account["id"]] and got[0]["operation"] == "update"
        assert got[0]["token"] == "tok" and got[0]["module"] == "Accounts"

        clock.now += 3601  # past the expiry: nothing is sent, nothing is listed
        api.headers.update(auth(api))  # the access token lapsed too
        zs.update(ORG, "Accounts", account["id"], {"Account_Name": "Watch 2"})
        time.sleep(0.3)
        assert len(got) == 1
        assert api.get("/crm/v8/actions/watch").json()["watch"] == []
        gone = api.put("/crm/v8/actions/watch", json={"watch": [channel]})
        assert gone.status_code == 400, "an expired time is refused: renew before it"

        renewed = {
            **channel,
            "channel_expiry": datetime.fromtimestamp(clock.now + 86400, UTC).isoformat(),
        }
        assert api.put("/crm/v8/actions/watch", json={"watch": [renewed]}).status_code == 200
        zs.update(ORG, "Accounts", account["id"], {"Account_Name": "Watch 3"})
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(got) == 2
    finally:
        zs.notifications.close()
        receiver.stop()


def test_a_list_by_ids_takes_at_most_100_ids(api: TestClient, seeded: dict[str, str]) -> None:
    """Zoho reads up to 100 records by `ids` in one call (FACTS §3): more is refused, so a
    client that batches reads must split them."""
    ids = [seeded["invoice"], *(str(10**15 + n) for n in range(100))]
    params = {"fields": "Grand_Total", "ids": ",".join(ids)}
    refused = api.get("/crm/v7/Invoices", params=params)
    assert refused.status_code == 400 and refused.json()["code"] == "LIMIT_EXCEEDED"
    assert refused.json()["details"] == {"param": "ids", "limit": 100}
    params["ids"] = ",".join(ids[:100])
    assert [r["id"] for r in body(api.get("/crm/v7/Invoices", params=params))["data"]] == [
        seeded["invoice"]
    ]
