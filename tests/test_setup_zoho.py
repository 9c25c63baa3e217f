"""`zxsync setup zoho` (issue 17.1): the write-back fields the code writes are the ones setup
creates, through the Zoho sandbox's fields API, idempotently, reporting wrong types."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from sandbox.config import SandboxConfig
from sandbox.zoho_app import ZohoSandbox, create_zoho_app
from sandbox.zoho_state import MODULE_FIELDS, ZohoValidationError
from schemas.zoho_fields import WRITEBACK_FIELDS
from zxsync.setup import setup_fields

ORG = "org-setup"
CLIENT = ("1000.SETUP", "s3cret", "1000.rt-setup")
ROOT = Path(__file__).resolve().parent.parent


def test_every_xero_field_the_code_writes_is_one_setup_creates() -> None:
    written: set[str] = set()
    for room in ("tasks", "schemas", "workers", "clients"):
        for path in (ROOT / room).rglob("*.py"):
            if path.name != "zoho_fields.py":
                written |= set(re.findall(r"\"(Xero_[A-Za-z_]+)\"", path.read_text()))
    assert written, "the scan found the write-back fields"
    assert written <= {f.api_name for f in WRITEBACK_FIELDS}


def test_the_sandbox_custom_fields_are_exactly_the_write_back_fields() -> None:
    in_sandbox = {
        (module, name, spec.data_type)
        for module, specs in MODULE_FIELDS.items()
        for name, spec in specs.items()
        if spec.custom
    }
    assert in_sandbox == {(f.module, f.api_name, f.data_type) for f in WRITEBACK_FIELDS}


@pytest.fixture
def fresh() -> ZohoSandbox:
    zs = ZohoSandbox(SandboxConfig())
    zs.add_client(*CLIENT, ORG)
    zs.without_custom_fields(ORG)
    return zs


@pytest.fixture
def api(fresh: ZohoSandbox) -> Iterator[TestClient]:
    with TestClient(create_zoho_app(fresh)) as http:
        token = http.post(
            "/oauth/v2/token",
            params={
                "grant_type": "refresh_token",
                "client_id": CLIENT[0],
                "client_secret": CLIENT[1],
                "refresh_token": CLIENT[2],
            },
        ).json()["access_token"]
        http.headers["Authorization"] = f"Zoho-oauthtoken {token}"
        yield http


class HttpFields:
    """setup's two calls over the sandbox's HTTP API."""

    def __init__(self, http: TestClient) -> None:
        self.http, self.posts = http, 0

    def fields(self, module: str) -> list[dict[str, Any]]:
        answer = self.http.get("/crm/v7/settings/fields", params={"module": module})
        assert answer.status_code == 200, answer.text
        return list(answer.json()["fields"])

    def create_fields(self, module: str, fields: list[dict[str, Any]]) -> list[list[str]]:
        self.posts += 1
        answer = self.http.post(
            "/crm/v7/settings/fields", params={"module": module}, json={"fields": fields}
        )
        return [[] if r["status"] == "success" else [r["code"]] for r in answer.json()["fields"]]


def test_a_fresh_org_refuses_a_write_back_until_the_field_exists(
    fresh: ZohoSandbox, api: TestClient
) -> None:
    account = fresh.insert(ORG, "Accounts", {"Account_Name": "Wattle"})
    with pytest.raises(ZohoValidationError):
        fresh.update(ORG, "Accounts", account["id"], {"Xero_Contact_ID": "c-1"})
    made = api.post(
        "/crm/v7/settings/fields",
        params={"module": "Accounts"},
        json={"fields": [{"field_label": "Xero Contact ID", "data_type": "text"}]},
    )
    assert made.status_code == 201, made.text
    assert made.json()["fields"][0]["details"]["api_name"] == "Xero_Contact_ID"
    fresh.update(ORG, "Accounts", account["id"], {"Xero_Contact_ID": "c-1"})
    again = api.post(
        "/crm/v7/settings/fields",
        params={"module": "Accounts"},
        json={
            "fields": [
                {"field_label": "Xero Contact ID", "data_type": "text"},
                {"field_label": "Odd", "data_type": "hologram"},
            ]
        },
    )
    assert again.status_code == 400
    assert [r["code"] for r in again.json()["fields"]] == ["DUPLICATE_DATA", "INVALID_DATA"]
    six = [{"field_label": f"F {i}", "data_type": "text"} for i in range(6)]
    too_many = api.post(
        "/crm/v7/settings/fields", params={"module": "Accounts"}, json={"fields": six}
    )
    assert too_many.json()["code"] == "LIMIT_EXCEEDED"


def test_setup_creates_what_is_missing_once_and_reports_wrong_types(
    fresh: ZohoSandbox, api: TestClient
) -> None:
    client = HttpFields(api)
    api.post(
        "/crm/v7/settings/fields",
        params={"module": "Vendors"},
        json={"fields": [{"field_label": "Xero Contact ID", "data_type": "integer"}]},
    )
    lines: list[str] = []
    steps, errors = setup_fields(client, dry_run=True, say=lines.append)
    assert client.posts == 0 and "Xero_Invoice_ID" not in (fresh.fields(ORG, "Invoices") or {})
    assert sum(s.action == "create" for s in steps) == len(WRITEBACK_FIELDS) - 1
    assert any("WRONG TYPE Vendors.Xero_Contact_ID: is integer" in line for line in lines)

    steps, errors = setup_fields(client, dry_run=False, say=lines.append)
    assert errors == []
    for wanted in WRITEBACK_FIELDS:
        spec = (fresh.fields(ORG, wanted.module) or {})[wanted.api_name]
        assert spec.data_type == ("integer" if wanted.module == "Vendors" else wanted.data_type), (
            wanted
        )
    assert (fresh.fields(ORG, "Invoices") or {})["Xero_Sync_Status"].values == (
        "Pending",
        "Synced",
        "Failed",
    )
    posts = client.posts
    steps, errors = setup_fields(client, dry_run=False, say=lines.append)
    assert client.posts == posts, "a second run creates nothing"
    assert [s.action for s in steps].count("skip") == len(WRITEBACK_FIELDS) - 1


@pytest.mark.integration
def test_zxsync_setup_zoho_on_a_fresh_org(make_stack: Callable[..., Any]) -> None:
    from typer.testing import CliRunner

    from zxsync.cli import app

    stack = make_stack()
    conn = stack.connections[0]
    stack.zoho.without_custom_fields(conn.zoho_org_id)
    runner = CliRunner()
    plan = runner.invoke(app, ["setup", "zoho", "--connection", conn.name, "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "would create Invoices.Xero_Invoice_ID (text)" in plan.output
    assert "Xero_Invoice_ID" not in (stack.zoho.fields(conn.zoho_org_id, "Invoices") or {})
    done = runner.invoke(app, ["setup", "zoho", "--connection", conn.name])
    assert done.exit_code == 0, done.output
    assert f"{len(WRITEBACK_FIELDS)} created" in done.output
    again = runner.invoke(app, ["setup", "zoho", "--connection", conn.name])
    assert f"0 created, {len(WRITEBACK_FIELDS)} already there" in again.output, again.output
