"""The Xero sandbox over HTTP: identity server, `/connections` and the Accounting API.

Mount points mirror the real hosts so a client only swaps base URLs: `POST /connect/token`
(identity.xero.com), `GET /identity/connect/authorize` (login.xero.com, consent is automatic),
`GET|DELETE /connections` (api.xero.com) and the Accounting API under `/api.xro/2.0`.

Faithful to FACTS.md and the official spec (xero_accounting.yaml 16.1.0, xero-identity.yaml):
- Every Accounting call: Xero's plain 404 for a URL over `max_url_chars` (2,000; FACTS "URL
  length"), a 503 for `fault_rate` of calls before any work, then the bearer token
  (401 problem JSON, "TokenExpired: ..." or "AuthenticationUnsuccessful"), then the
  `xero-tenant-id` header (403), then rate limits (429 with `X-Rate-Limit-Problem`, `Retry-After`
  for minute/day only; FACTS "Rate limits", developer.xero.com/faq/limits), then `latency_seconds`
  (plus `slow_seconds` for a `slow_rate` share) and Xero's simulated time (`xero_call_seconds`
  plus `xero_element_seconds` per element of a batch write, asyncio sleeps) while holding a
  concurrency slot, then
  `Idempotency-Key` (FACTS "Idempotency"; checked after
  rate limiting, so a replay still spends a call), then the handler (or a scripted or rolled
  500 instead of it, or after it for a saved write: sandbox/faults.py); a `timeout_rate` share of
  answers then arrives only after `timeout_seconds` and a `drop_rate` share is cut off mid-body
  (sandbox/faults.py: the work is done, the answer lost). Answers carry
  `X-DayLimit-Remaining`, `X-MinLimit-Remaining`, `X-AppMinLimit-Remaining`.
- Scopes (FACTS "The 2026 platform"): a granular app (the default; created on or after 2 March
  2026) asking for `accounting.transactions` gets the consent error page `invalid_scope`; a token
  carries exactly what consent asked for, and an endpoint outside it answers 401 "Unauthorized /
  AuthorizationUnsuccessful" with `WWW-Authenticate: Bearer error="insufficient_scope"`.
- Batches (FACTS "Batches and errors", developer.xero.com/documentation/api/accounting/
  requests-and-responses): without `summarizeErrors=false` one bad element makes the answer a 400
  ValidationException listing only the bad elements, yet the good ones are saved and their IDs are
  not returned; with it, 200 and a StatusAttributeString per element.
- Lists: `where`, `order`, `If-Modified-Since` (to the second), `page`/`pageSize` (100, max 1000)
  with `pagination`; GET /Invoices returns line items only when paging (or for one invoice);
  GET /Items is never paged. Unknown documents: 404 with Xero's plain-text body.

Not confirmed by a source, so kept plausible rather than exact: messages FACTS does not quote
(ours are worded like Xero's), the 429 body (FACTS: do not rely on it), and the Rounding account
(code 260) being Type CURRLIAB with SystemAccount ROUNDING, as ROUNDING is no AccountType in the
spec.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import simplejson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from sandbox.config import SandboxConfig
from sandbox.xero_state import (
    CURRENCY_NAMES,
    JSON,
    Outcome,
    Reply,
    Tenant,
    XeroSandbox,
    envelope_date,
    money,
    parse_day,
    scope_allows,
    updated_since,
    validation_error,
)
from sandbox.xero_where import WhereError, compile_where, order_objects

__all__ = ["XeroSandbox", "create_xero_app"]

NOT_FOUND = "The resource you're looking for cannot be found"
WRITES = ("POST", "PUT", "PATCH")


@dataclass
class Ctx:
    """One admitted Accounting call, handed to a handler that runs under the state lock."""

    xs: XeroSandbox
    tenant: Tenant
    method: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def unitdp(self) -> int:
        return 4 if self.query.get("unitdp") == "4" else 2

    def flag(self, name: str) -> bool:
        return self.query.get(name.lower(), "").lower() == "true"


Handler = Callable[[Ctx], Reply]
# The query parameters each operation served here defines in the spec (lowercase; Xero reads
# them case-insensitively); any other is refused with a 400 naming it, so a client cannot send
# one unnoticed (tests/sandbox/test_xero_sandbox.py keeps this table equal to the spec's).
_PAGED = {"page", "pagesize", "where", "order"}
QUERY_PARAMETERS: dict[tuple[str, str], set[str]] = {
    ("GET", "/Organisation"): set(),
    ("GET", "/TaxRates"): {"where", "order"},
    ("GET", "/Accounts"): {"where", "order"},
    ("GET", "/Currencies"): {"where", "order"},
    ("GET", "/Contacts"): _PAGED | {"ids", "summaryonly", "includearchived", "searchterm"},
    ("PUT", "/Contacts"): {"summarizeerrors"},
    ("POST", "/Contacts"): {"summarizeerrors"},
    ("GET", "/Contacts/{ContactID}"): set(),
    ("POST", "/Contacts/{ContactID}"): set(),
    ("GET", "/Items"): {"where", "order", "unitdp"},
    ("PUT", "/Items"): {"unitdp", "summarizeerrors"},
    ("POST", "/Items"): {"unitdp", "summarizeerrors"},
    ("GET", "/Items/{ItemID}"): {"unitdp"},
    ("POST", "/Items/{ItemID}"): {"unitdp"},
    ("GET", "/Invoices"): _PAGED
    | {
        "statuses",
        "invoicenumbers",
        "unitdp",
        "ids",
        "contactids",
        "summaryonly",
        "includearchived",
        "searchterm",
        "createdbymyapp",
    },
    ("PUT", "/Invoices"): {"unitdp", "summarizeerrors"},
    ("POST", "/Invoices"): {"unitdp", "summarizeerrors"},
    ("GET", "/Invoices/{InvoiceID}"): {"unitdp"},
    ("POST", "/Invoices/{InvoiceID}"): {"unitdp"},
    ("POST", "/Invoices/{InvoiceID}/Email"): set(),
    ("GET", "/Invoices/{InvoiceID}/OnlineInvoice"): set(),
    ("GET", "/TrackingCategories"): {"where", "includearchived", "order"},
    ("GET", "/PurchaseOrders"): {"dateto", "status", "page", "pagesize", "datefrom", "order"},
    ("PUT", "/PurchaseOrders"): {"summarizeerrors"},
    ("POST", "/PurchaseOrders"): {"summarizeerrors"},
    ("GET", "/PurchaseOrders/{PurchaseOrderID}"): set(),
    ("POST", "/PurchaseOrders/{PurchaseOrderID}"): set(),
    ("GET", "/CreditNotes"): _PAGED | {"unitdp"},
    ("PUT", "/CreditNotes"): {"unitdp", "summarizeerrors"},
    ("GET", "/CreditNotes/{CreditNoteID}"): {"unitdp"},
    ("PUT", "/CreditNotes/{CreditNoteID}/Allocations"): {"summarizeerrors"},
    ("GET", "/Payments"): _PAGED,
    ("GET", "/Overpayments"): _PAGED | {"unitdp", "references"},
    ("GET", "/Prepayments"): _PAGED | {"unitdp", "invoicenumbers"},
    ("PUT", "/Payments"): {"summarizeerrors"},
}
Endpoint = Callable[[Request], Awaitable[Response]]


def _respond(reply: Reply) -> Response:
    if reply.status == 204:
        return Response(status_code=204, headers=reply.headers)
    if isinstance(reply.body, bytes):
        return Response(reply.body, reply.status, reply.headers, media_type="application/pdf")
    if isinstance(reply.body, str):
        return PlainTextResponse(reply.body, reply.status, headers=reply.headers)
    content = simplejson.dumps(reply.body, use_decimal=True, ensure_ascii=False)
    return Response(content, reply.status, reply.headers, media_type="application/json")


def _problem(status: int, title: str, detail: str) -> JSON:
    """The RFC 7807 body Xero's gateway sends for 401 and 403 (FACTS "OAuth2")."""
    return {
        "Type": None,
        "Title": title,
        "Status": status,
        "Detail": detail,
        "Instance": str(uuid.uuid4()),
        "Extensions": {},
    }


def _error(number: int, kind: str, message: str) -> JSON:
    return {"ErrorNumber": number, "Type": kind, "Message": message}


def _envelope(xs: XeroSandbox, key: str, objects: list[JSON]) -> JSON:
    return {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": "zxsync sandbox",
        "DateTimeUTC": envelope_date(xs.clock()),
        key: objects,
    }


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _if_modified_since(headers: dict[str, str]) -> datetime | None:
    """A UTC date-time (an HTTP date or ISO 8601; without an offset it is UTC, as Xero reads
    it); anything else raises ValueError (a 400), never silently ignored."""
    raw = headers.get("if-modified-since")
    if not raw:
        return None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"If-Modified-Since is not a date-time: {raw!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# --------------------------------------------------------------------------- lists


def _list(
    ctx: Ctx, key: str, objects: list[JSON], *, paged: bool, strip_lines: bool = False
) -> Reply:
    """Filter (If-Modified-Since, where), order and page a collection, then wrap it."""
    try:
        since = _if_modified_since(ctx.headers)
    except ValueError as exc:
        return Reply(400, _error(10, "ValidationException", str(exc)))
    if since is not None:
        objects = [o for o in objects if updated_since(o, since)]
    try:
        if ctx.query.get("where"):
            predicate = compile_where(ctx.query["where"])
            objects = [o for o in objects if predicate(o)]
        if ctx.query.get("order"):
            objects = order_objects(objects, ctx.query["order"])
    except WhereError as exc:
        return Reply(400, _error(16, "QueryParseException", str(exc)))
    paging = paged and "page" in ctx.query
    pagination: JSON | None = None
    if paging:
        page = max(1, _int(ctx.query.get("page"), 1))
        size = min(1000, max(1, _int(ctx.query.get("pagesize"), 100)))
        count = len(objects)
        pagination = {
            "page": page,
            "pageSize": size,
            "pageCount": math.ceil(count / size),
            "itemCount": count,
        }
        objects = objects[(page - 1) * size : page * size]
    elif strip_lines:
        for obj in objects:
            obj.pop("LineItems", None)
    body = _envelope(ctx.xs, key, objects)
    if pagination is not None:
        body["pagination"] = pagination
    return Reply(200, body)


def list_contacts(ctx: Ctx) -> Reply:
    t = ctx.tenant
    contacts = ctx.xs.ordered(t, t.contacts, "ContactID")
    ids = {i.lower() for i in _csv(ctx.query.get("ids"))}
    if ids:
        contacts = [c for c in contacts if c["ContactID"] in ids]
    if not ctx.flag("includeArchived"):
        contacts = [c for c in contacts if c["ContactStatus"] != "ARCHIVED"]
    term = (ctx.query.get("searchterm") or "").lower()
    if term:
        fields = ("Name", "FirstName", "LastName", "ContactNumber", "CompanyNumber", "EmailAddress")
        contacts = [c for c in contacts if any(term in str(c.get(f) or "").lower() for f in fields)]
    return _list(ctx, "Contacts", [ctx.xs.render_contact(t, c) for c in contacts], paged=True)


def list_items(ctx: Ctx) -> Reply:
    items = ctx.xs.ordered(ctx.tenant, ctx.tenant.items, "ItemID")
    return _list(ctx, "Items", [_unit_price(i, ctx.unitdp) for i in items], paged=False)


def list_invoices(ctx: Ctx) -> Reply:
    t = ctx.tenant
    invoices = [
        ctx.xs.render_invoice(t, i, ctx.unitdp) for i in ctx.xs.ordered(t, t.invoices, "InvoiceID")
    ]
    filters = (
        ("ids", "InvoiceID", True),
        ("invoicenumbers", "InvoiceNumber", False),
        ("statuses", "Status", False),
    )
    for param, field_name, lower in filters:
        wanted = {v.lower() if lower else v for v in _csv(ctx.query.get(param))}
        if wanted:
            invoices = [i for i in invoices if i.get(field_name) in wanted]
    contact_ids = {v.lower() for v in _csv(ctx.query.get("contactids"))}
    if contact_ids:
        invoices = [i for i in invoices if i["Contact"]["ContactID"] in contact_ids]
    return _list(ctx, "Invoices", invoices, paged=True, strip_lines=True)


def list_purchase_orders(ctx: Ctx) -> Reply:
    """The spec's filters (Status, DateFrom, DateTo), then If-Modified-Since, where, paging.

    `where` is not among the spec's parameters for this endpoint; the sandbox accepts it like
    the other lists, and the project's client does not rely on it.
    """
    t = ctx.tenant
    orders = [
        ctx.xs.render_invoice(t, po, ctx.unitdp)
        for po in ctx.xs.ordered(t, t.purchase_orders, "PurchaseOrderID")
    ]
    status = (ctx.query.get("status") or "").upper()
    if status:
        orders = [po for po in orders if po["Status"] == status]
    start = parse_day(ctx.query.get("datefrom")) or date.min
    end = parse_day(ctx.query.get("dateto")) or date.max
    orders = [po for po in orders if start <= (parse_day(po["Date"]) or start) <= end]
    return _list(ctx, "PurchaseOrders", orders, paged=True)


def _unit_price(item: JSON, unitdp: int) -> JSON:
    out = copy.deepcopy(item)
    for details in ("SalesDetails", "PurchaseDetails"):
        block = out.get(details)
        if unitdp < 4 and isinstance(block, dict) and isinstance(block.get("UnitPrice"), Decimal):
            block["UnitPrice"] = money(block["UnitPrice"])
    return out


async def _simulated_latency(config: SandboxConfig, method: str, body: bytes) -> None:
    """Real Xero's time per call, and per element of a batch write, as an asyncio sleep: the
    event loop serves every other call meanwhile (issue #19: a burst bound by Xero's latency)."""
    pause = config.xero_call_seconds
    if config.xero_element_seconds and method in WRITES and body:
        pause += config.xero_element_seconds * _elements_in(body)
    if pause > 0:
        await asyncio.sleep(pause)


def _elements_in(body: bytes) -> int:
    """Elements of a write body: the length of its collection (`{"Invoices": [...]}`), 1 for a
    single object, 0 for what does not parse (the handler refuses it)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return 0
    if not isinstance(payload, dict):
        return 0
    lists = [v for v in payload.values() if isinstance(v, list)]
    return len(lists[0]) if lists else 1


def _settings(key: str, pick: Callable[[Tenant], list[JSON]]) -> Handler:
    def handler(ctx: Ctx) -> Reply:
        return _list(ctx, key, copy.deepcopy(pick(ctx.tenant)), paged=False)

    return handler


def _currencies(t: Tenant) -> list[JSON]:
    return [{"Code": c, "Description": CURRENCY_NAMES.get(c, c)} for c in t.currencies]


# --------------------------------------------------------------------------- single GETs


def get_contact(ctx: Ctx) -> Reply:
    contact = ctx.xs.find_contact(ctx.tenant, ctx.params["ref"])
    if contact is None:
        return Reply(404, NOT_FOUND)
    rendered = ctx.xs.render_contact(ctx.tenant, contact)
    return Reply(200, _envelope(ctx.xs, "Contacts", [rendered]))


def get_item(ctx: Ctx) -> Reply:
    item = ctx.xs.find_item(ctx.tenant, ctx.params["ref"])
    if item is None:
        return Reply(404, NOT_FOUND)
    return Reply(200, _envelope(ctx.xs, "Items", [_unit_price(item, ctx.unitdp)]))


def _get_document(key: str, find: Callable[[XeroSandbox, Tenant, str], JSON | None]) -> Handler:
    """GET one invoice or purchase order by ID or number (a PDF with Accept: application/pdf)."""

    def handler(ctx: Ctx) -> Reply:
        found = find(ctx.xs, ctx.tenant, ctx.params["ref"])
        if found is None:
            return Reply(404, NOT_FOUND)
        if "application/pdf" in ctx.headers.get("accept", ""):
            return Reply(200, invoice_pdf(found))
        rendered = ctx.xs.render_invoice(ctx.tenant, found, ctx.unitdp)
        return Reply(200, _envelope(ctx.xs, key, [rendered]))

    return handler


# --------------------------------------------------------------------------- writes


def _elements(ctx: Ctx, key: str) -> list[JSON] | Reply:
    """The request's objects: `{"Invoices": [...]}`, a bare object or a bare list."""
    if not ctx.body.strip():
        return Reply(
            400,
            _error(
                17,
                "NoDataProcessedException",
                f"No data has been processed for this endpoint. This endpoint is expecting "
                f"{key[:-1]} data to be specifed in the request body.",
            ),
        )
    try:
        data = json.loads(ctx.body, parse_float=Decimal)
    except ValueError as exc:
        return Reply(400, _error(14, "PostDataInvalidException", f"Invalid JSON data: {exc}"))
    if isinstance(data, dict):
        match = next((k for k in data if k.lower() == key.lower()), None)
        data = data[match] if match is not None else [data]
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        return Reply(
            400,
            _error(14, "PostDataInvalidException", f"The {key} element must be a list of objects."),
        )
    if not data:
        return Reply(
            400,
            _error(
                17,
                "NoDataProcessedException",
                f"No data has been processed for this endpoint. This endpoint is expecting "
                f"{key[:-1]} data to be specifed in the request body.",
            ),
        )
    return data


def _write(
    ctx: Ctx,
    key: str,
    save: Callable[[JSON], Outcome],
    render: Callable[[JSON], JSON],
    error_flag: str | None,
    force: JSON | None = None,
) -> Reply:
    """Save each element in order; answer per FACTS' summarizeErrors semantics."""
    parsed = _elements(ctx, key)
    if isinstance(parsed, Reply):
        return parsed
    summarize = ctx.query.get("summarizeerrors", "true").lower() != "false"
    answers: list[JSON] = []
    refused: list[JSON] = []
    for element in parsed:
        saved, errors = save({**element, **(force or {})})
        if saved is not None:
            answer = render(saved)
            if not summarize:
                answer["StatusAttributeString"] = "OK"
            answers.append(answer)
            continue
        failed = {**element, "ValidationErrors": [{"Message": m} for m in errors]}
        refused.append(failed)
        flags: JSON = {"StatusAttributeString": "ERROR"}
        if error_flag:
            flags[error_flag] = True
        answers.append({**failed, **flags})
    if summarize and refused:
        return Reply(400, validation_error("A validation exception occurred", refused))
    return Reply(200, _envelope(ctx.xs, key, answers))


def write_contacts(ctx: Ctx) -> Reply:
    create_only = ctx.method == "PUT"
    force: JSON | None = None
    if "ref" in ctx.params:
        found = ctx.xs.find_contact(ctx.tenant, ctx.params["ref"])
        if found is None:
            return Reply(404, NOT_FOUND)
        force = {"ContactID": found["ContactID"]}
    return _write(
        ctx,
        "Contacts",
        lambda e: ctx.xs.save_contact(ctx.tenant.tenant_id, e, create_only=create_only),
        copy.deepcopy,
        "HasValidationErrors",
        force,
    )


def write_items(ctx: Ctx) -> Reply:
    create_only = ctx.method == "PUT"
    force: JSON | None = None
    if "ref" in ctx.params:
        found = ctx.xs.find_item(ctx.tenant, ctx.params["ref"])
        if found is None:
            return Reply(404, NOT_FOUND)
        force = {"ItemID": found["ItemID"]}
    return _write(
        ctx,
        "Items",
        lambda e: ctx.xs.save_item(
            ctx.tenant.tenant_id, e, create_only=create_only, unitdp=ctx.unitdp
        ),
        lambda i: _unit_price(i, ctx.unitdp),
        None,
        force,
    )


def _write_documents(
    key: str,
    id_field: str,
    find: Callable[[XeroSandbox, Tenant, str], JSON | None],
    save: Callable[..., Outcome],
) -> Handler:
    """PUT/POST invoices or purchase orders; POST to /{ref} updates that one document."""

    def handler(ctx: Ctx) -> Reply:
        force: JSON | None = None
        if "ref" in ctx.params:
            found = find(ctx.xs, ctx.tenant, ctx.params["ref"])
            if found is None:
                return Reply(404, NOT_FOUND)
            force = {id_field: found[id_field]}
        return _write(
            ctx,
            key,
            lambda e: save(
                ctx.xs,
                ctx.tenant.tenant_id,
                e,
                create_only=ctx.method == "PUT",
                unitdp=ctx.unitdp,
            ),
            lambda d: ctx.xs.render_invoice(ctx.tenant, d, ctx.unitdp),
            "HasErrors",
            force,
        )

    return handler


get_invoice = _get_document("Invoices", XeroSandbox.find_invoice)
write_invoices = _write_documents(
    "Invoices", "InvoiceID", XeroSandbox.find_invoice, XeroSandbox.save_invoice
)
get_purchase_order = _get_document("PurchaseOrders", XeroSandbox.find_purchase_order)
write_purchase_orders = _write_documents(
    "PurchaseOrders",
    "PurchaseOrderID",
    XeroSandbox.find_purchase_order,
    XeroSandbox.save_purchase_order,
)


def list_credit_notes(ctx: Ctx) -> Reply:
    t = ctx.tenant
    notes = copy.deepcopy(ctx.xs.ordered(t, t.credit_notes, "CreditNoteID"))
    return _list(ctx, "CreditNotes", notes, paged=True)


def get_credit_note(ctx: Ctx) -> Reply:
    note = ctx.xs.find_credit_note(ctx.tenant, ctx.params["ref"])
    if note is None:
        return Reply(404, NOT_FOUND)
    return Reply(200, _envelope(ctx.xs, "CreditNotes", copy.deepcopy([note])))


def write_credit_notes(ctx: Ctx) -> Reply:
    return _write(
        ctx,
        "CreditNotes",
        lambda e: ctx.xs.save_credit_note(ctx.tenant.tenant_id, e, unitdp=ctx.unitdp),
        copy.deepcopy,
        "HasErrors",
    )


def allocate_credit_note(ctx: Ctx) -> Reply:
    """PUT /CreditNotes/{id}/Allocations: `{"Allocations": [{Amount, Invoice{InvoiceID}}]}`."""
    note = ctx.xs.find_credit_note(ctx.tenant, ctx.params["ref"])
    if note is None:
        return Reply(404, NOT_FOUND)
    return _write(
        ctx,
        "Allocations",
        lambda e: ctx.xs.allocate_credit_note(ctx.tenant, note, e),
        copy.deepcopy,
        None,
    )


def list_overpayments(ctx: Ctx) -> Reply:
    """GET /Overpayments; `References` (the spec's filter) keeps those with one of them."""
    docs = ctx.xs.ordered(ctx.tenant, ctx.tenant.overpayments, "OverpaymentID")
    if wanted := _csv(ctx.query.get("references")):
        docs = [d for d in docs if d.get("Reference") in wanted]
    return _list(ctx, "Overpayments", copy.deepcopy(docs), paged=True)


def list_prepayments(ctx: Ctx) -> Reply:
    """GET /Prepayments; `InvoiceNumbers` keeps those allocated to one of these invoices."""
    docs = ctx.xs.ordered(ctx.tenant, ctx.tenant.prepayments, "PrepaymentID")
    if wanted := _csv(ctx.query.get("invoicenumbers")):
        docs = [
            d
            for d in docs
            if any(
                (a.get("Invoice") or {}).get("InvoiceNumber") in wanted for a in d["Allocations"]
            )
        ]
    return _list(ctx, "Prepayments", copy.deepcopy(docs), paged=True)


def list_payments(ctx: Ctx) -> Reply:
    return _list(ctx, "Payments", ctx.xs.payments(ctx.tenant), paged=True)


def write_payments(ctx: Ctx) -> Reply:
    return _write(
        ctx,
        "Payments",
        lambda e: ctx.xs.save_payment(ctx.tenant, e),
        copy.deepcopy,
        "HasValidationErrors",
    )


def get_organisation(ctx: Ctx) -> Reply:
    return Reply(200, _envelope(ctx.xs, "Organisations", copy.deepcopy([ctx.tenant.organisation])))


# --------------------------------------------------------------------------- the app


class _Api:
    """Binds endpoints to one XeroSandbox and applies the per-call pipeline."""

    def __init__(self, xs: XeroSandbox) -> None:
        self.xs = xs

    async def _pause(self) -> None:
        if self.xs.config.latency_seconds > 0:
            await asyncio.sleep(self.xs.config.latency_seconds)

    def accounting(self, template: str, handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            reply, tenant_id = await self._accounting(request, handler, template)
            self.xs.record(f"{request.method} {template}", reply.status, tenant_id)
            return await self.xs.faults.deliver(_respond(reply), self.xs.faults.lose())

        return endpoint

    async def _accounting(
        self, request: Request, handler: Handler, template: str
    ) -> tuple[Reply, str | None]:
        xs = self.xs
        if len(str(request.url)) > xs.config.max_url_chars:
            # Xero's front end refuses long URLs with its plain 404, as for an unknown record
            return Reply(404, NOT_FOUND), None
        if xs.roll_fault():
            return Reply(503, "Service Unavailable"), None
        grant, detail = xs.authenticate(_bearer(request))
        if grant is None:
            return Reply(401, _problem(401, "Unauthorized", detail)), None
        collection = request.url.path.split("/api.xro/2.0/", 1)[-1].split("/")[0]
        if not scope_allows(xs.token_scope(_bearer(request)), collection, request.method):
            # Xero: 401, Detail AuthorizationUnsuccessful, and the reason in WWW-Authenticate
            # (community.xero.com/developer/discussion/119166525; Xero-NetStandard issue 178)
            headers = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
            problem = _problem(401, "Unauthorized", "AuthorizationUnsuccessful")
            return Reply(401, problem, headers), None
        tenant_id = request.headers.get("xero-tenant-id", "").strip()
        if not tenant_id or not xs.is_connected(grant, tenant_id):
            return Reply(403, _problem(403, "Forbidden", "AuthenticationUnsuccessful")), None
        if (down := xs.outage_of(tenant_id)) is not None:
            return Reply(down, NOT_FOUND if down == 404 else "Service Unavailable"), tenant_id
        defined = QUERY_PARAMETERS.get((request.method, template), set())
        undefined = sorted({k for k in request.query_params if k.lower() not in defined})
        if undefined:
            message = (
                f"Query parameter(s) {', '.join(undefined)} are not defined for "
                f"{request.method} {template}"
            )
            return Reply(400, _error(10, "ValidationException", message)), tenant_id
        admission = xs.admit(grant.client_id, tenant_id)
        if admission.problem is not None:
            headers = {**admission.headers, "X-Rate-Limit-Problem": admission.problem}
            if admission.retry_after is not None:
                headers["Retry-After"] = str(admission.retry_after)
            return Reply(429, "Rate limit exceeded", headers), tenant_id
        peer = request.client.host if request.client else ""
        try:
            with xs.answering(peer, f"{request.method} {template}"):
                reply = await self._answer(request, grant.client_id, tenant_id, template, handler)
        finally:
            xs.release(tenant_id)
        reply.headers.update(admission.headers)
        return reply, tenant_id

    async def _answer(
        self, request: Request, client_id: str, tenant_id: str, template: str, handler: Handler
    ) -> Reply:
        """An admitted call: Xero's time, then the handler (or a fault instead, or after it)."""
        xs = self.xs
        await xs.faults.slow_down()
        body = await request.body()
        await _simulated_latency(xs.config, request.method, body)
        ctx = Ctx(
            xs=xs,
            tenant=xs.tenant(tenant_id),
            method=request.method,
            params=dict(request.path_params),
            query={k.lower(): v for k, v in request.query_params.multi_items()},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        fault = xs.faults.planned(f"{request.method} {template}", request.method)
        if fault is not None and not fault.after:
            return Reply(fault.status, fault.body)
        reply = self._run(request, client_id, ctx, handler)
        if fault is not None:  # saved, then answered with an error
            return Reply(fault.status, fault.body)
        return reply

    def _run(self, request: Request, client_id: str, ctx: Ctx, handler: Handler) -> Reply:
        key = ctx.headers.get("idempotency-key", "") if ctx.method in WRITES else ""
        if not key:
            with self.xs.lock:
                return handler(ctx)
        if len(key) > 128:
            return Reply(
                400, validation_error("Idempotency-Key must be 128 characters or fewer.", [])
            )
        digest = hashlib.sha256()
        for part in (ctx.method, request.url.path, request.url.query, ctx.tenant.tenant_id):
            digest.update(part.encode() + b"\0")
        digest.update(ctx.body)
        return self.xs.idempotent(client_id, key, digest.hexdigest(), lambda: handler(ctx))

    async def token(self, request: Request) -> Response:
        await self._pause()
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                client_id = secret = None
        if client_id is None or not self.xs.check_client(client_id, secret):
            reply = Reply(400, {"error": "invalid_client"})
        else:
            status, body = self.xs.grant(client_id, form)
            reply = Reply(status, body, {"Cache-Control": "no-store"})
        self.xs.record("POST /connect/token", reply.status, None)
        return _respond(reply)

    async def authorize(self, request: Request) -> Response:
        await self._pause()
        query = request.query_params
        redirect_uri = query.get("redirect_uri", "")
        refused = self.xs.scope_error(query.get("client_id", ""), query.get("scope", ""))
        if refused is not None:  # Xero shows an error page; the browser is not redirected
            self.xs.record("GET /identity/connect/authorize", 400, None)
            return _respond(Reply(400, {"error": "invalid_scope", "error_description": refused}))
        code = self.xs.authorize(query.get("client_id", ""), redirect_uri, query.get("scope", ""))
        if code is None or not redirect_uri:
            self.xs.record("GET /identity/connect/authorize", 400, None)
            return _respond(
                Reply(400, {"error": "invalid_client" if code is None else "invalid_request"})
            )
        answer: dict[str, str] = {"code": code, "scope": query.get("scope", "")}
        if query.get("response_type") != "code":
            answer = {"error": "unsupported_response_type"}
        if "state" in query:
            answer["state"] = query["state"]
        separator = "&" if "?" in redirect_uri else "?"
        self.xs.record("GET /identity/connect/authorize", 302, None)
        return RedirectResponse(f"{redirect_uri}{separator}{urlencode(answer)}", 302)

    async def connections(self, request: Request) -> Response:
        await self._pause()
        grant, detail = self.xs.authenticate(_bearer(request))
        if grant is None:
            reply = Reply(401, _problem(401, "Unauthorized", detail))
        else:
            admission = self.xs.admit(grant.client_id, None)
            if admission.problem is not None:
                headers = {
                    **admission.headers,
                    "X-Rate-Limit-Problem": admission.problem,
                    "Retry-After": str(admission.retry_after),
                }
                reply = Reply(429, "Rate limit exceeded", headers)
            elif request.method == "DELETE":
                gone = self.xs.disconnect(grant, request.path_params["id"])
                reply = Reply(204 if gone else 404, "" if gone else NOT_FOUND, admission.headers)
            else:
                reply = Reply(200, self.xs.connections(grant), admission.headers)
        route = "DELETE /connections/{id}" if request.method == "DELETE" else "GET /connections"
        self.xs.record(route, reply.status, None)
        return _respond(reply)


def email_invoice(ctx: Ctx) -> Reply:
    """POST /Invoices/{id}/Email: ACCREC SUBMITTED/AUTHORISED/PAID only; marks it sent (FACTS)."""
    invoice = ctx.xs.find_invoice(ctx.tenant, ctx.params["ref"])
    if invoice is None:
        return Reply(404, NOT_FOUND)
    if invoice["Type"] != "ACCREC" or invoice["Status"] not in ("SUBMITTED", "AUTHORISED", "PAID"):
        message = "Only sales invoices that are SUBMITTED, AUTHORISED or PAID can be emailed"
        body = _error(10, "ValidationException", "A validation exception occurred")
        return Reply(400, {**body, "Elements": [{"ValidationErrors": [{"Message": message}]}]})
    invoice["SentToContact"] = True
    return Reply(204, "")


def online_invoice(ctx: Ctx) -> Reply:
    """GET /Invoices/{id}/OnlineInvoice: the customer's link, for approved invoices only."""
    invoice = ctx.xs.find_invoice(ctx.tenant, ctx.params["ref"])
    if invoice is None:
        return Reply(404, NOT_FOUND)
    if invoice["Status"] not in ("AUTHORISED", "PAID"):
        return Reply(
            400,
            _error(
                10, "ValidationException", "Online invoice is only available for approved invoices"
            ),
        )
    token = uuid.uuid5(uuid.NAMESPACE_URL, invoice["InvoiceID"]).hex
    return Reply(200, {"OnlineInvoices": [{"OnlineInvoiceUrl": f"https://in.xero.com/{token}"}]})


def invoice_pdf(invoice: JSON) -> bytes:
    """A small but valid one-page PDF naming the invoice, its contact and total."""
    text = (
        f"Invoice {invoice.get('InvoiceNumber') or ''} - {invoice['Contact'].get('Name', '')}"
        f" - Total {invoice.get('CurrencyCode', '')} {invoice.get('Total')}"
    )
    text = text.replace("\\", "").replace("(", "[").replace(")", "]")
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _tracking(t: Tenant) -> list[JSON]:
    """Every sandbox organisation tracks sales by Region (North, South)."""

    def node(kind: str, name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{t.tenant_id}/{kind}/{name}"))

    return [
        {
            "TrackingCategoryID": node("category", "Region"),
            "Name": "Region",
            "Status": "ACTIVE",
            "Options": [
                {"TrackingOptionID": node("option", o), "Name": o, "Status": "ACTIVE"}
                for o in ("North", "South")
            ],
        }
    ]


def create_xero_app(xs: XeroSandbox) -> Starlette:
    """The Starlette app serving identity, connections and the Accounting API from `xs`."""
    api = _Api(xs)
    accounting: list[tuple[str, Handler, list[str]]] = [
        ("/Organisation", get_organisation, ["GET"]),
        ("/TaxRates", _settings("TaxRates", lambda t: list(t.tax_rates.values())), ["GET"]),
        ("/Accounts", _settings("Accounts", lambda t: list(t.accounts.values())), ["GET"]),
        ("/Currencies", _settings("Currencies", _currencies), ["GET"]),
        ("/Contacts", list_contacts, ["GET"]),
        ("/Contacts", write_contacts, ["PUT", "POST"]),
        ("/Contacts/{ref}", get_contact, ["GET"]),
        ("/Contacts/{ref}", write_contacts, ["POST"]),
        ("/Items", list_items, ["GET"]),
        ("/Items", write_items, ["PUT", "POST"]),
        ("/Items/{ref}", get_item, ["GET"]),
        ("/Items/{ref}", write_items, ["POST"]),
        ("/Invoices", list_invoices, ["GET"]),
        ("/Invoices", write_invoices, ["PUT", "POST"]),
        ("/Invoices/{ref}", get_invoice, ["GET"]),
        ("/Invoices/{ref}/Email", email_invoice, ["POST"]),
        ("/Invoices/{ref}/OnlineInvoice", online_invoice, ["GET"]),
        ("/TrackingCategories", _settings("TrackingCategories", _tracking), ["GET"]),
        ("/Invoices/{ref}", write_invoices, ["POST"]),
        ("/PurchaseOrders", list_purchase_orders, ["GET"]),
        ("/PurchaseOrders", write_purchase_orders, ["PUT", "POST"]),
        ("/PurchaseOrders/{ref}", get_purchase_order, ["GET"]),
        ("/PurchaseOrders/{ref}", write_purchase_orders, ["POST"]),
        ("/CreditNotes", list_credit_notes, ["GET"]),
        ("/CreditNotes", write_credit_notes, ["PUT"]),
        ("/CreditNotes/{ref}", get_credit_note, ["GET"]),
        ("/CreditNotes/{ref}/Allocations", allocate_credit_note, ["PUT"]),
        ("/Payments", list_payments, ["GET"]),
        ("/Payments", write_payments, ["PUT"]),
        ("/Overpayments", list_overpayments, ["GET"]),
        ("/Prepayments", list_prepayments, ["GET"]),
    ]
    labels = {
        "Contacts": "ContactID",
        "Items": "ItemID",
        "Invoices": "InvoiceID",
        "PurchaseOrders": "PurchaseOrderID",
        "CreditNotes": "CreditNoteID",
    }
    api_routes = []
    for path, handler, methods in accounting:
        label = path.replace("{ref}", "{" + labels.get(path.split("/")[1], "ref") + "}")
        api_routes.append(Route(path, api.accounting(label, handler), methods=methods))

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(NOT_FOUND, 404)

    routes: list[Any] = [
        Route("/connect/token", api.token, methods=["POST"]),
        Route("/identity/connect/authorize", api.authorize, methods=["GET"]),
        # the identity API answers on both spellings; the official SDKs call /Connections
        Route("/connections", api.connections, methods=["GET"]),
        Route("/Connections", api.connections, methods=["GET"]),
        Route("/connections/{id}", api.connections, methods=["DELETE"]),
        Route("/Connections/{id}", api.connections, methods=["DELETE"]),
        Mount("/api.xro/2.0", routes=api_routes),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found})
