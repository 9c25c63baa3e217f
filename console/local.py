"""A console for a local stack (the demo, the browser test): one operator with a fresh random
password, a fresh session secret, plain-HTTP cookies on loopback only."""

from __future__ import annotations

import secrets

from console.app import create_app
from console.auth import hash_password
from console.settings import ConsoleSettings
from sandbox.server import ThreadedServer


def start_local_console(user: str = "demo", port: int | None = None) -> tuple[ThreadedServer, str]:
    """Serve the console on 127.0.0.1 for this process's settings; returns it and the password."""
    from workers.redis import get_redis
    from workers.settings import get_settings

    password = secrets.token_urlsafe(12)
    cs = ConsoleSettings(
        zxs_console_users=f"{user}:operator:{hash_password(password)}",
        zxs_console_secret=secrets.token_urlsafe(32),
        zxs_console_cookie_secure=False,  # http://127.0.0.1 only
    )
    server = ThreadedServer(create_app(cs, get_settings(), get_redis()), port=port).start()
    return server, password
