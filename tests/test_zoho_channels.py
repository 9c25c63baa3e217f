"""Zoho channels that never lapse and changes we never heard of (issue 21): `zxsync zoho watch`
creates the channel, beat renews it well before expiry, and a sweep enqueues what no
notification told us. The Zoho sandbox stops notifying at a channel's expiry, as Zoho does."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tasks.zoho_channels import ZohoChannel, needs_renewal

TOKEN = "zoho-token-for-tests"


def test_a_channel_is_renewed_once_half_its_life_is_gone() -> None:
    channel = ZohoChannel("1", ["Invoices.all"], "https://r/n", expiry=1000.0, lifetime=100.0)
    assert not needs_renewal(channel, 949.0)
    assert needs_renewal(channel, 951.0)


def zoho_invoice(stack: Any, subject: str) -> str:
    """A Zoho invoice as a UI user saves it (Zoho notifies the channel of it)."""
    org = stack.connections[0].zoho_org_id
    account = stack.zoho.insert(org, "Accounts", {"Account_Name": f"{subject} Pty"})
    product = stack.zoho.insert(
        org,
        "Products",
        {
            "Product_Name": f"{subject} widget",
            "Product_Code": f"W-{subject}",
            "Unit_Price": Decimal("10"),
        },
    )
    record = stack.zoho.insert(
        org,
        "Invoices",
        {
            "Subject": subject,
            "Invoice_Number": f"ZINV-{subject}",
            "Currency": "AUD",
            "Account_Name": {"id": account["id"], "name": f"{subject} Pty"},
            "Invoiced_Items": [
                {
                    "Product_Name": {"id": product["id"], "name": f"{subject} widget"},
                    "Quantity": Decimal("1"),
                    "List_Price": Decimal("10.00"),
                }
            ],
        },
    )
    return str(record["id"])


@pytest.mark.integration
def test_a_change_after_the_original_expiry_still_syncs(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    from typer.testing import CliRunner

    from tasks.zoho_channels import channel_expiry, zoho_channel_renew
    from zxsync.cli import app

    stack = make_stack({"zoho_webhook_token": TOKEN}, extra_env={"ZXS_ZOHO_CHANNEL_SECONDS": "3"})
    conn = stack.connections[0]
    relay = stack.start_relay()
    stack.start_worker(concurrency=2)
    url = f"{relay}/webhooks/zoho/{conn.name}/notifications"
    made = CliRunner().invoke(
        app, ["zoho", "watch", "--connection", conn.name, "--notify-url", url]
    )
    assert made.exit_code == 0, made.output
    original = channel_expiry(conn.name)
    assert original is not None
    assert zoho_channel_renew() == 0, "not yet: more than half its life is left"
    time.sleep(1.8)
    assert zoho_channel_renew() == 1  # what beat does, well before the expiry
    renewed = channel_expiry(conn.name)
    assert renewed is not None and renewed > original
    time.sleep(max(0.0, original.timestamp() - time.time()) + 0.3)

    record = zoho_invoice(stack, "LATE")  # after the original expiry
    key = f"{conn.name}:Invoices:{record}"
    outcomes = wait_for_outcomes(conn.name, [key], timeout=60)
    assert outcomes[key][0] in ("created", "synced"), outcomes
    assert stack.zoho.get(conn.zoho_org_id, "Invoices", record)["Xero_Invoice_ID"]
    assert any(n.body["ids"] == [record] and n.status == 200 for n in stack.zoho.notifications.sent)


@pytest.mark.integration
def test_the_sweep_enqueues_a_change_no_notification_told_of_and_only_once(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    from tasks.zoho_sweep import sweep
    from workers.context import build_context

    stack = make_stack()
    conn = stack.connections[0]
    stack.start_worker(concurrency=2)
    ctx = build_context(conn.name)
    assert sweep(ctx) == 0  # the first run sets the mark
    time.sleep(1.1)  # Zoho's Modified_Time is to the second
    record = zoho_invoice(stack, "SWEPT")  # no channel, no webhook: nobody was told
    assert sweep(ctx) == 1
    key = f"{conn.name}:Invoices:{record}"
    outcomes = wait_for_outcomes(conn.name, [key], timeout=60)
    assert outcomes[key][0] in ("created", "synced"), outcomes
    assert stack.zoho.get(conn.zoho_org_id, "Invoices", record)["Xero_Invoice_ID"]
    assert sweep(ctx) == 0, "synced since it changed (our write-back included): not again"
