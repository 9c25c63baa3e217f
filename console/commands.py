"""`zxsync connections` (the health table in a terminal) and `zxsync console` (the server)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the CLI imports this module: the health reader loads only when used
    from console.health import ConnectionHealth

out = Console()
COLOURS = {"healthy": "green", "attention": "yellow", "unhealthy": "red"}


def health_table(healths: list[ConnectionHealth]) -> Table:
    from console.health import age_words, since

    table = Table(title="Connections")
    for column in ("connection", "health", "tokens", "last sync", "Xero today", "jobs", "paused"):
        table.add_column(column, overflow="fold")
    for h in healths:
        colour = COLOURS[h.level]
        tokens = "\n".join(
            f"{t.provider}: {t.state}" + (f" ({t.command})" if t.command else "") for t in h.tokens
        )
        lag = f", oldest {age_words(h.oldest_waiting_seconds)}" if h.waiting else ""
        table.add_row(
            h.name,
            f"[{colour}]{h.level}[/{colour}]\n{h.words}",
            tokens,
            since(h.last_sync),
            f"{h.xero.calls_today}/{h.xero.day_limit}\nminute headroom {h.xero.minute_headroom}",
            f"{h.waiting} waiting{lag}\n{h.in_flight} in flight",
            f"by {h.paused.get('by', '?')}" if h.paused else "no",
        )
    return table


def connections() -> None:
    """Every connection's health (as the console shows it); exit 1 when any is unhealthy, for
    cron or a health check."""
    from console.health import read_health
    from workers.redis import get_redis
    from workers.settings import get_settings

    healths = read_health(get_redis(), get_settings(), hours=0)
    out.print(health_table(healths))
    if any(h.level == "unhealthy" for h in healths):
        raise typer.Exit(1)


def console(
    host: Annotated[str | None, typer.Option(help="Default: ZXS_CONSOLE_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: ZXS_CONSOLE_PORT.")] = None,
    hash_password: Annotated[
        bool, typer.Option("--hash", help="Print a password hash for ZXS_CONSOLE_USERS.")
    ] = False,
) -> None:
    """The ops console in a browser (and /metrics on ZXS_CONSOLE_METRICS_PORT); refuses to
    start without users (ZXS_CONSOLE_USERS or proxy auth) and ZXS_CONSOLE_SECRET."""
    from console.auth import hash_password as make_hash

    if hash_password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        out.print(make_hash(password), markup=False, highlight=False, soft_wrap=True)
        return
    from console.settings import get_console_settings
    from schemas.errors import ConfigurationError

    cs = get_console_settings()
    try:
        serve(cs.zxs_console_host if host is None else host, port or cs.zxs_console_port)
    except ConfigurationError as exc:
        out.print(f"[red]{exc.message}[/red]\n{exc.hint or ''}", highlight=False)
        raise typer.Exit(2) from None


def serve(host: str, port: int) -> None:
    """Run the console (and the metrics port) until interrupted."""
    import uvicorn

    from console.app import create_app
    from console.metrics import create_metrics_app
    from console.settings import get_console_settings
    from workers.redis import get_redis
    from workers.settings import get_settings

    cs, settings, redis_client = get_console_settings(), get_settings(), get_redis()
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                create_app(cs, settings, redis_client), host=host, port=port, log_level="warning"
            )
        )
    ]
    if cs.zxs_console_metrics_port:
        servers.append(
            uvicorn.Server(
                uvicorn.Config(
                    create_metrics_app(redis_client, settings),
                    host=host,
                    port=cs.zxs_console_metrics_port,
                    log_level="warning",
                )
            )
        )
    out.print(f"console on http://{host}:{port}/", highlight=False)

    async def run_all() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(run_all())
