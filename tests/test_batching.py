"""Per-tenant batching (workers/batching/): the buffer's rules on the test Redis (its Lua
scripts need a real server), then bursts on real parts where a refused element fails alone and
lost links are found again, not duplicated."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery.canvas import Signature

from sandbox.seed import build_dataset, load_dataset
from schemas.errors import ValidationFailed
from schemas.links import CONTACT, ItemLink
from workers import batching
from workers import keys as redis_keys
from workers.batching import Buffer, Element, Results, policy
from workers.batching.policy import wait_before_flush
from workers.batching.resume import finish_waiting, resume, send_next
from workers.idempotency import IdempotencyStore
from workers.pipeline import submit_records


@pytest.fixture
def kinds() -> Iterator[None]:
    """Two throwaway kinds; the real ones stay registered."""
    saved = dict(batching.KINDS)

    def handler(ctx: Any, elements: list[Element]) -> Results:
        return {}

    batching.KINDS["things"] = batching.Kind(handler, xero=True, latest_wins=False)
    batching.KINDS["notes"] = batching.Kind(handler, xero=False, latest_wins=True)
    yield
    batching.KINDS.clear()
    batching.KINDS.update(saved)


@pytest.fixture
def new_buffer(redis_url: str) -> Callable[[str], Buffer]:
    """A buffer of a kind on a connection no other test uses."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def make(kind: str) -> Buffer:
        return Buffer(client, kind, f"unit-{uuid.uuid4().hex[:8]}")

    return make


def waiter(task_id: str, task: str = "t", chain: list[Any] | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"task_id": task_id, "chain": chain}
    return {"task": task, "args": [{"doc": task_id}], "kwargs": {}, "options": options}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """What the flusher sends: (task, args, kwargs and options), nothing reaches a broker."""
    sends: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def apply_async(sig: Signature, args: tuple[Any, ...] = (), **options: Any) -> None:
        sends.append((sig.task, tuple(args) or tuple(sig.args), {**sig.kwargs, **options}))

    monkeypatch.setattr(Signature, "apply_async", apply_async)
    return sends


def test_an_element_is_buffered_once_with_every_waiter(
    kinds: None, new_buffer: Callable[[str], Buffer]
) -> None:
    buffer = new_buffer("things")
    assert buffer.add({"a": {"v": 1}, "b": {"v": 1}}, waiter("w1")) == 2
    assert buffer.add({"a": {"v": 2}}, waiter("w2")) == 2
    [first, second] = buffer.claim(10)
    assert (first.id, first.payload, first.suspect) == ("a", {"v": 1}, False)  # first one wins
    assert second.id == "b"
    assert [w["options"]["task_id"] for w in buffer.waiters(["a"])["a"]] == ["w1", "w2"]


def test_a_newer_write_back_replaces_the_waiting_one(
    kinds: None, new_buffer: Callable[[str], Buffer]
) -> None:
    buffer = new_buffer("notes")
    buffer.add({"r": {"status": "DRAFT"}}, waiter("w1"))
    buffer.add({"r": {"status": "AUTHORISED"}}, waiter("w2"))
    [element] = buffer.claim(10)
    assert element.payload == {"status": "AUTHORISED"}


def test_a_flush_is_due_when_full_old_or_all_in_flight_wait_and_not_before(
    kinds: None, new_buffer: Callable[[str], Buffer]
) -> None:
    buffer = new_buffer("things")
    assert wait_before_flush(buffer, 3, max_wait=1.0, inflight=5) == -1  # nothing waits
    buffer.add({"a": {}}, waiter("w1"))
    assert 0 < wait_before_flush(buffer, 3, max_wait=1.0, inflight=5) <= 1.0  # more may come
    assert wait_before_flush(buffer, 3, max_wait=1.0, inflight=1) == 0  # a lone event goes
    buffer.add({"b": {}, "c": {}}, waiter("w2"))
    assert wait_before_flush(buffer, 3, max_wait=1.0, inflight=5) == 0  # full
    time.sleep(0.12)
    assert wait_before_flush(buffer, 10, max_wait=0.1, inflight=5) == 0  # the oldest waited
    buffer.hold(time.time() + 30)
    assert wait_before_flush(buffer, 1, max_wait=0, inflight=0) > 25  # a held tenant waits


def test_claims_of_a_dead_flusher_come_back_as_suspects(
    kinds: None, new_buffer: Callable[[str], Buffer]
) -> None:
    buffer = new_buffer("things")
    buffer.add({"a": {}, "b": {}}, waiter("w1"))
    assert len(buffer.claim(1)) == 1  # then the flusher dies: the next one has the lock
    assert buffer.reclaim_orphans() == 1
    claimed = {e.id: e.suspect for e in buffer.claim(10)}
    assert claimed == {"a": True, "b": False}


def test_a_waiter_is_resumed_once_with_all_its_outcomes_and_errors(
    kinds: None, new_buffer: Callable[[str], Buffer], sent: list[Any]
) -> None:
    buffer = new_buffer("things")
    redis_client = buffer.redis
    buffer.add({"a": {}, "b": {}}, waiter("doc1"))  # one document waits on two elements
    buffer.add({"b": {}}, waiter("doc2"))
    buffer.claim(10)
    refused = ValidationFailed("Xero", ["Item code 'X' is not valid"])
    resume(buffer, {"a": ItemLink(Code="X", ItemID="1"), "b": refused})
    assert [args[0]["doc"] for _, args, _ in sent] == ["doc1", "doc2"]
    first = sent[0][2]["batch"]
    assert first["outcomes"] == {"a": {"Code": "X", "ItemID": "1"}}
    assert first["errors"]["b"]["kind"] == "validation"
    assert "Item code 'X'" in first["errors"]["b"]["message"]
    assert not buffer.pending() and redis_client.hlen(buffer.key("items")) == 0
    # the same element outcome delivered again (a crash before the waiters were dropped)
    buffer.add({"a": {}}, waiter("doc1"))
    buffer.claim(10)
    resume(buffer, {"a": ItemLink(Code="X", ItemID="1")})
    assert len(sent) == 2


def test_a_stage_that_can_go_on_is_finished_by_the_flusher_and_its_chain_goes_on(
    kinds: None,
    new_buffer: Callable[[str], Buffer],
    sent: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resume that would only read its outcome runs in the flusher; one that cannot go on so
    (here: its continuation declines) is sent as its own task, as before."""

    def finish(here: batching.Chained, batch: dict[str, Any], attempt: int) -> Any:
        message = here.message or {}
        if message["doc"].startswith("doc2"):
            return None
        return batching.Chained({**message, "got": batch["outcomes"]}, here.chain, here.ids)

    monkeypatch.setitem(batching.CONTINUATIONS, "t.stage", finish)
    doc1, doc2 = (f"{doc}-{uuid.uuid4().hex[:6]}" for doc in ("doc1", "doc2"))
    later = [{"task": "t.last", "args": [], "kwargs": {}, "options": {}}]
    nxt = {"task": "t.next", "args": [], "kwargs": {}, "options": {}}
    buffer = new_buffer("things")
    buffer.add({"a": {}}, waiter(doc1, "t.stage", chain=[*later, nxt]))
    buffer.add({"a": {}}, waiter(doc2, "t.stage", chain=[nxt]))
    buffer.claim(10)
    resume(buffer, {"a": ItemLink(Code="X", ItemID="1")})
    [(task, args, options), (fallback, fallback_args, fallback_kwargs)] = sent
    assert (task, args) == ("t.next", ({"doc": doc1, "got": {"a": {"Code": "X", "ItemID": "1"}}},))
    assert options["chain"] == later and options["parent_id"] == doc1
    assert (fallback, fallback_args[0]["doc"]) == ("t.stage", doc2)
    assert fallback_kwargs["batch"]["outcomes"] == {"a": {"Code": "X", "ItemID": "1"}}


def test_a_part_full_batch_waits_for_its_tenants_pace_and_a_full_one_does_not(
    kinds: None, new_buffer: Callable[[str], Buffer]
) -> None:
    buffer = new_buffer("things")
    buffer.add({"a": {}}, waiter("w1"))
    assert wait_before_flush(buffer, 3, max_wait=1.0, inflight=1, paced=1.2) == 1.2
    assert wait_before_flush(buffer, 3, max_wait=0.0, inflight=5, paced=1.2) == 1.2
    buffer.add({"b": {}, "c": {}}, waiter("w2"))
    assert wait_before_flush(buffer, 3, max_wait=1.0, inflight=5, paced=1.2) == 0  # full


def test_the_pace_lets_a_lone_events_flushes_go_and_spaces_a_trickle_past_its_share(
    kinds: None, redis_url: str
) -> None:
    """18 tenants at one event a second need 1,080 part-full invoice calls a minute, past an
    app limit of 1,000 (the tenants bench): every tenant's events then waited on the app's
    next minute (p99 8.7 s; 1,000 calls in the last 60 s). A tenant's part-full flushes now
    draw on a bucket of PACE_BURST refilled at its share of the app's minute, a token taken only
    while there is one."""
    from workers.settings import Settings

    def settings(tenants: int) -> Settings:
        conns = [
            {"name": f"t{n}", "xero_tenant_id": f"t{n}", "zoho_org_id": f"o{n}"}
            for n in range(tenants)
        ]
        return Settings(zxs_connections=json.dumps(conns), zxs_xero_app_per_minute=1000)

    shared = settings(20)
    assert policy.pace_per_minute(shared) == 50  # 1,000 a minute over 20 connections
    assert policy.pace_per_minute(settings(10)) is None  # the tenant's own 60 binds first
    names = [f"pace-{uuid.uuid4().hex[:8]}"]
    buffer = Buffer(redis.Redis.from_url(redis_url, decode_responses=True), "things", names[0])
    state = buffer.redis.hmget(redis_keys.BATCH_PACE(names[0]), ["tokens", "at"])
    assert policy.pace_wait(state, time.time(), 50) == 0  # never spent: a lone event goes
    for _ in range(3):  # a new account's contact, its items, its invoice
        assert policy.take_pace(buffer, shared) == 0
    assert 1.1 < policy.take_pace(buffer, shared) <= 1.2  # a fourth waits, taking nothing
    state = buffer.redis.hmget(redis_keys.BATCH_PACE(names[0]), ["tokens", "at"])
    assert 1.1 < policy.pace_wait(state, time.time(), 50) <= 1.2  # the next waits its turn
    assert policy.pace_wait(state, time.time() + 1.2, 50) == 0  # 1.2 s later a token is back
    assert 0 < buffer.redis.ttl(redis_keys.BATCH_PACE(names[0])) <= 120


def test_a_stage_the_flusher_parks_gets_its_flush_trigger_once_it_left_the_flushed_buffer(
    kinds: None,
    new_buffer: Callable[[str], Buffer],
    sent: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flusher runs a resumed stage on until the next one parks (workers/stage.py) while the
    document still counts as waiting in the flushed buffer: the parked buffer's trigger then
    found every job waiting and flushed at once, a write-back at a time (34 Zoho updates for 60
    invoices in the burst test, which allows 31). Its trigger now comes after the resume."""
    buffer = new_buffer("things")
    triggers: list[tuple[str, int]] = []

    def schedule(parked: Buffer, wait: float, settings: Any) -> None:
        triggers.append((parked.kind, int(buffer.redis.scard(buffer.key("waiting")))))

    def run_on(here: batching.Chained, batch: dict[str, Any], attempt: int) -> Any:
        batching.enqueue("notes", buffer.connection, {"n": {}}, waiter("parked-1", "t.later"))
        return batching.Chained(None, [], here.ids)

    monkeypatch.setattr(policy, "schedule_flush", schedule)
    monkeypatch.setitem(batching.CONTINUATIONS, "t.stage", run_on)
    buffer.add({"a": {}}, waiter(f"doc-{uuid.uuid4().hex[:6]}", "t.stage"))
    buffer.claim(10)
    resume(buffer, {"a": ItemLink(Code="X", ItemID="1")})
    assert triggers == [("notes", 0)] and sent == []


def test_the_flusher_sends_a_chains_next_step_as_celerys_tracer_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`finish_waiting` and `send_next` (workers/batching/resume.py) do what Celery's tracer
    does once a chain step returns (celery/app/trace.py): the next step is the last signature
    of the request's `chain`, sent with the result as its one argument, the rest of the chain,
    the finished step's id as parent and its root. Celery keeps that contract private, so this
    test runs the real tracer on a chain built by Celery's public `chain` and compares the two
    sends: if it fails, Celery changed its chain contract; adapt `send_next` before widening
    the Celery pin in pyproject.toml."""
    from celery import Celery, chain
    from celery.app.trace import build_tracer

    sends: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def apply_async(sig: Signature, args: tuple[Any, ...] = (), **options: Any) -> None:
        sends.append((sig.task, tuple(args) or tuple(sig.args), {**sig.options, **options}))

    monkeypatch.setattr(Signature, "apply_async", apply_async)
    guard = Celery("guard", set_as_current=False, broker="memory://")

    def finish(message: dict[str, Any]) -> dict[str, Any]:
        return {**message, "done": True}

    step = guard.task(name="t.stage", ignore_result=True)(finish)
    chain(
        guard.signature("t.stage", args=({"doc": "d1"},)),
        guard.signature("t.next"),
        guard.signature("t.last"),
    ).apply_async()
    [(first, args, options)] = sends  # the first step, as a worker would receive it
    sends.clear()
    task_id = options["task_id"]
    request = {
        "id": task_id,
        "root_id": "root-1",
        "chain": options["chain"],
        "delivery_info": {"priority": 6},
    }
    build_tracer(first, step, app=guard, eager=False, propagate=True)(task_id, args, {}, request)
    [tracer_send] = sends
    sends.clear()
    monkeypatch.setitem(
        batching.CONTINUATIONS,
        "t.stage",
        lambda here, _b, _a: batching.Chained(finish(here.message or {}), here.chain, here.ids),
    )
    waiter = Signature(
        "t.stage",
        args=args,
        kwargs={"batch": {"kind": "things"}},
        options={"task_id": task_id, "root_id": "root-1", "chain": options["chain"]},
    )
    finished = finish_waiting(waiter)
    assert finished is not None
    send_next(waiter, finished)
    [flusher_send] = sends
    assert flusher_send[0] == tracer_send[0] == "t.next"
    assert flusher_send[1] == tracer_send[1] == ({"doc": "d1", "done": True},)
    for option in ("chain", "parent_id", "root_id"):
        assert flusher_send[2][option] == tracer_send[2][option], option
    assert tracer_send[2]["parent_id"] == task_id and tracer_send[2]["root_id"] == "root-1"
    assert [s["task"] for s in tracer_send[2]["chain"]] == ["t.last"]


# ------------------------------------------------------------------------- on real parts


@pytest.mark.integration
def test_a_burst_shares_requests_and_a_refused_invoice_fails_alone(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    data = build_dataset(invoices=60, accounts=12, products=8, seed=21)
    bad_code = str(data.products[0]["Product_Code"])
    stack = make_stack({"product_account_codes": {bad_code: "999"}})  # no such account
    conn = stack.connections[0]
    data = load_dataset(stack.zoho, conn.zoho_org_id, data)
    bad_product = next(str(p["id"]) for p in data.products if p["Product_Code"] == bad_code)
    stack.start_worker(concurrency=2)
    ids = [str(inv["id"]) for inv in data.invoices]
    submit_records(conn.name, ids, "b")
    outcomes = wait_for_outcomes(
        conn.name, [f"{conn.name}:Invoices:{rid}" for rid in ids], timeout=120
    )

    def uses_bad(invoice: dict[str, Any]) -> bool:
        return any(str(li["Product_Name"]["id"]) == bad_product for li in invoice["Invoiced_Items"])

    bad = {str(inv["id"]) for inv in data.invoices if uses_bad(inv)}
    assert 0 < len(bad) < len(ids)
    for record_id in ids:
        outcome, detail = outcomes[f"{conn.name}:Invoices:{record_id}"]
        assert outcome == ("failed" if record_id in bad else "created"), (record_id, detail)
        if record_id in bad:
            assert "Account code '999'" in detail and record_id in detail
    created = stack.xero.invoices(conn.xero_tenant_id)
    assert len(created) == len(ids) - len(bad)
    assert len({inv["Reference"] for inv in created}) == len(created)
    assert len(stack.xero.contacts(conn.xero_tenant_id)) == 12
    routes = stack.xero.stats()["by_route"]
    # one document at a time would cost 60 invoice calls, 12 contact creations, 8 items...
    assert routes.get("PUT /Invoices", 0) <= len(ids) // 4, routes
    assert routes.get("PUT /Contacts", 0) <= 6, routes
    assert sum(stack.xero.stats()["calls"].values()) <= len(ids) // 2, routes
    # write-backs share updates; each failure's status is written on its own by the alert
    zoho_updates = stack.zoho.stats()["by_route"].get("PUT /crm/v7/Invoices", 0)
    assert zoho_updates <= len(bad) + len(ids) // 4, stack.zoho.stats()["by_route"]
    for record_id in set(ids) - bad:
        assert (
            stack.zoho.get(conn.zoho_org_id, "Invoices", record_id)["Xero_Sync_Status"] == "Synced"
        )


@pytest.mark.integration
def test_lost_links_are_found_in_xero_not_created_twice(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    """What a flusher killed after Xero answered leaves behind: invoices in Xero, no links.
    The replay's elements are suspects; one bulk lookup adopts them all."""
    from workers.redis import get_redis

    data = build_dataset(invoices=12, accounts=4, products=5, seed=22)
    stack = make_stack()
    conn = stack.connections[0]
    data = load_dataset(stack.zoho, conn.zoho_org_id, data)
    stack.start_worker(concurrency=2)
    ids = [str(inv["id"]) for inv in data.invoices]
    keys = [f"{conn.name}:Invoices:{rid}" for rid in ids]
    submit_records(conn.name, ids, "b")
    wait_for_outcomes(conn.name, keys, timeout=90)
    redis_client = get_redis()
    from workers.store import get_database
    from workers.store.schema import links

    with get_database().begin() as db:  # every link lost: the replay must find, not create
        db.execute(links.delete().where(links.c.connection == conn.name))
    redis_client.delete(redis_keys.OUTCOMES(conn.name))
    before = dict(stack.xero.stats()["by_route"])
    submit_records(conn.name, ids, "again", event="replay")
    outcomes = wait_for_outcomes(conn.name, keys, timeout=90)
    assert {o for o, _ in outcomes.values()} == {"created"}  # adopted counts as created
    assert len(stack.xero.invoices(conn.xero_tenant_id)) == len(ids)
    assert len(stack.xero.contacts(conn.xero_tenant_id)) == 4
    assert len(stack.xero.items(conn.xero_tenant_id)) == 5
    after = stack.xero.stats()["by_route"]
    assert after.get("PUT /Invoices", 0) == before.get("PUT /Invoices", 0)
    assert after.get("GET /Invoices", 0) - before.get("GET /Invoices", 0) <= 4


@pytest.mark.integration
def test_the_naive_path_sends_one_document_per_request(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    data = build_dataset(invoices=6, accounts=2, products=3, seed=23)
    stack = make_stack(extra_env={"ZXS_BATCHING": "false"})
    conn = stack.connections[0]
    data = load_dataset(stack.zoho, conn.zoho_org_id, data)
    stack.start_worker(concurrency=2)
    ids = [str(inv["id"]) for inv in data.invoices]
    submit_records(conn.name, ids, "b")
    outcomes = wait_for_outcomes(
        conn.name, [f"{conn.name}:Invoices:{rid}" for rid in ids], timeout=90
    )
    assert {o for o, _ in outcomes.values()} == {"created"}
    routes = stack.xero.stats()["by_route"]
    assert routes["PUT /Invoices"] == len(ids)
    assert routes["PUT /Contacts"] == 2  # one request per contact, and none twice
    assert len(stack.xero.contacts(conn.xero_tenant_id)) == 2


@pytest.mark.integration
def test_a_link_xero_says_is_archived_is_forgotten_and_the_replay_finds_it_again(
    make_stack: Callable[..., Any], wait_for_outcomes: Callable[..., Any]
) -> None:
    """The contact link is the lookup cache: when Xero refuses an invoice because the cached
    contact was archived, the link goes, so the replay (after un-archiving) matches again."""
    from workers.deadletter import DeadLetterStore
    from workers.redis import get_redis
    from workers.replay import replay

    stack = make_stack()
    conn = stack.connections[0]
    data = load_dataset(
        stack.zoho, conn.zoho_org_id, build_dataset(invoices=2, accounts=1, products=2, seed=24)
    )
    first, second = (str(inv["id"]) for inv in data.invoices)
    account_id = str(data.accounts[0]["id"])
    stack.start_worker(concurrency=2)
    submit_records(conn.name, [first], "b")
    wait_for_outcomes(conn.name, [f"{conn.name}:Invoices:{first}"], timeout=60)
    store = IdempotencyStore(get_redis(), 60)
    assert store.link(CONTACT, conn.name, account_id) is not None
    [contact] = stack.xero.contacts(conn.xero_tenant_id)
    tenant = stack.xero.tenant(conn.xero_tenant_id)
    with stack.xero.lock:
        tenant.contacts[contact["ContactID"]]["ContactStatus"] = "ARCHIVED"

    submit_records(conn.name, [second], "b")
    key = f"{conn.name}:Invoices:{second}"
    outcome, detail = wait_for_outcomes(conn.name, [key], timeout=60)[key]
    assert outcome == "failed" and "archived" in detail, detail
    assert store.link(CONTACT, conn.name, account_id) is None

    with stack.xero.lock:
        tenant.contacts[contact["ContactID"]]["ContactStatus"] = "ACTIVE"
    letters = DeadLetterStore(get_redis())
    [letter] = [d for d in letters.list() if (d.connection, d.record_id) == (conn.name, second)]
    replay(letter, letters)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the failure's own outcome stays until the replay's
        outcome, detail = wait_for_outcomes(conn.name, [key], timeout=5)[key]
        if outcome == "created":
            break
        time.sleep(0.2)
    assert outcome == "created", detail
    assert len(stack.xero.contacts(conn.xero_tenant_id)) == 1  # matched again, not duplicated
    assert len(stack.xero.invoices(conn.xero_tenant_id)) == 2


def test_the_history_of_the_stages_a_flush_finishes_is_written_at_once_before_they_go_on(
    kinds: None, new_buffer: Callable[[str], Buffer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stage the flusher finished wrote its history rows in a transaction (and a Redis
    round trip) of its own, up to 50 a flush and three times per new invoice: they are written
    together, and before any of their next stages is sent."""
    from schemas.history import HistoryEvent
    from workers.outcomes import record_history
    from workers.store import Database, get_database, use_database

    use_database(Database("sqlite://"))
    buffer = new_buffer("things")
    docs = [f"doc{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]

    def finish(here: batching.Chained, batch: dict[str, Any], attempt: int) -> Any:
        key = f"{buffer.connection}:Invoices:{(here.message or {})['doc']}"
        record_history(buffer.redis).log(key, "t.stage", HistoryEvent.DONE)
        return here

    rows_at_send: list[int] = []

    def apply_async(sig: Signature, args: Any = None, **options: Any) -> None:
        rows_at_send.append(
            sum(len(get_database().history(f"{buffer.connection}:Invoices:{d}")) for d in docs)
        )

    transactions: list[object] = []
    real_begin = Database.begin

    def begin(self: Database, **kwargs: Any) -> Any:
        if not kwargs.get("read"):
            transactions.append(self)
        return real_begin(self, **kwargs)

    monkeypatch.setitem(batching.CONTINUATIONS, "t.stage", finish)
    monkeypatch.setattr(Signature, "apply_async", apply_async)
    monkeypatch.setattr(Database, "begin", begin)
    nxt = {"task": "t.next", "args": [], "kwargs": {}, "options": {}}
    try:
        for doc in docs:
            buffer.add({"a": {}}, waiter(doc, "t.stage", chain=[nxt]))
        buffer.claim(10)
        resume(buffer, {"a": ItemLink(Code="X", ItemID="1")})
        assert rows_at_send == [3, 3, 3]
        assert len(transactions) == 1
    finally:
        use_database(None)


def test_beats_sweep_flushes_every_buffer_with_work_where_no_batch_kind_is_imported(
    kinds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep is the net under a flush trigger lost with a killed flusher, whose claims
    block the buffer: a buffer whose elements are all claimed is never due, so the stages that
    park there later send no trigger either. Run where no batch handler is imported (the chaos
    driver runs beat's tasks itself) it skipped every buffer, and the chaos run stalled until
    its deadline (CI on 83d55d8: 400 s; locally no invoice created)."""
    from workers.batching import sweep
    from workers.redis import get_redis

    buffer = Buffer(get_redis(), "things", f"unit-{uuid.uuid4().hex[:8]}")
    buffer.add({"a": {}}, waiter("w1"))
    buffer.claim(1)  # then its flusher is killed
    sent: list[tuple[str, str, str]] = []
    monkeypatch.setattr(
        sweep,
        "send_flush",
        lambda kind, connection, _, trigger: sent.append((kind, connection, trigger)),
    )
    batching.KINDS.clear()  # this process imported no batch handler
    sweep.sweep_batches()
    assert (buffer.kind, buffer.connection, "sweep") in sent


def test_a_flush_of_a_kind_no_handler_knows_drops_its_buffer_from_the_sweep() -> None:
    from workers.batching.flush import flush_batch
    from workers.redis import get_redis

    buffer = Buffer(get_redis(), "retired", f"unit-{uuid.uuid4().hex[:8]}")
    get_redis().sadd(redis_keys.BATCH_ACTIVE(), buffer.member)
    assert flush_batch("retired", buffer.connection) == 0
    assert not get_redis().sismember(redis_keys.BATCH_ACTIVE(), buffer.member)


def test_batches_put_back_are_claimed_again_as_they_were(
    kinds: None, new_buffer: Callable[[str], Buffer]
) -> None:
    """A suspect batch is sent again under its Idempotency-Key only whole (workers/batching/
    suspects.py). Two batches one flush put back (one answered 500, one 429) went back at one
    score and were claimed again mixed, [a, b] and [c, d] from [a, d] and [b, c]: neither was
    whole, so both waited the lookup margin (a minute) for a lookup. Under load the test of
    that flush timed out so (tests/test_exactly_once.py, a full run on c829d21)."""
    buffer = new_buffer("things")
    for element in "adbc":  # the order the documents parked in: batches [a, d] and [b, c]
        buffer.add({element: {}}, waiter(f"w-{element}"))
    first, second = [e.id for e in buffer.claim(2)], [e.id for e in buffer.claim(2)]
    assert (first, second) == (["a", "d"], ["b", "c"])
    buffer.release(first, suspect=True)  # a 500: it may have been applied
    buffer.release(second, suspect=False)  # a 429: refused before it was run
    assert [sorted(e.id for e in buffer.claim(2)) for _ in range(2)] == [["a", "d"], ["b", "c"]]
    # a dead flusher's claims come back the same way
    assert buffer.reclaim_orphans() == 4
    assert [sorted(e.id for e in buffer.claim(2)) for _ in range(2)] == [["a", "d"], ["b", "c"]]
