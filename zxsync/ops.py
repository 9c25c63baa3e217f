"""Operator commands: the dead-letter queue, a record's history, and Flower."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from workers.deadletter import DeadLetterStore

if TYPE_CHECKING:
    from redis import Redis

dlq_app = typer.Typer(help="Dead-letter queue: list, show, replay, discard.", no_args_is_help=True)
console = Console()


def _store() -> DeadLetterStore:
    from workers.redis import get_redis

    return DeadLetterStore(get_redis())


@dlq_app.command("list")
def dlq_list(
    connection: Annotated[str | None, typer.Option()] = None,
    stage: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Open dead letters, oldest first."""
    letters = [
        dl
        for dl in _store().list(count=100_000)
        if (not connection or dl.connection == connection)
        and (not stage or dl.stage.endswith(stage))
    ]
    table = Table(title=f"{len(letters)} open dead letters")
    for column in ("id", "failed at", "connection", "record", "stage", "kind", "error"):
        table.add_column(column, overflow="fold")
    for dl in letters:
        table.add_row(
            dl.id,
            dl.failed_at[:19],
            dl.connection,
            f"{dl.module} {dl.record_id}",
            dl.stage.removeprefix("zxsync."),
            dl.error_kind,
            dl.error[:120],
        )
    console.print(table)


@dlq_app.command("show")
def dlq_show(letter_id: str) -> None:
    """Everything about one dead letter: the report, deliveries, payload and traceback."""
    from workers.alerts import build_report

    letter = _store().get(letter_id)
    if letter is None:
        console.print(f"[red]no open dead letter {letter_id}[/red]")
        raise typer.Exit(1)
    console.print(build_report(letter).text(), markup=False)
    console.print(
        f"\nkind {letter.error_kind} · attempts {letter.attempts} · failed at {letter.failed_at}",
        markup=False,
    )
    for channel, delivery in sorted(_store().deliveries(letter_id).items()):
        attempt = delivery.model_dump(exclude={"channel"})
        console.print(f"alert via {channel}: {attempt}", markup=False)
    console.print(f"\npayload: {letter.payload}\n\n{letter.traceback}", markup=False)


@dlq_app.command("replay")
def dlq_replay(
    letter_id: Annotated[str | None, typer.Argument()] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Replay every open letter.")] = False,
    stage: Annotated[str | None, typer.Option(help="With --all: only this stage.")] = None,
    connection: Annotated[
        str | None, typer.Option(help="With --all: only this connection.")
    ] = None,
) -> None:
    """Re-enqueue fixed jobs (the Zoho record is read again; no duplicate Xero documents)."""
    from workers.replay import replay

    store = _store()
    if all_letters:
        letters = [
            dl
            for dl in store.list(count=100_000)
            if (not stage or dl.stage.endswith(stage))
            and (not connection or dl.connection == connection)
        ]
    elif letter_id:
        found = store.get(letter_id)
        letters = [found] if found else []
    else:
        console.print("[red]give a dead-letter id or --all[/red]")
        raise typer.Exit(2)
    if not letters:
        console.print("[yellow]nothing to replay[/yellow]")
        raise typer.Exit(1)
    for letter in letters:
        event_id = replay(letter, store)
        console.print(
            f"replayed {letter.id}: {letter.module} {letter.record_id} (event {event_id})",
            markup=False,
        )


@dlq_app.command("accept-total")
def dlq_accept_total(letter_id: str) -> None:
    """Accept Xero's total of an invoice that differs from Zoho's, then replay: the record
    turns Synced (a later change of either total is judged again)."""
    from workers.idempotency import IdempotencyStore
    from workers.redis import get_redis
    from workers.replay import replay
    from workers.settings import get_settings

    store = _store()
    letter = store.get(letter_id)
    if letter is None or letter.error_kind != "total_differs":
        console.print(f"[red]no open total_differs dead letter {letter_id}[/red]")
        raise typer.Exit(1)
    ttl = get_settings().zxs_event_ttl_seconds
    pair = IdempotencyStore(get_redis(), ttl).accept_total(
        letter.connection, f"{letter.module}:{letter.record_id}"
    )
    if pair is None:
        console.print(f"[red]{letter.module} {letter.record_id}: no total difference stands[/red]")
        raise typer.Exit(1)
    event_id = replay(letter, store)
    console.print(
        f"accepted Xero total {pair.xero} for Zoho {pair.zoho}; replayed {letter.id} "
        f"(event {event_id})",
        markup=False,
    )


@dlq_app.command("discard")
def dlq_discard(letter_id: str) -> None:
    """Remove a dead letter that needs no replay (e.g. fixed by hand in Xero)."""
    if not _store().discard(letter_id):
        console.print(f"[red]no open dead letter {letter_id}[/red]")
        raise typer.Exit(1)
    console.print(f"discarded {letter_id}")


def status(record_id: str) -> None:
    """Every stage a Zoho record went through, when, its Xero ids and any dead letter."""
    from workers.history import RecordHistory
    from workers.redis import get_redis

    redis_client = get_redis()
    history = RecordHistory(redis_client)
    keys = history.database.history_keys(record_id)
    if not keys:
        console.print(f"[yellow]no history for record {record_id}[/yellow]")
        raise typer.Exit(1)
    for key in keys:
        connection, module, _ = key.split(":")
        table = Table(title=f"{module} {record_id} on {connection}")
        for column in ("at", "stage", "event", "detail"):
            table.add_column(column, overflow="fold")
        for entry in history.entries(key):
            detail = {k: v for k, v in entry.items() if k not in {"at", "stage", "event"}}
            table.add_row(
                entry["at"][:23],
                entry["stage"].removeprefix("zxsync."),
                entry["event"],
                " ".join(f"{k}={v}" for k, v in detail.items()),
            )
        console.print(table)
        outcome = history.outcomes(connection).get(key)
        if outcome:
            console.print(f"outcome: {outcome[0]} {outcome[1]}", markup=False)
        link = history.database.links("invoice", connection, [f"{module}:{record_id}"]).get(
            f"{module}:{record_id}"
        )
        if link:
            console.print(f"Xero: {link}", markup=False)
        console.print(_tenant_window(redis_client, connection, key), markup=False)
    for letter in _store().list(count=100_000):
        if letter.record_id == record_id:
            console.print(f"[red]dead letter {letter.id}[/red] {letter.stage}: {letter.error}")


def _tenant_window(redis_client: Redis, connection: str, key: str) -> str:
    """The connection's admission figures, and the record's place if it waits for a slot."""
    from workers.admission import windows

    tenant = windows(redis_client)
    admitted, waiting = tenant.counts(connection)
    line = f"{connection}: {admitted} of {tenant.window} jobs admitted, {waiting} waiting"
    if waiting:
        keys = [entry.key for entry in tenant.waiting(connection)]
        if key in keys:
            line += f" (this record is number {keys.index(key) + 1})"
    return line


EXAMPLE_PASSWORDS = {"change-me", "changeme", "password", "admin", "flower"}
MIN_PASSWORD_LENGTH = 12


def flower(
    port: Annotated[int, typer.Option(help="TCP port.")] = 5555,
    address: Annotated[
        str,
        typer.Option(
            help="Interface (compose: 0.0.0.0 in the container, published on the "
            "host's 127.0.0.1 only)."
        ),
    ] = "127.0.0.1",
) -> None:
    """Flower behind basic auth (FLOWER_BASIC_AUTH), /metrics included; localhost by default."""
    from workers.settings import get_settings

    auth = get_settings().flower_basic_auth.get_secret_value()
    problem = flower_auth_problem(auth)
    if problem:
        console.print(f"[red]FLOWER_BASIC_AUTH: {problem}[/red]", highlight=False)
        raise typer.Exit(2)
    from workers.redis import resolve_redis_url

    # the values this command read (from files too) and the Redis it found (never a new
    # embedded one, which the exec'd Celery would start); no *_FILE twin left to conflict
    os.environ["FLOWER_BASIC_AUTH"] = auth
    os.environ["REDIS_URL"] = resolve_redis_url(get_settings())
    os.environ.pop("FLOWER_BASIC_AUTH_FILE", None)
    os.environ.pop("REDIS_URL_FILE", None)
    os.execv(
        sys.executable,
        [sys.executable, "-m", "zxsync.flower_guard", f"--port={port}", f"--address={address}"],
    )


def flower_auth_problem(auth: str) -> str | None:
    """Why these credentials (`user:password[,user2:password2]`) must not guard Flower, which
    shows task arguments and can revoke and kill tasks; None when they may."""
    if not auth:
        return "not set: give user:password (Flower shows task arguments and controls workers)"
    for credential in auth.split(","):
        user, sep, password = credential.partition(":")
        if not sep or not user or not password:
            return "give user:password (comma-separated for several users)"
        if password.lower() in EXAMPLE_PASSWORDS:
            return f"the password of '{user}' is the example's; choose your own"
        if len(password) < MIN_PASSWORD_LENGTH:
            return f"the password of '{user}' is shorter than {MIN_PASSWORD_LENGTH} characters"
    return None


def check() -> None:
    """Check every connection's granted Xero scopes, then its mapping against its Xero
    organisation's Accounts, TaxRates and TrackingCategories; exit 1 naming each scope a
    feature lacks (and the command that fixes it) and each setting Xero would refuse.

    Each connection on its own: one that cannot be checked (Xero answering 404 or 5xx, the
    token endpoint unreachable, a revoked token) is a warning with a hint and an exception
    report for it alone, and the others are still checked (`zxsync worker` then starts)."""
    from workers.settings import get_settings

    failed = False
    for name in get_settings().connections():
        try:
            failed |= _check_connection(name)
        except Exception as exc:  # any failure is this connection's, never the others'
            failed = True
            _cannot_check(name, exc)
    if failed:
        raise typer.Exit(1)


def _check_connection(name: str) -> bool:
    """Scopes and mapping of one connection, printed; whether anything is wrong."""
    from clients.tokens import granted_scopes
    from schemas.checks import connection_problems
    from schemas.scopes import missing_scopes
    from workers.context import build_context
    from workers.ratelimit import xero_calls_today

    reconnect = f"zxsync connect xero --connection {name}"
    granted = granted_scopes(name)
    problems: list[str] = []
    settings_readable = granted is None or not any(
        scope.startswith("accounting.settings") for _, scope in missing_scopes(granted)
    )
    if settings_readable:
        ctx = build_context(name)
        xero = ctx.xero
        problems = connection_problems(
            ctx.connection, xero.accounts(), xero.tax_rates(), xero.tracking_categories()
        )
        granted = granted if granted is not None else granted_scopes(name)  # now refreshed
    missing = missing_scopes(granted) if granted is not None else []
    for feature, scope in missing:
        console.print(
            f"[red]{name}[/red]: {feature}: needs {scope}, not granted: run `{reconnect}`",
            highlight=False,
        )
    if granted is None:
        console.print(
            f"[yellow]{name}[/yellow]: granted Xero scopes not recorded; `{reconnect}` records "
            "them",
            highlight=False,
        )
    for problem in problems:
        console.print(f"[red]{name}[/red]: {problem}", highlight=False)
    if not problems and not missing:
        console.print(f"[green]{name}[/green]: fits its Xero organisation", highlight=False)
    usage = xero_calls_today(name)
    console.print(
        f"{name}: Xero calls today {usage.used} / {usage.limit} ({usage.tier} tier)",
        highlight=False,
    )
    return bool(problems or missing)


def _cannot_check(name: str, exc: Exception) -> None:
    """A warning naming the connection, what to do, and an exception report for it."""
    from rich.markup import escape

    from schemas.errors import ApiError, AuthRevoked, MissingScope, TransportError
    from workers.alerts import report_connection_problem
    from workers.logs import log
    from workers.redact import redact
    from workers.settings import get_settings

    if isinstance(exc, AuthRevoked | MissingScope):
        hint = f"reconnect: run `zxsync connect xero --connection {name}`"
    elif isinstance(exc, TransportError):
        hint = "Xero (XERO_API_URL / XERO_IDENTITY_URL) could not be reached from here: check "
        hint += "the network, then run `zxsync check`"
    elif isinstance(exc, ApiError):
        hint = f"Xero answered HTTP {exc.status} for this organisation: check its tenant id and "
        hint += f"XERO_API_URL, then `zxsync check` (or `zxsync connect xero --connection {name}`)"
    else:
        hint = "a defect: report it with the log's traceback, then run `zxsync check`"
    error = redact(exc.message if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}")
    console.print(
        f"[yellow]{name}[/yellow]: could not be checked: {escape(error)}; {escape(hint)}",
        highlight=False,
    )
    log.warning("check.connection_failed", connection=name, error=error, kind=type(exc).__name__)
    report_connection_problem(get_settings(), name, exc, hint)


def health(
    redis_ping: Annotated[
        bool, typer.Option("--redis", help="Redis (REDIS_URL) answers PING.")
    ] = False,
    url: Annotated[
        list[str] | None, typer.Option(help="An HTTP endpoint that must answer 200.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="A file that must have changed within --max-age.")
    ] = None,
    max_age: Annotated[float, typer.Option(help="Seconds, for --file.")] = 900.0,
) -> None:
    """A container health check: each dependency named must answer; exit 1 naming the first
    that does not (never starts an embedded Redis)."""
    import time
    import urllib.request

    import redis

    from workers.settings import get_settings

    if redis_ping:
        redis_url = get_settings().redis_url
        if not redis_url:
            _fail("REDIS_URL is not set")
        from workers.redis import fail_fast, get_redis

        fail_fast(3.0)  # the client every process uses: `sentinel://` asks the Sentinels
        try:
            get_redis().ping()
        except redis.RedisError as exc:
            _fail(f"Redis (REDIS_URL) does not answer: {type(exc).__name__}")
    for endpoint in url or []:
        try:
            with urllib.request.urlopen(endpoint, timeout=5) as answer:
                status = answer.status
        except OSError as exc:
            _fail(f"{endpoint} does not answer: {exc}")
        if status != 200:
            _fail(f"{endpoint} answered {status}")
    if file is not None:
        # dbm may add a suffix (beat's shelve: .db, or .dat/.dir with dbm.dumb)
        written = [
            p.stat().st_mtime for p in (file, *file.parent.glob(f"{file.name}.*")) if p.exists()
        ]
        if not written:
            _fail(f"{file} does not exist")
        age = time.time() - max(written)
        if age > max_age:
            _fail(f"{file} has not changed for {age:.0f} s (more than {max_age:.0f} s)")
    console.print("healthy", highlight=False)


def _fail(line: str) -> NoReturn:
    console.print(f"[red]unhealthy[/red]: {line}", highlight=False)
    raise typer.Exit(1)
