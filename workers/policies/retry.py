"""Retry: transient errors are tried again, with backoff, up to the task's retry budget.

Transient means the error says so (`SyncError.retryable`: Xero's and Zoho's 5xx, timeouts and
dropped connections, rate limits, a busy record lock, an invoice not linked yet, a soft time
limit). Rate limits wait exactly their Retry-After (capped); everything else backs off
exponentially with full jitter (Celery's own helper), capped at the task's backoff maximum.
Everything else is permanent and fails at once.

Per-task options: `max_retries` (Celery's; a task that does not set it gets ZXS_MAX_RETRIES;
0 turns retries off) and `backoff_max` (None: ZXS_RETRY_BACKOFF_MAX).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery.utils.time import get_exponential_backoff_interval

from schemas.errors import RateLimited, SyncError
from workers.policies.base import Policy
from workers.settings import get_settings

if TYPE_CHECKING:
    from workers.policies.task import PolicyTask
    from workers.settings import Settings

BACKOFF_FACTOR = 2
RATE_LIMIT_FALLBACK_SECONDS = 5.0


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, SyncError) and exc.retryable


def rate_limit_wait(exc: RateLimited) -> float:
    """What a rate limit asks to wait: its Retry-After, or a short default without one."""
    return exc.retry_after if exc.retry_after is not None else RATE_LIMIT_FALLBACK_SECONDS


def retry_countdown(exc: BaseException, retries: int, backoff_max: float) -> float:
    """Seconds to wait before attempt `retries + 1`."""
    if isinstance(exc, RateLimited):
        return min(rate_limit_wait(exc), backoff_max)
    return float(
        get_exponential_backoff_interval(
            factor=BACKOFF_FACTOR, retries=retries, maximum=int(backoff_max), full_jitter=True
        )
    )


class Retry(Policy):
    def configure(self, task: type[PolicyTask], settings: Settings) -> None:
        if "max_retries" not in vars(task):
            task.max_retries = settings.zxs_max_retries

    def on_error(self, task: PolicyTask, exc: Exception) -> Exception:
        if not is_transient(exc) or task.request.retries >= (task.max_retries or 0):
            return exc
        backoff_max = task.backoff_max or get_settings().zxs_retry_backoff_max
        countdown = retry_countdown(exc, task.request.retries, backoff_max)
        task.retrying(exc, countdown)
        raise task.retry(exc=exc, countdown=countdown)
