"""The console's own settings (ZXS_CONSOLE_*), apart from the workers' (workers/settings.py).

Credentials come from the environment or from files (`*_FILE`, e.g. Docker secrets), never from
the command line, and the console refuses to start without them (console/auth.py).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    # an empty variable means the default, as for the workers' settings (compose passes `${X:-}`)
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    zxs_console_users: SecretStr = Field(
        SecretStr(""), description="name:role:hash, comma-separated (zxsync console --hash)."
    )
    zxs_console_users_file: Path | None = None
    zxs_console_secret: SecretStr = Field(
        SecretStr(""), description="Signs session cookies: 32+ random characters."
    )
    zxs_console_secret_file: Path | None = None
    zxs_console_proxy_user_header: str = Field(
        "", description="Trust this header (set by an authenticating proxy) as the user name."
    )
    zxs_console_proxy_operators: str = Field(
        "", description="Proxy-authenticated users with the operator role, comma-separated."
    )
    zxs_console_cookie_secure: bool = Field(
        True, description="Send the session cookie over HTTPS only (false: plain-HTTP localhost)."
    )
    zxs_console_session_hours: float = Field(8.0, gt=0)
    zxs_console_host: str = "127.0.0.1"
    zxs_console_port: int = 8090
    zxs_console_metrics_port: int = Field(
        9108, description="/metrics for Prometheus, on its own (internal) port; 0: off."
    )

    def users_text(self) -> str:
        if self.zxs_console_users_file:
            return self.zxs_console_users_file.read_text().strip()
        return self.zxs_console_users.get_secret_value()

    def secret(self) -> str:
        if self.zxs_console_secret_file:
            return self.zxs_console_secret_file.read_text().strip()
        return self.zxs_console_secret.get_secret_value()


@lru_cache(maxsize=1)
def get_console_settings() -> ConsoleSettings:
    return ConsoleSettings()
