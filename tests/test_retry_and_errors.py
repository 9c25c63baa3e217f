"""Error classification and retry policy: decided once, from the API's own answer."""

from __future__ import annotations

import httpx
import pytest

from clients.xero import classify_xero
from clients.zoho import classify_zoho
from schemas.errors import (
    AuthRevoked,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    ValidationFailed,
)
from workers.policies.retry import is_transient, retry_countdown


def response(
    status: int, json: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, json=json, headers=headers or {})


def test_xero_429_carries_problem_and_retry_after() -> None:
    err = classify_xero(
        response(429, headers={"Retry-After": "17", "X-Rate-Limit-Problem": "Minute"})
    )
    assert isinstance(err, RateLimited) and err.problem == "minute" and err.retry_after == 17
    assert retry_countdown(err, retries=5, backoff_max=600) == 17
    concurrent = classify_xero(response(429, headers={"X-Rate-Limit-Problem": "concurrent"}))
    assert isinstance(concurrent, RateLimited) and concurrent.retry_after is None


def test_xero_validation_exception_lists_element_messages() -> None:
    body = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [
            {
                "ValidationErrors": [
                    {"Message": "Account code '999' is not a valid code for this document."}
                ]
            }
        ],
    }
    err = classify_xero(response(400, body))
    assert isinstance(err, ValidationFailed) and not is_transient(err)
    assert err.messages == ["Account code '999' is not a valid code for this document."]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, ServerError),
        (503, ServerError),
        (404, NotFound),
        (403, AuthRevoked),
    ],
)
def test_xero_status_classes(status: int, kind: type) -> None:
    assert isinstance(classify_xero(response(status, {"Detail": "x"})), kind)


def test_zoho_envelopes() -> None:
    bad = classify_zoho(
        response(
            400,
            {
                "data": [
                    {
                        "code": "INVALID_DATA",
                        "status": "error",
                        "message": "invalid data",
                        "details": {"api_name": "Xero_Sync_Status"},
                    }
                ]
            },
        )
    )
    assert isinstance(bad, ValidationFailed) and "Xero_Sync_Status" in bad.message
    limited = classify_zoho(response(429, {"code": "TOO_MANY_REQUESTS", "status": "error"}))
    assert isinstance(limited, RateLimited) and is_transient(limited)
    assert isinstance(classify_zoho(response(500, {"code": "INTERNAL_ERROR"})), ServerError)


def test_backoff_is_bounded_jittered_and_transport_errors_retry() -> None:
    err = TransportError("Xero", "timed out")
    assert is_transient(err) and is_transient(ServerError("Xero", "boom"))
    waits = [retry_countdown(err, retries=10, backoff_max=60) for _ in range(50)]
    assert all(0 <= w <= 60 for w in waits) and len(set(waits)) > 1
    assert retry_countdown(RateLimited("Xero", "minute", 9000), 0, backoff_max=600) == 600
