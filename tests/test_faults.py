"""The fault run in CI (issue #22.8): Xero fails 20% of writes (half after saving) and 10% of
reads, tokens last 20 s, events come twice and out of order, deletes come for records that
exist, accounts share names: nothing lost, duplicated, merged or wrongly voided."""

from __future__ import annotations

import pytest

from zxsync.chaos import run_faults

pytestmark = pytest.mark.integration
BUDGET = 300  # seconds for each run's invoices to reach an outcome
SEEDS = (3, 4, 5)


# as tests/test_chaos.py: pytest's default timeout (300 s) must not end a run inside its budget
@pytest.mark.timeout(len(SEEDS) * (BUDGET + 60))
def test_nothing_lost_duplicated_merged_or_wrongly_voided_under_xeros_faults() -> None:
    # a small run makes few lookups: 40% of them fail here, yet under load a run may still meet
    # none; another seed then runs, so the failed-lookup path is always exercised
    for seed in SEEDS:
        report = run_faults(
            invoices=60, seed=seed, timeout=BUDGET, batch_size=4, lookup_fault_rate=0.4
        )
        print("\n".join(report.lines()))
        assert report.exact, report.lines()
        assert report.created + report.dead_lettered == report.invoices
        assert report.injected.get("write_fault_after", 0) > 0, report.injected
        if report.injected.get("lookup_fault", 0):
            break
    else:
        pytest.fail("three fault runs met no failed lookup: that path went untested")
