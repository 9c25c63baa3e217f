"""Contact sync, Xero -> Zoho (issue 18.3): the pure rules, then end to end through the relay."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.connection import DEFAULT_CONTACT_FIELDS, Connection
from schemas.contact_sync import xero_update, xero_values, zoho_update
from schemas.xero import XeroContact

LATER = "/Date(1796000000000+0000)/"  # 2026-12-01T...Z, after the accounts' Modified_Time


def contact(**extra: Any) -> XeroContact:
    return XeroContact.model_validate(
        {
            "ContactID": "c-1",
            "Name": "Payer Pty",
            "UpdatedDateUTC": LATER,
            "EmailAddress": "ap@payer.example",
            "TaxNumber": "12 345 678 901",
            "Addresses": [
                {"AddressType": "STREET", "City": "Elsewhere"},
                {
                    "AddressType": "POBOX",
                    "AddressLine1": "1 Main St",
                    "City": "Sydney",
                    "PostalCode": "2000",
                    "Country": "Australia",
                },
            ],
            "Phones": [
                {"PhoneType": "MOBILE", "PhoneNumber": "0400"},
                {
                    "PhoneType": "DEFAULT",
                    "PhoneCountryCode": "61",
                    "PhoneAreaCode": "2",
                    "PhoneNumber": "9999 0000",
                },
            ],
            **extra,
        }
    )


def test_xero_values_take_the_billing_address_and_default_phone() -> None:
    values = xero_values(contact())
    assert values["City"] == "Sydney" and values["AddressLine1"] == "1 Main St"
    assert values["Phone"] == "61 2 9999 0000" and values["Region"] == ""
    assert values["TaxNumber"] == "12 345 678 901"


def test_only_what_differs_is_written_and_an_echo_writes_nothing() -> None:
    account = {
        "id": "a-1",
        "Modified_Time": "2026-11-20T10:00:00+00:00",
        "Billing_City": "Melbourne",
        "Phone": "61 2 9999 0000",
    }
    update, _ = zoho_update(contact(), account, DEFAULT_CONTACT_FIELDS)
    assert update is not None and update["id"] == "a-1"
    assert update["Billing_City"] == "Sydney" and "Phone" not in update
    assert update["Xero_Email"] == "ap@payer.example"
    echoed = {**account, **update}
    assert zoho_update(contact(), echoed, DEFAULT_CONTACT_FIELDS)[0] is None


def test_latest_change_wins() -> None:
    newer = {"id": "a-1", "Modified_Time": "2027-01-01T00:00:00+00:00", "Billing_City": "Perth"}
    update, why = zoho_update(contact(), newer, DEFAULT_CONTACT_FIELDS)
    assert update is None and "latest change wins" in why


def test_a_field_map_naming_no_xero_field_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="Emial"):
        Connection(
            name="c",
            xero_tenant_id="t",
            zoho_org_id="o",
            contact_fields={"City": "Billing_City", "Emial": "Email"},
        )


@pytest.mark.integration
def test_a_xero_contact_change_reaches_the_linked_zoho_account(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    from test_payment_feedback import OPTIONS, seed, sync, wait_zoho

    stack = make_stack({**OPTIONS, "contact_sync": "both"})
    tenant = stack.connections[0].xero_tenant_id
    stack.start_relay()
    stack.start_worker(concurrency=2)
    account, [record] = seed(stack, [date.today() + timedelta(days=30)])
    xero_id = sync(stack, [record], wait_for_outcomes)[record]
    invoice = next(i for i in stack.xero.invoices(tenant) if i["InvoiceID"] == xero_id)
    contact_id = invoice["Contact"]["ContactID"]
    with stack.xero.lock:
        saved, errors = stack.xero.save_contact(
            tenant,
            {
                "ContactID": contact_id,
                "EmailAddress": "ap@payer.example",
                "Addresses": [
                    {
                        "AddressType": "POBOX",
                        "AddressLine1": "9 New Rd",
                        "City": "Hobart",
                        "PostalCode": "7000",
                    }
                ],
            },
            create_only=False,
        )
    assert saved is not None, errors
    started = datetime.now(UTC)
    wait_zoho(
        stack,
        "Accounts",
        account,
        {"Billing_City": "Hobart", "Billing_Street": "9 New Rd", "Xero_Email": "ap@payer.example"},
    )
    print(f"Xero contact to Zoho account: {(datetime.now(UTC) - started).total_seconds():.2f}s")
    # the same values again (our own write's echo, or a save that changed nothing we map), and
    # a contact no account is linked to: nothing is written, nothing created in Zoho
    org = stack.connections[0].zoho_org_id
    before = settled(stack, org, account)
    count = len(stack.zoho.records(org, "Accounts"))
    with stack.xero.lock:
        stack.xero.save_contact(
            tenant, {"ContactID": contact_id, "EmailAddress": "ap@payer.example"}, create_only=False
        )
        stack.xero.save_contact(tenant, {"Name": "Stranger Ltd"}, create_only=True)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(stack.xero.webhooks.deliveries) < 4:
        time.sleep(0.1)
    time.sleep(1.5)  # the jobs run
    assert stack.zoho.get(org, "Accounts", account)["Modified_Time"] == before["Modified_Time"]
    assert len(stack.zoho.records(org, "Accounts")) == count


def settled(stack: Any, org: str, account: str, quiet: float = 2.0) -> dict[str, Any]:
    """The account once no write has touched it for `quiet` seconds: on a loaded machine the
    first change's jobs may still be finishing (seen once at load 8: a write 1 s after the
    values had arrived), and the echo below must be judged against the last of them."""
    last = stack.zoho.get(org, "Accounts", account)
    deadline, quiet_until = time.monotonic() + 20, time.monotonic() + quiet
    while time.monotonic() < min(deadline, quiet_until):
        time.sleep(0.2)
        now = stack.zoho.get(org, "Accounts", account)
        if now["Modified_Time"] != last["Modified_Time"]:
            last, quiet_until = now, time.monotonic() + quiet
    return dict(last)


def test_xero_update_mirrors_zoho_and_latest_change_wins() -> None:
    account = {
        "id": "a-1",
        "Modified_Time": "2027-01-01T00:00:00+00:00",
        "Billing_Street": "1 Main St",
        "Billing_City": "Sydney",
        "Billing_Code": "2000",
        "Billing_Country": "Australia",
        "Phone": "02 9999 0000",
        "Xero_Email": "ap@payer.example",
        "Xero_Tax_Number": "12 345 678 901",
    }
    body, _ = xero_update(contact(), account, DEFAULT_CONTACT_FIELDS)
    assert body is not None and set(body) == {"ContactID", "Phones"}  # only the phone differs
    assert body["Phones"][0]["PhoneNumber"] == "02 9999 0000"
    older = {**account, "Modified_Time": "2026-01-01T00:00:00+00:00"}
    assert "latest change wins" in xero_update(contact(), older, DEFAULT_CONTACT_FIELDS)[1]
    # what we write comes back as Xero's values: no write the other way (no loop)
    echoed = contact(Phones=[{"PhoneType": "DEFAULT", "PhoneNumber": "02 9999 0000"}])
    assert xero_update(echoed, account, DEFAULT_CONTACT_FIELDS)[0] is None
    assert (
        zoho_update(
            echoed,
            {**account, "Modified_Time": "2026-01-01T00:00:00+00:00"},
            DEFAULT_CONTACT_FIELDS,
        )[0]
        is None
    )


@pytest.mark.integration
def test_a_zoho_account_edit_reaches_the_linked_xero_contact_and_does_not_loop(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    import httpx
    from test_payment_feedback import OPTIONS, seed, sync

    stack = make_stack({**OPTIONS, "contact_sync": "both"})
    conn = stack.connections[0]
    tenant, org = conn.xero_tenant_id, conn.zoho_org_id
    relay = stack.start_relay()
    stack.start_worker(concurrency=2)
    account, [record] = seed(stack, [date.today() + timedelta(days=30)])
    xero_id = sync(stack, [record], wait_for_outcomes)[record]
    contact_id = next(i for i in stack.xero.invoices(tenant) if i["InvoiceID"] == xero_id)[
        "Contact"
    ]["ContactID"]
    time.sleep(1.1)  # Zoho's Modified_Time and Xero's UpdatedDateUTC: the edit is later
    stack.zoho.update(org, "Accounts", account, {"Billing_City": "Darwin", "Phone": "08 1234"})
    answer = httpx.post(
        f"{relay}/webhooks/zoho/{conn.name}",
        headers={"X-Zxs-Token": OPTIONS["zoho_webhook_token"]},
        json={"module": "Accounts", "id": account, "operation": "update"},
    )
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        held = next(c for c in stack.xero.contacts(tenant) if c["ContactID"] == contact_id)
        if any(a.get("City") == "Darwin" for a in held.get("Addresses") or []):
            break
        time.sleep(0.1)
    phones = [p for p in held.get("Phones") or [] if p.get("PhoneType") == "DEFAULT"]
    assert phones and phones[0]["PhoneNumber"] == "08 1234", held
    # Xero's CONTACT event of our own write comes back: it writes nothing to Zoho
    modified = stack.zoho.get(org, "Accounts", account)["Modified_Time"]
    time.sleep(2)
    assert stack.zoho.get(org, "Accounts", account)["Modified_Time"] == modified
