"""`zxsync migrate-state`: copy what earlier versions kept in Redis into the system of record.

Links (every kind), record history, outcomes and open dead letters are read from the keys the
Redis-backed stores wrote (`zxs:links:<connection>:<kind>`, `zxs:history:<key>`,
`zxs:outcomes:<connection>`, the `zxs:dlq` stream) and inserted where the database has none
yet, so running it twice, or after workers have written newer links, changes nothing already
there. Redis is left as it was: delete those keys once the counts look right."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import redis
from sqlalchemy import select

from schemas.wire import dumps, loads
from workers import keys
from workers.deadletter import FIELDS, DeadLetter, DeadLetterStore
from workers.store import Database
from workers.store.schema import dead_letters
from workers.store.schema import history as history_table
from workers.store.schema import outcomes as outcomes_table


def migrate_state(redis_client: redis.Redis, database: Database) -> Counter[str]:
    """Counts of what was read from Redis and what was new to the database."""
    counts: Counter[str] = Counter()
    for key in cast(list[str], redis_client.scan_iter(keys.LEGACY_LINKS.match(), count=500)):
        connection, _, kind = key.removeprefix(keys.LEGACY_LINKS.stem()).rpartition(":")
        raw = cast(dict[str, str], redis_client.hgetall(key))
        values = {zid: loads(value) for zid, value in raw.items()}
        counts["links read"] += len(values)
        counts["links new"] += database.import_links(kind, connection, values)
    for key in cast(list[str], redis_client.scan_iter(keys.LEGACY_HISTORY.match(), count=500)):
        record = key.removeprefix(keys.LEGACY_HISTORY.stem())
        entries = [loads(e) for e in cast(list[str], redis_client.lrange(key, 0, -1))]
        counts["history read"] += len(entries)
        counts["history new"] += _import_history(database, record, entries)
    for key in cast(list[str], redis_client.scan_iter(keys.OUTCOMES.match(), count=500)):
        connection = key.removeprefix(keys.OUTCOMES.stem())
        raw = cast(dict[str, str], redis_client.hgetall(key))
        counts["outcomes read"] += len(raw)
        counts["outcomes new"] += _import_outcomes(database, connection, raw)
    letters = DeadLetterStore(redis_client, database)
    known = {legacy for (legacy,) in _rows(database, select(dead_letters.c.legacy_id))}
    for entry_id, fields in cast(
        list[tuple[str, dict[str, str]]], redis_client.xrange(keys.LEGACY_DLQ())
    ):
        counts["dead letters read"] += 1
        if entry_id in known:
            continue
        letter: dict[str, Any] = {name: fields.get(name, "") for name in FIELDS}
        letter["attempts"] = int(letter["attempts"] or 0)
        letters.insert(DeadLetter(**letter), legacy_id=entry_id)
        counts["dead letters new"] += 1
    return counts


def _rows(database: Database, query: Any) -> list[Any]:
    with database.begin() as conn:
        return list(conn.execute(query))


def _import_history(database: Database, record: str, entries: list[dict[str, Any]]) -> int:
    have = {
        (at, stage, event)
        for at, stage, event in _rows(
            database,
            select(history_table.c.at, history_table.c.stage, history_table.c.event).where(
                history_table.c.record_key == record
            ),
        )
    }
    rows = []
    for entry in entries:
        at, stage, event = (
            str(entry.get("at", "")),
            str(entry.get("stage", "")),
            str(entry.get("event", "")),
        )
        if (at, stage, event) in have:
            continue
        detail = {k: v for k, v in entry.items() if k not in ("at", "stage", "event")}
        rows.append(
            {
                "connection": record.split(":", 1)[0],
                "record_key": record,
                "at": at,
                "stage": stage,
                "event": event,
                "detail": dumps(detail),
            }
        )
    database.append_history(rows)
    return len(rows)


def _import_outcomes(database: Database, connection: str, raw: dict[str, str]) -> int:
    have = {
        key
        for (key,) in _rows(
            database,
            select(outcomes_table.c.record_key).where(outcomes_table.c.connection == connection),
        )
    }
    new = 0
    for key, value in raw.items():
        if key not in have:
            outcome, detail = loads(value)
            database.set_outcome(connection, key, str(outcome), str(detail), "")
            new += 1
    return new
