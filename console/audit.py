"""Who did what from the console and the CLI: the audit table of the system of record
(workers/store), newest last; kept `ZXS_AUDIT_DAYS` (zxsync retention)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select

from workers.store import get_database
from workers.store.schema import audit


@dataclass(frozen=True)
class AuditLine:
    at: str
    user: str
    action: str
    target: str
    detail: str


def record(user: str, action: str, target: str, detail: str = "") -> None:
    """Append one line."""
    row = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": user,
        "action": action,
        "target": target,
        "detail": detail,
    }
    with get_database().begin() as conn:
        conn.execute(insert(audit), [row])


def recent(count: int = 200, target: str = "", action_prefix: str = "") -> list[AuditLine]:
    """Newest first; only lines about `target`, and whose action starts with `action_prefix`,
    when given (filtered in SQL, so `count` counts matching lines only)."""
    query = select(audit.c.at, audit.c.user, audit.c.action, audit.c.target, audit.c.detail)
    if target:
        query = query.where(audit.c.target == target)
    if action_prefix:
        query = query.where(audit.c.action.startswith(action_prefix, autoescape=True))
    query = query.order_by(audit.c.id.desc()).limit(count)
    with get_database().begin(read=True) as conn:
        return [AuditLine(*row) for row in conn.execute(query)]
