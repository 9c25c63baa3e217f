"""`zxsync demo`: the whole pipeline on this machine, with progress and a summary.

Embedded Redis, both sandboxes and a real Celery worker; Zoho is seeded with invoices over
several accounts and products (some already in Xero, most new), plus one invoice whose product
has no code, to show what an exception report looks like. Every event is sent twice more to show
that repeats never duplicate a Xero invoice. A few purchase orders from new vendors become Xero
purchase orders; one is then billed in Xero and the status poll brings BILLED back to Zoho.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sandbox.config import SandboxConfig
from sandbox.seed import ZohoDataset, build_dataset, load_dataset
from zxsync.stack import LocalConnection, LocalStack

CONNECTION = LocalConnection("demo-au", "a1b2c3d4-0000-4000-8000-00000000d3e0", "org-demo-au")
REPEATS = 3
PURCHASE_ORDERS = 4


@dataclass
class DemoResult:
    created: int
    skipped: int
    failed: int
    pending: int
    verified: int
    problems: list[str]
    purchase_orders: int = 0


def run_demo(
    invoices: int = 24,
    concurrency: int = 2,
    timeout: float = 180.0,
    keep_console: bool = False,
    console_port: int = 8090,
) -> int:
    """Run the demo; with `keep_console`, keep the stack and the ops console up afterwards
    (until Ctrl-C) so the dead letter can be seen, fixed and replayed in a browser."""
    console = Console()
    console.rule("[bold]zoho-xero-sync demo")
    with LocalStack([CONNECTION], SandboxConfig(), concurrency=concurrency) as stack:
        dataset = _seed(stack, invoices)
        planted = plant_invalid_invoice(stack, dataset, CONNECTION.zoho_org_id)
        console.print(
            f"Redis {stack.redis_url} · Xero sandbox {stack.env['XERO_API_URL']} · "
            f"Zoho sandbox {stack.env['ZOHO_API_URL']}"
        )
        console.print(
            f"Seeded Zoho: {len(dataset.accounts)} accounts, {len(dataset.products)} products, "
            f"{len(dataset.invoices) + 1} invoices, {len(dataset.purchase_orders)} purchase "
            f"orders from {len(dataset.vendors)} vendors; Xero already knows "
            f"{len(stack.xero.contacts(CONNECTION.xero_tenant_id))} contacts and "
            f"{len(stack.xero.items(CONNECTION.xero_tenant_id))} items."
        )
        stack.start_worker()
        record_ids = [str(inv["id"]) for inv in dataset.invoices] + [planted]
        _enqueue(record_ids)
        _enqueue([str(po["id"]) for po in dataset.purchase_orders], "Purchase_Orders")
        outcomes = _follow(console, stack, record_ids, timeout)
        result = _verify(stack, dataset, outcomes)
        result.purchase_orders, po_problems = _check_purchase_orders(stack, dataset, timeout)
        result.problems += po_problems
        _summarise(console, stack, result, outcomes)
        ok = (
            result.pending == 0
            and not result.problems
            and result.failed == 1
            and result.created == len(dataset.invoices)
        )
        if not ok:
            console.print("[red]Worker log tail:[/red]")
            console.print(stack.worker_logs()[-4000:], markup=False)
        if keep_console:
            _keep_console(console, stack, planted, console_port)
        else:
            console.print(
                "See it in the ops console: [bold]zxsync demo --console[/bold] keeps this demo "
                f'up and serves http://127.0.0.1:{console_port}/ (README "Operations").'
            )
    console.print("[green]Demo finished.[/green]" if ok else "[red]Demo found problems.[/red]")
    return 0 if ok else 1


def _seed(stack: LocalStack, invoices: int) -> ZohoDataset:
    dataset = load_dataset(
        stack.zoho,
        CONNECTION.zoho_org_id,
        build_dataset(invoices=invoices, accounts=6, products=10, purchase_orders=PURCHASE_ORDERS),
    )
    tenant = CONNECTION.xero_tenant_id
    # Some customers and products are already in Xero: found by name / code, not duplicated.
    for account in dataset.accounts[:2]:
        stack.xero.add_contact(tenant, {"Name": account["Account_Name"]})
    for product in dataset.products[:3]:
        stack.xero.add_item(
            tenant, {"Code": product["Product_Code"], "Name": product["Product_Name"]}
        )
    return dataset


def _keep_console(console: Console, stack: LocalStack, planted: str, port: int) -> None:
    """The ops console on this demo's stack until Ctrl-C (or SIGTERM), with a one-off operator
    login. Enter in the terminal fixes the planted invoice's product in the Zoho sandbox, as a
    user would in Zoho CRM, so the dead letter can then be replayed from the browser."""
    import signal
    import sys

    from console.local import start_local_console

    server, password = start_local_console("demo", port)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the stack on SIGTERM too
    console.rule("[bold]ops console")
    console.print(
        f"Console: {server.url}/  user [bold]demo[/bold]  password [bold]{password}[/bold]",
        highlight=False,
    )
    console.print(
        "Open the red connection's dead letter: its product has no code. Press Enter here to "
        "give it one in the Zoho sandbox, then press Replay in the browser. Ctrl-C stops.",
        highlight=False,
    )
    try:
        if sys.stdin.isatty() and sys.stdin.readline() != "":
            fix_planted_product(stack, CONNECTION.zoho_org_id, planted)
            console.print("[green]Product code set in the Zoho sandbox: replay it now.[/green]")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        server.stop()


def fix_planted_product(stack: LocalStack, org: str, planted: str) -> None:
    """What the user does in Zoho CRM about the planted invoice: give its product a code."""
    invoice = stack.zoho.get(org, "Invoices", planted) or {}
    product_id = invoice["Invoiced_Items"][0]["Product_Name"]["id"]
    stack.zoho.update(org, "Products", product_id, {"Product_Code": "SITE-VISIT"})


def plant_invalid_invoice(
    stack: LocalStack, dataset: ZohoDataset, org: str, number: str = "ZINV-BAD-1"
) -> str:
    """An invoice for a product with no Product_Code: must end as a clear exception report."""
    product = stack.zoho.insert(
        org, "Products", {"Product_Name": "Site visit (no code)", "Unit_Price": Decimal("120.00")}
    )
    template = dataset.invoices[0]
    invoice = stack.zoho.insert(
        org,
        "Invoices",
        {
            "Subject": "Site visit",
            "Invoice_Number": number,
            "Account_Name": template["Account_Name"],
            "Status": "Created",
            "Currency": "AUD",
            "Invoice_Date": template["Invoice_Date"],
            "Due_Date": template["Due_Date"],
            "Invoiced_Items": [
                {
                    "Product_Name": {"id": product["id"], "name": product["Product_Name"]},
                    "Quantity": Decimal("1"),
                    "List_Price": Decimal("120.00"),
                    "Line_Tax": [{"name": "GST", "percentage": Decimal("10")}],
                }
            ],
        },
    )
    return str(invoice["id"])


def _enqueue(record_ids: list[str], module: str = "Invoices") -> None:
    """Send every event REPEATS times, as a relay that retries would."""
    from workers.pipeline import submit_records

    for _ in range(REPEATS):
        submit_records(CONNECTION.name, record_ids, "demo", module=module)


def _follow(
    console: Console, stack: LocalStack, record_ids: list[str], timeout: float
) -> dict[str, tuple[str, str]]:
    from workers.history import RecordHistory, record_key
    from workers.redis import get_redis

    history = RecordHistory(get_redis())
    keys = {record_key(CONNECTION.name, "Invoices", rid): rid for rid in record_ids}
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("Syncing invoices to Xero", total=len(keys))
        while True:
            outcomes = {
                keys[k]: v for k, v in history.outcomes(CONNECTION.name).items() if k in keys
            }
            progress.update(bar, completed=len(outcomes))
            if len(outcomes) == len(keys) or time.monotonic() > deadline:
                return outcomes
            time.sleep(0.2)


def _verify(
    stack: LocalStack, dataset: ZohoDataset, outcomes: dict[str, tuple[str, str]]
) -> DemoResult:
    """Check the sandboxes, not our bookkeeping: one Xero invoice per Zoho invoice, equal totals."""
    tenant, org = CONNECTION.xero_tenant_id, CONNECTION.zoho_org_id
    by_reference: dict[str, list[dict[str, Any]]] = {}
    for invoice in stack.xero.invoices(tenant):
        by_reference.setdefault(str(invoice.get("Reference")), []).append(invoice)
    problems, verified = [], 0
    for source in dataset.invoices:
        zoho = stack.zoho.get(org, "Invoices", str(source["id"])) or {}
        number = str(zoho.get("Invoice_Number"))
        matches = by_reference.get(number, [])
        if len(matches) != 1:
            problems.append(f"{number}: {len(matches)} Xero invoices")
            continue
        xero = matches[0]
        if Decimal(str(xero["Total"])) != Decimal(str(zoho["Grand_Total"])):
            problems.append(
                f"{number}: Xero Total {xero['Total']} != Grand_Total {zoho['Grand_Total']}"
            )
        elif zoho.get("Xero_Invoice_ID") != xero["InvoiceID"]:
            problems.append(f"{number}: Zoho not written back")
        else:
            verified += 1
    if by_reference.get("ZINV-BAD-1"):
        problems.append("ZINV-BAD-1 reached Xero although its product has no code")
    counts = {
        name: sum(1 for o, _ in outcomes.values() if o == name)
        for name in ("created", "skipped", "failed")
    }
    pending = len(dataset.invoices) + 1 - len(outcomes)
    return DemoResult(
        counts["created"], counts["skipped"], counts["failed"], pending, verified, problems
    )


def _check_purchase_orders(
    stack: LocalStack, dataset: ZohoDataset, timeout: float
) -> tuple[int, list[str]]:
    """One Xero purchase order per Zoho one, equal totals, written back; then the first is billed
    in Xero and one run of the status poll must bring BILLED back to Zoho."""
    from workers.app import app
    from workers.history import RecordHistory, record_key
    from workers.redis import get_redis

    tenant, org = CONNECTION.xero_tenant_id, CONNECTION.zoho_org_id
    ids = [str(po["id"]) for po in dataset.purchase_orders]
    keys = {record_key(CONNECTION.name, "Purchase_Orders", rid) for rid in ids}
    history = RecordHistory(get_redis())
    deadline = time.monotonic() + timeout
    while not keys <= set(history.outcomes(CONNECTION.name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    orders = stack.xero.purchase_orders(tenant)
    by_reference = {str(po["Reference"]): po for po in orders}
    problems = [] if len(orders) == len(ids) else [f"{len(orders)} Xero POs for {len(ids)}"]
    verified = 0
    for record_id in ids:
        zoho = stack.zoho.get(org, "Purchase_Orders", record_id) or {}
        xero = by_reference.get(str(zoho.get("PO_Number")), {})
        same_total = Decimal(str(xero.get("Total", "NaN"))) == Decimal(str(zoho.get("Grand_Total")))
        if same_total and zoho.get("Xero_Purchase_Order_ID") == xero.get("PurchaseOrderID"):
            verified += 1
        else:
            problems.append(f"{zoho.get('PO_Number')}: no matching, written-back Xero PO")
    if ids and verified == len(ids):
        first = by_reference[dataset.purchase_orders[0]["PO_Number"]]
        stack.xero.bill_purchase_order(tenant, first["PurchaseOrderID"])
        app.send_task("zxsync.po_status_poll", args=[CONNECTION.name])
        deadline = time.monotonic() + 60
        while (stack.zoho.get(org, "Purchase_Orders", ids[0]) or {}).get("Xero_PO_Status") != (
            "BILLED"
        ):
            if time.monotonic() > deadline:
                problems.append(f"{first['Reference']}: BILLED never reached Zoho")
                break
            time.sleep(0.2)
    return verified, problems


def _summarise(
    console: Console, stack: LocalStack, result: DemoResult, outcomes: dict[str, tuple[str, str]]
) -> None:
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    xero_stats, zoho_stats = stack.xero.stats(), stack.zoho.stats()
    table = Table(title="Summary")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("invoices created in Xero", str(result.created))
    table.add_row("skipped", str(result.skipped))
    table.add_row("failed → dead-letter queue", str(result.failed))
    table.add_row("still pending at timeout", str(result.pending))
    table.add_row("events received (each sent 3 times)", str(REPEATS * len(outcomes)))
    table.add_row(
        "verified in sandbox (1 invoice, Total = Grand_Total, written back)", str(result.verified)
    )
    table.add_row(
        "purchase orders in Xero (Total = Grand_Total, BILLED back)", str(result.purchase_orders)
    )
    table.add_row("Xero API calls used", str(sum(xero_stats["calls"].values())))
    table.add_row("Xero 429 answers", str(xero_stats["status"].get("429", 0)))
    table.add_row("Zoho API calls used", str(sum(zoho_stats["calls"].values())))
    console.print(table)
    for letter in DeadLetterStore(get_redis()).list():
        console.print(
            f"[yellow]Exception report[/yellow] {letter.stage} "
            f"{letter.module} {letter.record_id}: {letter.error}"
        )
        if letter.hint:
            console.print(f"  [bold]What to do:[/bold] {letter.hint}")
    for problem in result.problems:
        console.print(f"[red]Problem:[/red] {problem}")
