"""Time limits: no task runs unbounded.

Celery enforces both limits in the prefork pool: past `soft_time_limit` the task's process
raises SoftTimeLimitExceeded inside the body, which this policy turns into `TimedOut`, a
transient error the retry policy retries (a stuck call to Xero or Zoho is worth another try);
past `time_limit` the process is killed and Celery calls the task's `on_failure` with
TimeLimitExceeded, so the job is dead-lettered rather than lost.

Per-task options (Celery's own attributes): `soft_time_limit`, `time_limit`, in seconds; a task
that sets neither gets the defaults below. Both stay under the broker's visibility timeout
(at least 600 s: workers/app.py), or Redis would deliver a running task a second time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded

from schemas.errors import SyncError
from workers.policies.base import Policy

if TYPE_CHECKING:
    from workers.policies.task import PolicyTask
    from workers.settings import Settings

SOFT_SECONDS = 300.0
POLL_SOFT_SECONDS = 540.0  # beat's polls page through a tenant's changes; still under 600 s
GRACE_SECONDS = 30.0  # from the soft limit to the kill: time to retry or dead-letter


class TimedOut(SyncError):
    """The task ran past its soft time limit: retried like any transient failure."""

    kind = "timeout"
    retryable = True


class TimeLimit(Policy):
    def configure(self, task: type[PolicyTask], settings: Settings) -> None:
        if task.soft_time_limit is None:
            task.soft_time_limit = (
                task.time_limit - GRACE_SECONDS if task.time_limit else SOFT_SECONDS
            )
        if task.time_limit is None:
            task.time_limit = task.soft_time_limit + GRACE_SECONDS

    def on_error(self, task: PolicyTask, exc: Exception) -> Exception:
        if isinstance(exc, SoftTimeLimitExceeded):
            return TimedOut(
                f"{task.name} ran past its time limit of {task.soft_time_limit:.0f} s",
                hint="A call to Xero or Zoho hung, or the task has more to do than its limit "
                "allows: retried; if it keeps happening, look at the APIs' status and the "
                "task's size.",
            )
        return exc
