"""Hostile input at the door: whatever a relay sends, the job contract either accepts a valid
job or rejects it with an InvalidJob naming why; nothing else escapes (no crash, no 500)."""

from __future__ import annotations

import json
from typing import Any

from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.errors import InvalidJob
from schemas.jobs import SyncJob
from tasks.ingest import parse_job

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["connection", "module", "record_id", "event", "event_id", "occurred_at"]
plausible = st.fixed_dictionaries(
    {},
    optional={
        "connection": st.one_of(st.text(max_size=80), st.sampled_from(["acme-au", "x", ""])),
        "module": st.one_of(st.text(max_size=20), st.sampled_from(["Invoices", "Quotes"])),
        "record_id": st.one_of(
            st.text(max_size=40), st.from_regex(r"[0-9]{1,30}", fullmatch=True), st.integers()
        ),
        "event": st.one_of(st.text(max_size=10), st.sampled_from(["insert", "update", "delete"])),
        "event_id": st.one_of(st.text(max_size=200), st.uuids().map(str)),
        "occurred_at": st.one_of(st.text(max_size=30), st.datetimes().map(lambda d: d.isoformat())),
        "extra": json_values,
    },
)


def outcome(payload: Any) -> SyncJob | InvalidJob:
    try:
        return parse_job(payload)
    except InvalidJob as exc:
        return exc


@settings(max_examples=examples(300), deadline=None)
@given(st.one_of(json_values, plausible))
def test_the_door_accepts_or_says_why_and_nothing_else(payload: Any) -> None:
    result = outcome(payload)
    if isinstance(result, InvalidJob):
        assert result.message.startswith("job rejected: ")
        assert result.field is not None and result.hint
        if isinstance(payload, dict) and result.field:
            assert result.field.split(".")[0] in {*FIELDS, *payload}
    else:
        assert isinstance(payload, dict)
        assert result.record_id.isdigit() and 1 <= len(result.event_id) <= 128
        assert SyncJob.model_validate(json.loads(result.model_dump_json())) == result


@settings(max_examples=examples(100), deadline=None)
@given(st.text(max_size=2000))
def test_unicode_and_huge_strings_never_escape_as_other_errors(text: str) -> None:
    for field in FIELDS:
        payload = {
            "connection": "acme",
            "module": "Invoices",
            "record_id": "1",
            "event": "insert",
            "event_id": "e",
            field: text,
        }
        assert isinstance(outcome(payload), SyncJob | InvalidJob)
