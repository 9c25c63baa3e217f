"""What the accountant and the retention policy read from the system of record: the export of
synced and failed documents, and the purge of history and audit lines past their keep."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from schemas.wire import loads
from workers.store import Database
from workers.store.schema import audit, dead_letters, history, links, outcomes

EXPORT_COLUMNS = (
    "connection",
    "module",
    "zoho_id",
    "zoho_number",
    "xero_invoice_number",
    "xero_invoice_id",
    "zoho_total",
    "xero_total",
    "xero_status",
    "outcome",
    "last_error",
    "at",
)


def export_csv(database: Database, connection: str, since: datetime) -> str:
    """One row per document whose outcome was recorded since `since`: numbers, totals, Xero's
    status, the outcome and the last error (its open dead letter's, else the outcome's note).
    The Zoho total is the one judged against Xero's (they agree unless a difference stands)."""
    with database.begin() as conn:
        done = conn.execute(
            select(outcomes.c.record_key, outcomes.c.outcome, outcomes.c.detail, outcomes.c.at)
            .where(outcomes.c.connection == connection, outcomes.c.at >= since.isoformat())
            .order_by(outcomes.c.at)
        ).fetchall()
        ids = [key.split(":", 1)[1] for key, *_ in done]
        found = {
            zid: loads(value)
            for zid, value in conn.execute(
                select(links.c.zoho_id, links.c.value).where(
                    links.c.connection == connection,
                    links.c.kind == "invoice",
                    links.c.zoho_id.in_(ids),
                    links.c.value.is_not(None),
                )
            )
        }
        errors = {
            f"{module}:{record_id}": error
            for module, record_id, error in conn.execute(
                select(dead_letters.c.module, dead_letters.c.record_id, dead_letters.c.error)
                .where(dead_letters.c.connection == connection, dead_letters.c.status == "open")
                .order_by(dead_letters.c.id)
            )
        }
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for key, outcome, detail, at in done:
        link_id = key.split(":", 1)[1]
        module, _, zoho_id = link_id.partition(":")
        link = found.get(link_id, {})
        differs = link.get("total_differs") or {}
        writer.writerow(
            [
                connection,
                module,
                zoho_id,
                link.get("Reference", ""),
                link.get("InvoiceNumber", ""),
                link.get("InvoiceID", ""),
                differs.get("zoho", link.get("Total", "")),
                link.get("Total", ""),
                link.get("Status", ""),
                outcome,
                errors.get(link_id, detail if outcome == "failed" else ""),
                at,
            ]
        )
    return out.getvalue()


@dataclass(frozen=True)
class Purged:
    history: int
    audit: int


def purge(
    database: Database, history_days: int, audit_days: int, now: datetime | None = None
) -> Purged:
    """Delete history and audit lines older than their keep. Links, outcomes and dead letters
    are never purged: they are what stops a duplicate and what an accountant reconciles."""
    now = now or datetime.now(UTC)
    with database.begin() as conn:
        h = conn.execute(
            delete(history).where(history.c.at < (now - timedelta(days=history_days)).isoformat())
        ).rowcount
        a = conn.execute(
            delete(audit).where(audit.c.at < (now - timedelta(days=audit_days)).isoformat())
        ).rowcount
    return Purged(int(h), int(a))
