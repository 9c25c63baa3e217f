"""Xero webhooks from the sandbox: signed deliveries of INVOICE, CONTACT and CREDITNOTE events.

Faithful to FACTS "Webhooks" and xero-webhooks.yaml: the body is `{"events": [...],
"firstEventSequence", "lastEventSequence", "entropy"}`, each event `{resourceUrl, resourceId,
eventDateUtc, eventType CREATE|UPDATE, eventCategory, tenantId, tenantType}` (credit notes add
`data {Type, Status}`); `x-xero-signature` is base64(HMAC-SHA256(raw body, webhook key)). There
is no payment event: a payment is an INVOICE UPDATE. Intent to receive is a series of signed
POSTs with empty `events`, some with a wrong signature; the receiver must answer 200 to the good
ones and 401 to the bad ones, within 5 seconds.

Deliveries run on one daemon thread so the API answers first, as Xero's do; a subscription can
be paused to lose events (a receiver that was down), which reconciliation must then catch. A
failed delivery is retried a few times, then given up (Xero retries for 24 hours).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import queue
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

JSON = dict[str, Any]
CATEGORIES = {"InvoiceID": "INVOICE", "ContactID": "CONTACT", "CreditNoteID": "CREDITNOTE"}
RESOURCES = {"INVOICE": "Invoices", "CONTACT": "Contacts", "CREDITNOTE": "CreditNotes"}
BATCH_SECONDS = 0.05  # events of one burst (a batch save) go out together
DELIVERY_ATTEMPTS = 5
INTENT_CHECKS = 4


def sign(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def _entropy() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(20))


@dataclass
class Subscription:
    url: str
    key: str
    enabled: bool = True
    sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


@dataclass
class Delivery:
    tenant_id: str
    status: int | None
    events: list[JSON]


class XeroWebhooks:
    """Per-tenant webhook subscriptions and the thread that delivers their events."""

    def __init__(self, api_base: str = "https://api.xero.com/api.xro/2.0") -> None:
        self.api_base = api_base
        self.deliveries: list[Delivery] = []
        self._subs: dict[str, Subscription] = {}
        self._queue: queue.Queue[JSON | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def subscribe(self, tenant_id: str, url: str, key: str) -> None:
        """Point `tenant_id`'s events at `url`, signed with `key` (the app's webhook key)."""
        with self._lock:
            self._subs[tenant_id] = Subscription(url, key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="xero-webhooks")
                self._thread.start()

    def pause(self, tenant_id: str, paused: bool = True) -> None:
        """While paused, the tenant's events are lost (the receiver was unreachable)."""
        self._subs[tenant_id].enabled = not paused

    def emit(
        self, tenant_id: str, category: str, resource_id: str, created: bool, **data: Any
    ) -> None:
        """Queue one event; called by the state under its lock, so nothing blocks here."""
        sub = self._subs.get(tenant_id)
        if sub is None or not sub.enabled:
            return
        event: JSON = {
            "resourceUrl": f"{self.api_base}/{RESOURCES[category]}/{resource_id}",
            "resourceId": resource_id,
            "eventDateUtc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
            "eventType": "CREATE" if created else "UPDATE",
            "eventCategory": category,
            "tenantId": tenant_id,
            "tenantType": "ORGANISATION",
        }
        if data:
            event["data"] = data
        self._queue.put(event)

    def intent_to_receive(self, tenant_id: str, http: httpx.Client | None = None) -> bool:
        """Xero's check before enabling a webhook: every answer must be exactly right."""
        sub = self._subs[tenant_id]
        client = http or httpx.Client(timeout=5.0)
        try:
            for check in range(INTENT_CHECKS):
                good = check % 2 == 0
                body = self._body(sub, [])
                key = sub.key if good else sub.key + "-wrong"
                response = client.post(sub.url, content=body, headers=self._headers(body, key))
                if response.status_code != (200 if good else 401):
                    return False
                if good and response.content:
                    return False
            return True
        finally:
            if http is None:
                client.close()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                time.sleep(BATCH_SECONDS)
                batch = [first]
                while not self._queue.empty():
                    more = self._queue.get_nowait()
                    if more is None:
                        self._deliver_all(client, batch)
                        return
                    batch.append(more)
                self._deliver_all(client, batch)

    def _deliver_all(self, client: httpx.Client, events: list[JSON]) -> None:
        for tenant_id in dict.fromkeys(e["tenantId"] for e in events):
            sub = self._subs.get(tenant_id)
            if sub is not None and sub.enabled:
                mine = [e for e in events if e["tenantId"] == tenant_id]
                self._deliver(client, tenant_id, sub, mine)

    def _deliver(
        self, client: httpx.Client, tenant_id: str, sub: Subscription, events: list[JSON]
    ) -> None:
        body = self._body(sub, events)
        status: int | None = None
        for attempt in range(DELIVERY_ATTEMPTS):
            try:
                headers = self._headers(body, sub.key)
                status = client.post(sub.url, content=body, headers=headers).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break
            time.sleep(0.25 * 2**attempt)
        self.deliveries.append(Delivery(tenant_id, status, events))

    @staticmethod
    def _body(sub: Subscription, events: list[JSON]) -> bytes:
        first = next(sub.sequence)
        last = first
        for _ in events[1:]:
            last = next(sub.sequence)
        payload = {
            "events": events,
            "firstEventSequence": first,
            "lastEventSequence": last,
            "entropy": _entropy(),
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    @staticmethod
    def _headers(body: bytes, key: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "x-xero-signature": sign(body, key)}
