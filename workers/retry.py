"""Retry policy: how long to wait before the next attempt, decided from the error alone.

Rate limits wait exactly what Xero's Retry-After (or the shared limiter) says, without spending
an attempt: inside a task, `should_retry` hands them to workers/deferral.py, which sends the task
again with that countdown, or parks it until the next daily window, and ends the run. Other
transient failures back off exponentially with full jitter (Celery's own helper); everything
else is permanent.
"""

from __future__ import annotations

from celery.utils.time import get_exponential_backoff_interval

from schemas.errors import RateLimited, SyncError

BACKOFF_FACTOR = 2
RATE_LIMIT_FALLBACK_SECONDS = 5.0


def should_retry(exc: BaseException) -> bool:
    if isinstance(exc, RateLimited):
        from workers.deferral import reschedule  # imports the Celery app; only tasks need it

        reschedule(exc)
    return isinstance(exc, SyncError) and exc.retryable


def retry_countdown(exc: BaseException, retries: int, backoff_max: float) -> float:
    """Seconds to wait before attempt `retries + 1`."""
    if isinstance(exc, RateLimited):
        wait = exc.retry_after if exc.retry_after is not None else RATE_LIMIT_FALLBACK_SECONDS
        return min(wait, backoff_max)
    return float(
        get_exponential_backoff_interval(
            factor=BACKOFF_FACTOR, retries=retries, maximum=int(backoff_max), full_jitter=True
        )
    )
