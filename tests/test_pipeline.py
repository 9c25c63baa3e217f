"""End to end on real parts: Celery worker processes, Redis, and the sandboxes over HTTP.

Assertions read the sandboxes' own state (what Xero and Zoho hold), never our bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from sandbox.seed import build_dataset, load_dataset

pytestmark = pytest.mark.integration


def send(
    connection: str, record_ids: list[str], repeats: int = 1, event_prefix: str = "ev"
) -> None:
    from workers.app import app

    for _ in range(repeats):
        for record_id in record_ids:
            app.send_task(
                "zxsync.ingest",
                args=[
                    {
                        "connection": connection,
                        "module": "Invoices",
                        "record_id": record_id,
                        "event": "insert",
                        "event_id": f"{event_prefix}-{record_id}",
                    }
                ],
            )


def keys(connection: str, record_ids: list[str]) -> list[str]:
    return [f"{connection}:Invoices:{rid}" for rid in record_ids]


def test_each_zoho_invoice_becomes_one_matching_xero_invoice(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    stack = make_stack()
    conn = stack.connections[0]
    dataset = load_dataset(
        stack.zoho, conn.zoho_org_id, build_dataset(invoices=8, accounts=3, products=5, seed=11)
    )
    # one customer and one product are already in Xero: they must be found, not duplicated
    stack.xero.add_contact(conn.xero_tenant_id, {"Name": dataset.accounts[0]["Account_Name"]})
    stack.xero.add_item(
        conn.xero_tenant_id,
        {"Code": dataset.products[0]["Product_Code"], "Name": dataset.products[0]["Product_Name"]},
    )
    stack.start_worker(concurrency=2)
    ids = [str(inv["id"]) for inv in dataset.invoices]
    send(conn.name, ids, repeats=3)
    outcomes = wait_for_outcomes(conn.name, keys(conn.name, ids), timeout=90)
    assert {o for o, _ in outcomes.values()} == {"created"}, outcomes

    xero_invoices = stack.xero.invoices(conn.xero_tenant_id)
    assert len(xero_invoices) == len(ids)
    by_ref = {inv["Reference"]: inv for inv in xero_invoices}
    for record_id in ids:
        zoho = stack.zoho.get(conn.zoho_org_id, "Invoices", record_id)
        xero = by_ref[zoho["Invoice_Number"]]
        assert xero["Type"] == "ACCREC" and xero["Status"] == "AUTHORISED"
        assert Decimal(str(xero["Total"])) == Decimal(str(zoho["Grand_Total"]))
        assert xero["CurrencyCode"] == zoho["Currency"]
        assert zoho["Xero_Invoice_ID"] == xero["InvoiceID"]
        assert zoho["Xero_Invoice_Number"] == xero["InvoiceNumber"]
        assert zoho["Xero_Sync_Status"] == "Synced"
        source_lines = zoho["Invoiced_Items"]
        assert [Decimal(str(li["Quantity"])) for li in xero["LineItems"]] == [
            Decimal(str(li["Quantity"])) for li in source_lines
        ]
    contacts = stack.xero.contacts(conn.xero_tenant_id)
    assert len(contacts) == len(
        {inv["Account_Name"]["id"] for inv in dataset.invoices} | {str(dataset.accounts[0]["id"])}
    )
    names = [c["Name"] for c in contacts]
    assert len(names) == len(set(names)), "a contact was duplicated"
    codes = [i["Code"] for i in stack.xero.items(conn.xero_tenant_id)]
    assert len(codes) == len(set(codes)), "an item was duplicated"


def test_invalid_record_is_dead_lettered_with_field_and_nothing_reaches_xero(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    stack = make_stack()
    conn = stack.connections[0]
    org = conn.zoho_org_id
    account = stack.zoho.insert(org, "Accounts", {"Account_Name": "No Code Pty"})
    product = stack.zoho.insert(
        org, "Products", {"Product_Name": "Mystery", "Unit_Price": Decimal("5")}
    )
    invoice = stack.zoho.insert(
        org,
        "Invoices",
        {
            "Subject": "bad",
            "Invoice_Number": "ZINV-NOCODE",
            "Currency": "AUD",
            "Account_Name": {"id": account["id"], "name": "No Code Pty"},
            "Invoice_Date": "2026-11-25",
            "Due_Date": "2026-12-25",
            "Invoiced_Items": [
                {
                    "Product_Name": {"id": product["id"], "name": "Mystery"},
                    "Quantity": Decimal("1"),
                    "List_Price": Decimal("5.00"),
                }
            ],
        },
    )
    stack.start_worker(concurrency=1)
    send(conn.name, [str(invoice["id"])])
    outcomes = wait_for_outcomes(conn.name, keys(conn.name, [str(invoice["id"])]))
    assert next(iter(outcomes.values()))[0] == "failed"
    letters = [dl for dl in DeadLetterStore(get_redis()).list(1000) if dl.connection == conn.name]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.stage == "zxsync.item_precheck" and letter.field == "Product_Code"
    assert "Mystery" in letter.error and str(invoice["id"]) in letter.payload
    assert stack.xero.invoices(conn.xero_tenant_id) == []


def test_job_breaking_the_contract_is_dead_lettered_with_its_payload(
    make_stack: Callable[..., Any],
) -> None:
    import time

    from workers.app import app
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    stack = make_stack()
    stack.start_worker(concurrency=1)
    marker = f"bad-{stack.connections[0].name}"
    app.send_task(
        "zxsync.ingest",
        args=[
            {
                "connection": stack.connections[0].name,
                "module": "Invoices",
                "record_id": "12ab",
                "event": "insert",
                "event_id": marker,
            }
        ],
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [dl for dl in DeadLetterStore(get_redis()).list(1000) if marker in dl.payload]
        if found:
            break
        time.sleep(0.1)
    assert found, "the malformed job was not dead-lettered"
    assert found[0].error_kind == "invalid_job" and found[0].field == "record_id"


def test_messages_celery_cannot_run_are_dead_lettered_not_dropped(
    make_stack: Callable[..., Any],
) -> None:
    import time

    from workers.app import app
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    stack = make_stack()
    stack.start_worker(concurrency=1)
    marker = stack.connections[0].name
    app.send_task("zxsync.no_such_task", args=[marker], queue="zxs.ingest")
    with app.producer_or_acquire() as producer:
        producer.publish(
            f'{{"not json {marker}'.encode(),
            exchange="zxs.ingest",
            routing_key="zxs.ingest",
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": "zxsync.ingest", "id": f"raw-{marker}"},
        )
    deadline = time.monotonic() + 30
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and len(found) < 2:
        found = {
            dl.stage: dl for dl in DeadLetterStore(get_redis()).list(10_000) if marker in dl.payload
        }
        time.sleep(0.1)
    assert set(found) == {"celery.unknown_task", "celery.decode"}, found
    assert "zxsync.no_such_task" in found["celery.unknown_task"].error
    assert "could not be decoded" in found["celery.decode"].error


@pytest.mark.integration
def test_the_document_is_read_with_its_products_and_the_items_stage_then_calls_no_api(
    make_stack: Callable[..., Any],
) -> None:
    """fetch_record reads the products of the document's lines with it (one Zoho call), so
    item_precheck runs where no API call may be made: the flusher that has written a new
    contact runs it on (workers/stage.py `finish_here`) instead of sending it as a task of its
    own, which waited 1-2 s behind a burst in the tenants bench (README "Sixth pass")."""
    import tasks.fetch_record
    import tasks.item_precheck  # noqa: F401  (each registers its stage)
    from schemas.jobs import StageMessage, SyncJob
    from workers.stage import RUN_HERE

    stack = make_stack()
    conn = stack.connections[0]
    data = load_dataset(
        stack.zoho, conn.zoho_org_id, build_dataset(invoices=1, accounts=1, products=3, seed=7)
    )
    invoice = data.invoices[0]
    job = SyncJob(
        connection=conn.name,
        module="Invoices",
        record_id=str(invoice["id"]),
        event="insert",
        event_id="products-1",
    )
    fetched = RUN_HERE["zxsync.fetch_record"](
        StageMessage(job=job).model_dump(mode="json"), None, 0, False, True
    )
    assert isinstance(fetched, dict), fetched
    lines = [str(line["Product_Name"]["id"]) for line in invoice["Invoiced_Items"]]
    assert [p["id"] for p in fetched["products"]] == list(dict.fromkeys(lines))
    contacted = {**fetched, "xero_contact_id": "c-1"}  # as contact_precheck leaves it
    priced = RUN_HERE["zxsync.item_precheck"](contacted, None, 0, False, False)  # no calls
    assert priced is not None and not isinstance(priced, dict)  # it parks its new items
    assert priced.kind == "items"


@pytest.mark.integration
def test_a_tenants_xero_flush_fetches_its_tax_rates_so_its_first_invoice_parks_in_the_flusher(
    make_stack: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The invoice stage reads the organisation's tax rates, and the flusher that runs it on
    after the items are written may not call Xero: with the rates not cached, a tenant's first
    invoice went as a task of its own, 3-4 s behind the queue in the tenants bench. A flush of
    any Xero kind for the tenant now fetches them beside its batch (once, while they are missing
    or about to expire), and the invoice stage run there parks its invoice at once."""
    from celery.canvas import Signature

    import tasks.fetch_record
    import tasks.invoice_create  # noqa: F401  (each registers its stage)
    from schemas.jobs import StageMessage, SyncJob
    from workers import batching
    from workers import keys as redis_keys
    from workers.batching import flush
    from workers.redis import get_redis
    from workers.stage import RUN_HERE

    stack = make_stack()
    conn = stack.connections[0]
    data = load_dataset(
        stack.zoho, conn.zoho_org_id, build_dataset(invoices=1, accounts=1, products=1, seed=3)
    )
    job = SyncJob(
        connection=conn.name,
        module="Invoices",
        record_id=str(data.invoices[0]["id"]),
        event="insert",
        event_id="rates-1",
    )
    fetched = RUN_HERE["zxsync.fetch_record"](
        StageMessage(job=job).model_dump(mode="json"), None, 0, False, True
    )
    assert isinstance(fetched, dict), fetched
    # as contact_precheck and item_precheck leave it (the items stage adds nothing for an
    # invoice but the products it read)
    priced = {**fetched, "xero_contact_id": "00000000-0000-0000-0000-00000000c0de"}
    assert RUN_HERE["zxsync.invoice_create"](priced, None, 0, False, False) is None  # a task
    # a flush of a Xero kind for the tenant (its elements' answer does not matter here)
    monkeypatch.setitem(
        batching.KINDS, "things", batching.Kind(lambda ctx, els: {}, xero=True, latest_wins=False)
    )
    monkeypatch.setattr(flush.FLUSH_THREADS, "start", lambda size, work: False)  # inline
    monkeypatch.setattr(Signature, "apply_async", lambda *a, **k: None)  # resumes go nowhere
    calls = sum(stack.xero.stats()["calls"].values())
    buffer = batching.Buffer(get_redis(), "things", conn.name)
    waiter = {"task": "t", "args": [{}], "kwargs": {}, "options": {"task_id": "w-1"}}
    buffer.add({"a": {}}, waiter)
    flush.flush_batch.run("things", conn.name, "due")
    assert get_redis().ttl(redis_keys.TAX_RATES(conn.xero_tenant_id)) > 3000
    parked = RUN_HERE["zxsync.invoice_create"](priced, None, 0, False, False)
    assert isinstance(parked, batching.AwaitingBatch) and parked.kind == "invoices", parked
    # the next flush finds them fresh and fetches nothing
    buffer.add({"b": {}}, {**waiter, "options": {"task_id": "w-2"}})
    flush.flush_batch.run("things", conn.name, "due")
    assert sum(stack.xero.stats()["calls"].values()) == calls + 1
