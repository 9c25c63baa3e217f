"""`zxsync`: the operator's command line (typer)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from relay.cli import relay
from zxsync.ops import check, dlq_app, flower, status

app = typer.Typer(
    help="Zoho CRM -> Xero sync: workers, relays' enqueue, sandbox and demo.", no_args_is_help=True
)
console = Console()
app.add_typer(dlq_app, name="dlq")
app.add_typer(__import__("zxsync.connect").connect.app, name="connect")
app.add_typer(__import__("zxsync.zoho").zoho.app, name="zoho")
app.command()(status)
app.command()(flower)
app.command()(check)
app.command()(relay)


@app.command()
def demo(
    invoices: Annotated[int, typer.Option(help="Zoho invoices to seed.")] = 24,
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 180.0,
) -> None:
    """Run the whole pipeline locally (embedded Redis, sandboxes, a worker) and summarise."""
    from zxsync.demo import run_demo

    raise typer.Exit(run_demo(invoices=invoices, concurrency=concurrency, timeout=timeout))


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 2,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: all).")
    ] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Start a Celery worker for the pipeline's queues."""
    from workers.app import QUEUE_ORDER
    from workers.app import app as celery_app

    try:
        check()  # a misfit mapping is reported before the first document fails on it
    except typer.Exit:
        console.print(
            "[yellow]starting anyway: documents that need these settings will be "
            "dead-lettered with the same reason[/yellow]"
        )
    selected = queues or ",".join(QUEUE_ORDER)
    celery_app.worker_main(
        ["worker", "-Q", selected, "-c", str(concurrency), "--loglevel", loglevel]
    )


@app.command()
def enqueue(
    connection: Annotated[str | None, typer.Option()] = None,
    module: Annotated[str, typer.Option()] = "Invoices",
    record_id: Annotated[str | None, typer.Option()] = None,
    event: Annotated[str, typer.Option()] = "insert",
    event_id: Annotated[str | None, typer.Option(help="Default: a new UUID.")] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="A job as JSON ('-' for stdin).")
    ] = None,
) -> None:
    """Enqueue one job exactly as a relay does (validated here first, and again at the door)."""
    from pydantic import ValidationError

    from schemas.jobs import SyncJob
    from workers.pipeline import submit

    if json_file is not None:
        raw = sys.stdin.read() if str(json_file) == "-" else json_file.read_text()
        payload = json.loads(raw)
    else:
        payload = {
            "connection": connection,
            "module": module,
            "record_id": record_id,
            "event": event,
            "event_id": event_id or str(uuid.uuid4()),
        }
    try:
        job = SyncJob.model_validate(payload)
    except ValidationError as exc:
        for err in exc.errors():
            console.print(f"[red]rejected[/red] {'.'.join(map(str, err['loc']))}: {err['msg']}")
        raise typer.Exit(2) from None
    submit(job)
    console.print(f"enqueued {job.module} {job.record_id} (event {job.event_id})")


@app.command()
def sandbox(
    invoices: Annotated[int, typer.Option(help="Zoho invoices to seed.")] = 24,
    minute_seconds: Annotated[float, typer.Option(help="Length of a sandbox minute.")] = 60.0,
) -> None:
    """Run the Xero and Zoho sandboxes in the foreground, seeded, and print the settings to use."""
    import time

    from sandbox.config import SandboxConfig
    from sandbox.seed import build_dataset, load_dataset
    from zxsync.demo import CONNECTION
    from zxsync.stack import LocalStack

    with LocalStack([CONNECTION], SandboxConfig(minute_seconds=minute_seconds)) as stack:
        load_dataset(stack.zoho, CONNECTION.zoho_org_id, build_dataset(invoices=invoices))
        console.print("Sandboxes running. Put these in your .env (Ctrl-C to stop):")
        for name, value in stack.env.items():
            console.print(
                f"{name}={value}" if name != "ZXS_CONNECTIONS" else f"{name}='{value}'",
                markup=False,
                soft_wrap=True,
            )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("stopping")
