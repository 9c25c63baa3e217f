"""Chaos in CI: 500 invoices while worker processes are SIGKILLed every two seconds (every
fourth kill takes a whole worker, restarted) and Redis restarts once: zero lost, zero
duplicated, each invoice in Xero exactly once or dead-lettered once with a reason."""

from __future__ import annotations

import pytest

from zxsync.chaos import run_chaos

pytestmark = pytest.mark.integration


def test_nothing_lost_or_duplicated_under_kills_and_a_redis_restart() -> None:
    report = run_chaos(invoices=500, workers=2, concurrency=2, kill_every=2.0, timeout=400)
    print("\n".join(report.lines()))
    assert report.kills >= 3 and report.redis_restarts == 1, report
    assert report.lost == 0 and report.duplicated == 0, report
    assert report.created + report.dead_lettered == report.invoices
