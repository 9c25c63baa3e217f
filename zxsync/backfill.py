"""`zxsync backfill`: bring a connection's Zoho history across, adopting what Xero already has.

Plan (also the whole of `--dry-run`): read the Zoho history in pages of 200 (the list API, one
Zoho credit a page (u); COQL would read 2,000 rows for 3 credits, but needs a query per range),
read the Xero side in bulk (invoices and contacts 1,000 a page, purchase orders 100; items in
one call), and decide per document with the pure rules of `schemas.adoption`: adopt, create, skip or
ambiguous, with the reason. The plan is printed and written as CSV with the Xero calls each line
would cost; a dry run writes nothing else.

Run: adopted documents are linked (the link the pipeline itself keeps, so a later edit updates
the adopted Xero invoice, and it is never e-mailed) and their Zoho record gets the Xero id;
contacts matched by ContactNumber and items matched by Code are linked too, so the pipeline
needs no lookup for them. Documents to create go through the door like any relay's event, as
`backfill-<record id>` events, a slice at a time: the pipeline batches them, limits them,
dead-letters what fails and creates each once. Backfill jobs run at the lowest priority step
(workers/pipeline.py) and never fill the connection's waiting room beyond a slice, so live
events overtake them. A cursor in Redis (the highest record id submitted) makes a re-run carry
on where a Ctrl-C or crash stopped it; a document submitted twice has the same event id, which
the door ignores, and a created one is linked, so the plan skips it. When the connection's Xero
day has only `ZXS_BACKFILL_RESERVE` calls left, the backfill stops for the day (live traffic
keeps the reserve) and, unless `--no-wait`, waits for the next day and carries on.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import redis
import typer

from schemas.adoption import (
    HistoryDoc,
    Verdict,
    XeroDoc,
    contact_matches,
    decide_adoption,
    index_by_number,
    item_matches,
)
from schemas.history import HistoryEvent
from schemas.jobs import BACKFILL_EVENT_PREFIX, SyncJob
from schemas.links import (
    CONTACT,
    INVOICE,
    ITEM,
    PURCHASE_ORDER,
    PURCHASE_ORDER_XERO,
    VENDOR,
    ContactLink,
    InvoiceLink,
    ItemLink,
    LinkKind,
    PurchaseOrderLink,
    PurchaseOrderRecord,
)
from schemas.sequence import decide
from workers import keys
from workers.context import StageContext
from workers.history import RecordHistory, record_key
from workers.ratelimit import xero_calls_today

STOPPED_FOR_THE_DAY = 3  # exit code of `--no-wait` when the day's budget is spent


@dataclass(frozen=True)
class ModuleSpec:
    """Where a module keeps what adoption needs, and the links the pipeline keeps for it."""

    number: str
    party: str  # the lookup to the account (vendor)
    date_field: str
    link_kind: LinkKind[Any]  # INVOICE or PURCHASE_ORDER
    contact_kind: LinkKind[ContactLink]
    sales: bool = True

    def link_id(self, module: str, record_id: str) -> str:
        return f"{module}:{record_id}" if self.sales else record_id


SPECS = {
    "Invoices": ModuleSpec("Invoice_Number", "Account_Name", "Invoice_Date", INVOICE, CONTACT),
    "Quotes": ModuleSpec("Quote_Number", "Account_Name", "Created_Time", INVOICE, CONTACT),
    "Sales_Orders": ModuleSpec("SO_Number", "Account_Name", "Created_Time", INVOICE, CONTACT),
    "Purchase_Orders": ModuleSpec(
        "PO_Number", "Vendor_Name", "PO_Date", PURCHASE_ORDER, VENDOR, sales=False
    ),
}


def cursor_key(connection: str, module: str) -> str:
    return keys.BACKFILL(connection, module)


@dataclass
class Plan:
    """The verdicts, what reading cost, and the links the run will set."""

    verdicts: list[Verdict]
    xero_calls_read: int
    zoho_credits_read: int
    contact_links: dict[str, ContactLink] = field(default_factory=dict)
    item_links: dict[str, ItemLink] = field(default_factory=dict)
    new_accounts: int = 0

    def count(self, action: str) -> int:
        return sum(v.action == action for v in self.verdicts)

    def create_calls(self, batch: int) -> int:
        """Xero calls the creates will cost: a batch of invoices (and of the accounts no
        Xero contact matched) per `batch` documents (u: Xero lookups of refused elements)."""
        return math.ceil(self.count("create") / batch) + math.ceil(self.new_accounts / batch)


def in_range(value: Any, since: date | None, until: date | None) -> bool:
    """Whether a Zoho date or datetime falls in [since, until] (no date: only without bounds)."""
    if since is None and until is None:
        return True
    if not value:
        return False
    day = (
        datetime.fromisoformat(str(value)).date()
        if "T" in str(value)
        else date.fromisoformat(str(value))
    )
    return (since is None or day >= since) and (until is None or day <= until)


def read_history(
    ctx: StageContext, module: str, since: date | None, until: date | None
) -> tuple[list[dict[str, Any]], int]:
    """The module's records in range, and the Zoho credits the pages cost."""
    spec = SPECS[module]
    known = {str(f["api_name"]) for f in ctx.zoho.fields(module)}
    wanted = [
        spec.number,
        "Subject",
        spec.party,
        "Grand_Total",
        "Status",
        spec.date_field,
        "Created_Time",
    ]
    if ctx.connection.approval_field:
        wanted.append(ctx.connection.approval_field)
    fields = list(dict.fromkeys(f for f in wanted if f in known))
    rows: list[dict[str, Any]] = []
    credits = 1  # the fields read
    for page in ctx.zoho.pages(module, fields):
        credits += 1
        rows += [r for r in page if in_range(r.get(spec.date_field), since, until)]
    return rows, credits


def build_plan(
    ctx: StageContext, module: str, since: date | None = None, until: date | None = None
) -> Plan:
    """Read both sides and decide every document (writes nothing)."""
    spec, conn = SPECS[module], ctx.connection
    before = xero_calls_today(conn.name, settings=ctx.settings, redis_client=ctx.redis).used
    rows, credits = read_history(ctx, module, since, until)
    links = ctx.idempotency.links(
        spec.link_kind, conn.name, [spec.link_id(module, str(r["id"])) for r in rows]
    )
    docs = []
    for row in rows:
        rid, party = str(row["id"]), row.get(spec.party) or {}
        linked = spec.link_id(module, rid) in links
        skip = None
        if spec.sales:
            approval = str(row.get(conn.approval_field)) if conn.approval_field else None
            decision = decide(module, "insert", row.get("Status"), approval, linked, conn)
            skip = decision.reason if decision.action != "sync" else None
        number = row.get(spec.number) or row.get("Subject")
        total = Decimal(str(row.get("Grand_Total") or 0))
        docs.append(HistoryDoc(module, rid, number, str(party.get("id", "")), total, linked, skip))
    if spec.sales:
        xero_docs = [
            XeroDoc(
                i.InvoiceID,
                i.InvoiceNumber,
                i.Reference,
                i.Contact.ContactID if i.Contact else None,
                i.Total,
                i.Status,
            )
            for i in ctx.xero.all_invoices('Type=="ACCREC"')
        ]
    else:
        xero_docs = [
            XeroDoc(
                o.PurchaseOrderID,
                o.PurchaseOrderNumber,
                o.Reference,
                o.Contact.ContactID if o.Contact else None,
                o.Total,
                o.Status,
            )
            for o in ctx.xero.purchase_orders({})
        ]
    contacts = ctx.xero.all_contacts()
    by_number: dict[str, list[str]] = {}
    names = {c.ContactID: c.Name for c in contacts}
    for c in contacts:
        if c.ContactNumber and c.ContactStatus != "ARCHIVED":
            by_number.setdefault(c.ContactNumber, []).append(c.ContactID)
    accounts = sorted({d.account_id for d in docs if d.account_id})
    contact_links = ctx.idempotency.links(spec.contact_kind, conn.name, accounts)
    matched = contact_matches(
        accounts, {a: v.ContactID for a, v in contact_links.items()}, by_number
    )
    taken = _taken({x.doc_id for x in xero_docs}, links)
    verdicts = decide_adoption(docs, index_by_number(xero_docs), matched, taken)
    creates = {v.doc.account_id for v in verdicts if v.action == "create"}
    plan = Plan(
        verdicts,
        0,
        credits,
        contact_links={
            a: ContactLink(ContactID=c, Name=names.get(c, ""))
            for a, c in matched.items()
            if a not in contact_links
        },
        new_accounts=len(creates - set(matched)),
    )
    if spec.sales:
        plan.item_links, item_credits = _item_links(ctx)
        plan.zoho_credits_read += item_credits
    plan.xero_calls_read = (
        xero_calls_today(conn.name, settings=ctx.settings, redis_client=ctx.redis).used - before
    )
    return plan


def _taken(
    xero_ids: set[str], links: dict[str, InvoiceLink] | dict[str, PurchaseOrderLink]
) -> frozenset[str]:
    """Xero documents some Zoho record of this module is already linked to."""
    return frozenset(_xero_id(v) for v in links.values()) & xero_ids


def _xero_id(link: InvoiceLink | PurchaseOrderLink) -> str:
    return link.InvoiceID if isinstance(link, InvoiceLink) else link.PurchaseOrderID


def _item_links(ctx: StageContext) -> tuple[dict[str, ItemLink], int]:
    """Zoho products whose code Xero's items have and that are not linked yet."""
    from schemas.errors import InvalidRecord
    from schemas.mapping import product_code
    from schemas.zoho import ZohoProduct, parse_record

    codes: dict[str, str] = {}
    credits = 0
    for page in ctx.zoho.pages("Products", ["Product_Name", "Product_Code"]):
        credits += 1
        for raw in page:
            try:
                codes[str(raw["id"])] = product_code(parse_record(ZohoProduct, "Products", raw))
            except InvalidRecord:
                continue  # the pipeline reports a product without a code on its document
    items = ctx.xero.all_items()
    by_code = {i.Code: i.ItemID for i in items}
    names = {i.ItemID: i.Name or "" for i in items}
    linked = ctx.idempotency.links(ITEM, ctx.connection.name, list(codes))
    matched = item_matches({p: c for p, c in codes.items() if p not in linked}, by_code)
    return {
        p: ItemLink(ItemID=i, Code=codes[p], Name=names[i]) for p, i in matched.items()
    }, credits


def write_csv(path: Path, plan: Plan, batch: int) -> None:
    """One line per document: action, why, the Xero document adopted, Xero calls it costs."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["module", "record_id", "number", "action", "reason", "xero_id", "xero_calls"]
        )
        for v in plan.verdicts:
            calls = f"{1 / batch:.3f}" if v.action == "create" else "0"
            writer.writerow(
                [
                    v.doc.module,
                    v.doc.record_id,
                    v.doc.number or "",
                    v.action,
                    v.reason,
                    v.xero.doc_id if v.xero else "",
                    calls,
                ]
            )


def adopt(ctx: StageContext, module: str, plan: Plan) -> int:
    """Link the adopted documents, contacts and items, and write the Xero ids to Zoho."""
    spec, conn = SPECS[module], ctx.connection.name
    adopted = [v for v in plan.verdicts if v.action == "adopt" and v.xero is not None]
    if plan.contact_links:
        ctx.idempotency.set_links(spec.contact_kind, conn, plan.contact_links)
    if plan.item_links:
        ctx.idempotency.set_links(ITEM, conn, plan.item_links)
    for start in range(0, len(adopted), 100):
        chunk = adopted[start : start + 100]
        links: dict[str, InvoiceLink | PurchaseOrderLink] = {}
        updates = []
        for v in chunk:
            x = v.xero
            assert x is not None
            if spec.sales:
                links[spec.link_id(module, v.doc.record_id)] = InvoiceLink(
                    InvoiceID=x.doc_id,
                    InvoiceNumber=x.number,
                    Status=x.status,
                    Total=x.total,
                    version=None,
                    sent_by="adopted",
                )
                updates.append(
                    {
                        "id": v.doc.record_id,
                        "Xero_Invoice_ID": x.doc_id,
                        "Xero_Invoice_Number": x.number,
                        "Xero_Invoice_Status": x.status,
                        "Xero_Sync_Status": "Synced",
                    }
                )
            else:
                links[v.doc.record_id] = PurchaseOrderLink(
                    PurchaseOrderID=x.doc_id,
                    PurchaseOrderNumber=x.number,
                    Status=x.status,
                    version=None,
                )
                updates.append(
                    {
                        "id": v.doc.record_id,
                        "Xero_Purchase_Order_ID": x.doc_id,
                        "Xero_Purchase_Order_Number": x.number,
                        "Xero_PO_Status": x.status,
                        "Xero_Sync_Status": "Synced",
                    }
                )
        ctx.idempotency.set_links(spec.link_kind, conn, links)
        if not spec.sales:
            ctx.idempotency.set_links(
                PURCHASE_ORDER_XERO,
                conn,
                {
                    v.xero.doc_id: PurchaseOrderRecord(record_id=v.doc.record_id)
                    for v in chunk
                    if v.xero
                },
            )
        ctx.zoho.update_each(module, updates)
        for v in chunk:
            ctx.history.log(
                record_key(conn, module, v.doc.record_id),
                "zxsync.backfill",
                HistoryEvent.ADOPTED,
                detail=v.reason,
            )
    return len(adopted)


def eta_seconds(
    calls_left: float,
    day_remaining: int,
    reserve: int,
    day_limit: int,
    per_minute: int,
    resets_in: float | None,
) -> float:
    """Seconds the remaining Xero calls take within the daily budget (less the reserve) and
    the minute limit: what fits today goes at the minute limit, the rest waits for the days
    it needs."""
    today = max(0, day_remaining - reserve)
    if calls_left <= today:
        return calls_left / per_minute * 60
    rest = calls_left - today
    per_day = max(1, day_limit - reserve)
    days = math.ceil(rest / per_day)
    last = rest - (days - 1) * per_day
    return (
        (resets_in if resets_in is not None else 86400.0)
        + (days - 1) * 86400
        + (last / per_minute * 60)
    )


def fill(slice_size: int, outstanding: int, batch: int) -> int:
    """How many creates to send now: whole batches while the slice has room for one (documents
    sent together reach the invoice buffer together, so its requests go full), else the whole
    slice once nothing is outstanding."""
    free = slice_size - outstanding
    if free >= batch:
        return free // batch * batch
    return slice_size if outstanding == 0 else 0


@dataclass
class Feeder:
    """Submits the plan's creates a slice at a time, keeping the cursor in Redis."""

    ctx: StageContext
    module: str
    todo: list[str]  # record ids to create, ascending
    submitted: list[str] = field(default_factory=list)

    @property
    def redis(self) -> redis.Redis:
        return self.ctx.redis

    def cursor(self) -> int:
        raw = self.redis.hget(cursor_key(self.ctx.connection.name, self.module), "cursor")
        return int(str(raw)) if raw else 0

    def pending(self) -> list[str]:
        """Creates not submitted yet (above the cursor)."""
        mark = self.cursor()
        return [r for r in self.todo if int(r) > mark]

    def done(self) -> int:
        """Submitted creates that finished: linked, or with a failed/skipped outcome."""
        spec, conn, mark = SPECS[self.module], self.ctx.connection.name, self.cursor()
        sent = [r for r in self.todo if int(r) <= mark]
        linked = self.ctx.idempotency.links(
            spec.link_kind, conn, [spec.link_id(self.module, r) for r in sent]
        )
        outcomes = RecordHistory(self.redis).outcomes(conn)
        return sum(
            spec.link_id(self.module, r) in linked
            or outcomes.get(record_key(conn, self.module, r), ("", ""))[0] in ("failed", "skipped")
            for r in sent
        )

    def submit(self, ids: list[str]) -> None:
        from workers.pipeline import submit

        conn = self.ctx.connection.name
        for rid in ids:
            submit(
                SyncJob(
                    connection=conn,
                    module=self.module,
                    record_id=rid,
                    event="insert",
                    event_id=f"{BACKFILL_EVENT_PREFIX}{rid}",
                )
            )
            self.redis.hset(cursor_key(conn, self.module), "cursor", rid)


def run(
    ctx: StageContext,
    module: str,
    plan: Plan,
    *,
    wait: bool,
    slice_size: int,
    poll_seconds: float,
    on_progress: Callable[[int, int, float | None, str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Adopt, then feed the creates; 0 when every create finished, STOPPED_FOR_THE_DAY when
    `wait` is off and the day's budget ran down to the reserve."""
    settings, conn = ctx.settings, ctx.connection.name
    adopt(ctx, module, plan)
    creates = sorted((v.doc.record_id for v in plan.verdicts if v.action == "create"), key=int)
    feeder = Feeder(ctx, module, creates)
    per_invoice = plan.create_calls(settings.zxs_batch_size) / max(1, len(creates))
    reserve = settings.zxs_backfill_reserve
    while True:
        done = feeder.done()
        pending = feeder.pending()
        outstanding = len(creates) - len(pending) - done
        usage = xero_calls_today(conn, settings=settings, redis_client=ctx.redis)
        eta = eta_seconds(
            (len(creates) - done) * per_invoice,
            usage.remaining,
            reserve,
            usage.limit,
            settings.zxs_xero_per_minute,
            usage.resets_in_seconds,
        )
        if done >= len(creates):
            on_progress(done, len(creates), 0.0, "finished")
            return 0
        if pending and usage.remaining <= reserve:
            note = (
                f"stopped for the day: {usage.remaining} Xero calls left, "
                f"{reserve} kept for live traffic"
            )
            on_progress(done, len(creates), eta, note)
            if not wait:
                return STOPPED_FOR_THE_DAY
            sleep(usage.resets_in_seconds if usage.resets_in_seconds else 600.0)
            continue
        room = fill(slice_size, outstanding, settings.zxs_batch_size)
        if pending and room:
            feeder.submit(pending[:room])
        on_progress(done, len(creates), eta, f"{usage.remaining} Xero calls left today")
        sleep(poll_seconds)


def backfill(
    connection: Annotated[str, typer.Option("--connection", "-c", help="Connection name.")],
    module: Annotated[str, typer.Option(help="Invoices, Quotes, Sales_Orders or Purchase_Orders.")],
    since: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="From this document date.")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="To this document date.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read both sides, print and write the CSV only.")
    ] = False,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Default: backfill-<connection>-<module>.csv.")
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="At the day's reserve, wait for the next day (else exit 3).")
    ] = True,
) -> None:
    """Bring the Zoho history across: adopt what Xero has, create the rest (resumable)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from workers.context import build_context

    console = Console()
    if module not in SPECS:
        console.print(f"[red]error[/red]: --module must be one of {', '.join(SPECS)}")
        raise typer.Exit(2)
    ctx = build_context(connection)
    plan = build_plan(ctx, module, since.date() if since else None, until.date() if until else None)
    batch = ctx.settings.zxs_batch_size
    path = csv_path or Path(f"backfill-{connection}-{module}.csv")
    write_csv(path, plan, batch)
    for v in plan.verdicts:
        if v.action == "ambiguous":
            console.print(
                f"ambiguous {module} {v.doc.record_id} ({v.doc.number}): {v.reason}",
                highlight=False,
                markup=False,
            )
    console.print(
        f"{len(plan.verdicts)} {module}: {plan.count('create')} to create, "
        f"{plan.count('adopt')} to adopt, {plan.count('skip')} skipped, "
        f"{plan.count('ambiguous')} ambiguous (listed, left alone); "
        f"{len(plan.contact_links)} contacts and {len(plan.item_links)} items to link. "
        f"Reading cost {plan.xero_calls_read} Xero calls and {plan.zoho_credits_read} Zoho "
        f"credits; creating will cost about {plan.create_calls(batch)} Xero calls. "
        f"Plan written to {path}",
        highlight=False,
    )
    if dry_run:
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ETA {task.fields[eta]} · {task.fields[note]}"),
        console=console,
    ) as bar:
        task = bar.add_task(
            f"backfill {module}", total=max(1, plan.count("create")), eta="?", note=""
        )

        def show(done: int, total: int, eta: float | None, note: str) -> None:
            when = "?" if eta is None else f"{int(eta // 3600)}h{int(eta % 3600 // 60):02d}m"
            bar.update(task, completed=done, total=max(1, total), eta=when, note=note)

        code = run(
            ctx,
            module,
            plan,
            wait=wait,
            slice_size=ctx.settings.zxs_backfill_slice,
            poll_seconds=1.0,
            on_progress=show,
        )
    if code == STOPPED_FOR_THE_DAY:
        console.print("stopped for the day; run the same command again tomorrow to carry on")
    raise typer.Exit(code)
