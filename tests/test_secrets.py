"""Planted secrets never leave: not in logs, dead letters, alerts, Sentry, the Zoho record,
Redis, or the task events Flower shows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import redis
from test_exception_reports import Receiver, wait

from sandbox.seed import build_dataset, load_dataset
from sandbox.server import ThreadedServer
from zxsync.stack import XERO_CLIENT_SECRET, ZOHO_CLIENT_SECRET

pytestmark = pytest.mark.integration
SMTP_PASSWORD = "planted-smtp-password-7f3a"


def test_planted_secrets_appear_in_no_output(make_stack: Callable[..., Any]) -> None:
    from workers.app import app
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis

    receiver = Receiver()
    server = ThreadedServer(receiver.app()).start()
    try:
        host = server.url.removeprefix("http://")
        stack = make_stack(
            extra_env={
                "SENTRY_DSN": f"http://sentrykey@{host}/7",
                "ZXS_ALERT_WEBHOOK_URL": f"{server.url}/hook",
                "ZXS_SMTP_PASSWORD": SMTP_PASSWORD,
            }
        )
        conn = stack.connections[0]
        config = conn.config()
        secrets = [
            XERO_CLIENT_SECRET,
            ZOHO_CLIENT_SECRET,
            SMTP_PASSWORD,
            config["xero_refresh_token"],
            config["zoho_refresh_token"],
        ]
        data = load_dataset(stack.zoho, conn.zoho_org_id, build_dataset(invoices=2, seed=21))
        bad, good = (str(inv["id"]) for inv in data.invoices)
        stack.zoho.update(
            conn.zoho_org_id, "Invoices", bad, {"Currency": "EUR", "Exchange_Rate": Decimal("0.6")}
        )
        events: list[str] = []
        stop = threading.Event()

        def capture() -> None:  # what Flower would show: every task event, arguments included
            with app.connection_for_read() as connection:
                receiver_ = app.events.Receiver(
                    connection, handlers={"*": lambda event: events.append(repr(event))}
                )
                while not stop.is_set():
                    try:
                        receiver_.capture(limit=None, timeout=0.5, wakeup=False)
                    except (TimeoutError, OSError):
                        continue

        listener = threading.Thread(target=capture, daemon=True)
        listener.start()
        stack.start_worker(concurrency=1, task_events=True)  # as while Flower watches
        for record_id in (bad, good):
            app.send_task(
                "zxsync.ingest",
                args=[
                    {
                        "connection": conn.name,
                        "module": "Invoices",
                        "record_id": record_id,
                        "event": "insert",
                        "event_id": f"s-{record_id}",
                    }
                ],
            )
        wait(lambda: receiver.hooks and receiver.sentry, what="the alerts")
        wait(
            lambda: stack.zoho.get(conn.zoho_org_id, "Invoices", good).get("Xero_Invoice_ID"),
            what="the good invoice",
        )
        time.sleep(1.0)
        stop.set()
        listener.join(timeout=5)

        letters = [repr(dl) for dl in DeadLetterStore(get_redis()).list(10_000)]
        zoho = repr(stack.zoho.get(conn.zoho_org_id, "Invoices", bad))
        notes = repr(stack.zoho.notes(conn.zoho_org_id, "Invoices", bad))
        stored = _dump_redis(get_redis())
        outputs = {
            "worker logs": stack.worker_logs(),
            "dead letters": "".join(letters),
            "webhook": repr(receiver.hooks),
            "sentry": b"".join(receiver.sentry).decode(),
            "zoho record": zoho + notes,
            "redis": stored,
            "task events": "".join(events),
        }
        assert bad in outputs["task events"], "the captured events carry task arguments"
        assert stack.xero.stats()["token_refreshes"] > 0, "the planted tokens were in use"
        for where, text in outputs.items():
            for secret in secrets:
                assert secret not in text, f"a planted secret leaked into {where}"
    finally:
        server.stop()


def _dump_redis(client: redis.Redis) -> str:
    """Every string, hash, list and stream value in the test database."""
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "string":
            parts.append(str(client.get(key)))
        elif kind == "hash":
            parts.append(str(client.hgetall(key)))
        elif kind == "list":
            parts.append(str(client.lrange(key, 0, -1)))
        elif kind == "stream":
            parts.append(str(client.xrange(key)))
    return "\n".join(parts)


def test_planted_secrets_stay_out_of_the_relays_access_and_structured_logs(
    tmp_path: Any, redis_url: str
) -> None:
    """The relay's whole output (uvicorn's access and error logs, structlog) after webhooks that
    carry the token in the URL, a header and the body, and wrong tokens."""
    import httpx
    from test_relay_load import TOKEN, Relay

    relay = Relay(redis_url, tmp_path, "planted")
    try:
        url = f"{relay.url}/webhooks/zoho/planted"
        change = {"module": "Invoices", "id": "1", "operation": "edit"}
        assert httpx.post(url, params={"token": TOKEN}, json=change).status_code == 200
        assert httpx.post(url, headers={"x-zxs-token": TOKEN}, json=change).status_code == 200
        assert httpx.post(url, data={**change, "token": TOKEN}).status_code == 200
        assert httpx.post(url, params={"token": TOKEN + "x"}, json=change).status_code == 401
        assert (
            httpx.post(f"{url}/notifications", json={**change, "token": TOKEN + "y"}).status_code
            == 401
        )
    finally:
        relay.stop()
    output = (tmp_path / "relay.log").read_text()
    assert "POST /webhooks/zoho/planted?[redacted]" in output, "access log lines were written"
    assert TOKEN not in output
