"""The app-wide task base (`task_cls`, workers/app.py): every task runs the same policies.

`POLICIES` is ordered: the time limit turns a soft limit into a transient error before the
retry policy looks at it; poison refuses a run before its body; a rate limit is deferred before
the retry policy would spend an attempt on it; the dead letter is written before history logs
its id. Each policy reads its options off the task (`@app.task(name=..., dead_letter=False)`);
the defaults below are on.
"""

from __future__ import annotations

from typing import Any, ClassVar

from billiard.einfo import ExceptionInfo
from celery import Celery, Task
from celery.exceptions import Ignore, Reject, Retry

from workers.policies.base import Failure, Policy, job_of
from workers.policies.dead_letter import DeadLetter
from workers.policies.deferral import RateLimitDeferral
from workers.policies.history import History
from workers.policies.poison import Poison
from workers.policies.retry import Retry as RetryPolicy
from workers.policies.time_limit import TimeLimit
from workers.settings import get_settings

POLICIES: tuple[Policy, ...] = (
    TimeLimit(),
    Poison(),
    RateLimitDeferral(),
    RetryPolicy(),
    DeadLetter(),
    History(),
)
# tasks that carry no job to retry or replay (beat's ticks, flushes): a failure waits for the
# next tick instead; time limits and the poison count still apply
HOUSEKEEPING: dict[str, Any] = {"max_retries": 0, "dead_letter": False, "defer_rate_limited": False}


class PolicyTask(Task):  # type: ignore[misc]
    """Runs `policies` around the task's body and on its retries and failures."""

    policies: ClassVar[tuple[Policy, ...]] = POLICIES
    # the policies' per-task options (workers/policies/*.py say what each does)
    dead_letter: bool = True
    defer_rate_limited: bool = True
    max_deliveries: int | None = None
    backoff_max: float | None = None

    @classmethod
    def bind(cls, app: Celery) -> Celery:
        bound = super().bind(app)
        settings = get_settings()
        for policy in cls.policies:
            policy.configure(cls, settings)
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:  # a plain call in Python: no delivery, no policies
            return super().__call__(*args, **kwargs)
        try:
            for policy in self.policies:
                policy.before(self)
            return self.run(*args, **kwargs)
        except (Ignore, Reject, Retry):
            raise
        except Exception as exc:
            error = exc
            for policy in self.policies:
                error = policy.on_error(self, error)
            if error is exc:
                raise
            raise error from exc

    def retrying(self, exc: BaseException, countdown: float) -> None:
        """The retry policy is sending this run again: the policies hear of it."""
        for policy in self.policies:
            policy.on_retry(self, exc, countdown)

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: ExceptionInfo,
    ) -> None:
        payload = args[0] if args else kwargs
        failure = Failure(exc=exc, payload=payload, job=job_of(payload), traceback=str(einfo))
        for policy in self.policies:
            policy.on_failure(self, failure)
