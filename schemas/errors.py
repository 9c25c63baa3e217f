"""The one exceptions module: every failure the pipeline can meet, classified once.

Stages raise these; the retry policy (workers/policies/retry.py) reads `retryable` and
`retry_after`, and dead letters and alerts read `kind`, `field` and `hint`. Like httpx's
exceptions module, one hierarchy keeps classification in one place instead of in every stage.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class SyncError(Exception):
    """Base: a failure with a stable kind, a plain message, and what to do about it."""

    kind = "error"
    retryable = False

    def __init__(self, message: str, *, hint: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with all attributes: Celery pickles exceptions between processes, and the
        subclasses' constructors do not take `args` back."""
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(cls: type[SyncError], args: tuple[Any, ...], state: dict[str, Any]) -> SyncError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InvalidRecord(SyncError):
    """The Zoho record (or its mapping) cannot become a valid Xero document: fix the data."""

    kind = "invalid_record"

    def __init__(self, record: str, field: str, message: str, *, hint: str | None = None):
        super().__init__(f"{record}: {field}: {message}", hint=hint, field=field)
        self.record = record


class TotalMismatch(InvalidRecord):
    """Xero's total would differ from Zoho's Grand_Total: never silently accepted."""

    kind = "total_mismatch"

    def __init__(self, record: str, zoho_total: Decimal, xero_total: Decimal):
        super().__init__(
            record,
            "Grand_Total",
            f"Zoho Grand_Total {zoho_total} but Xero would total {xero_total} "
            f"(difference {zoho_total - xero_total})",
            hint="Check line discounts and taxes in Zoho, or enable a rounding line "
            "for this connection (rounding = rounding_line).",
        )
        self.zoho_total = zoho_total
        self.xero_total = xero_total


class TotalDiffers(InvalidRecord):
    """The Xero invoice exists, but its total is not Zoho's: the record stays Failed until the
    totals agree (fix Zoho, the next event updates Xero) or someone accepts the difference."""

    kind = "total_differs"

    def __init__(
        self, record: str, zoho_total: Decimal, xero_total: Decimal, invoice: str, action: str
    ):
        what = {
            "created": "was created",
            "adopted": "was found in Xero",
            "updated": "was updated",
        }.get(action, "exists")
        super().__init__(
            record,
            "Grand_Total",
            f"Xero invoice {invoice} {what}, but its total {xero_total} differs from Zoho "
            f"Grand_Total {zoho_total} (difference {zoho_total - xero_total}); the record stays "
            "Failed until the totals agree or the difference is accepted",
            hint="Correct the Zoho record (line discounts, taxes) so the totals agree: the next "
            "event updates the Xero invoice. Or accept Xero's total with "
            "`zxsync dlq accept-total <dead-letter id>`.",
        )
        self.zoho_total = zoho_total
        self.xero_total = xero_total


class ConfigurationError(SyncError):
    """The connection's settings do not fit the Xero organisation or Zoho org."""

    kind = "configuration"


class ApiError(SyncError):
    """An answer from Xero or Zoho that is not a success, carrying the API's own words."""

    kind = "api_error"

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        hint: str | None = None,
        field: str | None = None,
    ):
        super().__init__(f"{provider}: {message}", hint=hint, field=field)
        self.provider = provider
        self.status = status


class ValidationFailed(ApiError):
    """The API refused the data (Xero 400 ValidationException, Zoho INVALID_DATA): permanent."""

    kind = "validation"

    def __init__(
        self, provider: str, messages: list[str], *, status: int = 400, hint: str | None = None
    ):
        super().__init__(
            provider, "; ".join(messages) or "validation failed", status=status, hint=hint
        )
        self.messages = messages


class NotFound(ApiError):
    """The record or document does not exist (deleted in Zoho, gone from Xero)."""

    kind = "not_found"


class AuthRevoked(ApiError):
    """The refresh token is revoked or expired: only an operator can reconnect."""

    kind = "reconnect"


class MissingScope(ApiError):
    """The token was not granted the scope this endpoint needs (Xero 401 insufficient_scope):
    a new consent with that scope fixes it, a token refresh never does."""

    kind = "missing_scope"


class RetryableApiError(ApiError):
    """Worth trying again later: rate limits, server errors, timeouts, dropped connections."""

    kind = "transient"
    retryable = True


class RateLimited(RetryableApiError):
    """A 429: wait exactly `retry_after` seconds (Xero's Retry-After) before trying again."""

    kind = "rate_limited"

    def __init__(self, provider: str, problem: str, retry_after: float | None, status: int = 429):
        super().__init__(provider, f"rate limit reached ({problem})", status=status)
        self.problem = problem
        self.retry_after = retry_after


class ServerError(RetryableApiError):
    """A 5xx answer."""

    kind = "server_error"


class TransportError(RetryableApiError):
    """No answer at all: timeout, refused or dropped connection."""

    kind = "transport"


class Busy(SyncError):
    """Another worker holds the lock on this record (or a killed one's lease has not expired):
    try again shortly instead of blocking a worker."""

    kind = "busy"
    retryable = True


class PoisonMessage(SyncError):
    """A job whose deliveries keep dying with their worker (crash, OOM, hard time limit)."""

    kind = "poison"


class InvalidJob(SyncError):
    """A job message that fails the relay contract or names an unknown connection."""

    kind = "invalid_job"


class ContractBroken(SyncError):
    """A stage message lacks what the earlier stages guarantee (schemas/jobs.py's narrowed
    messages): a defect, or a message edited by hand; never retried, dead-lettered whole."""

    kind = "contract"


class NotLinkedYet(SyncError):
    """Xero reported a change to an invoice the pipeline has not linked to its Zoho record yet
    (the webhook can beat the link write): try again shortly."""

    kind = "not_linked_yet"
    retryable = True


class RefusedInBatch(SyncError):
    """One element of a batched request was refused: the element's own error, as the batch's
    flush recorded it, raised in the stage of every document that waited for it."""

    def __init__(self, kind: str, message: str, *, hint: str | None, field: str | None):
        super().__init__(message, hint=hint, field=field)
        self.kind = kind
