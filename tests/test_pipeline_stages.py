"""Which stages a job's chain has (workers/pipeline.py): a stage its connection's settings make
a pass-through is left out (issue #19), the others stay in catalog order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from schemas.jobs import StageMessage, SyncJob
from workers import pipeline
from workers.settings import get_settings

SEND = "zxsync.invoice_send"


@pytest.fixture
def chains(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The task names of every chain start_pipeline sends (nothing reaches a broker)."""
    sent: list[list[str]] = []
    monkeypatch.setattr(pipeline, "get_redis", lambda: fakeredis.FakeRedis())

    class Chain:
        def __init__(self, *signatures: Any) -> None:
            self.names = [s.task for s in signatures]

        def apply_async(self) -> None:
            sent.append(self.names)

    monkeypatch.setattr(pipeline, "chain", Chain)
    conns = [
        {"name": name, "xero_tenant_id": f"t-{name}", "zoho_org_id": f"o-{name}", "sender": sender}
        for name, sender in (("bulk", "none"), ("mails", "xero"), ("links", "zoho"))
    ]
    monkeypatch.setenv("ZXS_CONNECTIONS", json.dumps(conns))
    get_settings.cache_clear()
    yield sent
    get_settings.cache_clear()


def start(connection: str, module: str = "Invoices", from_stage: str | None = None) -> None:
    job = SyncJob(
        connection=connection, module=module, record_id="7", event="insert", event_id="e-7"
    )
    pipeline.start_pipeline(StageMessage(job=job), from_stage)


def test_a_connection_that_sends_nothing_has_no_send_stage(chains: list[list[str]]) -> None:
    for name in ("bulk", "mails", "links", "unknown"):
        start(name)
    bulk, mails, links, unknown = chains
    assert SEND not in bulk
    assert bulk == [s for s in pipeline.SALES_STAGES if s != SEND]
    assert mails == links == unknown == list(pipeline.SALES_STAGES)  # unknown: its stage says


def test_a_replay_from_the_send_stage_goes_on_after_it_when_nothing_is_sent(
    chains: list[list[str]],
) -> None:
    start("bulk", from_stage=SEND)
    start("mails", from_stage=SEND)
    after_send = list(pipeline.SALES_STAGES[pipeline.SALES_STAGES.index(SEND) :])
    assert chains == [after_send[1:], after_send]
