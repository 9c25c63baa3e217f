"""`zxsync zoho watch --connection NAME`: the Zoho notification channel of a connection."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Zoho CRM notification channels.", no_args_is_help=True)
console = Console()


@app.command()
def watch(
    connection: Annotated[str, typer.Option("--connection", "-c", help="Connection name.")],
    notify_url: Annotated[
        str | None,
        typer.Option(help="The relay's notifications URL (default: from ZXS_RELAY_URL)."),
    ] = None,
) -> None:
    """Create (or renew) the connection's notification channel; beat keeps renewing it."""
    from tasks.zoho_channels import watch as make_channel
    from workers.context import build_context

    channel = make_channel(build_context(connection), notify_url)
    console.print(
        f"[green]watching[/green] {', '.join(channel.events)} for '{connection}' -> "
        f"{channel.notify_url}; channel {channel.channel_id} expires "
        f"{channel.expires().isoformat()} (beat renews it at half its life)",
        soft_wrap=True,
        highlight=False,
    )
