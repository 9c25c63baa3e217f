"""Issue #20: the system of record (workers/store), on SQLite and on the real PostgreSQL.

Every test runs on both backends: an in-memory SQLite (the embedded default's code path) and a
schema of its own in the machine's PostgreSQL (skipped, with the reason, when it does not
answer). What must never be lost survives Redis losing everything."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import fakeredis
import pytest
import redis
import sqlalchemy
from conftest import drop_postgres_schema, postgres_url

import tasks.invoice_create  # noqa: F401  (registers the invoices kind)
from console import audit
from schemas.errors import InvalidRecord
from schemas.history import HistoryEvent
from schemas.links import INVOICE, InvoiceLink, TotalPair, WrittenBack
from workers.batching import Buffer, Flush
from workers.deadletter import DeadLetterStore
from workers.history import RecordHistory
from workers.idempotency import IdempotencyStore
from workers.store import Database, use_database
from workers.store.schema import links


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    """The store on each backend, the process's own for the test."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        schema = f"zxs_store_{uuid.uuid4().hex[:10]}"
        url = postgres_url(schema)
        if url is None:
            pytest.skip("PostgreSQL at 127.0.0.1:5432 (database test) does not answer")
        db = Database(url)
    use_database(db)
    yield db
    use_database(None)
    db.engine.dispose()
    if request.param == "postgresql":
        drop_postgres_schema(url, schema)


def fresh_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def test_links_dead_letters_history_and_audit_survive_redis_losing_everything(
    database: Database,
) -> None:
    client = fresh_redis()
    IdempotencyStore(client, 60).set_links(
        INVOICE, "c", {"Invoices:1": InvoiceLink(InvoiceID="x1")}
    )
    letter = DeadLetterStore(client).add(
        stage="s",
        job={"connection": "c", "module": "Invoices", "record_id": "1"},
        exc=InvalidRecord("Invoices 1", "Invoice_Date", "is empty"),
        attempts=1,
        payload="{}",
        traceback="",
    )
    RecordHistory(client).log("c:Invoices:1", "zxsync.fetch_record", HistoryEvent.DONE, note="n")
    RecordHistory(client).finish("c", "c:Invoices:1", "created", "INV-1")
    audit.record("olga", "dlq.replay", "c:Invoices:1")
    client.flushall()  # an evicting or failed-over Redis
    other = fresh_redis()
    assert IdempotencyStore(other, 60).link(INVOICE, "c", "Invoices:1") == InvoiceLink(
        InvoiceID="x1"
    )
    assert DeadLetterStore(other).get(letter.id) == letter
    assert [e["note"] for e in RecordHistory(other).entries("c:Invoices:1")] == ["n"]
    assert [(a.user, a.action) for a in audit.recent()] == [("olga", "dlq.replay")]


def test_the_database_refuses_a_second_link_of_one_record_or_one_xero_document(
    database: Database,
) -> None:
    row = {"connection": "c", "kind": "invoice", "updated_at": 0.0, "value": "{}"}
    with database.begin() as conn:
        conn.execute(links.insert(), [{**row, "zoho_id": "Invoices:1", "xero_id": "x1"}])
    with pytest.raises(sqlalchemy.exc.IntegrityError), database.begin() as conn:
        conn.execute(links.insert(), [{**row, "zoho_id": "Invoices:1", "xero_id": "x2"}])
    with pytest.raises(sqlalchemy.exc.IntegrityError), database.begin() as conn:
        conn.execute(links.insert(), [{**row, "zoho_id": "Invoices:2", "xero_id": "x1"}])


def test_a_converted_document_shares_the_invoice_it_adopts(database: Database) -> None:
    store = IdempotencyStore(fresh_redis(), 60)
    store.set_links(INVOICE, "c", {"Quotes:1": InvoiceLink(InvoiceID="x1")})
    store.set_links(INVOICE, "c", {"SalesOrders:2": InvoiceLink(InvoiceID="x1", Status="DRAFT")})
    assert store.links(INVOICE, "c", ["Quotes:1", "SalesOrders:2"]) == {
        "Quotes:1": InvoiceLink(InvoiceID="x1"),
        "SalesOrders:2": InvoiceLink(InvoiceID="x1", Status="DRAFT"),
    }


def test_dead_letters_keep_who_replayed_or_discarded_them(database: Database) -> None:
    store = DeadLetterStore(fresh_redis())
    kept: dict[str, Any] = {
        "stage": "s",
        "job": {},
        "attempts": 1,
        "payload": "{}",
        "traceback": "",
    }
    first = store.add(exc=KeyError("a"), **kept)
    second = store.add(exc=KeyError("b"), **kept)
    store.mark_replayed(first, by="olga")
    assert store.discard(second.id, by="ivan") and not store.discard(second.id)
    assert store.list() == [] and store.get(first.id) is None
    replayed = store.list(status="replayed")
    assert [letter.id for letter in replayed] == [first.id]


def test_eight_workers_whose_redis_lost_each_others_claims_let_one_create_out(
    database: Database, redis_url: str
) -> None:
    """Eight flushers of one record, each holding a buffer of its own (Redis failed over and
    every worker's claim, lock and mark is gone): the database's claim lets one create out."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    connection = f"eight-{uuid.uuid4().hex[:8]}"
    start = threading.Barrier(8)
    let_out: list[int] = []

    class Lost(Buffer):
        """A buffer in a Redis of its own (its keys apart from the other workers')."""

        def __init__(self, n: int) -> None:
            super().__init__(client, "invoices", connection)
            self.n = n

        def key(self, name: str) -> str:
            return f"{super().key(name)}:lost-{self.n}"

        def waiters_key(self, element_id: str) -> str:
            return f"{super().waiters_key(element_id)}:lost-{self.n}"

    def worker(n: int) -> None:
        buffer = Lost(n)
        buffer.add({"Invoices:1": {"v": 1}}, {"options": {"task_id": f"t{n}"}})
        hold = Flush(buffer, buffer.fence())
        elements = buffer.claim(10)
        start.wait()
        refused = hold.sending(elements, f"key-{n}", claim=INVOICE, margin=60)
        let_out.extend(n for e in elements if e.id not in refused)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(let_out) == 1, let_out
    store = IdempotencyStore(client, 60)
    assert store.link(INVOICE, connection, "Invoices:1") is None  # pending, not a link yet
    winner = let_out[0]
    assert (
        database.claim_creates(
            "invoice", connection, ["Invoices:1"], f"key-{winner}", take_over=set(), older_than=0
        )
        == set()
    )  # the winner's retry under its own key goes out again
    assert database.claim_creates(
        "invoice", connection, ["Invoices:1"], "late", take_over={"Invoices:1"}, older_than=0
    ) == {"Invoices:1"}  # a lookup that found nothing may not take a fresh claim over


def test_the_accountants_export_lists_synced_and_failed_documents_since_a_date(
    database: Database,
) -> None:
    import csv
    import io
    from datetime import datetime

    from workers.store.records import export_csv

    client = fresh_redis()
    link = InvoiceLink(
        InvoiceID="x1",
        InvoiceNumber="INV-0001",
        Status="AUTHORISED",
        Total=Decimal("11.50"),
        Reference="ZINV-7",
        total_differs=TotalPair(zoho="11.00", xero="11.50"),
    )
    IdempotencyStore(client, 60).set_links(INVOICE, "c", {"Invoices:7": link})
    history = RecordHistory(client)
    history.finish("c", "c:Invoices:7", "created", "INV-0001")
    history.finish("c", "c:Invoices:8", "failed", "Invoices 8: Product_Code is empty")
    history.finish("other", "other:Invoices:9", "created", "INV-0009")
    DeadLetterStore(client).add(
        stage="s",
        job={"connection": "c", "module": "Invoices", "record_id": "8"},
        exc=InvalidRecord("Invoices 8", "Product_Code", "is empty"),
        attempts=1,
        payload="{}",
        traceback="",
    )
    rows = list(csv.DictReader(io.StringIO(export_csv(database, "c", datetime(2020, 1, 1)))))
    assert [(r["zoho_id"], r["outcome"]) for r in rows] == [("7", "created"), ("8", "failed")]
    assert (rows[0]["zoho_number"], rows[0]["xero_invoice_number"]) == ("ZINV-7", "INV-0001")
    assert (rows[0]["zoho_total"], rows[0]["xero_total"]) == ("11.00", "11.50")
    assert "Product_Code" in rows[1]["last_error"]
    assert export_csv(database, "c", datetime(2999, 1, 1)).count("\n") == 1  # the header only


def test_retention_purges_old_history_and_audit_and_keeps_links(database: Database) -> None:
    from datetime import UTC, datetime, timedelta

    from workers.store.records import purge

    client = fresh_redis()
    RecordHistory(client).log("c:Invoices:1", "s", HistoryEvent.DONE)
    audit.record("olga", "replay", "c:Invoices:1")
    IdempotencyStore(client, 60).set_links(INVOICE, "c", {"Invoices:1": InvoiceLink(InvoiceID="x")})
    assert purge(database, 30, 30) == purge(database, 30, 30)  # nothing old yet
    later = datetime.now(UTC) + timedelta(days=31)
    done = purge(database, 30, 400, now=later)
    assert (done.history, done.audit) == (1, 0)
    assert RecordHistory(client).entries("c:Invoices:1") == [] and audit.recent()
    assert IdempotencyStore(client, 60).link(INVOICE, "c", "Invoices:1") == InvoiceLink(
        InvoiceID="x"
    )


def test_the_migrations_build_exactly_the_tables_the_code_uses(database: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from workers.store.schema import metadata

    with database.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_an_invoice_whose_link_another_create_claimed_waits_as_a_suspect_and_is_not_sent(
    database: Database, redis_url: str
) -> None:
    """The invoices handler meets a claim the database refuses (another flusher's create of the
    same record may still be committing in Xero): that element goes back to wait (`Later`) and
    no request is sent for it."""
    from types import SimpleNamespace

    from tasks.batch_handlers.elements import InvoiceElement
    from tasks.batch_handlers.invoices import write_invoices
    from workers.batching import Later
    from workers.settings import get_settings

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    connection = f"claimed-{uuid.uuid4().hex[:8]}"
    database.claim_creates(
        "invoice", connection, ["Invoices:1"], "other", take_over=set(), older_than=0
    )
    buffer = Buffer(client, "invoices", connection)
    payload = InvoiceElement(
        record="Invoices 1",
        body={},
        version="v1",
        lookup=None,
        suspect=False,
        account_id="a1",
        products={},
    )
    buffer.add({"Invoices:1": payload.wire()}, {"options": {"task_id": "t1"}})
    settings = get_settings()
    ctx = SimpleNamespace(
        connection=SimpleNamespace(name=connection),
        settings=settings,
        idempotency=IdempotencyStore(client, 60),
        flush=Flush(buffer, buffer.fence()),
        xero=None,  # nothing may be sent
    )
    results = write_invoices(ctx, buffer.claim(10))  # type: ignore[arg-type]
    later = results["Invoices:1"]
    assert isinstance(later, Later)
    assert later.until > time.time() + settings.zxs_lookup_margin_seconds - 5


def test_a_create_whose_mark_died_with_the_master_is_adopted_never_sent_again(
    database: Database, redis_url: str
) -> None:
    """Replication is asynchronous: a create's mark, the buffer's fence, its `server` run_id and
    its claim, written just before the master died, can all be missing on the promoted replica,
    whose buffer holds the element as it was before the flush (no suspect, no mark). The
    database's pending claim, committed before the create went out, is what a failover cannot
    lose: the first flush on the replica sends nothing for it, and once the lookup margin has
    passed the element is looked up and adopts what Xero saved. No WAIT on a replica needed."""
    from types import SimpleNamespace

    from schemas.errors import RetryableApiError
    from schemas.xero import XeroInvoice
    from tasks.batch_handlers.elements import InvoiceElement
    from tasks.batch_handlers.invoices import write_invoices
    from workers.batching import Later
    from workers.settings import get_settings

    connection = f"failover-{uuid.uuid4().hex[:8]}"
    body = {
        "Contact": {"ContactID": "c-1"},
        "LineItems": [{"Description": "Widget", "Quantity": "1", "UnitAmount": "10.00"}],
        "InvoiceNumber": "INV-7",
    }
    element = InvoiceElement(
        record="Invoices 7",
        body=body,
        version="v1",
        lookup='InvoiceNumber=="INV-7"',
        suspect=False,
        account_id="a-1",
        products={},
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    class On(Buffer):
        """The buffer as one Redis holds it: the promoted replica never got the flush's writes."""

        def __init__(self, server: str) -> None:
            super().__init__(client, "invoices", connection)
            self.server = server

        def key(self, name: str) -> str:
            return f"{super().key(name)}:{self.server}"

        def waiters_key(self, element_id: str) -> str:
            return f"{super().waiters_key(element_id)}:{self.server}"

    for server in ("master", "promoted"):
        On(server).add({"Invoices:7": element.wire()}, {"options": {"task_id": "t7"}})

    class Xero:
        """Saves what it is sent; the first create's answer never arrives (the master died)."""

        def __init__(self) -> None:
            self.saved: list[XeroInvoice] = []

        def create_invoices(self, bodies: list[dict[str, Any]], key: str) -> list[Any]:
            for sent in bodies:
                self.saved.append(
                    XeroInvoice(
                        InvoiceID=f"x-{len(self.saved)}",
                        InvoiceNumber=sent["InvoiceNumber"],
                        Status="AUTHORISED",
                        Total="10.00",
                    )
                )
            raise RetryableApiError("Xero", "the answer was lost with the master")

        def find_invoices_any(self, clauses: list[str], scope: str) -> list[XeroInvoice]:
            return list(self.saved)

    xero, settings = Xero(), get_settings()

    def flush(server: str) -> tuple[Buffer, dict[str, Any]]:
        buffer = On(server)
        ctx = SimpleNamespace(
            connection=SimpleNamespace(name=connection),
            settings=settings,
            idempotency=IdempotencyStore(client, 60),
            flush=Flush(buffer, buffer.fence()),
            xero=xero,
        )
        return buffer, write_invoices(ctx, buffer.claim(10))  # type: ignore[arg-type]

    with pytest.raises(RetryableApiError):
        flush("master")  # claimed, marked, sent and saved; then the master died
    assert len(xero.saved) == 1
    buffer, results = flush("promoted")  # no mark, no suspect: the database's claim refuses it
    assert isinstance(results["Invoices:7"], Later)
    assert len(xero.saved) == 1
    buffer.release_until({"Invoices:7": 0})  # what the flush does with a Later
    with database.begin() as conn:  # the lookup margin has passed
        conn.execute(
            links.update()
            .where(links.c.connection == connection)
            .values(pending_at=time.time() - settings.zxs_lookup_margin_seconds - 1)
        )
    _, results = flush("promoted")
    assert results["Invoices:7"].action == "adopted"
    assert len(xero.saved) == 1  # never sent again
    assert database.links("invoice", connection, ["Invoices:7"])["Invoices:7"]["InvoiceID"] == "x-0"


def test_a_mark_the_database_no_longer_holds_is_looked_up_not_sent_again_under_its_key(
    database: Database, redis_url: str
) -> None:
    """A request's mark (key K) can outlive the database's claim: a later flusher looked the
    element up, took the claim over under K2, and was fenced out (or lost with the master)
    before its own mark replaced K. Sent again under K, the element was refused by the claim at
    every flush and waited the lookup margin again and again, until its mark aged past the
    idempotency window (about 5 minutes). The refusal drops the mark: the next flush looks the
    element up and adopts what K2's create saved in Xero."""
    from types import SimpleNamespace

    from schemas.xero import XeroInvoice
    from tasks.batch_handlers.elements import InvoiceElement
    from tasks.batch_handlers.invoices import _digest, write_invoices
    from workers.batching import Later
    from workers.settings import get_settings

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    connection = f"stale-{uuid.uuid4().hex[:8]}"
    element = InvoiceElement(
        record="Invoices 8",
        body={
            "Contact": {"ContactID": "c-1"},
            "LineItems": [{"Description": "Widget", "Quantity": "1", "UnitAmount": "10.00"}],
            "InvoiceNumber": "INV-8",
        },
        version="v1",
        lookup='InvoiceNumber=="INV-8"',
        suspect=False,
        account_id="a-1",
        products={},
    )
    buffer = Buffer(client, "invoices", connection)
    buffer.add({"Invoices:8": element.wire()}, {"options": {"task_id": "t8"}})
    (claimed,) = buffer.claim(10)
    Flush(buffer, buffer.fence()).sending(
        [claimed], "K", {claimed.id: _digest(claimed)}, claim=INVOICE
    )  # request K marked and let out, no answer
    taken = database.claim_creates(
        "invoice", connection, ["Invoices:8"], "K2", take_over={"Invoices:8"}, older_than=1e12
    )
    assert taken == set()  # a later flusher's K2 holds the claim; its create saved INV-8
    saved = XeroInvoice(InvoiceID="x-8", InvoiceNumber="INV-8", Status="AUTHORISED", Total="10")

    class Xero:
        def create_invoices(self, bodies: list[dict[str, Any]], key: str) -> list[Any]:
            raise AssertionError(f"sent again under {key}")

        def find_invoices_any(self, clauses: list[str], scope: str) -> list[XeroInvoice]:
            return [saved]

    def flush() -> dict[str, Any]:
        ctx = SimpleNamespace(
            connection=SimpleNamespace(name=connection),
            settings=get_settings(),
            idempotency=IdempotencyStore(client, 60),
            flush=Flush(buffer, buffer.fence()),
            xero=Xero(),
        )
        return write_invoices(ctx, buffer.claim(10))  # type: ignore[arg-type]

    buffer.release(["Invoices:8"], suspect=True)
    assert isinstance(flush()["Invoices:8"], Later)  # K's resend: refused by the claim
    buffer.release_until({"Invoices:8": 0})
    assert flush()["Invoices:8"].action == "adopted"


def test_one_claim_then_send_loop_holds_claimed_sends_the_rest_and_gives_refused_claims_back(
    database: Database, redis_url: str
) -> None:
    """The create handlers' shared loop (tasks/batch_handlers/creates.py): an element another
    create holds the claim of waits (`Later`) and is not sent; what Xero created is linked and
    its outcome returned; what Xero refused is its own error and its claim is given back."""
    from types import SimpleNamespace

    from tasks.batch_handlers.creates import send_claimed
    from workers.batching import Element, Later
    from workers.settings import get_settings

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    connection = f"loop-{uuid.uuid4().hex[:8]}"
    ids = ["Invoices:1", "Invoices:2", "Invoices:3"]
    database.claim_creates("invoice", connection, ids[:1], "other", take_over=set(), older_than=0)
    buffer = Buffer(client, "invoices", connection)
    buffer.add({eid: {"suspect": False} for eid in ids}, {"options": {"task_id": "t1"}})
    ctx = SimpleNamespace(
        connection=SimpleNamespace(name=connection),
        settings=get_settings(),
        flush=Flush(buffer, buffer.fence()),
    )
    sent: list[list[str]] = []

    def create(group: list[Element], key: str) -> list[tuple[str | None, list[str]]]:
        sent.append([e.id for e in group])
        return [("x2", []), (None, ["Contact is archived"])]

    results = send_claimed(
        ctx,  # type: ignore[arg-type]
        INVOICE,
        [("key-1", sorted(buffer.claim(10), key=lambda e: e.id))],
        dict.fromkeys(ids, "d"),
        frozenset(),
        create,
        lambda element, doc: (InvoiceLink(InvoiceID=doc), WrittenBack(written=True)),
        lambda element, errors: InvalidRecord(element.id, "Contact", errors[0]),
    )
    assert sent == [ids[1:]]
    assert isinstance(results["Invoices:1"], Later)
    assert results["Invoices:2"] == WrittenBack(written=True)
    assert isinstance(results["Invoices:3"], InvalidRecord)
    store = IdempotencyStore(client, 60)
    assert store.links(INVOICE, connection, ids) == {"Invoices:2": InvoiceLink(InvoiceID="x2")}
    assert database.claim_creates(
        "invoice", connection, ids, "next", take_over=set(), older_than=0
    ) == {"Invoices:1", "Invoices:2"}  # the refused create's claim was given back


def test_a_process_opening_a_database_at_the_newest_schema_does_not_load_alembic(
    database: Database,
) -> None:
    """Every worker process opens the store, and `migrate` ran Alembic's upgrade each time:
    alembic and mako cost each process about 7 MiB it kept (issue #19's worker RSS) to learn
    that nothing was to be done. The revision is now read first; Alembic runs only for a
    schema behind `HEAD_REVISION`, which must be the migrations' own head."""
    import subprocess
    import sys

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from workers.store import HEAD_REVISION, MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]
    url = database.url
    opened = (
        "import sys; from workers.store import Database; Database(sys.argv[1]); "
        "print('alembic' in sys.modules)"
    )
    run = subprocess.run(
        [sys.executable, "-c", opened, url], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "False", run.stderr
