"""What a policy is: one concern every task gets, with its own per-task options.

Modelled on dramatiq's middleware (one small class per concern, options read off the actor,
on by default): a policy is told when a run starts, when the task's body raised, when the task
is sent again, and when it failed for good. The task base (workers/policies/task.py) calls the
policies in the order of `POLICIES` (workers/policies/__init__.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workers.deadletter import DeadLetter

if TYPE_CHECKING:
    from workers.policies.task import PolicyTask
    from workers.settings import Settings


@dataclass
class Failure:
    """A run that failed for good, as every policy's `on_failure` sees it; the dead-letter
    policy fills in `letter` for the policies after it."""

    exc: BaseException
    payload: Any
    job: dict[str, Any]
    traceback: str
    letter: DeadLetter | None = None


def job_of(payload: Any) -> dict[str, Any]:
    """The job a task's first argument carries: a stage message's `job`, or the job itself."""
    job = payload.get("job", payload) if isinstance(payload, dict) else {}
    return job if isinstance(job, dict) else {}


class Policy:
    """Does nothing by default: a policy overrides the moments it cares about."""

    def configure(self, task: type[PolicyTask], settings: Settings) -> None:
        """Once per task class, when it is bound to the app: fill in defaults of its options."""

    def before(self, task: PolicyTask) -> None:
        """Before the task's body runs; raising fails the run (the other policies see it)."""

    def on_error(self, task: PolicyTask, exc: Exception) -> Exception:
        """The body raised `exc`: return the exception to go on with (the same, or one that
        says more), or raise to take the run over (Celery's Retry, Ignore)."""
        return exc

    def on_retry(self, task: PolicyTask, exc: BaseException, countdown: float) -> None:
        """The run is sent again after `countdown` seconds because of `exc`."""

    def on_failure(self, task: PolicyTask, failure: Failure) -> None:
        """The run failed for good (no retry left, or a permanent error)."""
