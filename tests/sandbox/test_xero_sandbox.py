"""The Xero sandbox over real HTTP: OAuth, limits, idempotency, batches, documents, where."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from conftest import xero_spec

from sandbox.config import SandboxConfig, XeroLimits
from sandbox.server import ThreadedServer
from sandbox.xero_app import XeroSandbox, create_xero_app
from sandbox.xero_where import WhereError, compile_where, order_objects

pytestmark = pytest.mark.integration  # the sandbox served over HTTP, a server per test

API = "/api.xro/2.0"
AU = "11111111-1111-4111-8111-111111111111"
NZ = "22222222-2222-4222-8222-222222222222"


class Sandbox:
    """A running sandbox with one AU org connected to app `app` and an unconnected NZ org."""

    def __init__(self, config: SandboxConfig) -> None:
        self.xs = XeroSandbox(config)
        self.xs.add_tenant(AU, "Acme AU", currencies=["USD"])
        self.xs.add_tenant(NZ, "Acme NZ", country="NZ", base_currency="NZD")
        self.xs.add_client("app", "secret", "rt-0", [AU])
        self.server = ThreadedServer(create_xero_app(self.xs)).start()
        self.http = httpx.Client(base_url=self.server.url, timeout=10)
        self._token: str | None = None

    def refresh(self, token: str, secret: str = "secret") -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": token}
        return self.http.post("/connect/token", data=form, auth=("app", secret))

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = str(self.refresh("rt-0").json()["access_token"])
        return self._token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        tenant: str = AU,
        headers: dict[str, str] | None = None,
        **params: str,
    ) -> httpx.Response:
        sent = {"Authorization": f"Bearer {self.token}", "xero-tenant-id": tenant}
        content = json.dumps(body, default=str) if body is not None else None
        return self.http.request(
            method, API + path, content=content, params=params, headers={**sent, **(headers or {})}
        )

    def close(self) -> None:
        self.http.close()
        self.server.stop()


def data(response: httpx.Response) -> Any:
    """Parse like a careful client: every non-integer number as an exact Decimal."""
    return json.loads(response.text, parse_float=Decimal)


@pytest.fixture
def make() -> Iterator[Callable[..., Sandbox]]:
    started: list[Sandbox] = []

    def factory(**overrides: Any) -> Sandbox:
        sandbox = Sandbox(SandboxConfig(**overrides))
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.close()


@pytest.fixture
def sb(make: Callable[..., Sandbox]) -> Sandbox:
    return make()


def invoice(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Type": "ACCREC",
        "Contact": {"Name": "Bob's Bikes"},
        "Date": "2026-11-25",
        "DueDate": "2026-12-25",
        "Status": "AUTHORISED",
        "LineItems": [
            {"Description": "Tyre", "Quantity": 1, "UnitAmount": "100.00", "AccountCode": "200"}
        ],
    }
    base.update(fields)
    return base


def line(quantity: str, unit: str, **fields: Any) -> dict[str, Any]:
    return {
        "Description": "x",
        "Quantity": quantity,
        "UnitAmount": unit,
        "AccountCode": "200",
        "TaxType": "OUTPUT",
        **fields,
    }


# --------------------------------------------------------------------------- OAuth


def test_refresh_token_rotates_and_old_one_has_a_grace_period(make: Callable[..., Sandbox]) -> None:
    sb = make(xero_refresh_grace_seconds=0.4)
    first = sb.refresh("rt-0")
    assert first.status_code == 200
    tokens = first.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 1800
    assert {"id_token", "access_token", "refresh_token", "scope"} <= tokens.keys()
    assert tokens["refresh_token"] != "rt-0"

    assert sb.refresh("rt-0").status_code == 200  # retry inside the grace period
    time.sleep(0.5)
    late = sb.refresh("rt-0")
    assert (late.status_code, late.json()) == (400, {"error": "invalid_grant"})
    rotated = sb.refresh(tokens["refresh_token"])
    assert rotated.status_code == 200

    assert sb.refresh("never-issued").json() == {"error": "invalid_grant"}
    bad_client = sb.refresh(rotated.json()["refresh_token"], secret="wrong")
    assert (bad_client.status_code, bad_client.json()) == (400, {"error": "invalid_client"})
    in_form = sb.http.post(
        "/connect/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": rotated.json()["refresh_token"],
            "client_id": "app",
            "client_secret": "secret",
        },
    )
    assert in_form.status_code == 200
    assert sb.xs.stats()["token_refreshes"] == 4


def test_authorization_code_flow_and_connections(sb: Sandbox) -> None:
    consent = sb.http.get(
        "/identity/connect/authorize",
        params={
            "response_type": "code",
            "client_id": "app",
            "redirect_uri": "http://localhost/cb",
            "scope": "openid accounting.settings offline_access",
            "state": "xyz",
        },
    )
    assert consent.status_code == 302
    query = parse_qs(urlparse(consent.headers["location"]).query)
    assert query["state"] == ["xyz"]
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": "http://localhost/cb",
    }
    tokens = sb.http.post("/connect/token", data=form, auth=("app", "secret"))
    assert tokens.status_code == 200 and "refresh_token" in tokens.json()
    again = sb.http.post("/connect/token", data=form, auth=("app", "secret"))
    assert again.json() == {"error": "invalid_grant"}

    bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    connections = sb.http.get("/connections", headers=bearer)
    assert connections.status_code == 200
    [conn] = connections.json()
    assert conn["tenantId"] == AU and conn["tenantType"] == "ORGANISATION"
    assert conn["tenantName"] == "Acme AU"
    assert {"id", "authEventId", "createdDateUtc", "updatedDateUtc"} <= conn.keys()
    assert "X-AppMinLimit-Remaining" in connections.headers
    assert "X-MinLimit-Remaining" not in connections.headers

    gone = sb.http.delete(f"/connections/{conn['id']}", headers=bearer)
    assert gone.status_code == 204
    assert sb.call("GET", "/Organisation", headers=bearer).status_code == 403
    assert sb.call("GET", "/Organisation").status_code == 200  # another consent's token


def test_expired_and_unknown_access_tokens_get_401(make: Callable[..., Sandbox]) -> None:
    sb = make(xero_access_token_seconds=0.3)
    assert sb.call("GET", "/Organisation").status_code == 200
    time.sleep(0.4)
    expired = sb.call("GET", "/Organisation")
    assert expired.status_code == 401
    body = expired.json()
    assert body["Title"] == "Unauthorized" and body["Status"] == 401 and body["Type"] is None
    assert body["Detail"].startswith("TokenExpired: token expired at ")
    assert body["Extensions"] == {} and body["Instance"]

    unknown = sb.call("GET", "/Organisation", headers={"Authorization": "Bearer nope"})
    assert (unknown.status_code, unknown.json()["Detail"]) == (401, "AuthenticationUnsuccessful")


def test_each_consent_sees_only_its_own_tenants(sb: Sandbox) -> None:
    sb.xs.add_client("app", "secret", "rt-nz", [NZ])
    nz_token = sb.refresh("rt-nz").json()["access_token"]
    bearer = {"Authorization": f"Bearer {nz_token}"}
    assert [c["tenantId"] for c in sb.http.get("/connections", headers=bearer).json()] == [NZ]
    nz = sb.call("GET", "/Organisation", tenant=NZ, headers=bearer)
    assert nz.json()["Organisations"][0]["CountryCode"] == "NZ"
    assert sb.call("GET", "/Organisation", tenant=AU, headers=bearer).status_code == 403
    assert sb.call("GET", "/Organisation", tenant=AU).status_code == 200
    with pytest.raises(ValueError, match="another secret"):
        sb.xs.add_client("app", "other", "rt-x", [AU])


@pytest.mark.parametrize("tenant", ["", "33333333-3333-4333-8333-333333333333", NZ])
def test_missing_unknown_or_unconnected_tenant_gets_403(sb: Sandbox, tenant: str) -> None:
    answer = sb.call("GET", "/Invoices", tenant=tenant)
    assert answer.status_code == 403
    assert answer.json()["Detail"] == "AuthenticationUnsuccessful"


# --------------------------------------------------------------------------- settings


def test_settings_are_seeded_by_country(sb: Sandbox) -> None:
    org = data(sb.call("GET", "/Organisation"))["Organisations"][0]
    assert (org["Name"], org["CountryCode"], org["BaseCurrency"]) == ("Acme AU", "AU", "AUD")
    rates = {r["TaxType"]: r for r in data(sb.call("GET", "/TaxRates"))["TaxRates"]}
    assert rates["OUTPUT"]["EffectiveRate"] == Decimal("10.0000")
    assert set(rates) == {"OUTPUT", "INPUT", "EXEMPTOUTPUT", "BASEXCLUDED"}
    accounts = data(sb.call("GET", "/Accounts", where='Type=="REVENUE"'))["Accounts"]
    assert [a["Code"] for a in accounts] == ["200"]
    currencies = data(sb.call("GET", "/Currencies"))["Currencies"]
    assert [c["Code"] for c in currencies] == ["AUD", "USD"]


# --------------------------------------------------------------------------- contacts, items


def test_contact_create_lookup_and_duplicate_name(sb: Sandbox) -> None:
    created = sb.call(
        "PUT",
        "/Contacts",
        {"Contacts": [{"Name": "Acme Ltd", "ContactNumber": "Z-1", "EmailAddress": "a@acme.test"}]},
    )
    assert created.status_code == 200
    contact = created.json()["Contacts"][0]
    assert contact["ContactStatus"] == "ACTIVE" and contact["ContactID"]
    assert contact["UpdatedDateUTC"].startswith("/Date(")

    found = sb.call("GET", "/Contacts", where='Name=="Acme Ltd"').json()["Contacts"]
    assert [c["ContactID"] for c in found] == [contact["ContactID"]]
    assert sb.call("GET", "/Contacts", where='Name.StartsWith("Acme")').json()["Contacts"]
    assert sb.call("GET", "/Contacts/Z-1").json()["Contacts"][0]["Name"] == "Acme Ltd"
    assert sb.call("GET", "/Contacts", searchTerm="ACME").json()["Contacts"]

    duplicate = sb.call("PUT", "/Contacts", {"Name": "acme ltd"})
    assert duplicate.status_code == 400
    [element] = duplicate.json()["Elements"]
    assert element["ValidationErrors"] == [
        {
            "Message": (
                "The contact name acme ltd is already assigned to another contact. "
                "The contact name must be unique across all active contacts."
            )
        }
    ]

    renamed = sb.call("POST", "/Contacts", {"ContactID": contact["ContactID"], "Name": "Acme 2"})
    assert renamed.status_code == 200 and len(sb.xs.contacts(AU)) == 1
    assert sb.xs.contacts(AU)[0]["EmailAddress"] == "a@acme.test"


def test_item_create_duplicate_code_and_bad_account(sb: Sandbox) -> None:
    item = {
        "Code": "P-1",
        "Name": "Pump",
        "SalesDetails": {"UnitPrice": "12.50", "AccountCode": "200"},
    }
    assert sb.call("PUT", "/Items", {"Items": [item]}).status_code == 200
    duplicate = sb.call("PUT", "/Items", {"Items": [item]})
    assert duplicate.status_code == 400
    assert "P-1" in duplicate.json()["Elements"][0]["ValidationErrors"][0]["Message"]
    bad = sb.call("PUT", "/Items", {"Code": "P-2", "SalesDetails": {"AccountCode": "999"}})
    assert bad.json()["Elements"][0]["ValidationErrors"] == [
        {"Message": "Account code '999' is not a valid code for this document."}
    ]
    [found] = data(sb.call("GET", "/Items", where='Code=="P-1"'))["Items"]
    assert found["SalesDetails"]["UnitPrice"] == Decimal("12.50")
    assert sb.call("GET", "/Items/P-1").status_code == 200
    assert "pagination" not in sb.call("GET", "/Items", page="1").json()


# --------------------------------------------------------------------------- invoices


def test_invoice_totals_exclusive_with_per_line_rounding(sb: Sandbox) -> None:
    sent = invoice(
        LineItems=[line("3", "19.99"), line("1", "0.05"), line("1", "10.00", TaxType="BASEXCLUDED")]
    )
    answer = sb.call("PUT", "/Invoices", {"Invoices": [sent]})
    assert answer.status_code == 200, answer.text
    inv = data(answer)["Invoices"][0]
    assert [li["TaxAmount"] for li in inv["LineItems"]] == [
        Decimal("6.00"),
        Decimal("0.01"),
        Decimal("0.00"),
    ]
    assert (inv["SubTotal"], inv["TotalTax"], inv["Total"], inv["AmountDue"]) == (
        Decimal("70.02"),
        Decimal("6.01"),
        Decimal("76.03"),
        Decimal("76.03"),
    )
    assert inv["LineItems"][0]["Quantity"] == Decimal("3.0000")
    assert inv["InvoiceNumber"] == "INV-0001" and inv["HasErrors"] is False
    assert inv["DateString"] == "2026-11-25T00:00:00"
    assert inv["Date"] == "/Date(1795564800000+0000)/"
    assert inv["DueDateString"] == "2026-12-25T00:00:00"
    assert inv["Contact"]["Name"] == "Bob's Bikes"  # created from an unknown name
    assert sb.xs.contacts(AU)[0]["IsCustomer"] is True


def test_invoice_totals_inclusive_override_and_discounts(sb: Sandbox) -> None:
    inclusive = invoice(
        LineAmountTypes="Inclusive", LineItems=[line("1", "110.00"), line("1", "9.99")]
    )
    override = invoice(LineItems=[line("1", "100.00", TaxAmount="9.99")])
    discounted = invoice(
        LineItems=[
            line("2", "50.00", DiscountAmount="10"),
            line("3", "33.33", DiscountRate="10"),
        ]
    )
    four_dp = invoice(LineItems=[line("3", "1.23456")])
    answer = sb.call("PUT", "/Invoices", {"Invoices": [inclusive, override, discounted]})
    inc, over, disc = data(answer)["Invoices"]

    assert [li["TaxAmount"] for li in inc["LineItems"]] == [Decimal("10.00"), Decimal("0.91")]
    assert (inc["SubTotal"], inc["TotalTax"], inc["Total"]) == (
        Decimal("109.08"),
        Decimal("10.91"),
        Decimal("119.99"),
    )
    assert (over["TotalTax"], over["Total"]) == (Decimal("9.99"), Decimal("109.99"))
    assert [li["LineAmount"] for li in disc["LineItems"]] == [Decimal("90.00"), Decimal("89.99")]
    assert disc["TotalDiscount"] == Decimal("20.00")
    assert (disc["SubTotal"], disc["TotalTax"], disc["Total"]) == (
        Decimal("179.99"),
        Decimal("18.00"),
        Decimal("197.99"),
    )

    two = data(sb.call("PUT", "/Invoices", four_dp))["Invoices"][0]["LineItems"][0]
    four = data(sb.call("PUT", "/Invoices", four_dp, unitdp="4"))["Invoices"][0]["LineItems"][0]
    assert (two["UnitAmount"], two["LineAmount"]) == (Decimal("1.23"), Decimal("3.69"))
    assert (four["UnitAmount"], four["LineAmount"]) == (Decimal("1.2346"), Decimal("3.70"))


def test_invalid_account_code_is_a_validation_exception(sb: Sandbox) -> None:
    sent = invoice(Reference="R-9", LineItems=[line("1", "5", AccountCode="610")])
    answer = sb.call("PUT", "/Invoices", {"Invoices": [sent]})
    assert answer.status_code == 400
    body = answer.json()
    assert (body["ErrorNumber"], body["Type"], body["Message"]) == (
        10,
        "ValidationException",
        "A validation exception occurred",
    )
    [element] = body["Elements"]
    assert element["Reference"] == "R-9"
    assert element["ValidationErrors"] == [
        {"Message": "Account code '610' is not a valid code for this document."}
    ]
    assert sb.xs.invoices(AU) == [] and sb.xs.contacts(AU) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"LineItems": [line("1", "5", ItemCode="NOPE")]}, "Item code 'NOPE' is not valid"),
        (
            {"LineItems": [line("1", "5", TaxType="INPUT")]},
            "The TaxType code INPUT does not exist or cannot be used with this type of "
            "transaction.",
        ),
        ({"CurrencyCode": "EUR"}, "Organisation is not subscribed to currency EUR"),
        ({"DueDate": None}, "Due Date is mandatory."),
    ],
)
def test_invoice_validation_messages(sb: Sandbox, fields: dict[str, Any], message: str) -> None:
    answer = sb.call("PUT", "/Invoices", invoice(**fields))
    assert {"Message": message} in answer.json()["Elements"][0]["ValidationErrors"]


def test_contact_resolution_and_archived_contact(sb: Sandbox) -> None:
    archived = sb.xs.add_contact(AU, {"Name": "Old Co", "ContactNumber": "OLD"})
    sb.call("POST", "/Contacts", {"ContactID": archived["ContactID"], "ContactStatus": "ARCHIVED"})
    refused = sb.call("PUT", "/Invoices", invoice(Contact={"ContactNumber": "OLD"}))
    assert refused.json()["Elements"][0]["ValidationErrors"][0]["Message"].startswith(
        "The contact with the specified contact details has been archived."
    )
    assert sb.call("GET", "/Contacts", where='Name=="Old Co"').json()["Contacts"] == []
    assert sb.call("GET", "/Contacts", where='Name=="Old Co"', includeArchived="true").json()[
        "Contacts"
    ]
    known = sb.xs.add_contact(AU, {"Name": "Known"})
    by_id = sb.call("PUT", "/Invoices", invoice(Contact={"ContactID": known["ContactID"]}))
    assert by_id.json()["Invoices"][0]["Contact"]["Name"] == "Known"


def test_batch_with_summarize_errors_false_answers_200_per_element(sb: Sandbox) -> None:
    good, bad = invoice(Reference="good"), invoice(Reference="bad", InvoiceNumber="X" * 256)
    answer = sb.call("PUT", "/Invoices", {"Invoices": [good, bad]}, summarizeErrors="false")
    assert answer.status_code == 200
    ok, error = answer.json()["Invoices"]
    assert ok["StatusAttributeString"] == "OK" and ok["InvoiceID"]
    assert error["StatusAttributeString"] == "ERROR" and error["HasErrors"] is True
    assert error["ValidationErrors"] and error["Reference"] == "bad"
    assert [i["Reference"] for i in sb.xs.invoices(AU)] == ["good"]


def test_batch_without_summarize_errors_still_saves_the_good_ones(sb: Sandbox) -> None:
    good = invoice(Reference="good")
    bad = invoice(Reference="bad", LineItems=[line("1", "1", AccountCode="999")])
    answer = sb.call("PUT", "/Invoices", {"Invoices": [good, bad]})
    assert answer.status_code == 400
    assert [e["Reference"] for e in answer.json()["Elements"]] == ["bad"]
    assert "Invoices" not in answer.json()
    assert [i["Reference"] for i in sb.xs.invoices(AU)] == ["good"]


def test_status_rules_on_update(sb: Sandbox) -> None:
    draft = sb.call("PUT", "/Invoices", invoice(Status="DRAFT", DueDate=None)).json()
    draft_id = draft["Invoices"][0]["InvoiceID"]
    edited = sb.call(
        "POST", f"/Invoices/{draft_id}", {"Reference": "edited", "LineItems": [line("2", "10")]}
    )
    assert edited.status_code == 200
    assert data(edited)["Invoices"][0]["Total"] == Decimal("22.00")
    inclusive = data(sb.call("POST", f"/Invoices/{draft_id}", {"LineAmountTypes": "Inclusive"}))
    assert (inclusive["Invoices"][0]["Total"], inclusive["Invoices"][0]["TotalTax"]) == (
        Decimal("20.00"),
        Decimal("1.82"),
    )
    assert (
        sb.call("POST", "/Invoices", {"InvoiceID": draft_id, "Status": "DELETED"}).status_code
        == 200
    )
    dead = sb.call("POST", "/Invoices", {"InvoiceID": draft_id, "Status": "DRAFT"})
    assert dead.json()["Elements"][0]["ValidationErrors"][0]["Message"] == (
        "Invoice not of valid status for modification"
    )

    authorised = sb.call("PUT", "/Invoices", invoice()).json()["Invoices"][0]
    number = authorised["InvoiceNumber"]
    back = sb.call("POST", "/Invoices", {"InvoiceNumber": number, "Status": "DRAFT"})
    assert back.status_code == 400
    assert sb.call("PUT", "/Invoices", invoice(InvoiceNumber=number)).json()["Elements"][0][
        "ValidationErrors"
    ] == [{"Message": "Invoice # must be unique."}]

    sb.xs.add_payment(AU, authorised["InvoiceID"], Decimal("10.00"))
    paid = sb.call("POST", "/Invoices", {"InvoiceNumber": number, "Status": "VOIDED"})
    assert paid.json()["Elements"][0]["ValidationErrors"][0]["Message"] == (
        "This document cannot be edited as it has a payment or credit note allocated to it."
    )
    fresh = sb.call("PUT", "/Invoices", invoice()).json()["Invoices"][0]
    voided = sb.call("POST", f"/Invoices/{fresh['InvoiceID']}", {"Status": "VOIDED"})
    assert voided.json()["Invoices"][0]["Status"] == "VOIDED"


def test_get_unknown_invoice_is_404_text(sb: Sandbox) -> None:
    answer = sb.call("GET", "/Invoices/00000000-0000-0000-0000-000000000000")
    assert (answer.status_code, answer.text) == (
        404,
        "The resource you're looking for cannot be found",
    )


def test_malformed_and_empty_bodies(sb: Sandbox) -> None:
    malformed = sb.http.put(
        API + "/Invoices",
        content=b"{nope",
        headers={
            "Authorization": f"Bearer {sb.token}",
            "xero-tenant-id": AU,
        },
    )
    assert (malformed.status_code, malformed.json()["ErrorNumber"]) == (400, 14)
    assert malformed.json()["Type"] == "PostDataInvalidException"
    assert sb.call("PUT", "/Invoices", {"Invoices": []}).json()["ErrorNumber"] == 17


# --------------------------------------------------------------------------- idempotency


def test_idempotency_replays_and_refuses_a_different_request(sb: Sandbox) -> None:
    key = {"Idempotency-Key": "zoho-inv-42"}
    first = sb.call("PUT", "/Invoices", invoice(), headers=key)
    second = sb.call("PUT", "/Invoices", invoice(), headers=key)
    assert first.status_code == second.status_code == 200
    assert first.json()["Invoices"][0]["InvoiceID"] == second.json()["Invoices"][0]["InvoiceID"]
    assert len(sb.xs.invoices(AU)) == 1

    other = sb.call("PUT", "/Invoices", invoice(Reference="changed"), headers=key)
    assert other.status_code == 400
    assert other.json()["Message"] == (
        "Idempotency Key: zoho-inv-42 is used with a different request."
    )

    bad = invoice(LineItems=[line("1", "1", AccountCode="999")])
    errors = [sb.call("PUT", "/Invoices", bad, headers={"Idempotency-Key": "k2"}) for _ in range(2)]
    assert [e.status_code for e in errors] == [400, 400]
    assert errors[0].json() == errors[1].json()
    too_long = sb.call("PUT", "/Invoices", invoice(), headers={"Idempotency-Key": "k" * 129})
    assert too_long.status_code == 400


def test_idempotency_key_expires_after_the_window(make: Callable[..., Sandbox]) -> None:
    sb = make(idempotency_window_seconds=0.3)
    key = {"Idempotency-Key": "short"}
    sb.call("PUT", "/Invoices", invoice(), headers=key)
    time.sleep(0.4)
    sb.call("PUT", "/Invoices", invoice(), headers=key)
    assert len(sb.xs.invoices(AU)) == 2


# --------------------------------------------------------------------------- limits and faults


def test_minute_limit_answers_429_with_retry_after(make: Callable[..., Sandbox]) -> None:
    sb = make(minute_seconds=1, xero_limits=XeroLimits(per_minute=3))
    _ = sb.token
    remaining = [sb.call("GET", "/Organisation").headers["X-MinLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    refused = sb.call("GET", "/Organisation")
    assert refused.status_code == 429
    assert refused.headers["X-Rate-Limit-Problem"] == "minute"
    assert refused.headers["Retry-After"] == "1"
    assert "X-DayLimit-Remaining" in refused.headers
    assert "X-AppMinLimit-Remaining" in refused.headers
    stats = sb.xs.stats()
    assert stats["rate_limited"]["minute"] == 1 and stats["status"]["429"] == 1
    assert stats["calls"][AU] == 4 and stats["by_route"]["GET /Organisation"] == 4
    time.sleep(1.05)
    assert sb.call("GET", "/Organisation").status_code == 200


def test_concurrent_limit_has_no_retry_after(make: Callable[..., Sandbox]) -> None:
    sb = make(latency_seconds=0.3, xero_limits=XeroLimits(concurrent=1))
    _ = sb.token
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: answers.append(sb.call("GET", "/Organisation")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == 1 and refused[0].headers["X-Rate-Limit-Problem"] == "concurrent"
    assert "Retry-After" not in refused[0].headers


def test_fault_rate_answers_503(make: Callable[..., Sandbox]) -> None:
    sb = make(fault_rate=1.0)
    assert sb.call("GET", "/Organisation").status_code == 503
    assert sb.xs.stats()["calls"] == {}


# --------------------------------------------------------------------------- lists


def test_invoice_paging_filters_and_line_items(sb: Sandbox) -> None:
    batch = [invoice(Reference=f"R{n}") for n in range(5)]
    assert sb.call("PUT", "/Invoices", {"Invoices": batch}).status_code == 200
    first = sb.call("GET", "/Invoices", page="1", pageSize="2").json()
    assert first["pagination"] == {"page": 1, "pageSize": 2, "pageCount": 3, "itemCount": 5}
    assert [i["Reference"] for i in first["Invoices"]] == ["R0", "R1"]
    assert all("LineItems" in i for i in first["Invoices"])
    last = sb.call("GET", "/Invoices", page="3", pageSize="2").json()
    assert [i["Reference"] for i in last["Invoices"]] == ["R4"]

    unpaged = sb.call("GET", "/Invoices").json()
    assert "pagination" not in unpaged and len(unpaged["Invoices"]) == 5
    assert all("LineItems" not in i for i in unpaged["Invoices"])

    numbers = sb.call("GET", "/Invoices", InvoiceNumbers="INV-0002,INV-0004").json()["Invoices"]
    assert [i["InvoiceNumber"] for i in numbers] == ["INV-0002", "INV-0004"]
    picked = sb.call(
        "GET",
        "/Invoices",
        where='(Reference=="R1" OR Reference=="R3") AND Type=="ACCREC"',
        order="Reference DESC",
    )
    assert [i["Reference"] for i in picked.json()["Invoices"]] == ["R3", "R1"]
    contact_id = numbers[0]["Contact"]["ContactID"]
    by_contact = sb.call("GET", "/Invoices", where=f'Contact.ContactID==guid("{contact_id}")')
    assert len(by_contact.json()["Invoices"]) == 5
    later = sb.call("GET", "/Invoices", headers={"If-Modified-Since": "2100-01-01T00:00:00"})
    assert later.json()["Invoices"] == []

    broken = sb.call("GET", "/Invoices", where='Reference=="R1" AND')
    assert broken.status_code == 400 and broken.json()["Type"] == "QueryParseException"


def test_where_interpreter() -> None:
    contact = {
        "Name": "Acme Ltd",
        "EmailAddress": None,
        "Total": Decimal("20.00"),
        "Date": "/Date(1795564800000+0000)/",
        "Phones": [{"PhoneNumber": "555"}],
        "Contact": {"ContactID": "AbC"},
        "IsCustomer": True,
    }

    def where(text: str) -> bool:
        return compile_where(text)(contact)

    assert where('Name.Contains("Ltd") && !(Name.EndsWith("Inc"))')
    assert where("Total = 20.00 AND Total >= 19.5 AND Total < 21")
    assert where("EmailAddress==null") and not where('EmailAddress.StartsWith("a")')
    assert where("Date >= DateTime(2026, 11, 25) && Date < DateTime(2026,11,26)")
    assert where('Phones[0].PhoneNumber=="555" and name.ToLower()=="acme ltd"')
    assert where('Contact.ContactID==GUID("abc") OR false') and where("IsCustomer")
    assert not where('Name=="acme ltd"')
    for broken in ("Name==", 'Name=="x" OR', "(Name", "Name.Contains(1)", "eval('x')"):
        with pytest.raises(WhereError):
            compile_where(broken)
    ordered = order_objects([{"N": "b"}, {"N": None}, {"N": "a"}], "N DESC")
    assert [o["N"] for o in ordered] == ["b", "a", None]


# --------------------------------------------------------------------------- spec shapes


def test_answers_validate_against_the_official_spec(sb: Sandbox) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    components = xero_spec()["components"]

    def check(schema: str, instance: Any) -> None:
        """Shapes and formats (uuid, date-time: rfc3339-validator) of the answer."""
        jsonschema.validate(
            instance,
            {"$ref": f"#/components/schemas/{schema}", "components": components},
            format_checker=jsonschema.FormatChecker(),
        )

    sb.call("PUT", "/Items", {"Code": "P-1", "Name": "Pump"})
    sb.call("PUT", "/Invoices", invoice(LineItems=[line("1", "5", ItemCode="P-1")]))
    check("Organisations", data(sb.call("GET", "/Organisation")))
    check("TaxRates", data(sb.call("GET", "/TaxRates")))
    check("Accounts", data(sb.call("GET", "/Accounts")))
    check("Currencies", data(sb.call("GET", "/Currencies")))
    check("Contacts", data(sb.call("GET", "/Contacts", page="1")))
    check("Items", data(sb.call("GET", "/Items")))
    check("Invoices", data(sb.call("GET", "/Invoices", page="1")))
    made = data(sb.call("PUT", "/Invoices", invoice()))["Invoices"][0]
    sb.call(
        "PUT",
        "/Payments",
        {
            "Payments": [
                {
                    "Invoice": {"InvoiceID": made["InvoiceID"]},
                    "Account": {"Code": "090"},
                    "Amount": "10.00",
                }
            ]
        },
    )
    check("Payments", data(sb.call("GET", "/Payments", page="1")))
    check("PurchaseOrders", data(sb.call("GET", "/PurchaseOrders", page="1")))
    check("CreditNotes", data(sb.call("GET", "/CreditNotes", page="1")))
    errors = sb.call("PUT", "/Invoices", {"Invoices": [invoice(Contact={})]})
    check("Error", data(errors))


# --------------------------------------------------------------------------- granular scopes


def _consent(sb: Sandbox, scope: str, client: str = "app") -> httpx.Response:
    return sb.http.get(
        "/identity/connect/authorize",
        params={
            "response_type": "code",
            "client_id": client,
            "redirect_uri": "http://localhost/cb",
            "scope": scope,
        },
    )


def _exchange(sb: Sandbox, consent: httpx.Response, client: str = "app") -> dict[str, Any]:
    code = parse_qs(urlparse(consent.headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://localhost/cb"}
    answer = sb.http.post("/connect/token", data=form, auth=(client, "secret"))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_granular_app_cannot_ask_for_the_broad_scopes(sb: Sandbox) -> None:
    """Apps created from 2 March 2026: consent to accounting.transactions fails (FACTS)."""
    for broad in (
        "accounting.transactions",
        "accounting.transactions.read",
        "accounting.reports.read",
        "accounting.nonsense",
    ):
        refused = _consent(sb, f"offline_access accounting.contacts {broad}")
        assert refused.status_code == 400, broad
        assert refused.json()["error"] == "invalid_scope"
        assert "Invalid scope for client" in refused.json()["error_description"]
    granted = _exchange(sb, _consent(sb, "offline_access accounting.invoices accounting.contacts"))
    assert granted["scope"] == "offline_access accounting.invoices accounting.contacts"


def test_a_broad_app_may_still_ask_for_both(sb: Sandbox) -> None:
    sb.xs.add_client("old-app", "secret", "rt-old", [AU], granular=False)
    for scope in ("offline_access accounting.transactions", "offline_access accounting.invoices"):
        assert _consent(sb, scope, "old-app").status_code == 302


def test_an_endpoint_outside_the_granted_scopes_answers_401_insufficient_scope(
    sb: Sandbox,
) -> None:
    """Xero: 401 problem JSON, Detail AuthorizationUnsuccessful, `WWW-Authenticate: Bearer
    error="insufficient_scope"` (community.xero.com 119166525, Xero-NetStandard #178)."""
    scope = "offline_access accounting.contacts accounting.invoices.read"
    tokens = _exchange(sb, _consent(sb, scope))
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert sb.call("GET", "/Contacts", headers=bearer).status_code == 200
    assert sb.call("GET", "/Invoices", headers=bearer).status_code == 200  # .read reads
    for method, path in (
        ("GET", "/Accounts"),
        ("PUT", "/Invoices"),
        ("GET", "/TaxRates"),
        ("GET", "/Payments"),
    ):
        refused = sb.call(method, path, {"Invoices": []}, headers=bearer)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
        body = refused.json()
        assert (body["Title"], body["Status"], body["Detail"]) == (
            "Unauthorized",
            401,
            "AuthorizationUnsuccessful",
        )
    # a refresh keeps what was consented, nothing more
    again = sb.refresh(tokens["refresh_token"]).json()
    assert again["scope"] == tokens["scope"]
    items = sb.call("GET", "/Items", headers={"Authorization": f"Bearer {again['access_token']}"})
    assert items.status_code == 200  # Items: accounting.invoices or accounting.settings


# --------------------------------------------------------------------------- as strict as the spec


def _spec_query_params() -> dict[tuple[str, str], set[str]]:
    """(method, path) -> the query parameters the official spec defines for it (lowercase)."""
    spec = xero_spec()
    shared = spec["components"]["parameters"]
    table: dict[tuple[str, str], set[str]] = {}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "parameters" or not isinstance(op, dict):
                continue
            names = set()
            for p in op.get("parameters", []):
                p = shared[p["$ref"].split("/")[-1]] if "$ref" in p else p
                if p.get("in") == "query":
                    names.add(p["name"].lower())
            table[(method.upper(), path)] = names
    return table


def test_the_sandbox_knows_exactly_the_query_parameters_the_spec_defines() -> None:
    from sandbox.xero_app import QUERY_PARAMETERS

    spec = _spec_query_params()
    for (method, path), names in QUERY_PARAMETERS.items():
        assert (method, path) in spec, (method, path)
        assert names == spec[(method, path)], (method, path, names ^ spec[(method, path)])


def test_a_query_parameter_the_operation_does_not_define_is_refused(sb: Sandbox) -> None:
    """Before: `unitdp` on Contacts/PurchaseOrders and `summarizeErrors` on a single-record POST
    were accepted, so our client sent them unnoticed."""
    made = data(sb.call("PUT", "/Invoices", invoice(), summarizeErrors="false", unitdp="4"))
    invoice_id = made["Invoices"][0]["InvoiceID"]
    for method, path, params in (
        ("PUT", "/Contacts", {"unitdp": "4"}),
        ("GET", "/PurchaseOrders", {"unitdp": "4"}),
        ("POST", f"/Invoices/{invoice_id}", {"summarizeErrors": "false"}),
        ("GET", "/Contacts", {"nonsense": "1"}),
    ):
        body = {"Contacts": [{"Name": "X"}]} if path == "/Contacts" else {"Reference": "r"}
        query: dict[str, Any] = params
        refused = sb.call(method, path, body if method != "GET" else None, **query)
        assert refused.status_code == 400, (method, path)
        assert next(iter(params)) in refused.json()["Message"]
    assert sb.call("GET", "/Contacts", page="1", pageSize="10").status_code == 200


def test_read_only_fields_are_refused(sb: Sandbox) -> None:
    """Contact `Website` is readOnly in the spec (FACTS "The 2026 platform")."""
    refused = sb.call(
        "PUT",
        "/Contacts",
        {"Contacts": [{"Name": "Web", "Website": "https://w"}]},
        summarizeErrors="false",
    )
    [element] = refused.json()["Contacts"]
    assert element["StatusAttributeString"] == "ERROR"
    assert "Website" in element["ValidationErrors"][0]["Message"]


def test_if_modified_since_is_a_utc_time(sb: Sandbox) -> None:
    sb.call("PUT", "/Contacts", {"Contacts": [{"Name": "Early"}]})

    def since(value: str) -> httpx.Response:
        return sb.call("GET", "/Contacts", headers={"If-Modified-Since": value})

    assert since("yesterday").status_code == 400
    future = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert data(since(future))["Contacts"] == []
    past = datetime.fromtimestamp(time.time() - 60, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert data(since(past))["Contacts"]


def test_connections_answer_on_the_path_the_official_sdk_calls(sb: Sandbox) -> None:
    bearer = {"Authorization": f"Bearer {sb.token}"}
    for path in ("/connections", "/Connections"):
        answer = sb.http.get(path, headers=bearer)
        assert answer.status_code == 200 and answer.json()[0]["tenantId"] == AU


def test_tenant_ids_are_uuids(sb: Sandbox) -> None:
    with pytest.raises(ValueError, match="UUID"):
        sb.xs.add_tenant("tenant-1", "Not a UUID")


def test_payments_can_be_put_and_listed(sb: Sandbox) -> None:
    made = data(sb.call("PUT", "/Invoices", invoice()))["Invoices"][0]
    body = {
        "Payments": [
            {
                "Invoice": {"InvoiceID": made["InvoiceID"]},
                "Account": {"Code": "090"},
                "Date": "2026-11-26",
                "Amount": "40.00",
            }
        ]
    }
    paid = sb.call("PUT", "/Payments", body)
    assert paid.status_code == 200, paid.text
    [payment] = data(paid)["Payments"]
    assert payment["Amount"] == Decimal("40.00") and payment["Invoice"]["InvoiceID"]
    assert data(sb.call("GET", f"/Invoices/{made['InvoiceID']}"))["Invoices"][0]["AmountDue"] == (
        made["AmountDue"] - Decimal("40.00")
    )
    listed = data(sb.call("GET", "/Payments", where='PaymentType=="ACCRECPAYMENT"'))["Payments"]
    assert [p["PaymentID"] for p in listed] == [payment["PaymentID"]]
    too_much = {"Payments": [{**body["Payments"][0], "Amount": "1000.00"}]}
    assert sb.call("PUT", "/Payments", too_much).status_code == 400
    not_bank = {"Payments": [{**body["Payments"][0], "Account": {"Code": "200"}}]}
    assert sb.call("PUT", "/Payments", not_bank).status_code == 400


def test_simulated_latency_is_per_call_plus_per_element_and_blocks_no_other_call(
    make: Callable[..., Sandbox],
) -> None:
    """Issue #19: real Xero takes time per call and per element of a batch; the sandbox sleeps
    asynchronously, so one slow batch does not hold up another tenant's (or its own) calls."""
    sb = make(xero_call_seconds=0.2, xero_element_seconds=0.05)
    _ = sb.token
    started = time.monotonic()
    assert sb.call("GET", "/Organisation").status_code == 200
    assert 0.2 <= time.monotonic() - started < 0.4
    started = time.monotonic()
    batch = {"Invoices": [invoice(Reference=f"L{n}") for n in range(10)]}
    assert sb.call("PUT", "/Invoices", batch).status_code == 200
    assert 0.2 + 10 * 0.05 <= time.monotonic() - started < 0.9
    took: list[float] = []

    def one() -> None:
        begun = time.monotonic()
        sb.call("GET", "/Organisation")
        took.append(time.monotonic() - begun)

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(took) == 4 and time.monotonic() - started < 0.5  # side by side, not one by one


def test_calls_in_xeros_hands_are_counted_by_client_address_and_route(
    make: Callable[..., Sandbox],
) -> None:
    """The across-hosts run kills the worker host whose invoice batch Xero is working on
    (zxsync/hosts.py): the sandbox says which address has which calls admitted, unanswered."""
    sb = make(xero_call_seconds=0.3)
    _ = sb.token
    batch = {"Invoices": [invoice(Reference="F1")]}
    sending = threading.Thread(target=lambda: sb.call("PUT", "/Invoices", batch))
    sending.start()
    deadline = time.monotonic() + 2
    while not sb.xs.in_flight_from("127.0.0.1", "PUT /Invoices") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sb.xs.in_flight_from("127.0.0.1", "PUT /Invoices") == 1
    assert sb.xs.in_flight_from("127.0.0.1", "PUT /Contacts") == 0
    assert sb.xs.in_flight_from("10.77.19.11", "PUT /Invoices") == 0  # another host
    sending.join()
    assert sb.xs.in_flight_from("127.0.0.1", "PUT /Invoices") == 0
    assert len(sb.xs.invoices(AU)) == 1


def test_simulated_latency_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZXS_SANDBOX_XERO_CALL_SECONDS", "0.3")
    monkeypatch.setenv("ZXS_SANDBOX_XERO_ELEMENT_SECONDS", "0.01")
    config = SandboxConfig.from_env(minute_seconds=6.0)
    assert (config.xero_call_seconds, config.xero_element_seconds) == (0.3, 0.01)
    assert config.minute_seconds == 6.0
    monkeypatch.delenv("ZXS_SANDBOX_XERO_CALL_SECONDS")
    monkeypatch.delenv("ZXS_SANDBOX_XERO_ELEMENT_SECONDS")
    assert SandboxConfig.from_env().xero_call_seconds == 0.0  # default: answers at once
