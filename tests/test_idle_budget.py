"""API tiers and the idle budget (issue 21): the tier sets the daily limit, calls used today are
readable per connection, and the safety-net polls cost an idle tenant <= 50 calls a day while a
lost payment webhook is still caught within an hour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from workers.polling import next_interval
from workers.settings import Settings


def test_the_tier_sets_the_daily_limit() -> None:
    assert Settings(xero_api_tier="starter").xero_day_limit() == 1000
    for tier in ("core", "plus", "advanced"):
        assert Settings(xero_api_tier=tier).xero_day_limit() == 5000
    assert Settings(xero_api_tier="starter", zxs_xero_per_day=700).xero_day_limit() == 700
    assert Settings().xero_api_tier == "starter", "a new app starts on Starter"


def test_polls_back_off_while_they_find_nothing_and_return_after_a_find() -> None:
    intervals, current = [], None
    for _ in range(7):
        current = next_interval(current, False, 300, 3540)
        intervals.append(current)
    assert intervals == [300, 600, 1200, 2400, 3540, 3540, 3540]
    assert next_interval(3540, True, 300, 3540) == 300


@pytest.mark.integration
def test_calls_used_today_per_connection_and_the_limiter_uses_the_tier(
    make_stack: Callable[..., Any],
) -> None:
    from workers.context import build_context
    from workers.ratelimit import xero_calls_today

    stack = make_stack(tenants=2)
    busy, quiet = stack.connections
    xero = build_context(busy.name).xero
    limiter = xero._limiter.inner  # type: ignore[union-attr]  # inside the console's 429 count
    assert limiter.windows[0].limit == 5000  # core: the sandbox's
    for _ in range(3):
        xero.tax_rates()
    usage = xero_calls_today(busy.name)
    assert (usage.used, usage.limit, usage.tier, usage.remaining) == (3, 5000, "core", 4997)
    assert usage.resets_in_seconds is not None and 0 < usage.resets_in_seconds <= 86400
    assert stack.xero.stats()["calls"][busy.xero_tenant_id] == 3  # what Xero counted
    assert xero_calls_today(quiet.name).used == 0

    from typer.testing import CliRunner

    from zxsync.cli import app

    shown = " ".join(CliRunner().invoke(app, ["check"]).output.split())
    assert f"{busy.name}: Xero calls today 6 / 5000 (core tier)" in shown  # + check's 3 calls


@pytest.mark.integration
def test_an_idle_day_costs_at_most_50_calls_and_a_lost_webhook_is_caught_within_an_hour(
    make_stack: Callable[..., Any],
) -> None:
    """Before: both polls ran every 300 s, 576 calls a day for a tenant where nothing happens."""
    from zxsync.idle import SIM_ENV, SIM_SANDBOX, simulate

    stack = make_stack(tenants=2, sandbox=SIM_SANDBOX, extra_env=SIM_ENV)
    day = simulate(stack)
    idle = stack.connections[0]
    print(f"idle day: {day}")
    assert day.calls[idle.name] <= 50, day
    assert day.caught_after is not None and day.caught_after <= 3600, day
    settings = Settings()  # the worst case: lost just after a poll at the longest interval
    assert settings.zxs_payment_reconcile_max_seconds + settings.zxs_poll_tick_seconds <= 3600
