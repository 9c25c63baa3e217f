"""The relay's ASGI app: authenticated webhooks in, Celery jobs out.

- `POST /webhooks/xero`: Xero's signed deliveries (FACTS "Webhooks"). The signature is checked
  against every configured webhook key before anything else is read; a good one gets 200 with an
  empty body (intent to receive included), a bad or missing one 401. INVOICE events (a payment is
  an INVOICE UPDATE) and CREDITNOTE events become payment feedback jobs per connection and
  delivery. Whatever else a signed delivery carries (a category or type we do not handle, an
  event we cannot read, even a body that is not JSON) is logged and still answered 200: any other
  answer is retried for 24 hours and then Xero disables the webhook (FACTS "The 2026 platform").
- `POST /webhooks/zoho/{connection}`: a Zoho CRM workflow webhook, token in the `X-Zxs-Token`
  header or a `token` body parameter (`?token=` still works, but URLs end up in access logs);
  `POST /webhooks/zoho/{connection}/notifications`: a Notification API callback, token in the
  body (the channel's `token`). Each record id becomes one `zxsync.ingest` job (README "Job
  contract for relays"). The token is checked before the change is parsed.
- `GET /health`: 200 while Redis answers, else 503 (the container health check).

Every event with an identity is claimed once in Redis (SET NX on a hash of it), so Xero's and
Zoho's retries enqueue nothing twice; a Zoho change without one is coalesced into a job of the
same record that has not read Zoho yet, never dropped for looking like an earlier edit; if the
broker refuses a job the claims are released and the answer is 503, so the sender retries. Bad
requests get a 4xx with the reason in JSON, are logged and enqueue nothing; nothing answers 500.

Hostile traffic (README "Security"): a body is read as a stream and refused at its
`Content-Length` or as soon as it passes `MAX_BODY_BYTES` (413), and must arrive within
`BODY_TIMEOUT_SECONDS` (408); Redis and the broker get `ENQUEUE_DEADLINE_SECONDS` before the
answer is a 503 (Xero waits 5 s), so a stalled Redis never holds a sender. Slow headers and the
connection count are bounded by the server (relay/cli.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import redis
import structlog
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.models import XeroEvent, ZohoChange
from relay.openapi import OPENAPI
from relay.signatures import token_matches, xero_signers
from schemas.connection import Connection
from schemas.contact_sync import CONTACT_TASK, MAX_CONTACTS_PER_JOB, ContactSyncJob
from schemas.errors import ConfigurationError
from schemas.jobs import SyncJob
from schemas.payments import FEEDBACK_TASK, MAX_INVOICES_PER_JOB, PaymentFeedbackJob
from schemas.wire import loads
from workers import keys as store_keys
from workers.idempotency import PENDING_SECONDS, pending_key
from workers.redis import get_redis, set_once
from workers.settings import Settings, get_settings

MAX_BODY_BYTES = 1_000_000
BODY_TIMEOUT_SECONDS = 10.0
ENQUEUE_DEADLINE_SECONDS = 1.5
INGEST_TASK = "zxsync.ingest"
log = structlog.get_logger("zxsync.relay")
Endpoint = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=ZohoChange)
# (category, type) -> the PaymentFeedbackJob field its resource ids go to
XERO_HANDLED = {
    ("INVOICE", "CREATE"): "invoice_ids",
    ("INVOICE", "UPDATE"): "invoice_ids",
    ("CREDITNOTE", "CREATE"): "credit_note_ids",
    ("CREDITNOTE", "UPDATE"): "credit_note_ids",
}


class Rejected(Exception):
    """A request the relay refuses: its status and the reason given to the sender."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def event_hash(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:40]


class Relay:
    """Endpoints bound to the configured connections and a way to enqueue."""

    def __init__(
        self,
        settings: Settings,
        send: Callable[..., Any] | None = None,
        store: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        settings.connections()  # a connections mistake stops the relay at start
        self._send = send

    @property
    def connections(self) -> dict[str, Connection]:
        """Re-read (every few seconds) so a connection added in the database is served without
        a restart (workers/store/connections.py)."""
        return self.settings.connections()

    @property
    def by_tenant(self) -> dict[str, Connection]:
        return {c.xero_tenant_id: c for c in self.connections.values()}

    @property
    def xero_keys(self) -> dict[str, str]:
        return {
            c.name: c.xero_webhook_key.get_secret_value()
            for c in self.connections.values()
            if c.xero_webhook_key
        }

    def send(self, name: str, job: dict[str, Any]) -> None:
        if self._send is None:
            from workers.pipeline import send_job  # the broker is resolved on first use

            self._send = send_job
        self._send(name, [job])

    # ------------------------------------------------------------------- Xero

    async def xero(self, request: Request) -> Response:
        body = await _body(request)
        signature = request.headers.get("x-xero-signature")
        if not signature:
            raise Rejected(401, "missing x-xero-signature")
        signers = xero_signers(body, signature, self.xero_keys)
        if not signers:
            raise Rejected(401, "x-xero-signature does not match any configured webhook key")
        events = _xero_events(body)
        per_connection: dict[tuple[str, str], list[XeroEvent]] = defaultdict(list)
        contacts: dict[str, list[XeroEvent]] = defaultdict(list)
        for event in events:
            conn = self.by_tenant.get(event.tenantId)
            field = XERO_HANDLED.get((event.eventCategory, event.eventType))
            if conn is None or conn.name not in signers:
                log.warning("relay.xero.unknown_tenant", tenant=event.tenantId)
            elif (
                event.eventCategory == "CONTACT"
                and conn.contact_sync == "both"
                and (event.eventType in ("CREATE", "UPDATE"))
            ):
                contacts[conn.name].append(event)
            elif field is None:
                log.info(
                    "relay.xero.ignored",
                    category=event.eventCategory,
                    type=event.eventType,
                    resource=event.resourceId,
                    tenant=conn.name,
                )
            else:
                per_connection[(conn.name, field)].append(event)
        jobs = []
        for (name, field), chosen in per_connection.items():
            for start in range(0, len(chosen), MAX_INVOICES_PER_JOB):
                chunk = chosen[start : start + MAX_INVOICES_PER_JOB]
                ids = list(dict.fromkeys(e.resourceId for e in chunk))
                job = PaymentFeedbackJob.model_validate(
                    {
                        "connection": name,
                        field: ids,
                        "event_id": "xero-" + event_hash(*(_xero_event_key(e) for e in chunk)),
                    }
                )
                jobs.append(([_xero_event_key(e) for e in chunk], job.model_dump()))
        await self.enqueue(FEEDBACK_TASK, jobs)
        contact_jobs = _contact_jobs(contacts)
        if contact_jobs:
            await self.enqueue(CONTACT_TASK, contact_jobs)
        log.info("relay.xero.accepted", events=len(events), jobs=len(jobs) + len(contact_jobs))
        return Response(status_code=200)

    # ------------------------------------------------------------------- Zoho

    async def zoho_workflow(self, request: Request) -> Response:
        conn = self._connection(request)
        given = request.headers.get("x-zxs-token") or request.query_params.get("token")
        if given is not None:  # in a header (or the URL): checked before the body is read
            self._check_token(conn, given)
        body = await _body(request)
        fields = {k: v for k, v in request.query_params.items() if k != "token"}
        try:
            fields.update(_form_or_json(request, body))
        except Rejected:
            if given is None:  # no token anywhere: a stranger learns nothing about the body
                self._check_token(conn, None)
            raise
        if given is None:  # a `token` body parameter: checked before the change is parsed
            token = fields.get("token")
            self._check_token(conn, token if isinstance(token, str) else None)
        fields.pop("token", None)
        change = _parse(ZohoChange, fields)
        return await self._zoho_jobs(conn, change, event_hash(body))

    async def zoho_notification(self, request: Request) -> Response:
        conn = self._connection(request)
        payload = _json(await _body(request))
        token = payload.get("token") if isinstance(payload, dict) else None
        self._check_token(conn, token if isinstance(token, str) else None)
        change = _parse(ZohoChange, payload)
        return await self._zoho_jobs(conn, change, change.channel_id or "")

    async def _zoho_jobs(self, conn: Connection, change: ZohoChange, source: str) -> Response:
        """One job per record. Only a real retry is dropped: one carrying Zoho's own event
        identity (an event id, or the notification's channel and server_time) already seen.
        Two edits of a record look alike without it (same module, id and operation), so none
        is dropped for its body; a change that arrives while a job of the record has not yet
        read Zoho is coalesced into that job instead (it reads the latest record)."""
        identity = change.event_id or (
            f"{source}|{change.server_time.isoformat()}" if change.server_time else None
        )
        if change.module == "Accounts":
            return await self._account_jobs(conn, change, identity)
        jobs = []
        coalesce: list[str | None] = []
        for record_id in change.ids:
            key = event_hash(conn.name, change.module, record_id, change.operation, identity)
            job = SyncJob(
                connection=conn.name,
                module=change.module,
                record_id=record_id,
                event=change.operation,
                event_id=f"zoho-{key if identity else uuid.uuid4().hex}-{record_id}"[:128],
                occurred_at=change.server_time,
            )
            jobs.append(([key] if identity else [], job.model_dump(mode="json")))
            coalesce.append(pending_key(conn.name, change.module, record_id, change.operation))
        await self.enqueue(INGEST_TASK, jobs, coalesce)
        log.info("relay.zoho.accepted", connection=conn.name, records=len(jobs))
        return Response(status_code=200)

    def _connection(self, request: Request) -> Connection:
        name = request.path_params["connection"]
        conn = self.connections.get(name)
        if conn is None:
            raise Rejected(404, f"unknown connection '{name}'")
        return conn

    @staticmethod
    def _check_token(conn: Connection, given: str | None) -> None:
        if conn.zoho_webhook_token is None:
            raise Rejected(401, f"no zoho_webhook_token is configured for '{conn.name}'")
        if not token_matches(given, conn.zoho_webhook_token.get_secret_value()):
            raise Rejected(401, "missing or wrong token")

    # ------------------------------------------------------------------- enqueue

    async def _account_jobs(
        self, conn: Connection, change: ZohoChange, identity: str | None
    ) -> Response:
        """A Zoho account edit: one contact sync job (`contact_sync: "both"`), else ignored
        (200: Zoho is not asked to retry what this connection does not sync)."""
        if conn.contact_sync != "both" or change.operation not in ("insert", "update"):
            log.info(
                "relay.zoho.ignored",
                connection=conn.name,
                module=change.module,
                operation=change.operation,
            )
            return Response(status_code=200)
        key = event_hash(conn.name, change.module, *change.ids, change.operation, identity)
        job = ContactSyncJob(
            connection=conn.name,
            account_ids=list(dict.fromkeys(change.ids)),
            event_id=f"zoho-{key if identity else uuid.uuid4().hex}"[:128],
        )
        await self.enqueue(CONTACT_TASK, [([key] if identity else [], job.model_dump())])
        log.info("relay.zoho.accepted", connection=conn.name, accounts=len(change.ids))
        return Response(status_code=200)

    async def enqueue(
        self,
        task: str,
        jobs: list[tuple[list[str], dict[str, Any]]],
        coalesce: list[str | None] | None = None,
    ) -> None:
        """`_enqueue` in a thread, answered 503 when Redis or the broker take longer than the
        deadline (a stalled server; the thread gives up at its socket timeout, releasing any
        claim it made, so the sender's retry is not ignored)."""
        try:
            await asyncio.wait_for(
                run_in_threadpool(self._enqueue, task, jobs, coalesce), ENQUEUE_DEADLINE_SECONDS
            )
        except TimeoutError:
            log.error("relay.enqueue_timeout", task=task, seconds=ENQUEUE_DEADLINE_SECONDS)
            raise Rejected(503, "state store too slow; retry later") from None

    async def redis_ok(self) -> bool:
        """Redis answers PING within the deadline."""

        def ping() -> bool:
            return bool((self._store or get_redis()).ping())

        try:
            return await asyncio.wait_for(run_in_threadpool(ping), ENQUEUE_DEADLINE_SECONDS)
        except (TimeoutError, redis.RedisError, ConfigurationError):
            return False

    def _enqueue(
        self,
        task: str,
        jobs: list[tuple[list[str], dict[str, Any]]],
        coalesce: list[str | None] | None = None,
    ) -> None:
        """Claim each job's events and send what is new, unless a job of the same record that
        has not read it yet is on its way (`coalesce`: each job's pending key, see
        workers/idempotency.py); release the claims if sending fails."""
        client = self._store or get_redis()
        ttl = self.settings.zxs_event_ttl_seconds
        claimed: list[str] = []
        pending = coalesce or [None] * len(jobs)
        try:
            for (keys, job), mark in zip(jobs, pending, strict=True):
                # unique to this request: a lost reply's retry is still our claim, another
                # delivery of the same event is not
                owner = uuid.uuid4().hex
                fresh = [k for k in keys if set_once(client, store_keys.RELAY(k), owner, ttl)]
                if keys and not fresh:
                    continue  # a retry of an event already accepted
                claimed += [store_keys.RELAY(k) for k in fresh]
                if mark is not None:
                    if not set_once(client, mark, owner, PENDING_SECONDS):
                        log.info("relay.coalesced", record=job.get("record_id"))
                        continue
                    claimed.append(mark)
                self.send(task, job)
        except Exception as exc:
            if claimed:
                client.delete(*claimed)
            log.error("relay.enqueue_failed", task=task, error=str(exc))
            raise Rejected(503, "could not enqueue; retry later") from None


def _contact_jobs(
    contacts: dict[str, list[XeroEvent]],
) -> list[tuple[list[str], dict[str, Any]]]:
    """CONTACT events of connections with `contact_sync: "both"`: contact sync jobs."""
    jobs = []
    for name, chosen in contacts.items():
        for start in range(0, len(chosen), MAX_CONTACTS_PER_JOB):
            chunk = chosen[start : start + MAX_CONTACTS_PER_JOB]
            job = ContactSyncJob(
                connection=name,
                contact_ids=list(dict.fromkeys(e.resourceId for e in chunk)),
                event_id="xero-" + event_hash(*(_xero_event_key(e) for e in chunk)),
            )
            jobs.append(([_xero_event_key(e) for e in chunk], job.model_dump()))
    return jobs


def _xero_events(body: bytes) -> list[XeroEvent]:
    """The events of a signed delivery we can read; the rest is logged (never a 4xx)."""
    try:
        payload = loads(body)
    except (ValueError, RecursionError):
        log.error("relay.xero.unreadable", reason="body is not JSON", size=len(body))
        return []
    raw = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(raw, list):
        log.error("relay.xero.unreadable", reason="no events list", size=len(body))
        return []
    events = []
    for position, item in enumerate(raw):
        try:
            events.append(XeroEvent.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "event"
            log.error(
                "relay.xero.unreadable_event", position=position, reason=f"{where}: {first['msg']}"
            )
    return events


def _xero_event_key(event: XeroEvent) -> str:
    return event_hash(
        event.tenantId, event.eventCategory, event.eventType, event.resourceId, event.eventDateUtc
    )


async def _body(request: Request) -> bytes:
    """The body, refused at a `Content-Length` over the limit before reading a byte, and as soon
    as what arrives passes it (chunked or lying senders); it must arrive within the timeout."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Rejected(408, f"body not received within {BODY_TIMEOUT_SECONDS:g} s") from None
    return b"".join(chunks)


def _form_or_json(request: Request, body: bytes) -> dict[str, Any]:
    """A workflow webhook's body: JSON or URL-encoded form (multipart is not accepted)."""
    if not body.strip():
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode(errors="replace")))
    if kind not in ("", "application/json", "text/plain"):
        raise Rejected(415, f"content type {kind} is not accepted; send JSON or a form")
    payload = _json(body)
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object")
    return payload


def _json(body: bytes) -> Any:
    try:
        return loads(body)
    except ValueError:
        raise Rejected(400, "body is not valid JSON") from None
    except RecursionError:  # `[[[[...` deeper than the parser's stack: hostile, not a crash
        raise Rejected(400, "body is nested too deeply") from None


def _parse(model: type[M], raw: bytes | dict[str, Any]) -> M:
    try:
        payload = _json(raw) if isinstance(raw, bytes) else raw
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Rejected(400, f"{where}: {first['msg']}") from None


def _guard(endpoint: Endpoint) -> Endpoint:
    """Refusals become their status with a reason; anything unexpected a logged 503, not 500."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Rejected as exc:
            log.warning(
                "relay.rejected", path=request.url.path, status=exc.status, reason=exc.reason
            )
            # a refused or overdue body is not read to its end: close rather than drain it
            close = {"connection": "close"} if exc.status in (408, 413) else None
            return JSONResponse({"error": exc.reason}, exc.status, headers=close)
        except redis.RedisError as exc:
            log.error("relay.redis_unavailable", path=request.url.path, error=str(exc))
            return JSONResponse({"error": "state store unavailable; retry later"}, 503)
        except Exception:
            log.exception("relay.failed", path=request.url.path)
            return JSONResponse({"error": "relay error; retry later"}, 503)

    return run


def create_relay_app(
    settings: Settings | None = None,
    send: Callable[..., Any] | None = None,
    store: redis.Redis | None = None,
) -> Starlette:
    """The relay for the configured connections; tests may replace Celery's send_task and
    the Redis client."""
    relay = Relay(settings or get_settings(), send, store)

    async def openapi(_: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def health(_: Request) -> Response:
        if await relay.redis_ok():
            return JSONResponse({"status": "ok", "redis": "ok"})
        return JSONResponse({"status": "unavailable", "redis": "not answering"}, 503)

    async def http_error(request: Request, exc: Exception) -> Response:
        """The router's own refusals (no such path, wrong method) also answer with a reason."""
        assert isinstance(exc, HTTPException)
        log.warning("relay.rejected", path=request.url.path, status=exc.status_code)
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    return Starlette(
        exception_handlers={HTTPException: http_error},
        routes=[
            Route("/webhooks/xero", _guard(relay.xero), methods=["POST"]),
            Route("/webhooks/zoho/{connection}", _guard(relay.zoho_workflow), methods=["POST"]),
            Route(
                "/webhooks/zoho/{connection}/notifications",
                _guard(relay.zoho_notification),
                methods=["POST"],
            ),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
    )
