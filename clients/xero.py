"""Xero Accounting API client: the few calls the stages need, answers as schemas.xero models.

Errors are classified from Xero's own answers (FACTS.md): 429 with X-Rate-Limit-Problem and
Retry-After, 400 ValidationException with per-element messages, 401/403 auth problems. Every
list GET is split so its whole URL stays under 2,000 characters (Xero 404s longer ones, FACTS
"URL length"), and a 404 on a list is a refused request, never "no such record".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from clients.http import ApiClient, Limiter, body_text, insufficient_scope, server_or_generic
from clients.oauth import OAuthApp
from clients.tokens import Refresh, TokenManager
from schemas.errors import (
    ApiError,
    AuthRevoked,
    MissingScope,
    NotFound,
    RateLimited,
    ServerError,
    ValidationFailed,
)
from schemas.wire import loads
from schemas.xero import (
    XeroAccount,
    XeroContact,
    XeroContactIn,
    XeroCreditNote,
    XeroInvoice,
    XeroItem,
    XeroItemIn,
    XeroPrepaid,
    XeroPurchaseOrder,
    XeroPurchaseOrderIn,
    XeroTaxRate,
    XeroTrackingCategory,
)

PROVIDER = "Xero"
REVOKED = frozenset({"invalid_grant", "invalid_client"})
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000  # Xero's largest pageSize (FACTS: Paging)
Found = TypeVar("Found", bound=BaseModel)
# Xero answers 404 "The resource you're looking for cannot be found" to longer URLs (FACTS "URL
# length"): every GET is chunked so its whole URL, encoded, stays under this
MAX_URL_CHARS = 2000
IDS_PER_CALL = 100  # a list's page: more IDs than a page would need paging anyway


def classify_xero(response: httpx.Response) -> ApiError:
    """Turn a non-2xx Xero answer into the error the retry policy understands."""
    status = response.status_code
    if status == 429:
        problem = response.headers.get("X-Rate-Limit-Problem", "unknown").lower()
        retry_after = response.headers.get("Retry-After")
        return RateLimited(PROVIDER, problem, float(retry_after) if retry_after else None)
    if status == 400:
        messages = validation_messages(response)
        if messages:
            return ValidationFailed(PROVIDER, messages)
    if status == 401 and insufficient_scope(response):
        return MissingScope(
            PROVIDER,
            f"insufficient_scope: the connection's consent does not cover {response.url.path}",
            status=401,
            hint="Run `zxsync check` to see the missing scopes, then reconnect with "
            "`zxsync connect xero --connection NAME`.",
        )
    if status == 403:
        return AuthRevoked(
            PROVIDER,
            f"access to the tenant was refused ({body_text(response)})",
            status=403,
            hint="The Xero organisation is disconnected: reconnect it with `zxsync connect xero`.",
        )
    if status == 404:
        return NotFound(PROVIDER, body_text(response), status=404)
    return server_or_generic(PROVIDER, response, body_text(response))


def validation_messages(response: httpx.Response) -> list[str]:
    """Xero's ValidationErrors messages from a 400 body, or its Message/Detail."""
    try:
        payload = loads(response.content)
    except ValueError:
        return [body_text(response)]
    if not isinstance(payload, dict):
        return [body_text(response)]
    messages = [
        error["Message"]
        for element in payload.get("Elements") or []
        for error in element.get("ValidationErrors") or []
        if error.get("Message")
    ]
    return messages or [str(payload.get("Message") or payload.get("Detail") or payload)]


def xero_oauth(identity_url: str, client_id: str, client_secret: str) -> OAuthApp:
    """Xero's token endpoint: HTTP Basic client authentication; the refresh token rotates on
    every use (FACTS "OAuth2"), and only invalid_grant/invalid_client mean a dead grant."""
    return OAuthApp(
        PROVIDER,
        f"{identity_url.rstrip('/')}/connect/token",
        client_id,
        client_secret,
        "client_secret_basic",
        rotates=True,
        classify=classify_xero,
        revoked=REVOKED,
        reconnect_hint="Reconnect Xero with `zxsync connect xero`: the refresh token is dead.",
        endpoint_setting="XERO_IDENTITY_URL",
    )


def refresh_xero_token(
    http: httpx.Client, identity_url: str, client_id: str, client_secret: str
) -> Refresh:
    """A refresher for TokenManager: POST /connect/token with the refresh_token grant."""
    return xero_oauth(identity_url, client_id, client_secret).refresher(http)


class XeroClient(ApiClient):
    """Calls on one Xero tenant."""

    provider = PROVIDER

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        tokens: TokenManager,
        tenant_id: str,
        limiter: Limiter | None = None,
    ):
        super().__init__(
            http, base_url, tokens, classify_xero, "Bearer", {"xero-tenant-id": tenant_id}, limiter
        )

    def tax_rates(self) -> dict[str, Decimal]:
        payload = self.json("GET", "TaxRates")
        rates = [XeroTaxRate.model_validate(r) for r in payload.get("TaxRates", [])]
        return {r.TaxType: r.EffectiveRate for r in rates if r.Status == "ACTIVE"}

    def find_contacts_matching(self, numbers: list[str], names: list[str]) -> list[XeroContact]:
        """Contacts whose ContactNumber or Name is one of these: one call per URL-sized chunk."""
        clauses = [f"ContactNumber=={quote(n)}" for n in numbers]
        clauses += [f"Name=={quote(n)}" for n in names]
        return self._find_any(XeroContact, "Contacts", clauses)

    def create_contacts(
        self, contacts: list[XeroContactIn], idempotency_key: str
    ) -> list[tuple[XeroContact | None, list[str]]]:
        """Create many contacts in one call; per element: (created or None, errors)."""
        bodies = [c.body() for c in contacts]
        return self._create_each(XeroContact, "Contacts", bodies, idempotency_key)

    def create_contact(self, contact: XeroContactIn, idempotency_key: str) -> XeroContact:
        element = self._create_one("Contacts", contact.body(), idempotency_key)
        return XeroContact.model_validate(element)

    def claim_contact(self, contact_id: str, number: str, idempotency_key: str) -> XeroContact:
        """Set the ContactNumber of a contact adopted by name, so no other account matches it."""
        body = {"ContactID": contact_id, "ContactNumber": number}
        element = self._create_one(f"Contacts/{contact_id}", body, idempotency_key, "POST")
        return XeroContact.model_validate(element)

    def update_contact(
        self, contact_id: str, body: dict[str, Any], idempotency_key: str
    ) -> XeroContact:
        """POST to one contact: the fields given are changed, the rest kept (contact sync)."""
        element = self._create_one(f"Contacts/{contact_id}", body, idempotency_key, "POST")
        return XeroContact.model_validate(element)

    def find_items(self, codes: list[str]) -> list[XeroItem]:
        """Items with these codes: one call per URL-sized chunk."""
        return self._find_any(XeroItem, "Items", [f"Code=={quote(code)}" for code in codes])

    def create_items(
        self, items: list[XeroItemIn], idempotency_key: str
    ) -> list[tuple[XeroItemIn, XeroItem | None, list[str]]]:
        """Create many items in one call; per element: (sent, created or None, errors)."""
        created = self._create_each(XeroItem, "Items", [i.body() for i in items], idempotency_key)
        return [(sent, *answer) for sent, answer in zip(items, created, strict=True)]

    def find_invoices_any(self, clauses: list[str], scope: str) -> list[XeroInvoice]:
        """Invoices matching `scope` and any one of `clauses`: one call per URL-sized chunk."""
        return self._find_any(XeroInvoice, "Invoices", clauses, scope)

    def create_invoices(
        self, invoices: list[dict[str, Any]], idempotency_key: str
    ) -> list[tuple[XeroInvoice | None, list[str]]]:
        """Create many invoices (request bodies) in one call; per element: (created, errors)."""
        return self._create_each(XeroInvoice, "Invoices", invoices, idempotency_key)

    def get_invoice(self, invoice_id: str) -> XeroInvoice:
        payload = self.json("GET", f"Invoices/{invoice_id}")
        return XeroInvoice.model_validate(payload["Invoices"][0])

    def update_invoice(
        self, invoice_id: str, body: dict[str, Any], idempotency_key: str
    ) -> XeroInvoice:
        """POST to one invoice: an edit (lines replaced), or a void/delete status change."""
        element = self._create_one(f"Invoices/{invoice_id}", body, idempotency_key, "POST")
        return XeroInvoice.model_validate(element)

    def email_invoice(self, invoice_id: str, idempotency_key: str) -> None:
        """Xero e-mails the invoice to the contact and marks it sent (204, no body)."""
        self.request(
            "POST",
            f"Invoices/{invoice_id}/Email",
            body={},
            headers={"Idempotency-Key": idempotency_key},
        )

    def online_invoice_url(self, invoice_id: str) -> str:
        payload = self.json("GET", f"Invoices/{invoice_id}/OnlineInvoice")
        return str(payload["OnlineInvoices"][0]["OnlineInvoiceUrl"])

    def invoice_pdf(self, invoice_id: str) -> bytes:
        response = self.request(
            "GET", f"Invoices/{invoice_id}", headers={"Accept": "application/pdf"}
        )
        return response.content

    def accounts(self) -> list[XeroAccount]:
        payload = self.json("GET", "Accounts")
        return [XeroAccount.model_validate(a) for a in payload.get("Accounts", [])]

    def tracking_categories(self) -> list[XeroTrackingCategory]:
        payload = self.json("GET", "TrackingCategories")
        return [
            XeroTrackingCategory.model_validate(c) for c in payload.get("TrackingCategories", [])
        ]

    def purchase_orders(
        self, params: dict[str, str], modified_since: datetime | None = None
    ) -> list[XeroPurchaseOrder]:
        """Every purchase order matching the spec's filters (Status, DateFrom...), all pages."""
        rows = self._pages("PurchaseOrders", params, modified_since)
        return [XeroPurchaseOrder.model_validate(po) for po in rows]

    def invoices(
        self, params: dict[str, str], modified_since: datetime | None = None
    ) -> list[XeroInvoice]:
        """Invoices (`IDs`, `where`...) changed since `modified_since`, all pages; paged
        answers carry the full invoice, Payments included."""
        rows = self._pages("Invoices", params, modified_since)
        return [XeroInvoice.model_validate(i) for i in rows]

    def contacts(self, contact_ids: list[str]) -> list[XeroContact]:
        """Contacts by ID with their Balances (one call per URL-sized chunk of IDs)."""
        rows = self._pages("Contacts", {"IDs": ",".join(contact_ids)}) if contact_ids else []
        return [XeroContact.model_validate(c) for c in rows]

    def all_contacts(self) -> list[XeroContact]:
        """Every contact, pages of Xero's maximum 1,000 (a backfill matches accounts by
        ContactNumber in bulk)."""
        rows = self._pages("Contacts", {}, page_size=MAX_PAGE_SIZE)
        return [XeroContact.model_validate(c) for c in rows]

    def all_invoices(self, where: str) -> list[XeroInvoice]:
        """Every invoice matching `where`, pages of 1,000 (a backfill reads Xero's history)."""
        rows = self._pages("Invoices", {"where": where}, page_size=MAX_PAGE_SIZE)
        return [XeroInvoice.model_validate(i) for i in rows]

    def all_items(self) -> list[XeroItem]:
        """Every item (GET /Items is not paged: one call)."""
        payload = self._list("Items", {})
        return [XeroItem.model_validate(i) for i in (payload or {}).get("Items", [])]

    def credit_notes(self, where: str) -> list[XeroCreditNote]:
        """Credit notes matching one `where` (its URL must fit: `credit_notes_any` splits)."""
        rows = self._pages("CreditNotes", {"where": where})
        return [XeroCreditNote.model_validate(c) for c in rows]

    def credit_notes_any(self, clauses: list[str], scope: str) -> list[XeroCreditNote]:
        """Credit notes matching `scope` and any one of `clauses`, all pages of each URL-sized
        chunk of clauses."""
        return [
            XeroCreditNote.model_validate(row)
            for params in self._where_chunks("CreditNotes", clauses, scope, paged=True)
            for row in self._pages("CreditNotes", params)
        ]

    def prepaid_any(
        self, collection: Literal["Overpayments", "Prepayments"], clauses: list[str], scope: str
    ) -> list[XeroPrepaid]:
        """Overpayments or prepayments matching `scope` and any one of `clauses`, all pages of
        each URL-sized chunk of clauses."""
        return [
            XeroPrepaid.model_validate(row)
            for params in self._where_chunks(collection, clauses, scope, paged=True)
            for row in self._pages(collection, params)
        ]

    def credits_since(
        self, modified_since: datetime | None
    ) -> tuple[list[XeroCreditNote], list[XeroPrepaid]]:
        """ACCREC credit notes, overpayments and prepayments changed since (all pages): what
        moves a customer's credit without touching an invoice (a refund, an unallocated note)."""
        notes = self._pages("CreditNotes", {"where": 'Type=="ACCRECCREDIT"'}, modified_since)
        prepaid = [
            row
            for collection, kind in (("Overpayments", "OVERPAYMENT"), ("Prepayments", "PREPAYMENT"))
            for row in self._pages(collection, {"where": f'Type=="RECEIVE-{kind}"'}, modified_since)
        ]
        return (
            [XeroCreditNote.model_validate(n) for n in notes],
            [XeroPrepaid.model_validate(p) for p in prepaid],
        )

    def create_credit_notes(
        self, bodies: list[dict[str, Any]], idempotency_key: str
    ) -> list[tuple[XeroCreditNote | None, list[str]]]:
        """Create many ACCRECCREDIT credit notes in one call; per element: (created, errors)."""
        return self._create_each(XeroCreditNote, "CreditNotes", bodies, idempotency_key)

    def get_credit_note(self, credit_note_id: str) -> XeroCreditNote:
        payload = self.json("GET", f"CreditNotes/{credit_note_id}")
        return XeroCreditNote.model_validate(payload["CreditNotes"][0])

    def allocate_credit_note(
        self, credit_note_id: str, invoice_id: str, amount: Decimal, on: date, idempotency_key: str
    ) -> None:
        """Allocate part of a credit note to an invoice (the spec requires Amount, Invoice and
        Date); Xero refuses more than the credit left or the invoice's amount due."""
        body = {
            "Allocations": [
                {"Amount": amount, "Invoice": {"InvoiceID": invoice_id}, "Date": on.isoformat()}
            ]
        }
        self.json(
            "PUT",
            f"CreditNotes/{credit_note_id}/Allocations",
            body=body,
            headers={"Idempotency-Key": idempotency_key},
        )

    def _pages(
        self,
        collection: str,
        params: dict[str, str],
        modified_since: datetime | None = None,
        page_size: int = PAGE_SIZE,
    ) -> list[dict[str, Any]]:
        """GET every page of a collection, an `IDs` list split into URL-sized chunks;
        If-Modified-Since is accurate to the second."""
        headers = {"If-Modified-Since": if_modified_since(modified_since)} if modified_since else {}
        found: list[dict[str, Any]] = []
        for chunk in self._id_chunks(collection, params):
            page = 1
            while True:
                paged = {**chunk, "page": str(page), "pageSize": str(page_size)}
                payload = self._list(collection, paged, headers)
                rows: list[dict[str, Any]] = payload.get(collection, []) if payload else []
                found += rows
                if len(rows) < page_size:
                    break
                page += 1
        return found

    def _id_chunks(self, collection: str, params: dict[str, str]) -> list[dict[str, str]]:
        ids = [i for i in params.get("IDs", "").split(",") if i]
        if not ids:
            return [params]
        probe = {**params, "page": "1000", "pageSize": str(PAGE_SIZE)}
        chunks = self._fitting(
            collection, ids, ",", lambda joined: {**probe, "IDs": joined}, IDS_PER_CALL
        )
        return [{**params, "IDs": chunk} for chunk in chunks]

    def _where_chunks(
        self, collection: str, clauses: list[str], scope: str, *, paged: bool = False
    ) -> list[dict[str, str]]:
        """`where` parameters, each `scope` AND some of `clauses` OR-ed, whose URLs fit."""

        def params_of(where: str) -> dict[str, str]:
            params = {"where": f"{scope} AND ({where})" if scope else where}
            return {**params, "page": "1000", "pageSize": str(PAGE_SIZE)} if paged else params

        chunks = self._fitting(collection, clauses, " OR ", params_of)
        return [{"where": f"{scope} AND ({w})" if scope else w} for w in chunks]

    def _list(
        self, collection: str, params: dict[str, str], headers: dict[str, str] | None = None
    ) -> Any:
        """A list GET. Its URL is checked before sending; a 404 on a list is Xero refusing the
        request (a list of nothing is an empty list), never "no such record": retried."""
        length = self.url_length(collection, params)
        if length >= MAX_URL_CHARS:
            raise ApiError(
                PROVIDER,
                f"GET {collection}: a {length}-character URL (Xero's limit "
                f"is {MAX_URL_CHARS}) cannot be split further",
            )
        try:
            return self.json("GET", collection, params=params, headers=headers or {})
        except NotFound as exc:
            raise ServerError(
                PROVIDER,
                f"GET {collection} answered 404 for a list ({length}-character URL): {exc.message}",
                status=404,
            ) from None

    def url_length(self, path: str, params: dict[str, str]) -> int:
        """The length of the URL this client would send, encoded as sent."""
        return len(str(self._http.build_request("GET", self._url(path), params=params).url))

    def _fitting(
        self,
        collection: str,
        parts: list[str],
        separator: str,
        params_of: Callable[[str], dict[str, str]],
        max_parts: int | None = None,
    ) -> list[str]:
        """`parts` joined by `separator` into the fewest strings whose request URL (built by
        `params_of`) stays under MAX_URL_CHARS; a part too long alone is left alone (its call
        is refused by _list with a clear error rather than a 404)."""
        chunks: list[str] = []
        current: list[str] = []
        for part in parts:
            candidate = separator.join([*current, part])
            too_many = max_parts is not None and len(current) >= max_parts
            fits = self.url_length(collection, params_of(candidate)) < MAX_URL_CHARS
            if current and (too_many or not fits):
                chunks.append(separator.join(current))
                current = []
            current.append(part)
        if current:
            chunks.append(separator.join(current))
        return chunks

    def create_purchase_order(
        self, purchase_order: XeroPurchaseOrderIn, idempotency_key: str
    ) -> XeroPurchaseOrder:
        element = self._create_one("PurchaseOrders", purchase_order.body(), idempotency_key)
        return XeroPurchaseOrder.model_validate(element)

    def update_purchase_order(
        self, purchase_order_id: str, body: dict[str, Any], idempotency_key: str
    ) -> XeroPurchaseOrder:
        """POST to one order: an edit, or `{"Status": "DELETED"}` to delete it."""
        element = self._create_one(
            f"PurchaseOrders/{purchase_order_id}", body, idempotency_key, "POST"
        )
        return XeroPurchaseOrder.model_validate(element)

    def _create_one(
        self, path: str, body: dict[str, Any], key: str, method: str = "PUT"
    ) -> dict[str, Any]:
        [(element, errors)] = self._create_many(path, [body], key, method)
        if errors:
            raise ValidationFailed(PROVIDER, errors)
        return element

    def _find_any(
        self, model: type[Found], collection: str, clauses: list[str], scope: str = ""
    ) -> list[Found]:
        """Records matching any one of `clauses` (and `scope`): one call per URL-sized chunk."""
        return [
            model.model_validate(record)
            for params in self._where_chunks(collection, clauses, scope)
            for record in (self._list(collection, params) or {}).get(collection, [])
        ]

    def _create_each(
        self, model: type[Found], collection: str, bodies: list[dict[str, Any]], key: str
    ) -> list[tuple[Found | None, list[str]]]:
        """Many created in one call; per element: (created, or None with Xero's errors)."""
        return [
            (None if errors else model.model_validate(element), errors)
            for element, errors in self._create_many(collection, bodies, key)
        ]

    def _create_many(
        self, path: str, bodies: list[dict[str, Any]], key: str, method: str = "PUT"
    ) -> list[tuple[dict[str, Any], list[str]]]:
        """PUT (or POST) with summarizeErrors=false: HTTP 200 and a status per element."""
        collection = path.split("/")[0]
        payload = self.json(
            method,
            path,
            params=write_params(path),
            body={collection: bodies},
            headers={"Idempotency-Key": key},
        )
        elements: list[dict[str, Any]] = payload.get(collection, [])
        return [
            (
                e,
                [v["Message"] for v in e.get("ValidationErrors") or []]
                if e.get("StatusAttributeString") == "ERROR"
                else [],
            )
            for e in elements
        ]


UNITDP_COLLECTIONS = {"Invoices", "Items", "CreditNotes"}  # the spec's writes that take unitdp


def write_params(path: str) -> dict[str, str]:
    """Only the query parameters the operation defines (the spec): `summarizeErrors` on the
    collection endpoints, `unitdp` where amounts are written with 4 places (not Contacts or
    PurchaseOrders, and no summarizeErrors on a single-record POST like Invoices/{id})."""
    collection, _, record = path.partition("/")
    params = {} if record else {"summarizeErrors": "false"}
    if collection in UNITDP_COLLECTIONS:
        params["unitdp"] = "4"
    return params


def if_modified_since(when: datetime) -> str:
    """Xero's If-Modified-Since: a UTC date-time to the second (a naive time is taken as UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def quote(value: str) -> str:
    """A string literal for Xero's `where` filter."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
