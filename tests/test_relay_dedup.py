"""Issue #22.3: the relay drops only real retries; distinct edits of a record are never dropped,
and a burst of them is coalesced into the job that has not read the record yet."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
from starlette.testclient import TestClient

from relay.app import create_relay_app
from schemas.jobs import SyncJob
from workers.idempotency import IdempotencyStore
from workers.settings import Settings

TOKEN = "zoho-token-for-dedup-tests"
SETTINGS = Settings(
    zxs_connections=json.dumps(
        [{"name": "acme", "xero_tenant_id": "t", "zoho_org_id": "o", "zoho_webhook_token": TOKEN}]
    )
)
Sent = list[dict[str, Any]]


def relay() -> tuple[TestClient, Sent, IdempotencyStore]:
    sent: Sent = []
    store = fakeredis.FakeRedis(decode_responses=True)
    app = create_relay_app(SETTINGS, lambda name, args: sent.append(args[0]), store)
    return TestClient(app), sent, IdempotencyStore(store, 3600)


def read_by_worker(store: IdempotencyStore, job: dict[str, Any]) -> None:
    """What fetch_record does before it reads the record from Zoho."""
    store.reading(SyncJob.model_validate(job))


def edit(client: TestClient, operation: str = "update") -> int:
    body = {"module": "Invoices", "ids": "5843006000000123001", "operation": operation}
    return client.post("/webhooks/zoho/acme", params={"token": TOKEN}, json=body).status_code


def test_three_edits_of_a_record_with_the_same_body_are_three_jobs() -> None:
    client, sent, store = relay()
    for n in range(3):
        assert edit(client) == 200
        assert len(sent) == n + 1, sent  # the 2nd and 3rd edit were dropped for 7 days before
        read_by_worker(store, sent[-1])
    assert len({job["event_id"] for job in sent}) == 3  # the worker's event claim keeps all


def test_a_burst_before_the_record_is_read_is_one_job_and_a_delete_is_not_folded_in() -> None:
    client, sent, store = relay()
    for _ in range(5):
        assert edit(client) == 200
    assert len(sent) == 1  # the job on its way reads the latest record
    assert edit(client, "delete") == 200
    assert [job["event"] for job in sent] == ["update", "delete"]
    read_by_worker(store, sent[0])
    assert edit(client) == 200  # an edit after the read is a job of its own
    assert len(sent) == 3


def test_a_notification_retry_is_dropped_and_a_new_notification_is_not() -> None:
    client, sent, store = relay()
    url = "/webhooks/zoho/acme/notifications"
    body = {
        "module": "Invoices",
        "ids": ["5843006000000123001"],
        "operation": "update",
        "token": TOKEN,
        "channel_id": "1000",
        "server_time": "2026-12-01T10:00:00+00:00",
    }
    assert client.post(url, json=body).status_code == 200
    read_by_worker(store, sent[0])
    assert client.post(url, json=body).status_code == 200  # Zoho's retry: same identity
    assert len(sent) == 1
    later = {**body, "server_time": "2026-12-01T10:00:05+00:00"}
    assert client.post(url, json=later).status_code == 200
    assert len(sent) == 2


class LostReplies(fakeredis.FakeRedis):
    """A SET NX whose reply is lost: the client's retry finds the key its first try set."""

    def set(self, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        first = super().set(name, value, *args, **kwargs)
        if kwargs.get("nx") and first:
            return None  # what the retried command answers
        return first


def test_a_claim_whose_reply_was_lost_is_still_this_requests_claim() -> None:
    sent: Sent = []
    store = LostReplies(decode_responses=True)
    app = create_relay_app(SETTINGS, lambda name, args: sent.append(args[0]), store)
    client = TestClient(app)
    url = "/webhooks/zoho/acme/notifications"
    body = {
        "module": "Invoices",
        "ids": ["5843006000000123001"],
        "operation": "update",
        "token": TOKEN,
        "channel_id": "1000",
        "server_time": "2026-12-01T10:00:00+00:00",
    }
    assert client.post(url, json=body).status_code == 200
    assert len(sent) == 1  # not taken for a duplicate of itself
    read_by_worker(IdempotencyStore(store, 3600), sent[0])
    assert client.post(url, json=body).status_code == 200
    assert len(sent) == 1  # Zoho's real retry is still dropped
