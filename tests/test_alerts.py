"""Exception report wording, Sentry fingerprints and secret redaction (pure parts)."""

from __future__ import annotations

import pytest

from workers.alerts import build_report, fingerprint
from workers.deadletter import DeadLetter
from workers.redact import MASK, redact


def letter(error: str, **kw: str) -> DeadLetter:
    values = {
        "stage": "zxsync.invoice_create",
        "connection": "acme-au",
        "module": "Invoices",
        "record_id": "5843000000000001",
        "error_kind": "validation",
        "error": error,
        "hint": "",
        "field": "",
        "attempts": 1,
        "payload": "{}",
        "traceback": "",
        "failed_at": "2026-11-25T00:00:00+00:00",
        "id": "1700000000000-0",
        **kw,
    }
    return DeadLetter(**values)  # type: ignore[arg-type]


def test_report_says_what_for_which_document_why_and_what_to_do() -> None:
    report = build_report(letter("Xero: Account code '999' is not a valid code for this document."))
    assert report.title == (
        "Xero did not create the invoice for Zoho Invoices 5843000000000001 (connection acme-au)"
    )
    assert "set sales_account_code for connection acme-au" in report.what_to_do
    assert "999" in report.what_to_do
    assert report.replay == "zxsync dlq replay 1700000000000-0"
    assert "Why: Xero: Account code '999'" in report.text()


def test_hint_and_transient_fallbacks() -> None:
    assert build_report(letter("x", hint="Give it a code")).what_to_do == "Give it a code"
    transient = build_report(letter("Xero: HTTP 503", error_kind="server_error", attempts="9"))
    assert "after 9 attempts" in transient.what_to_do


def test_fingerprint_groups_the_same_cause_across_records() -> None:
    a = letter("Xero: Account code '999' is not valid", record_id="1")
    b = letter("Xero: Account code '123' is not valid", record_id="2")
    c = letter("Xero: Invoice # must be unique.")
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


def test_redact_masks_credentials_and_known_values() -> None:
    text = (
        "GET https://accounts.zoho.com/oauth/v2/token?client_secret=s3cr3t-value&"
        "refresh_token=1000.abcdef123456 Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y "
        'then {"access_token": "tok-123456789"} and my-planted-secret'
    )
    out = redact(text, secrets=["my-planted-secret"])
    for secret in (
        "s3cr3t-value",
        "1000.abcdef123456",
        "eyJhbGciOiJIUzI1NiJ9",
        "tok-123456789",
        "my-planted-secret",
    ):
        assert secret not in out
    assert out.count(MASK) == 5
    assert redact("Account code '999' is not valid") == "Account code '999' is not valid"


def test_email_report_reaches_an_smtp_server() -> None:
    from aiosmtpd.controller import Controller

    from sandbox.server import free_port
    from workers.alerts import send_email
    from workers.settings import Settings

    received: list[str] = []

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            received.append(envelope.content.decode())  # type: ignore[attr-defined]
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings = Settings(
            zxs_smtp_host="127.0.0.1",
            zxs_smtp_port=controller.port,
            zxs_smtp_starttls=False,
            zxs_alert_email_to="ops@example.test",
        )
        report = build_report(letter("Xero: Invoice # must be unique."))
        send_email(settings, f"[zxsync] {report.title}", report.text())
    finally:
        controller.stop()
    [mail] = received
    assert "To: ops@example.test" in mail and "Xero did not create the invoice" in mail
    assert "Another Xero invoice already has this number" in mail


def test_a_letter_id_that_a_new_database_gives_again_is_still_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Letter ids are a database's own sequence: a restored or new database (or a second
    deployment on the same Redis) gives id 1 again. Its report must still go out: the delivery
    attempts live with the letter, not under a Redis key named by the id."""
    import fakeredis

    import workers.alerts as alerts
    from workers.deadletter import DeadLetterStore
    from workers.store import Database, use_database

    redis_client = fakeredis.FakeRedis(decode_responses=True)
    monkeypatch.setattr(alerts, "get_redis", lambda: redis_client)
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(
        alerts,
        "deliver",
        lambda report, channel, settings: sent.append((channel, report.letter.record_id)),
    )
    monkeypatch.setattr(alerts, "channels", lambda settings, letter: ["webhook"])
    fields = {k: v for k, v in letter("Xero: boom").__dict__.items() if k != "id"}
    for record_id in ("first", "second"):
        use_database(Database("sqlite://"))  # each test database starts its ids at 1
        store = DeadLetterStore(redis_client)
        added = store.insert(DeadLetter(**{**fields, "record_id": record_id, "id": ""}))
        assert added == "1"
        alerts.report_dead_letter.apply(args=[added])
        assert store.deliveries(added)["webhook"].ok is True
    assert sent == [("webhook", "first"), ("webhook", "second")]
