"""Limits end to end: real worker processes, Redis and the sandboxes with a short "minute".

Every figure is read from the sandboxes (calls, 429s, invoices held), never from our own
bookkeeping. Sizes are CI-sized; `bench/limits.py` runs the full-size figure.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox.config import SandboxConfig
from sandbox.seed import build_dataset, load_dataset
from workers import keys as redis_keys

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """LocalStack.start() writes its settings (our tight budgets too) into os.environ, where
    later stacks' workers would inherit them: put the environment back after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def run(
    stack: Any,
    wait: Callable[..., Any],
    invoices: int,
    workers: int,
    per_worker: int,
    timeout: float,
) -> tuple[list[str], float]:
    """Seed, start workers, warm up with one invoice, then time the rest."""
    from workers.pipeline import submit_records

    conn = stack.connections[0]
    dataset = load_dataset(
        stack.zoho, conn.zoho_org_id, build_dataset(invoices=invoices, accounts=6, products=10)
    )
    ids = [str(inv["id"]) for inv in dataset.invoices]
    for _ in range(workers):
        stack.start_worker(concurrency=per_worker)
    submit_records(conn.name, ids[:1], "warm")
    wait(conn.name, [f"{conn.name}:Invoices:{ids[0]}"], timeout=60)
    started = time.monotonic()
    submit_records(conn.name, ids[1:], "ev")
    outcomes = wait(conn.name, [f"{conn.name}:Invoices:{i}" for i in ids], timeout=timeout)
    elapsed = time.monotonic() - started
    assert Counter(o for o, _ in outcomes.values()) == {"created": len(ids)}, outcomes
    return ids, elapsed


def assert_exactly_once(stack: Any, ids: list[str]) -> None:
    """Counted in the sandbox: one invoice per Zoho invoice, no duplicate contact or item."""
    conn = stack.connections[0]
    invoices = stack.xero.invoices(conn.xero_tenant_id)
    references = Counter(inv["Reference"] for inv in invoices)
    assert len(invoices) == len(ids) and max(references.values()) == 1, references
    contacts = Counter(c["Name"] for c in stack.xero.contacts(conn.xero_tenant_id))
    assert max(contacts.values()) == 1, contacts
    items = Counter(i["Code"] for i in stack.xero.items(conn.xero_tenant_id))
    assert max(items.values()) == 1, items


def test_eight_worker_processes_stay_under_the_minute_limit(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    minute = 6.0
    stack = make_stack(
        sandbox=SandboxConfig(minute_seconds=minute),
        # the naive path: batching would need too few calls to press on the limiter
        extra_env={"ZXS_LIMIT_GUARD_SECONDS": "0.3", "ZXS_BATCHING": "false"},
    )
    xero_before = stack.xero.stats()
    ids, elapsed = run(stack, wait_for_outcomes, 300, workers=4, per_worker=2, timeout=240)
    stats = stack.xero.stats()
    tenant = stack.connections[0].xero_tenant_id
    calls = stats["calls"][tenant] - xero_before["calls"].get(tenant, 0)
    floor = (calls - 60) / 60 * minute  # the first window's 60 calls need no wait
    rate = calls / elapsed * minute
    print(
        f"\n{len(ids)} invoices, {calls} Xero calls in {elapsed:.1f}s: {rate:.1f}/minute "
        f"(limit 60), floor {floor:.1f}s, 429s {stats['rate_limited']}"
    )
    assert stats["rate_limited"]["minute"] == 0
    assert stats["rate_limited"]["concurrent"] == 0
    assert_exactly_once(stack, ids)
    assert elapsed < floor * 1.35 + 2 * minute, f"{elapsed:.1f}s against a floor of {floor:.1f}s"


def test_tokens_expiring_every_few_seconds_cause_no_failure(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    stack = make_stack(
        sandbox=SandboxConfig(
            minute_seconds=6.0, xero_access_token_seconds=2.0, zoho_access_token_seconds=8.0
        ),
        # the naive path makes calls over several token lifetimes
        extra_env={"ZXS_LIMIT_GUARD_SECONDS": "0.3", "ZXS_BATCHING": "false"},
    )
    ids, elapsed = run(stack, wait_for_outcomes, 100, workers=2, per_worker=2, timeout=120)
    xero, zoho = stack.xero.stats(), stack.zoho.stats()
    print(
        f"\n{elapsed:.1f}s: {xero['token_refreshes']} Xero and {zoho['token_refreshes']} Zoho "
        "refreshes"
    )
    assert elapsed > 6 and xero["token_refreshes"] >= 3 and zoho["token_refreshes"] >= 1
    assert "400" not in xero["status"], xero["status"]  # no invalid_grant, no refusal at all
    assert zoho["status"].get(400, 0) == 0, zoho["status"]
    assert_exactly_once(stack, ids)


def test_injected_5xx_timeouts_and_drops_create_every_invoice_once(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    stack = make_stack(
        sandbox=SandboxConfig(
            minute_seconds=6.0,
            fault_rate=0.1,
            timeout_rate=0.05,
            drop_rate=0.05,
            timeout_seconds=2.0,
        ),
        extra_env={
            "ZXS_HTTP_TIMEOUT": "1.0",
            "ZXS_RETRY_BACKOFF_MAX": "4",
            "ZXS_MAX_RETRIES": "12",
            "ZXS_LIMIT_GUARD_SECONDS": "0.3",
            # a timed-out create is looked up this long after it was sent: the sandbox commits
            # at once, and the default 60 s (real Xero's) outlasts this test's 180 s budget
            "ZXS_LOOKUP_MARGIN_SECONDS": "2",
        },
    )
    ids, _ = run(stack, wait_for_outcomes, 60, workers=2, per_worker=2, timeout=180)
    injected = stack.xero.faults.injected + stack.zoho.faults.injected
    assert injected["timeout"] and injected["drop"], injected
    assert stack.xero.stats()["status"].get("503", 0) > 0
    assert_exactly_once(stack, ids)


def test_a_spent_daily_budget_holds_the_work_until_the_next_day(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    """A "minute" of 10 ms makes a day 14.4 s; 3 Xero calls a day cannot sync 3 invoices.

    The day limit meets a stage (parked in `zxs:deferred`) or a batch (its buffer holds until
    the next window); either way the work waits in Redis and goes on by itself the next day."""
    from workers.batching import sweep_batches
    from workers.deferral import parked, release_deferred
    from workers.pipeline import submit_records
    from workers.redis import get_redis

    stack = make_stack(
        sandbox=SandboxConfig(minute_seconds=0.01),
        extra_env={"ZXS_XERO_PER_DAY": "3", "ZXS_LIMIT_GUARD_SECONDS": "0.001"},
    )
    conn = stack.connections[0]
    dataset = load_dataset(stack.zoho, conn.zoho_org_id, build_dataset(invoices=3, seed=5))
    ids = [str(inv["id"]) for inv in dataset.invoices]
    stack.start_worker(concurrency=2)
    submit_records(conn.name, ids, "day")
    keys = [f"{conn.name}:Invoices:{i}" for i in ids]
    redis_client = get_redis()
    waited: set[str] = set()
    deadline = time.monotonic() + 120
    while len(wait_pending(conn.name, keys)) < len(keys) and time.monotonic() < deadline:
        waited |= {"parked"} if parked() else set()
        holds = redis_client.keys(redis_keys.BUFFER["hold"].match(connection=conn.name))
        waited |= {"held"} if any(redis_client.ttl(k) > 1 for k in holds) else set()
        release_deferred()  # what `celery beat` does every ZXS_DEFER_POLL_SECONDS
        sweep_batches()  # and every few seconds
        time.sleep(0.5)
    outcomes = wait_for_outcomes(conn.name, keys, timeout=5)
    assert {o for o, _ in outcomes.values()} == {"created"}, outcomes
    assert waited, "the work waited for the next daily window"
    assert_exactly_once(stack, ids)
    assert stack.xero.stats()["rate_limited"]["day"] == 0, "the local budget, not a 429"


def wait_pending(connection: str, keys: list[str]) -> dict[str, Any]:
    from workers.history import RecordHistory
    from workers.redis import get_redis

    return {k: v for k, v in RecordHistory(get_redis()).outcomes(connection).items() if k in keys}
