"""A stage is declared once (issue 15.3): routing, queue order, the chains and the exception
reports' titles come from workers/catalog.py, and nothing is wired by importing a module
(tests/test_compose.py holds docker-compose.yml to the same table)."""

from __future__ import annotations

import uuid

import redis

from workers import catalog


def test_every_registered_task_is_declared_once_and_routed_to_a_declared_queue() -> None:
    from workers.app import STAGE_QUEUES, app

    app.loader.import_default_modules()
    # the product's tasks (zxsync.*), not what a test registers for itself (zxsync.test_, or on
    # a test's own app, which Celery shares with every app)
    registered = {
        n for n in app.tasks if n.startswith("zxsync.") and not n.startswith("zxsync.test_")
    }
    names = [task.name for task in catalog.TASKS]
    assert len(names) == len(set(names)) and set(names) == registered
    queues = set(catalog.queue_order())
    assert {task.queue for task in catalog.TASKS} <= queues
    assert {q.name for q in app.conf.task_queues} == queues
    for name in registered:  # what Celery's router answers, not only our table
        assert app.amqp.router.route({}, name)["queue"].name == STAGE_QUEUES[name], name


def test_the_chains_alerts_and_modules_are_read_from_the_table() -> None:
    from workers.alerts import WHAT_FAILED, build_report
    from workers.app import TASK_MODULES
    from workers.deadletter import DeadLetter
    from workers.pipeline import PIPELINES

    assert (
        PIPELINES["Invoices"]
        == catalog.chain(catalog.SALES)
        == (
            "zxsync.fetch_record",
            "zxsync.contact_precheck",
            "zxsync.item_precheck",
            "zxsync.invoice_create",
            "zxsync.invoice_send",
            "zxsync.zoho_writeback",
        )
    )
    assert PIPELINES["Purchase_Orders"] == (
        "zxsync.fetch_record",
        "zxsync.vendor_precheck",
        "zxsync.item_precheck",
        "zxsync.purchase_order_create",
        "zxsync.po_writeback",
    )
    assert set(TASK_MODULES) == {task.module for task in catalog.TASKS}
    stages = {name for chain in PIPELINES.values() for name in chain}
    assert stages <= set(WHAT_FAILED), "a stage's failure has no words for the operator"
    letter = DeadLetter(
        stage="zxsync.purchase_order_create",
        connection="c",
        module="Purchase_Orders",
        record_id="7",
        error_kind="validation",
        error="x",
        hint="",
        field="",
        attempts=1,
        payload="{}",
        traceback="",
        failed_at="",
    )
    assert build_report(letter).title.startswith("Xero did not create the purchase order")


def test_a_finished_record_frees_its_slot_only_through_the_history_the_workers_build(
    redis_url: str,
) -> None:
    """Before: importing workers.admission hooked its release into every RecordHistory."""
    import workers.admission  # noqa: F401  (imported, it must wire nothing)
    from workers.history import RecordHistory
    from workers.outcomes import record_history
    from workers.store import Database

    database = Database("sqlite://")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn = f"cat-{uuid.uuid4().hex[:8]}"
    admitted = f"zxs:admitted:{conn}"
    client.zadd(admitted, {f"{conn}:Invoices:1": 1.0, f"{conn}:Invoices:2": 1.0})
    RecordHistory(client, database).finish(conn, f"{conn}:Invoices:1", "created")
    assert client.zscore(admitted, f"{conn}:Invoices:1") == 1.0  # a bare history: outcome only
    record_history(client, database).finish(conn, f"{conn}:Invoices:2", "created")
    assert client.zscore(admitted, f"{conn}:Invoices:2") is None
