"""Every task and queue, declared once (issue 15.3): routing, queue order, the pipelines'
chains, what an exception report says failed, and which compose worker serves which queue are
all read from these two tables.

Adding a stage is one `TaskSpec` row (and its module): workers/app.py routes it and imports its
module, workers/pipeline.py puts it in its chains, workers/alerts.py words its failure, and
tests/test_compose.py fails until docker-compose.yml's worker lists agree with `worker_queues`.
No data here imports anything: every other module may read it.
"""

from __future__ import annotations

from dataclasses import dataclass

DOOR, SYNC, FEEDBACK = "worker-door", "worker-sync", "worker-feedback"  # the compose workers


@dataclass(frozen=True)
class QueueSpec:
    name: str
    workers: tuple[str, ...]  # the docker-compose worker services that consume it


@dataclass(frozen=True)
class TaskSpec:
    name: str
    module: str  # where it is defined: the app imports it (Celery's `include`)
    queue: str
    chains: tuple[str, ...] = ()  # the pipelines it is a stage of, at its place in this table
    what_failed: str = ""  # the exception report's title when its job is dead-lettered


# A worker takes from the first non-empty queue in this order (kombu's "priority" strategy), not
# round robin, within each priority step (kombu pops every queue's step 0 before any step 3; the
# steps are per tenant, workers/pipeline.py, so a quiet tenant overtakes a burst at the door and
# at every stage). Within a step: flushes first (each releases many documents), then the later
# stages before the earlier ones, so work already started is finished before new work starts,
# and the door last: a burst is taken in as fast as its pipeline moves, rather than all of it
# before any of it moves. Starvation is bounded: what a stage queue holds is bounded by the
# tenants' admission windows (workers/admission.py). Each compose worker takes its queues in
# this order too.
QUEUES = (
    QueueSpec("zxs.batches", (SYNC,)),
    QueueSpec("zxs.alerts", (FEEDBACK,)),
    QueueSpec("zxs.payments", (FEEDBACK,)),
    QueueSpec("zxs.status", (FEEDBACK,)),
    QueueSpec("zxs.writeback", (SYNC,)),
    QueueSpec("zxs.send", (SYNC,)),
    QueueSpec("zxs.invoices", (SYNC,)),
    QueueSpec("zxs.purchase_orders", (SYNC,)),
    QueueSpec("zxs.items", (SYNC,)),
    QueueSpec("zxs.contacts", (SYNC,)),
    QueueSpec("zxs.fetch", (SYNC,)),
    # the door alone on worker-door: a burst passes it at once and waits per tenant in Redis
    # (README "Fairness between tenants"); worker-sync takes it last
    QueueSpec("zxs.ingest", (DOOR, SYNC)),
)
DEFAULT_QUEUE = "zxs.ingest"

SALES, PURCHASE = "sales", "purchase"
# The stages in chain order: a pipeline is the rows that name it, in this order.
TASKS = (
    TaskSpec(
        "zxsync.ingest",
        "tasks.ingest",
        "zxs.ingest",
        what_failed="The job was rejected at the door",
    ),
    TaskSpec(
        "zxsync.fetch_record",
        "tasks.fetch_record",
        "zxs.fetch",
        (SALES, PURCHASE),
        "The Zoho record could not be read",
    ),
    TaskSpec(
        "zxsync.contact_precheck",
        "tasks.contact_precheck",
        "zxs.contacts",
        (SALES,),
        "The Xero contact could not be found or created",
    ),
    TaskSpec(
        "zxsync.vendor_precheck",
        "tasks.vendor_precheck",
        "zxs.contacts",
        (PURCHASE,),
        "The Xero supplier could not be found or created",
    ),
    TaskSpec(
        "zxsync.item_precheck",
        "tasks.item_precheck",
        "zxs.items",
        (SALES, PURCHASE),
        "The Xero items could not be found or created",
    ),
    TaskSpec(
        "zxsync.invoice_create",
        "tasks.invoice_create",
        "zxs.invoices",
        (SALES,),
        "Xero did not create the invoice",
    ),
    TaskSpec(
        "zxsync.purchase_order_create",
        "tasks.purchase_order_create",
        "zxs.purchase_orders",
        (PURCHASE,),
        "Xero did not create the purchase order",
    ),
    TaskSpec(
        "zxsync.invoice_send",
        "tasks.invoice_send",
        "zxs.send",
        (SALES,),
        "The invoice could not be sent to the customer",
    ),
    TaskSpec(
        "zxsync.zoho_writeback",
        "tasks.zoho_writeback",
        "zxs.writeback",
        (SALES,),
        "The Xero invoice could not be written back to Zoho",
    ),
    TaskSpec(
        "zxsync.po_writeback",
        "tasks.po_writeback",
        "zxs.writeback",
        (PURCHASE,),
        "The Xero purchase order could not be written back to Zoho",
    ),
    # Xero -> Zoho
    TaskSpec("zxsync.po_status_poll", "tasks.po_status_poll", "zxs.status"),
    TaskSpec(
        "zxsync.payment_feedback",
        "tasks.payment_feedback",
        "zxs.payments",
        what_failed="Xero's payments could not be written to Zoho",
    ),
    TaskSpec("zxsync.payment_reconcile", "tasks.payment_feedback", "zxs.payments"),
    TaskSpec(
        "zxsync.contact_sync",
        "tasks.contact_sync",
        "zxs.payments",
        what_failed="The Xero contact's changes could not be written to its Zoho account",
    ),
    TaskSpec("zxsync.zoho_channel_renew", "tasks.zoho_channels", DEFAULT_QUEUE),
    TaskSpec("zxsync.zoho_sweep", "tasks.zoho_sweep", DEFAULT_QUEUE),
    # reports, nets and batches
    TaskSpec("zxsync.report_dead_letter", "workers.alerts", "zxs.alerts"),
    TaskSpec("zxsync.dlq_digest", "workers.alerts", "zxs.alerts"),
    TaskSpec("zxsync.redrive_stalled", "workers.redrive", "zxs.alerts"),
    TaskSpec("zxsync.release_deferred", "workers.deferral", DEFAULT_QUEUE),
    TaskSpec("zxsync.flush_batch", "workers.batching", "zxs.batches"),
    TaskSpec("zxsync.sweep_batches", "workers.batching", "zxs.batches"),
)


def queue_order() -> list[str]:
    return [queue.name for queue in QUEUES]


def routes() -> dict[str, str]:
    """Task name -> its queue."""
    return {task.name: task.queue for task in TASKS}


def task_modules() -> list[str]:
    return list(dict.fromkeys(task.module for task in TASKS))


def chain(pipeline: str) -> tuple[str, ...]:
    """The stages of a pipeline, in order."""
    return tuple(task.name for task in TASKS if pipeline in task.chains)


def what_failed() -> dict[str, str]:
    """Task name -> what an operator reads failed when its job is dead-lettered."""
    return {task.name: task.what_failed for task in TASKS if task.what_failed}


def worker_queues(service: str) -> list[str]:
    """The queues a compose worker service consumes, in `QUEUES` order."""
    return [queue.name for queue in QUEUES if service in queue.workers]
