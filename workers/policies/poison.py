"""Poison: a job that keeps killing its worker is dead-lettered, not delivered forever.

With reject-on-worker-lost, Celery requeues a task whose process died, so one that crashes its
worker every time (memory, a hard time limit) would loop forever (celery PR #6103). Deliveries
of the same attempt are counted in Redis; past the budget the run fails with PoisonMessage,
before the body runs. A retry or a rescheduled run has a new attempt or task id: a new count.

Per-task option: `max_deliveries` (None: ZXS_MAX_DELIVERIES).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.errors import PoisonMessage
from workers import keys
from workers.policies.base import Policy
from workers.redis import get_redis
from workers.settings import get_settings

if TYPE_CHECKING:
    from workers.policies.task import PolicyTask

COUNT_TTL_SECONDS = 24 * 3600


def deliveries_key(task_id: str, retries: int) -> str:
    return keys.DELIVERIES(task_id, retries)


class Poison(Policy):
    def before(self, task: PolicyTask) -> None:
        key = deliveries_key(str(task.request.id), task.request.retries)
        pipe = get_redis().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, COUNT_TTL_SECONDS)
        deliveries = int(pipe.execute()[0])
        budget = task.max_deliveries or get_settings().zxs_max_deliveries
        if deliveries > budget:
            raise PoisonMessage(
                f"delivered {deliveries} times and its worker died each time",
                hint="The job crashes or exhausts its worker (memory, time limit): inspect the "
                "payload and traceback before replaying it.",
            )
