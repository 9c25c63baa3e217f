"""Secrets out of logs and URLs (issue #14.2): the shapes the redaction removes, structlog lines
and access logs through it, the Zoho refresh without the client secret in its URL, and a bad
ZXS_CONNECTIONS named by field, never echoed."""

from __future__ import annotations

import io
import json
import logging
import secrets
from typing import Any

import httpx
import pytest
import structlog

from clients.zoho import refresh_zoho_token
from schemas.errors import ConfigurationError
from workers import redact as redact_module
from workers.logs import RedactingFilter, configure_logging
from workers.redact import redact
from workers.settings import Settings

SLACK = "https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/q1w2e3r4t5y6u7i8o9p0AbCd"
JWT = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ"
ZOHO = "1000." + "a1" * 16 + "." + "b2" * 16
OPAQUE = "Qm9yZGVyLXRva2VuLTAxMjM0NTY3ODktYWJjZGVmZ2hpamtsbW5vcA"  # 40+ mixed, no prefix
REDIS_PASSWORD = "r3dis-pass-word"
SMTP_PASSWORD = "planted-smtp-pw-99"


@pytest.fixture(autouse=True)
def configured(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings with a planted SMTP password and Redis password (read by the redaction)."""
    settings = Settings(
        _env_file=None,
        zxs_smtp_password=SMTP_PASSWORD,
        redis_url=f"redis://:{REDIS_PASSWORD}@redis:6379/0",
    )
    monkeypatch.setattr("workers.settings.get_settings", lambda: settings)
    redact_module._configured_secrets.cache_clear()
    yield
    redact_module._configured_secrets.cache_clear()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"posting to {SLACK} failed", "q1w2e3r4t5y6u7i8o9p0AbCd"),
        (f"token {JWT} expired", JWT),
        (f"refresh {ZOHO} refused", ZOHO),
        (f"stored {OPAQUE}", OPAQUE),
        ("broker redis://:an0ther-pass@10.0.0.5:6379/0 down", "an0ther-pass"),
        ("sentry http://0123456789abcdef0123@sentry.example/7", "0123456789abcdef0123"),
        (f"login failed for {SMTP_PASSWORD}", SMTP_PASSWORD),
        (f"url redis://:{REDIS_PASSWORD}@redis:6379/0", REDIS_PASSWORD),
    ],
)
def test_every_credential_shape_is_redacted(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_ids_and_ordinary_words_survive() -> None:
    text = "invoice 9f1c3a52-8a0e-4c1b-9d55-2f0a7e1b9c11 event xero-" + "ab12" * 10
    assert redact(text) == text


@pytest.mark.parametrize("json_output", [True, False])
def test_structlog_lines_are_redacted(json_output: bool) -> None:
    out = io.StringIO()
    configure_logging("INFO", json_output)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(out))
    try:
        structlog.get_logger("t").error(
            "alert.failed",
            url=SLACK,
            error=f"Bearer {JWT}",
            nested={"password": SMTP_PASSWORD, "tok": ZOHO},
        )
    finally:
        structlog.reset_defaults()
    line = out.getvalue()
    assert "alert.failed" in line
    for secret in ("q1w2e3r4t5y6u7i8o9p0AbCd", JWT, SMTP_PASSWORD, ZOHO):
        assert secret not in line


def test_access_log_lines_lose_their_query_strings() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/webhooks/zoho/acme?token=zoho-token-1", "1.1", 200),
        None,
    )
    assert RedactingFilter().filter(record)
    assert record.getMessage() == (
        '127.0.0.1:5000 - "POST /webhooks/zoho/acme?[redacted] HTTP/1.1" 200'
    )


def test_the_zoho_refresh_sends_the_client_secret_in_the_body_not_the_url() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "a", "expires_in": 3600})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    refresh_zoho_token(client, "https://accounts.zoho.eu", "id", "the-client-secret")("1000.r")
    (request,) = seen
    assert "the-client-secret" not in str(request.url) and "1000.r" not in str(request.url)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert b"client_secret=the-client-secret" in request.content


def test_a_bad_connection_names_the_field_and_never_prints_a_token() -> None:
    token = secrets.token_urlsafe(24)
    raw = json.dumps(
        [
            {
                "name": "acme",
                "xero_tenant_id": "t",
                "zoho_org_id": "o",
                "zoho_refresh_token": token,
                "xero_webhook_key": ["not", token],
            }
        ]
    )
    with pytest.raises(ConfigurationError) as error:
        Settings(_env_file=None, zxs_connections=raw).connections()
    message = str(error.value)
    assert "connection 'acme'" in message and "xero_webhook_key" in message
    assert token not in message and token not in repr(error.value.__cause__)


def test_a_bad_setting_names_the_variable_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.undo()  # the real get_settings
    from workers.settings import get_settings

    get_settings.cache_clear()
    monkeypatch.setenv("ZXS_SMTP_PORT", "s3cret-looking-value")
    try:
        with pytest.raises(ConfigurationError) as error:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert str(error.value).startswith("ZXS_SMTP_PORT:")
    assert "s3cret-looking-value" not in str(error.value)


def test_stdlib_records_and_their_tracebacks_are_redacted() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        configure_logging("INFO", True)  # Celery's pool processes: handlers already there
        structlog.reset_defaults()
        try:
            raise RuntimeError(f"POST {SLACK} with Bearer {JWT}")
        except RuntimeError:
            logging.getLogger("celery.app.trace").exception("Task failed: %s", ZOHO)
    finally:
        root.removeHandler(handler)
    text = out.getvalue()
    assert "Task failed" in text and "RuntimeError" in text
    for secret in ("q1w2e3r4t5y6u7i8o9p0AbCd", JWT, ZOHO):
        assert secret not in text
