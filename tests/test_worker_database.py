"""The worker's main process opens the system of record before it forks its pool (workers/app.py,
issue #19): the pool processes inherit it open and migrated, and a database that cannot be
opened at start does not stop the worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError

import workers.store as store
from workers import app as app_module
from workers.settings import get_settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The worker's own database (the SQLite file under ZXS_DATA_DIR), not a test's override."""
    monkeypatch.setenv("ZXS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    store.use_database(None)
    store._database.cache_clear()
    yield tmp_path
    store._database.cache_clear()
    get_settings.cache_clear()


def test_the_main_process_opens_and_migrates_the_database_before_the_fork(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_module._open_database()
    database = store.get_database()
    assert {"links", "history", "outcomes"} <= set(inspect(database.engine).get_table_names())

    def migrate_again(engine: object) -> None:
        raise AssertionError("a pool process migrated the database again")

    monkeypatch.setattr(store, "migrate", migrate_again)
    assert store.get_database() is database  # what a forked pool process finds


def test_a_database_that_cannot_be_opened_at_start_waits_for_the_first_task(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(url: str) -> store.Database:
        raise OperationalError("connect", {}, Exception("connection refused"))

    monkeypatch.setattr(store, "Database", unreachable)
    app_module._open_database()  # logs, and the worker starts
