"""Issue #20.4 in the ops console: the connection settings page lists the connections of the
database, and operators add, edit and remove them through the same ConnectionStore and the same
validation as `zxsync connections`. Secrets are write-only, errors sit next to their field
without the secret, viewers are refused, every change is an audit line, and a worker's own read
(`get_settings().connections()`, through an engine of its own) sees the change unrestarted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient
from test_console import (  # noqa: F401
    PASSWORD,
    client,
    console_settings,
    csrf,
    login,
    names,
    settings,
    web,
)

import workers.store.connections as stored
from clients.tokens import TokenCipher
from console import audit
from console.app import create_app
from schemas.connection import Connection
from workers.settings import Settings, get_settings
from workers.store import Database, get_database, use_database
from workers.store.connections import ConnectionStore
from workers.store.schema import connections as table

TOKEN = "xero-refresh-secret-acme-0123456789"
WEBHOOK_KEY = "xero-webhook-key-acme-abcdefghij"
ACME = {
    "name": "acme",
    "xero_tenant_id": "tenant-acme",
    "zoho_org_id": "org-acme",
    "xero_refresh_token": TOKEN,
    "xero_webhook_key": WEBHOOK_KEY,
    "xero_base_currency": "AUD",
    "tax_types": '{"GST": "OUTPUT"}',
    "payment_terms_days": "14",
    "sales_account_code": "201",
}
STORED = {**ACME, "tax_types": {"GST": "OUTPUT"}}  # as `zxsync connections add` takes it


@pytest.fixture
def database(
    tmp_path: Path,
    settings: Settings,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A system of record of the test's own (a file: the worker reads it through another
    engine), and the workers' settings: the console's token key and bootstrap."""
    url = f"sqlite:///{tmp_path / 'zxsync.db'}"
    use_database(Database(url))
    monkeypatch.setattr(stored, "REFRESH_SECONDS", 0.0)
    monkeypatch.setenv("ZXS_TOKEN_KEY", settings.zxs_token_key.get_secret_value())
    monkeypatch.setenv("ZXS_CONNECTIONS", settings.zxs_connections)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    use_database(None)


def worker_view(url: str) -> dict[str, Connection]:
    """What a worker process reads: its own engine on the database, its own settings."""
    console_side = get_database()
    use_database(Database(url))
    try:
        return get_settings().connections()
    finally:
        use_database(console_side)


def store(settings: Settings) -> ConnectionStore:  # noqa: F811
    return ConnectionStore(get_database(), TokenCipher(settings.zxs_token_key.get_secret_value()))


def field_row(page: str, field: str) -> str:
    match = re.search(rf'<tr class="field[^"]*" id="field-{field}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {field}"
    return match.group(1)


def connection_row(page: str, name: str) -> str:
    return page.split(f'data-connection="{name}"')[1].split("</tr>")[0]


def connection_lines() -> list[tuple[str, str, str, str]]:
    return [
        (line.user, line.action, line.target, line.detail)
        for line in audit.recent()
        if line.action.startswith("connections.")
    ]


def test_the_page_lists_every_connection_with_its_settings_and_no_secret(
    web: TestClient,  # noqa: F811
    settings: Settings,  # noqa: F811
    names: list[str],  # noqa: F811
    database: str,
) -> None:
    store(settings).add(STORED)
    settings.connections()  # the console's own read imports the bootstrap
    login(web, "vic")
    page = web.get("/connections")
    assert page.status_code == 200
    acme = connection_row(page.text, "acme")
    assert "tenant-acme" in acme and "org-acme" in acme and "AUD" in acme
    assert "database" in acme and "xero_refresh_token" in acme and "xero_webhook_key" in acme
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", acme)  # last change
    boot = connection_row(page.text, names[0])
    assert "ZXS_CONNECTIONS" in boot and f"tenant-{names[0]}" in boot
    assert "accounts.zoho.com" in page.text  # the Zoho data centre, deployment-wide
    for secret in (TOKEN, WEBHOOK_KEY, f"xero-refresh-secret-{names[0]}"):
        assert secret not in page.text
    assert "/connections/new" not in page.text and "/edit" not in page.text  # a viewer


def test_an_operator_adds_a_connection_and_a_running_worker_serves_it(
    web: TestClient,  # noqa: F811
    settings: Settings,  # noqa: F811
    database: str,
) -> None:
    assert "acme" not in worker_view(database)
    login(web)
    form = web.get("/connections/new")
    assert form.status_code == 200 and 'name="xero_refresh_token"' in form.text
    answer = web.post("/connections/new", data={**ACME, "csrf": csrf(web, "/connections/new")})
    assert answer.status_code == 200 and "added acme" in answer.text
    assert "org-acme" in connection_row(answer.text, "acme") and TOKEN not in answer.text
    seen = worker_view(database)["acme"]
    assert seen.xero_refresh_token is not None
    assert seen.xero_refresh_token.get_secret_value() == TOKEN
    assert (seen.tax_types, seen.payment_terms_days, seen.sales_account_code) == (
        {"GST": "OUTPUT"},
        14,
        "201",
    )
    assert seen.rounding_tolerance == Connection.model_fields["rounding_tolerance"].default
    with get_database().begin() as conn:
        row = conn.execute(table.select().where(table.c.name == "acme")).one()
    assert TOKEN not in row.settings + row.secrets and WEBHOOK_KEY not in row.secrets
    assert connection_lines() == [("olga", "connections.add", "acme", "")]


def test_the_last_change_is_credited_however_much_else_was_audited_since(
    web: TestClient,  # noqa: F811
    settings: Settings,  # noqa: F811
    database: str,
) -> None:
    """The "by" column finds the last connections.* line in SQL, not among the newest few."""
    store(settings).add(STORED)
    audit.record("olga", "connections.edit", "acme", "sales_account_code")
    for _ in range(60):
        audit.record("ivan", "pause", "acme")
    login(web)
    page = web.get("/connections")
    assert "by olga" in connection_row(page.text, "acme")


def test_an_edit_keeps_the_secrets_left_empty_and_never_shows_them(
    web: TestClient,  # noqa: F811
    settings: Settings,  # noqa: F811
    database: str,
) -> None:
    store(settings).add(STORED)
    login(web)
    form = web.get("/connections/acme/edit")
    assert form.status_code == 200
    assert TOKEN not in form.text and WEBHOOK_KEY not in form.text
    assert 'value="AUD"' in field_row(form.text, "xero_base_currency")
    assert "set" in field_row(form.text, "xero_refresh_token")  # that it is set, not what
    fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', form.text))
    fields.pop("csrf")
    submitted = {
        **fields,
        "tax_types": '{"GST": "OUTPUT", "GST Free": "EXEMPTOUTPUT"}',
        "xero_base_currency": "NZD",
        "zoho_refresh_token": "zoho-refresh-new-0123456789",
        "clear": "xero_webhook_key",
        "csrf": csrf(web, "/connections/acme/edit"),
    }
    answer = web.post("/connections/acme/edit", data=submitted)
    assert answer.status_code == 200 and "edited acme" in answer.text
    seen = worker_view(database)["acme"]
    assert seen.xero_base_currency == "NZD" and seen.payment_terms_days == 14
    assert seen.tax_types == {"GST": "OUTPUT", "GST Free": "EXEMPTOUTPUT"}
    assert seen.xero_refresh_token is not None
    assert seen.xero_refresh_token.get_secret_value() == TOKEN  # left empty: kept
    assert seen.zoho_refresh_token is not None
    assert seen.zoho_refresh_token.get_secret_value() == "zoho-refresh-new-0123456789"
    assert seen.xero_webhook_key is None  # cleared on purpose
    [line] = connection_lines()
    assert line[:3] == ("olga", "connections.edit", "acme")
    assert set(line[3].split(",")) == {
        "tax_types",
        "xero_base_currency",
        "xero_webhook_key",
        "zoho_refresh_token",
    }
    assert "zoho-refresh-new" not in str(line)


def test_a_validation_error_sits_next_to_its_field_without_the_secret(
    web: TestClient,  # noqa: F811
    settings: Settings,  # noqa: F811
    database: str,
) -> None:
    login(web)
    token = csrf(web, "/connections/new")
    answer = web.post(
        "/connections/new", data={**ACME, "xero_base_currency": "DOLLARS", "csrf": token}
    )
    assert answer.status_code == 400
    assert "field xero_base_currency" in field_row(answer.text, "xero_base_currency")
    assert 'value="DOLLARS"' in field_row(answer.text, "xero_base_currency")  # kept to fix
    assert "field-error" not in field_row(answer.text, "xero_tenant_id")
    assert TOKEN not in answer.text and WEBHOOK_KEY not in answer.text
    assert store(settings).get("acme") is None
    bad_json = web.post("/connections/new", data={**ACME, "tax_types": "{GST", "csrf": token})
    assert bad_json.status_code == 400
    assert "not valid JSON" in field_row(bad_json.text, "tax_types")
    store(settings).add(STORED)
    edit = web.post(
        "/connections/acme/edit",
        data={"payment_terms_days": "900", "xero_refresh_token": TOKEN + "x", "csrf": token},
    )
    assert edit.status_code == 400 and "field payment_terms_days" in edit.text
    assert TOKEN not in edit.text
    assert store(settings).get("acme").payment_terms_days == 14  # type: ignore[union-attr]
    assert connection_lines() == []


def test_removing_asks_first_then_the_worker_no_longer_serves_it(
    web: TestClient,  # noqa: F811
    settings: Settings,  # noqa: F811
    database: str,
) -> None:
    store(settings).add(STORED)
    login(web)
    confirm = web.get("/connections/acme/remove")
    assert confirm.status_code == 200 and "Yes, remove acme" in confirm.text
    assert "acme" in worker_view(database)  # a GET changes nothing
    answer = web.post("/connections/acme/remove", data={"csrf": csrf(web, "/connections")})
    assert answer.status_code == 200 and "removed acme" in answer.text
    assert "acme" not in worker_view(database) and store(settings).get("acme") is None
    assert connection_lines() == [("olga", "connections.remove", "acme", "")]


def test_viewers_forged_posts_and_the_environments_connections_are_refused(
    web: TestClient,  # noqa: F811
    settings: Settings,  # noqa: F811
    names: list[str],  # noqa: F811
    database: str,
) -> None:
    store(settings).add(STORED)
    settings.connections()
    login(web, "vic")
    token = csrf(web, "/connections")
    for path in ("/connections/new", "/connections/acme/edit", "/connections/acme/remove"):
        assert web.get(path).status_code == 403, path
        assert web.post(path, data={**ACME, "csrf": token}).status_code == 403, path
    web.post("/logout", data={"csrf": token})
    login(web)
    assert web.post("/connections/acme/remove", data={"csrf": "forged"}).status_code == 403
    assert store(settings).get("acme") is not None
    boot = names[0]
    token = csrf(web, "/connections")
    assert f"/connections/{boot}/edit" not in web.get("/connections").text
    for action in ("edit", "remove"):
        refused = web.post(f"/connections/{boot}/{action}", data={"csrf": token})
        assert refused.status_code == 400 and "ZXS_CONNECTIONS" in refused.text, action
    assert boot in worker_view(database)
    assert connection_lines() == []


def test_without_a_token_key_the_page_says_why_it_cannot_manage_connections(
    settings: Settings,  # noqa: F811
    client: redis.Redis,  # noqa: F811
    database: str,
) -> None:
    keyless = Settings(
        redis_url=settings.redis_url, zxs_connections=settings.zxs_connections, zxs_token_key=""
    )
    with TestClient(create_app(console_settings(), keyless, client)) as browser:
        login(browser)
        page = browser.get("/connections")
        assert page.status_code == 200 and "ZXS_TOKEN_KEY is not set" in page.text
        assert "/connections/new" not in page.text
        assert browser.get("/connections/new").status_code == 400
    assert json.loads(settings.zxs_connections)[0]["name"] in page.text
