"""`zxsync relay`: serve the webhook relay (put it behind HTTPS; Xero requires it)."""

from __future__ import annotations

from typing import Annotated

import typer


def relay(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
) -> None:
    """Receive Xero and Zoho webhooks and enqueue them as jobs (README "Payment feedback")."""
    import uvicorn

    from relay.app import create_relay_app
    from workers.logs import configure_logging
    from workers.settings import get_settings

    settings = get_settings()
    configure_logging(settings.zxs_log_level, settings.zxs_log_json)
    uvicorn.run(create_relay_app(settings), host=host, port=port, proxy_headers=True)
