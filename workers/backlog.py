"""How much work waits for each queue: what the workers are autoscaled on (deploy/k8s/, KEDA).

kombu's Redis transport keeps one list per priority step (`zxs.fetch`, then `zxs.fetch` plus
its separator and `3`, `6`, `9`), and a burst sits at the lower steps (workers/pipeline.py), so
the length of the queue's own list misses most of it. The connections' waiting rooms
(workers/admission.py) hold work too, taken in by the door and not yet started: each job there
starts at the first stage of its pipeline, `zxs.fetch`. Not counted: messages a worker holds
(running, or a retry's countdown) and jobs parked until Xero's next day (`zxs:deferred`), which
more workers would not move sooner.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis
from kombu.transport.redis import Channel

from workers import keys
from workers.admission import waiting_key
from workers.app import PRIORITY_STEPS, QUEUE_ORDER, STAGE_QUEUES
from workers.pipeline import PIPELINES

ADMITTED_QUEUE = STAGE_QUEUES[next(iter(PIPELINES.values()))[0]]  # zxs.fetch


def priority_lists(queue: str) -> list[str]:
    """The Redis lists of a queue, one per priority step (kombu's `_q_for_pri`), under the
    deployment's namespace (kombu's `global_keyprefix`, workers/keys.py)."""
    prefix = keys.broker_prefix()
    return [
        prefix + (queue if step == 0 else f"{queue}{Channel.sep}{step}") for step in PRIORITY_STEPS
    ]


def queue_backlog(client: redis.Redis, connections: Iterable[str]) -> dict[str, int]:
    """Per queue of QUEUE_ORDER: messages in all its priority lists, plus, for the first stage,
    the connections' waiting rooms. One round trip."""
    pipe = client.pipeline(transaction=False)
    for queue in QUEUE_ORDER:
        for name in priority_lists(queue):
            pipe.llen(name)
    rooms = [waiting_key(name) for name in connections]
    for room in rooms:
        pipe.llen(room)
    counts = iter(int(n) for n in pipe.execute())
    backlog = {queue: sum(next(counts) for _ in PRIORITY_STEPS) for queue in QUEUE_ORDER}
    backlog[ADMITTED_QUEUE] += sum(counts)
    return backlog
