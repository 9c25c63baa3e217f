"""`zxsync`: the operator's command line (typer)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from console.commands import console as console_command
from relay.cli import relay
from zxsync.ops import check, dlq_app, flower, health, status

app = typer.Typer(
    help="Zoho CRM -> Xero sync: workers, relays' enqueue, sandbox and demo.", no_args_is_help=True
)
console = Console()
app.add_typer(dlq_app, name="dlq")
app.add_typer(__import__("zxsync.connect").connect.app, name="connect")
app.add_typer(__import__("zxsync.zoho").zoho.app, name="zoho")
app.add_typer(__import__("zxsync.setup").setup.app, name="setup")
app.command()(status)
app.command()(flower)
app.command()(check)
app.command()(relay)
app.command()(health)
app.add_typer(__import__("zxsync.connections").connections.app, name="connections")
app.command()(__import__("zxsync.backfill").backfill.backfill)
app.command(name="console")(console_command)
# the commands that may start an embedded Redis when REDIS_URL is not set (and stop it on exit)
EMBEDDED_REDIS_COMMANDS = {"demo", "worker", "sandbox"}


@app.callback()
def _embedded_redis_policy(ctx: typer.Context) -> None:
    # any other command uses REDIS_URL or a running embedded server, else says so and stops;
    # and every command reports a settings or connections mistake first, in one line
    from workers.redis import refuse_embedded_start
    from workers.settings import get_settings

    if ctx.invoked_subcommand not in EMBEDDED_REDIS_COMMANDS:
        refuse_embedded_start()
    if ctx.invoked_subcommand != "health":
        get_settings().connections()


@app.command(name="migrate-state")
def migrate_state() -> None:
    """Copy links, history, outcomes and open dead letters from Redis (where versions before
    the system of record kept them) into the database; safe to run again (README "State and
    storage")."""
    from workers.redis import get_redis
    from workers.store import get_database
    from zxsync.state import migrate_state as run

    counts = run(get_redis(), get_database())
    for what in ("links", "history", "outcomes", "dead letters"):
        print(f"{what}: {counts[what + ' read']} read, {counts[what + ' new']} new")


@app.command()
def export(
    connection: Annotated[str, typer.Option(help="The connection's name.")],
    since: Annotated[str, typer.Option(help="ISO date (UTC): outcomes from then on.")],
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """A CSV of the connection's synced and failed documents for the accountant: Zoho and
    Xero numbers, totals, Xero's status, the outcome and the last error."""
    from datetime import UTC, datetime

    from workers.store import get_database
    from workers.store.records import export_csv

    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        print(f"--since: {since!r} is not an ISO date (e.g. 2026-01-31)")
        raise typer.Exit(2) from None
    text = export_csv(get_database(), connection, start.replace(tzinfo=start.tzinfo or UTC))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


@app.command()
def retention() -> None:
    """Delete record history older than ZXS_HISTORY_DAYS and audit lines older than
    ZXS_AUDIT_DAYS (run it daily, e.g. from cron); links, outcomes and dead letters stay."""
    from workers.settings import get_settings
    from workers.store import get_database
    from workers.store.records import purge

    settings = get_settings()
    done = purge(get_database(), settings.zxs_history_days, settings.zxs_audit_days)
    print(f"history: {done.history} deleted, audit: {done.audit} deleted")


@app.command()
def demo(
    invoices: Annotated[int, typer.Option(help="Zoho invoices to seed.")] = 24,
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 180.0,
    keep_console: Annotated[
        bool, typer.Option("--console", help="Keep the demo up with the ops console (Ctrl-C).")
    ] = False,
    console_port: Annotated[int, typer.Option(help="The console's port with --console.")] = 8090,
) -> None:
    """Run the whole pipeline locally (embedded Redis, sandboxes, a worker) and summarise."""
    from zxsync.demo import run_demo

    raise typer.Exit(
        run_demo(
            invoices=invoices,
            concurrency=concurrency,
            timeout=timeout,
            keep_console=keep_console,
            console_port=console_port,
        )
    )


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
    from schemas.errors import InvalidJob
    from workers.settings import get_settings

    try:
        job = SyncJob.model_validate(payload)
        get_settings().connection(job.connection)  # the door would dead-letter it
    except ValidationError as exc:
        for err in exc.errors():
            console.print(f"[red]rejected[/red] {'.'.join(map(str, err['loc']))}: {err['msg']}")
        raise typer.Exit(2) from None
    except InvalidJob as exc:
        console.print(f"[red]rejected[/red] {exc.field}: {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    submit(job)
    console.print(f"enqueued {job.module} {job.record_id} (event {job.event_id})")


@app.command()
def sandbox(
    invoices: Annotated[int, typer.Option(help="Zoho invoices to seed.")] = 24,
    minute_seconds: Annotated[float, typer.Option(help="Length of a sandbox minute.")] = 60.0,
) -> None:
    """Run the Xero and Zoho sandboxes in the foreground, seeded, and print the settings to use
    (on REDIS_URL's Redis when set, else an embedded one stopped with the sandboxes)."""
    import contextlib
    import signal
    import time

    from sandbox.config import SandboxConfig
    from sandbox.seed import build_dataset, load_dataset
    from workers.settings import get_settings
    from zxsync.demo import CONNECTION
    from zxsync.stack import LocalStack

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (docker stop, kill) stops as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, stop)
    config = SandboxConfig.from_env(minute_seconds=minute_seconds)  # ZXS_SANDBOX_*
    # a stop may come at any point, even while the settings are still being printed (a
    # supervisor that read the first line): the stack stops, and the exit is still 0
    stack = LocalStack([CONNECTION], config, redis_url=get_settings().redis_url)
    with contextlib.suppress(KeyboardInterrupt), stack:
        load_dataset(stack.zoho, CONNECTION.zoho_org_id, build_dataset(invoices=invoices))
        console.print("Sandboxes running. Put these in your .env (Ctrl-C to stop):")
        for name, value in stack.env.items():
            console.print(
                f"{name}={value}" if name != "ZXS_CONNECTIONS" else f"{name}='{value}'",
                markup=False,
                soft_wrap=True,
            )
        while True:
            time.sleep(3600)
    console.print("stopped")


def main() -> None:
    """The `zxsync` entry point: a configuration or connection mistake ends in one line naming
    the setting or field at fault and a non-zero exit, not a traceback."""
    import redis

    from schemas.errors import SyncError

    try:
        app()
    except SyncError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        console.print(f"[red]error[/red]: {exc.message}{hint}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except redis.RedisError as exc:
        console.print(
            f"[red]error[/red]: Redis (REDIS_URL) is unreachable: {type(exc).__name__}: {exc}",
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
