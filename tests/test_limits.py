"""The shared rate limiter (workers/ratelimit.py) against real Redis: windows, slots, phase."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
import redis

from schemas.errors import RateLimited
from workers.ratelimit import MAX_BOOKED_PER_ANSWER, Permit, RateLimiter, Window, xero_limiter


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def limiter(
    client: redis.Redis,
    *,
    per_minute: int = 10,
    minute: float = 1.0,
    concurrent: int = 5,
    lease: float = 5.0,
    guard: float = 0.05,
) -> RateLimiter:
    return xero_limiter(
        client,
        f"t-{uuid.uuid4().hex[:8]}",
        "app",
        per_minute=per_minute,
        per_day=1000,
        app_per_minute=10_000,
        concurrent=concurrent,
        minute_seconds=minute,
        lease_seconds=lease,
        guard_seconds=guard,
    )


def test_a_full_window_refuses_with_the_wait_until_the_next_one(client: redis.Redis) -> None:
    lim = limiter(client, per_minute=3, minute=4.0)
    for _ in range(3):
        lim.release(lim.acquire())
    with pytest.raises(RateLimited) as caught:
        lim.acquire()
    assert caught.value.problem == "minute, local limiter"
    assert 3.0 < (caught.value.retry_after or 0) <= 4.1


def test_short_waits_block_instead_of_rescheduling(client: redis.Redis) -> None:
    lim = limiter(client, per_minute=2, minute=0.6, guard=0.05)
    started = time.monotonic()
    for _ in range(5):
        lim.release(lim.acquire())
    elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 2.5, "two per 0.6 s window: the fifth call waits two windows"


def test_calls_faster_than_the_first_one_stay_in_xeros_window(client: redis.Redis) -> None:
    """Xero's window starts when the first call arrives, a delay after we admitted it; later
    calls that arrive at once (a warm connection) must still be counted in the window we
    admitted them in, or a full window of Xero's gets one more call and answers 429."""
    per_minute, minute_ms, first_delay_ms = 3, 600, 30  # the first call's delay under the guard
    lim = limiter(client, per_minute=per_minute, minute=minute_ms / 1000, guard=0.05)
    admitted = []
    for _ in range(4 * per_minute):
        permit = lim.acquire()
        lim.release(permit)
        admitted.append(permit.admitted_ms)
    xero_start = admitted[0] + first_delay_ms
    arrivals = [xero_start, *admitted[1:]]  # every later call arrives as it is admitted
    per_window = Counter((at - xero_start) // minute_ms for at in arrivals)
    assert max(per_window.values()) <= per_minute, per_window


def _sleep_until(ms: int) -> None:
    time.sleep(max(0.0, ms / 1000 - time.time()))


def test_a_call_at_a_window_edge_goes_at_once_and_spends_a_call_of_both_windows(
    client: redis.Redis,
) -> None:
    """Within a guard of a window's edge a call may be counted by Xero in either window. It
    used to wait out the edge (a second of every minute with no call for the tenant, and one for
    the whole app: the quiet tenants' slowest events); now it goes while both windows have room,
    and is counted in both, so neither can be overfilled whichever Xero counts it in."""
    lim = limiter(client, per_minute=4, minute=2.0, guard=0.3)
    first = lim.acquire()
    lim.release(first)
    _sleep_until(first.admitted_ms + 1800)  # the last guard of the first window
    asked = time.monotonic()
    edge = lim.acquire()
    lim.release(edge)
    assert time.monotonic() - asked < 0.1, "went at once, not after the edge"
    assert 1700 <= edge.admitted_ms - first.admitted_ms < 2000
    _sleep_until(first.admitted_ms + 2400)  # the next window, past its guard
    for _ in range(3):  # 4 a window, one of them the edge call
        lim.release(lim.acquire())
    with pytest.raises(RateLimited):
        lim.acquire()


def test_at_a_window_edge_a_call_waits_while_either_window_is_full(client: redis.Redis) -> None:
    lim = limiter(client, per_minute=2, minute=2.0, guard=0.3)
    first = lim.acquire()
    lim.release(first)
    lim.release(lim.acquire())  # the first window is full
    _sleep_until(first.admitted_ms + 2050)  # the next window's first guard
    permit = lim.acquire()  # blocks until the guard has passed: Xero may still count it in
    lim.release(permit)  # the full window
    assert permit.admitted_ms - first.admitted_ms >= 2300


def test_at_most_the_concurrent_limit_is_in_flight(client: redis.Redis) -> None:
    lim = limiter(client, per_minute=1000, minute=60.0, concurrent=3)
    in_flight, peak, lock = [0], [0], threading.Lock()

    def call() -> None:
        with lim.slot():
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(0.05)
            with lock:
                in_flight[0] -= 1

    threads = [threading.Thread(target=call) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 3


def test_a_killed_workers_slot_comes_back_after_its_lease(client: redis.Redis) -> None:
    lim = limiter(client, concurrent=1, lease=1.5, minute=60.0)  # no window edge in the way
    lim.acquire()  # never released: the worker "died"
    with pytest.raises(RateLimited, match="concurrent"):
        lim.acquire()  # polls for about a second, then hands the wait to the task
    time.sleep(0.5)
    lim.release(lim.acquire())


def test_reported_calls_we_did_not_make_are_booked(client: redis.Redis) -> None:
    lim = limiter(client, per_minute=10, minute=5.0)
    permit = lim.acquire()
    lim.observe(permit, {"X-MinLimit-Remaining": "2"})  # Xero counted 8: 7 were not ours
    lim.release(permit)
    for _ in range(2):
        lim.release(lim.acquire())
    with pytest.raises(RateLimited):
        lim.acquire()


def test_a_limit_set_far_above_xeros_books_a_bounded_number_of_placeholders(
    client: redis.Redis,
) -> None:
    """Our minute limit is 10,000,000 and Xero says 0 remain: one answer must not book ten
    million entries in one script (Redis would answer nobody, the broker included, meanwhile)."""
    lim = limiter(client, per_minute=10_000_000, minute=60.0)
    permit = lim.acquire()
    started = time.monotonic()
    lim.observe(permit, {"X-MinLimit-Remaining": "0"})
    lim.release(permit)
    minute = next(w for w in lim.windows if w.name == "minute")
    assert client.zcard(minute.key) == 1 + MAX_BOOKED_PER_ANSWER
    assert time.monotonic() - started < 1.0


def test_the_window_follows_the_phase_xero_reports(client: redis.Redis) -> None:
    """We admitted 8 calls, Xero says the 8th was its 2nd: its window began at our 7th."""
    lim = limiter(client, per_minute=10, minute=5.0, concurrent=5)
    permits: list[Permit] = []
    for _ in range(8):
        permits.append(lim.acquire())
        lim.release(permits[-1])
        time.sleep(0.06)  # further apart than the guard
    lim.observe(permits[-1], {"X-MinLimit-Remaining": "8"})
    minute = next(w for w in lim.windows if w.name == "minute")
    anchor = int(client.get(minute.key + ":anchor") or 0)
    assert anchor == permits[6].admitted_ms - 50
    for _ in range(8):  # the new window holds 2 of ours: 8 more fit
        lim.release(lim.acquire())
    with pytest.raises(RateLimited):
        lim.acquire()


def test_rolling_windows_free_a_call_when_the_oldest_ages_out(client: redis.Redis) -> None:
    key = f"zxs:rl:test:{uuid.uuid4().hex[:8]}"
    lim = RateLimiter(
        client, "Zoho", key, [Window("day", key + ":day", 2, 0.5, fixed=False)], 5, 5.0, 0.0
    )
    lim.release(lim.acquire())
    time.sleep(0.2)
    lim.release(lim.acquire())
    started = time.monotonic()
    lim.release(lim.acquire())  # blocks until the first call is 0.5 s old
    assert 0.2 < time.monotonic() - started < 0.5
