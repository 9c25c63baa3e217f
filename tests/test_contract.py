"""The relay contract: the published JSON Schema is the model's, and bad jobs say why."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from schemas.errors import InvalidJob
from schemas.jobs import JOB_SCHEMA_PATH, job_json_schema
from tasks.ingest import parse_job
from zxsync.cli import app

GOOD = {
    "connection": "acme-au",
    "module": "Invoices",
    "record_id": "5843000000123001",
    "event": "insert",
    "event_id": "evt-1",
}


def test_published_schema_matches_the_model() -> None:
    assert JOB_SCHEMA_PATH.read_text() == job_json_schema(), (
        "schemas/job.schema.json is stale: regenerate it from schemas.jobs.job_json_schema()"
    )


def test_schema_validates_like_the_model() -> None:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(JOB_SCHEMA_PATH.read_text()))
    assert not list(validator.iter_errors(GOOD))
    assert list(validator.iter_errors({**GOOD, "record_id": "12ab"}))
    assert list(validator.iter_errors({**GOOD, "extra": 1}))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**GOOD, "record_id": "12ab"}, "record_id"),
        ({**GOOD, "module": "Leads"}, "module"),
        ({k: v for k, v in GOOD.items() if k != "event_id"}, "event_id"),
        ({**GOOD, "connection": ""}, "connection"),
        ("not a job", ""),
    ],
)
def test_bad_jobs_name_the_field(payload: object, field: str) -> None:
    with pytest.raises(InvalidJob) as err:
        parse_job(payload)
    assert err.value.field == field
    assert "job rejected" in err.value.message


def test_enqueue_rejects_at_the_door_without_sending() -> None:
    result = CliRunner().invoke(app, ["enqueue", "--connection", "acme", "--record-id", "x1"])
    assert result.exit_code == 2
    assert "record_id" in result.output
