"""docker-compose.yml as `docker compose config` would resolve it (issue #14.1, .5, .6): there
is no Docker engine or compose plugin on this machine, so the file is read with PyYAML (merge
keys included) and interpolated the way compose does, then each service is checked for what it
gets: environment, health check, user and published addresses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from console.settings import ConsoleSettings
from workers.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = (
    "worker-door",
    "worker-sync",
    "worker-feedback",
    "beat",
    "flower",
    "relay",
    "console",
)
API_SECRETS = {
    "XERO_CLIENT_SECRET",
    "ZOHO_CLIENT_SECRET",
    "ZXS_TOKEN_KEY",
    "ZXS_SMTP_PASSWORD",
    "SENTRY_DSN",
    "ZXS_ALERT_WEBHOOK_URL",
}
_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        given = env.get(name)
        if op in (":-", "-"):
            return given if (given or (op == "-" and given is not None)) else arg
        if op in (":?", "?") and not given:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return given or ""

    return _VAR.sub(one, value)


def config(env: dict[str, str]) -> dict[str, Any]:
    return interpolate(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), env)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The documented first step: `cp .env.example .env`."""
    return config(dotenv(ROOT / ".env.example"))["services"]


def test_config_passes_after_the_documented_copy_and_names_what_is_missing_without() -> None:
    with pytest.raises(ValueError, match="REDIS_PASSWORD"):
        config({})
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        config({"REDIS_PASSWORD": "x"})
    assert config(dotenv(ROOT / ".env.example"))["services"]


def test_every_service_has_a_health_check_of_what_it_depends_on(
    services: dict[str, Any],
) -> None:
    for name in ("redis", *APP_SERVICES):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    beat = " ".join(services["beat"]["healthcheck"]["test"])
    assert "--redis" in beat and "--file" in beat
    flower = " ".join(services["flower"]["healthcheck"]["test"])
    assert "--redis" in flower and "/healthcheck" in flower
    assert "/health" in " ".join(services["relay"]["healthcheck"]["test"])


def test_app_services_run_unprivileged_and_publish_on_loopback_only(
    services: dict[str, Any],
) -> None:
    for name in APP_SERVICES:
        service = services[name]
        assert service["user"] not in ("root", "0", "0:0")
        assert service.get("read_only") is True and service.get("cap_drop") == ["ALL"]
        assert "env_file" not in service, f"{name} reads .env wholesale"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_each_service_gets_only_the_secrets_it_needs(services: dict[str, Any]) -> None:
    def names(service: str) -> set[str]:
        return set(services[service].get("environment", {}))

    def secrets(service: str) -> set[str]:
        return {n.removesuffix("_FILE") for n in names(service)} & (
            API_SECRETS | {"FLOWER_BASIC_AUTH"}
        )

    # webhook secrets only (in connections), and the token key of the connections kept in
    # the database (issue #20.4): no OAuth client secret, SMTP password or Sentry DSN
    assert secrets("relay") == {"ZXS_TOKEN_KEY"}
    assert "ZXS_CONNECTIONS" in names("relay")
    assert secrets("flower") == {"FLOWER_BASIC_AUTH"}
    assert secrets("beat") == set()
    for worker in ("worker-door", "worker-sync", "worker-feedback"):
        assert secrets(worker) == API_SECRETS, f"{worker} calls the APIs and sends alerts"
        assert "FLOWER_BASIC_AUTH" not in names(worker)
    assert secrets("console") == API_SECRETS, "record lookup reads Zoho and Xero"
    assert {"ZXS_CONSOLE_USERS", "ZXS_CONSOLE_SECRET"} <= names("console")


def test_every_variable_a_service_gets_is_a_setting_and_its_defaults_load(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in APP_SERVICES:
        fields = {f.upper() for f in Settings.model_fields}
        if name == "console":
            fields |= {f.upper() for f in ConsoleSettings.model_fields}
        environment = services[name]["environment"]
        for variable in environment:
            assert variable in fields or variable.removesuffix("_FILE") in fields, (
                f"{name}: {variable} is not a setting (typo?)"
            )
        for variable, value in environment.items():
            monkeypatch.setenv(variable, str(value))
        Settings(_env_file=None)  # empty values mean the default, not a parse error
        ConsoleSettings(_env_file=None)


def test_postgres_keeps_its_data_on_a_volume_answers_its_health_check_and_is_not_published(
    services: dict[str, Any],
) -> None:
    """Issue #20.2: the system of record survives a container, and only the processes that
    read or write it get its URL (it carries the password)."""
    postgres = services["postgres"]
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "ports" not in postgres
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "change-me"
    for name in ("worker-door", "worker-sync", "worker-feedback", "console", "relay"):
        url = services[name]["environment"]["DATABASE_URL"]
        assert url == "postgresql://zxsync:change-me@postgres:5432/zxsync", name
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("beat", "flower"):
        assert "DATABASE_URL" not in services[name]["environment"], name


def test_each_worker_consumes_the_queues_the_catalog_gives_it(services: dict[str, Any]) -> None:
    """Issue #15.3: docker-compose.yml's queue lists are workers/catalog.py's, in its order, and
    every queue has a worker."""
    from workers import catalog

    workers = [name for name in services if name.startswith("worker-")]
    consumed: set[str] = set()
    for name in workers:
        command = services[name]["command"]
        queues = command[command.index("--queues") + 1].split(",")
        assert queues == catalog.worker_queues(name), f"{name} disagrees with workers/catalog.py"
        consumed |= set(queues)
    assert consumed == set(catalog.queue_order())
    declared = {w for queue in catalog.QUEUES for w in queue.workers}
    assert declared == set(workers)
