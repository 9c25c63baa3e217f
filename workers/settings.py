"""Deployment settings (pydantic-settings) and the per-connection options they point to.

Every variable is documented in .env.example; names are the env var names, case-insensitive.
An empty variable means its default (compose passes every name through, set or not), and any
setting can be read from a file named by `<NAME>_FILE` (Docker and Kubernetes secrets). A bad
value is reported naming the variable (and the connection's field), never echoing the value:
it may be a secret.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, TypeAdapter, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from schemas.connection import Connection
from schemas.errors import ConfigurationError, InvalidJob
from schemas.scopes import XERO_SCOPES, AppScopes

XeroTier = Literal["starter", "core", "plus", "advanced"]
# Calls a day per organisation from 2 March 2026 (developer.xero.com/faq/pricing-and-policy-
# updates; FACTS "The 2026 platform"): Starter 1,000, the paid tiers keep 5,000.
TIER_DAY_LIMITS: dict[str, int] = {
    "starter": 1000,
    "core": 5000,
    "plus": 5000,
    "advanced": 5000,
}


class Settings(BaseSettings):
    """Process-wide settings read from the environment (and `.env` if present)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    redis_url: str | None = Field(None, description="Empty: start an embedded redis-server.")
    zxs_redis_sentinel_master: str = Field(
        "mymaster", description="The Sentinel master name of a sentinel:// REDIS_URL."
    )
    zxs_redis_namespace: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="Prefix of every Redis key (workers/keys.py), so deployments share a Redis.",
    )
    xero_api_url: str = "https://api.xero.com/api.xro/2.0"
    xero_identity_url: str = "https://identity.xero.com"
    zoho_api_url: str = "https://www.zohoapis.com"
    zoho_accounts_url: str = "https://accounts.zoho.com"
    xero_client_id: str = ""
    xero_client_secret: SecretStr = SecretStr("")
    zoho_client_id: str = ""
    zoho_client_secret: SecretStr = SecretStr("")
    zxs_connections: str = Field("", description="JSON list of connections (or use the file).")
    zxs_connections_file: Path | None = None
    zxs_data_dir: Path = Path.home() / ".zxsync"
    database_url: SecretStr = Field(
        SecretStr(""), description="PostgreSQL; empty: a SQLite file under ZXS_DATA_DIR."
    )
    zxs_history_days: int = Field(400, ge=1, description="Record history kept this many days.")
    zxs_audit_days: int = Field(2555, ge=1, description="Operator audit kept this many days.")
    zxs_http_timeout: float = 30.0
    zxs_max_retries: int = 8
    zxs_retry_backoff_max: float = 600.0
    zxs_event_ttl_seconds: int = 7 * 24 * 3600
    zxs_lock_seconds: float = 60.0
    zxs_max_deliveries: int = Field(5, ge=1)
    zxs_stall_seconds: float = Field(
        900.0, gt=0, description="In-flight jobs idle this long are re-driven by beat."
    )
    zxs_tenant_window: int = Field(
        500, ge=1, description="Jobs per connection in the pipeline at once; the rest wait."
    )
    zxs_visibility_timeout: int | None = Field(
        None, gt=0, description="Seconds before Redis redelivers an unacknowledged task."
    )
    xero_authorize_url: str = "https://login.xero.com/identity/connect/authorize"
    xero_app_scopes: AppScopes = Field(
        "granular", description="granular: apps created from 2 March 2026; broad: older apps."
    )
    xero_scopes: str = Field("", description="Space-separated scopes replacing the set above.")
    zxs_token_key: SecretStr = Field(
        SecretStr(""), description="Fernet key(s), comma-separated: the first encrypts."
    )
    zxs_xero_per_minute: int = Field(60, ge=1)
    zxs_backfill_reserve: int = Field(
        200, ge=0, description="Xero calls a day `zxsync backfill` leaves for live traffic."
    )
    zxs_backfill_slice: int = Field(
        200, ge=1, description="Backfill jobs at the door at once (live events queue behind)."
    )
    xero_api_tier: XeroTier = Field(
        "starter", description="The Xero app's pricing tier: its daily call limit per tenant."
    )
    zxs_xero_per_day: int | None = Field(None, ge=1, description="Overrides the tier's limit.")
    zxs_xero_app_per_minute: int = Field(10_000, ge=1)
    zxs_xero_concurrent: int = Field(5, ge=1)
    zxs_zoho_per_minute: int = Field(0, ge=0, description="0: Zoho sets no minute limit.")
    zxs_zoho_per_day: int = Field(50_000, ge=1)
    zxs_zoho_concurrent: int = Field(10, ge=1)
    zxs_limit_minute_seconds: float = Field(60.0, gt=0)
    zxs_limit_guard_seconds: float = Field(0.5, ge=0)
    zxs_xero_rolling_windows: bool = False
    zxs_defer_poll_seconds: float = Field(30.0, gt=0)
    zxs_batching: bool = Field(
        True, description="False forces the naive path: one element per request, no cache."
    )
    zxs_batch_size: int = Field(50, ge=1, le=50, description="Elements per Xero request.")
    zxs_batch_max_wait: float = Field(
        1.0, ge=0, description="Flush a buffer whose oldest element waited this long."
    )
    zxs_batch_burst_wait: float = Field(
        5.0, ge=0, description="The same while the connection has more than a batch in flight."
    )
    zxs_flush_threads: int = Field(
        16,
        ge=0,
        le=64,
        description="Flushes in flight on threads of each pool process (0: a flush holds its "
        "process while it waits on Xero).",
    )
    zxs_fused_stages: bool = Field(
        True,
        description="A stage's next stages run in its task while they can (each served by "
        "this worker, none waiting on a batch or failing), instead of a broker hop each.",
    )
    zxs_flush_batches: int = Field(
        4,
        ge=1,
        le=25,
        description="Batches of one kind and connection one flusher sends at once, on threads "
        "(at most the API's calls in flight: ZXS_XERO_CONCURRENT, ZXS_ZOHO_CONCURRENT).",
    )
    zxs_idempotency_window_seconds: float = Field(
        360.0, ge=0, description="How long Xero keeps an Idempotency-Key (6 minutes)."
    )
    zxs_lookup_margin_seconds: float = Field(
        60.0, ge=0, description="A create that got no answer is looked up no sooner than this."
    )
    zxs_log_level: str = "INFO"
    zxs_log_json: bool = False
    sentry_dsn: SecretStr = SecretStr("")
    sentry_environment: str = "production"
    zxs_alert_webhook_url: SecretStr = SecretStr("")
    zxs_alert_email_to: str = ""
    zxs_smtp_host: str = ""
    zxs_smtp_port: int = 587
    zxs_smtp_user: str = ""
    zxs_smtp_password: SecretStr = SecretStr("")
    zxs_smtp_from: str = "zxsync@localhost"
    zxs_smtp_starttls: bool = True
    zxs_smtp_verify: bool = Field(
        True, description="Check the SMTP server's certificate and name (off: a lab server only)."
    )
    zxs_digest_hour_utc: int = Field(7, ge=0, le=23)
    zxs_payment_reconcile_seconds: float = Field(
        300.0, gt=0, description="Shortest interval of the payment safety-net poll."
    )
    zxs_payment_reconcile_max_seconds: float = Field(
        3540.0, gt=0, description="Longest interval while the payment poll finds nothing new."
    )
    zxs_credit_reconcile_seconds: float = Field(
        86400.0,
        gt=0,
        description="Interval of the credit safety net (credit notes, overpayments, prepayments "
        "changed without an invoice): 3 calls each time.",
    )
    zxs_po_poll_seconds: float = Field(300.0, gt=0, description="Shortest PO status poll.")
    zxs_po_poll_max_seconds: float = Field(
        7200.0, gt=0, description="Longest interval while the PO status poll finds nothing."
    )
    zxs_poll_tick_seconds: float = Field(
        60.0, gt=0, description="How often beat looks for polls that are due."
    )
    zxs_relay_url: str = Field("", description="The relay's public https base URL.")
    zxs_zoho_channel_seconds: float = Field(
        86400.0, gt=0, le=7 * 86400, description="Lifetime asked for a Zoho channel."
    )
    zxs_zoho_channel_check_seconds: float = Field(
        3600.0, gt=0, description="How often beat looks for channels to renew."
    )
    zxs_zoho_sweep_seconds: float = Field(
        600.0, gt=0, description="How often beat sweeps Zoho for changes never synced."
    )
    flower_basic_auth: SecretStr = SecretStr("")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment, then `<NAME>_FILE` files, then .env: a variable set both ways is
        refused by the file source rather than silently shadowed."""
        return (init_settings, env_settings, _FileSettings(settings_cls), dotenv_settings)

    @field_validator("zxs_data_dir", "zxs_connections_file")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value else value

    def xero_day_limit(self) -> int:
        """Calls a day per tenant: ZXS_XERO_PER_DAY, else the tier's (workers/ratelimit.py)."""
        return self.zxs_xero_per_day or TIER_DAY_LIMITS[self.xero_api_tier]

    def xero_consent_scopes(self) -> str:
        """The scopes `zxsync connect xero` asks for (schemas/scopes.py)."""
        return " ".join(self.xero_scopes.split()) or XERO_SCOPES[self.xero_app_scopes]

    def connections(self) -> dict[str, Connection]:
        """Connections by name: the bootstrap (ZXS_CONNECTIONS or ZXS_CONNECTIONS_FILE) and
        those managed in the database (`zxsync connections add`, workers/store/connections.py),
        re-read every few seconds. Without ZXS_TOKEN_KEY (their secrets are encrypted with it)
        only the bootstrap."""
        bootstrap = self.bootstrap_connections()
        key = self.zxs_token_key.get_secret_value()
        if not key:
            return bootstrap
        from clients.tokens import cipher_for
        from workers.store import get_database
        from workers.store.connections import effective

        return effective(bootstrap, get_database(), cipher_for(key))

    def bootstrap_connections(self) -> dict[str, Connection]:
        """Configured connections by name, from ZXS_CONNECTIONS or ZXS_CONNECTIONS_FILE."""
        raw = self.zxs_connections
        source = "ZXS_CONNECTIONS"
        if not raw and self.zxs_connections_file:
            source = f"ZXS_CONNECTIONS_FILE ({self.zxs_connections_file})"
            try:
                raw = self.zxs_connections_file.read_text()
            except OSError as exc:
                raise ConfigurationError(
                    f"ZXS_CONNECTIONS_FILE: cannot read {self.zxs_connections_file}: {exc.strerror}"
                ) from None
        try:
            return dict(_parse_connections(raw or ""))
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        except ValidationError as exc:
            raise ConfigurationError(
                f"{source}: {_first_problem(exc, raw or '')}",
                hint="README 'Connections' lists every option.",
            ) from None

    def connection(self, name: str) -> Connection:
        """One connection, or an error naming the field a relay got wrong."""
        try:
            return self.connections()[name]
        except KeyError:
            raise InvalidJob(
                f"unknown connection '{name}'",
                field="connection",
                hint="Use a connection name configured in ZXS_CONNECTIONS(_FILE).",
            ) from None


_CONNECTION_LIST = TypeAdapter(list[Connection])


@lru_cache(maxsize=8)
def _parse_connections(raw: str) -> tuple[tuple[str, Connection], ...]:
    """Parsed once per text (every stage reads its connection; connections are frozen), and
    again whenever the file's text changes."""
    items = _CONNECTION_LIST.validate_python(json.loads(raw) if raw else [])
    return tuple((conn.name, conn) for conn in items)


def _first_problem(exc: ValidationError, raw: str) -> str:
    """`connection 'acme' (item 0), field xero_tenant_id: Field required`, without the value."""
    error = exc.errors(include_input=False, include_url=False)[0]
    loc = list(error["loc"])
    where = ".".join(str(p) for p in loc)
    if loc and isinstance(loc[0], int):
        try:
            name = json.loads(raw)[loc[0]].get("name")
        except (ValueError, AttributeError, IndexError, KeyError, TypeError):
            name = None
        label = f"connection '{name}' (item {loc[0]})" if name else f"item {loc[0]}"
        where = f"{label}, field {'.'.join(str(p) for p in loc[1:]) or '(the item)'}"
    return f"{where}: {error['msg']}"


class _FileSettings(PydanticBaseSettingsSource):
    """`XERO_CLIENT_SECRET_FILE=/run/secrets/xero` sets XERO_CLIENT_SECRET to that file's text
    (one trailing newline dropped). Settings that already have a `_file` twin (ZXS_CONNECTIONS)
    keep their own reading of it."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` reads every field at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = {k.upper(): v for k, v in os.environ.items() if v}
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = f"{name.upper()}_FILE"
            if variable not in env or f"{name}_file" in self.settings_cls.model_fields:
                continue
            if name.upper() in env:
                raise ConfigurationError(f"set {name.upper()} or {variable}, not both")
            try:
                text = Path(env[variable]).read_text()
            except OSError as exc:
                raise ConfigurationError(
                    f"{variable}: cannot read {env[variable]}: {exc.strerror}"
                ) from None
            values[name] = text.removesuffix("\n")
        return values


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; a bad variable is a ConfigurationError naming it, never echoing
    its value (pydantic's own message would print it, and it may be a secret)."""
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        variable = ".".join(str(p) for p in error["loc"]).upper()
        raise ConfigurationError(
            f"{variable}: {error['msg']}", field=variable, hint="See .env.example."
        ) from None
