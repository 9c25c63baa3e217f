"""Secrets from files (issue #14.6): any setting can come from `<NAME>_FILE` (Docker and
Kubernetes secrets), so compose can hand each service its own secrets without putting them in
its environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ConfigurationError
from workers.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("XERO_CLIENT_SECRET", "ZXS_TOKEN_KEY", "ZXS_CONNECTIONS"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)


def test_a_secret_is_read_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "xero").write_text("file-secret-value\n")
    (tmp_path / "key").write_text("k1,k2")
    monkeypatch.setenv("XERO_CLIENT_SECRET_FILE", str(tmp_path / "xero"))
    monkeypatch.setenv("ZXS_TOKEN_KEY_FILE", str(tmp_path / "key"))
    settings = Settings(_env_file=None)
    assert settings.xero_client_secret.get_secret_value() == "file-secret-value"
    assert settings.zxs_token_key.get_secret_value() == "k1,k2"


def test_a_variable_set_both_ways_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "xero").write_text("from-file")
    monkeypatch.setenv("XERO_CLIENT_SECRET_FILE", str(tmp_path / "xero"))
    monkeypatch.setenv("XERO_CLIENT_SECRET", "from-env")
    with pytest.raises(ConfigurationError, match="set XERO_CLIENT_SECRET or "):
        Settings(_env_file=None)


def test_an_unreadable_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XERO_CLIENT_SECRET_FILE", "/run/secrets/missing")
    with pytest.raises(ConfigurationError, match="XERO_CLIENT_SECRET_FILE: cannot read"):
        Settings(_env_file=None)


def test_connections_file_keeps_its_own_meaning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "connections.json"
    path.write_text('[{"name": "acme", "xero_tenant_id": "t", "zoho_org_id": "o"}]')
    monkeypatch.setenv("ZXS_CONNECTIONS_FILE", str(path))
    settings = Settings(_env_file=None)
    assert settings.zxs_connections == "" and list(settings.connections()) == ["acme"]
