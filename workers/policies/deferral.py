"""Rate-limit deferral: a rate limit is not a failure and spends no attempt.

A task that met a rate limit is sent again after the wait (Xero's Retry-After, or the shared
limiter's), or parked until Xero's next daily window; the run ends there (workers/deferral.py
does the sending and parking). A task with the option off meets the retry policy instead, which
waits the same Retry-After but spends an attempt.

Per-task option: `defer_rate_limited` (default True).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.errors import RateLimited
from workers.policies.base import Policy

if TYPE_CHECKING:
    from workers.policies.task import PolicyTask


class RateLimitDeferral(Policy):
    def on_error(self, task: PolicyTask, exc: Exception) -> Exception:
        if isinstance(exc, RateLimited) and task.defer_rate_limited:
            from workers.deferral import reschedule  # imports the Celery app

            reschedule(exc)  # raises Ignore
        return exc
