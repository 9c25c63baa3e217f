"""Issue #20.4: connections as data. `zxsync connections add|edit|remove|list` keep them in the
database (secrets encrypted), a running process sees a change without a restart, the
environment's connections are imported, and a mistake names the field, never the secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from typer.testing import CliRunner

import workers.store.connections as stored
from schemas.connection import Connection
from workers.settings import get_settings
from workers.store import get_database
from workers.store.schema import connections as table
from zxsync.cli import app

TOKEN = "xero-refresh-secret-0123456789"
BOOT = {"name": "boot", "xero_tenant_id": "t-boot", "zoho_org_id": "o-boot"}


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, wide_output: None) -> Iterator[None]:
    monkeypatch.setenv("ZXS_TOKEN_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("ZXS_CONNECTIONS", json.dumps([BOOT]))
    monkeypatch.setattr(stored, "REFRESH_SECONDS", 0.0)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["connections", *args])
    text = result.output + (str(result.exception) if result.exception else "")
    return result.exit_code, text


def test_added_edited_and_removed_connections_reach_a_running_process() -> None:
    settings = get_settings()  # one process, never restarted
    assert set(settings.connections()) == {"boot"}  # the bootstrap, imported
    with get_database().begin() as conn:
        assert [n for (n,) in conn.execute(select(table.c.name))] == ["boot"]
    new = {
        "name": "acme",
        "xero_tenant_id": "t-1",
        "zoho_org_id": "o-1",
        "xero_refresh_token": TOKEN,
    }
    code, text = run("add", json.dumps(new))
    assert code == 0, text
    assert settings.connection("acme").xero_tenant_id == "t-1"
    assert settings.connection("acme").xero_refresh_token.get_secret_value() == TOKEN  # type: ignore[union-attr]
    with get_database().begin() as conn:
        row = conn.execute(select(table).where(table.c.name == "acme")).one()
    assert TOKEN not in row.settings and TOKEN not in row.secrets  # encrypted at rest
    code, text = run("edit", "acme", "--set", "xero_base_currency=NZD")
    assert code == 0, text
    assert settings.connection("acme").xero_base_currency == "NZD"
    code, text = run("list")
    assert code == 0 and "acme" in text and "xero_refresh_token" in text and TOKEN not in text
    assert "ZXS_CONNECTIONS" in text and "database" in text
    code, text = run("remove", "acme")
    assert code == 0, text
    assert set(settings.connections()) == {"boot"}


def test_a_read_dumps_the_bootstrap_once_and_an_edit_of_it_is_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every stage reads its connection: the bootstrap's connections are dumped (for the
    cache's key) once per content, not at every read (issue #19), and a changed bootstrap is
    still a new key."""
    settings = get_settings()
    dumped: list[str] = []
    plain = stored._plain

    def counted(connection: Connection) -> dict[str, Any]:
        dumped.append(connection.name)
        return plain(connection)

    monkeypatch.setattr(stored, "_plain", counted)
    monkeypatch.setattr(stored, "REFRESH_SECONDS", 60.0)
    for _ in range(5):
        assert settings.connection("boot").zoho_org_id == "o-boot"
    assert len(dumped) <= 1
    monkeypatch.setenv("ZXS_CONNECTIONS", json.dumps([{**BOOT, "zoho_org_id": "o-edited"}]))
    get_settings.cache_clear()
    assert get_settings().connection("boot").zoho_org_id == "o-edited"


def test_a_mistake_names_the_field_and_never_prints_the_secret() -> None:
    bad = {
        "name": "acme",
        "xero_tenant_id": "t-1",
        "zoho_org_id": "o-1",
        "xero_refresh_token": TOKEN,
        "xero_base_currency": "DOLLARS",
    }
    code, text = run("add", json.dumps(bad))
    assert code != 0 and "xero_base_currency" in text and TOKEN not in text, text
    code, text = run("add", json.dumps({**bad, "xero_base_currency": "AUD", "colour": TOKEN}))
    assert code != 0 and "colour" in text and TOKEN not in text, text
    code, text = run("edit", "boot", "--set", "sales_account_code=201")
    assert code != 0 and "ZXS_CONNECTIONS" in text, text  # the environment wins for its names


def test_set_takes_text_fields_as_text_numbers_exactly_and_maps_as_json() -> None:
    new = {"name": "acme", "xero_tenant_id": "t-1", "zoho_org_id": "o-1"}
    assert run("add", json.dumps(new))[0] == 0
    code, text = run(
        "edit",
        "acme",
        "--set",
        "sales_account_code=201",
        "--set",
        "rounding_tolerance=0.1",
        "--set",
        'tax_types={"GST": "OUTPUT"}',
        "--set",
        "approval_field=null",
    )
    assert code == 0, text
    acme = get_settings().connection("acme")
    assert acme.sales_account_code == "201" and str(acme.rounding_tolerance) == "0.1"
    assert acme.tax_types == {"GST": "OUTPUT"} and acme.approval_field is None
    code, text = run("edit", "acme", "--set", "tax_types={GST")
    assert code != 0 and "field tax_types" in text and "not valid JSON" in text, text
