"""Where Xero takes over in the Quote -> Sales Order -> Invoice sequence: pure decisions.

Given what the Zoho record says and whether it (or the document it was converted from) is
already in Xero, decide one thing: create or update, cancel, wait for approval, or skip, always
with a reason a person can read. Every skip is reported, never silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.connection import Connection

Action = Literal["sync", "cancel", "await_approval", "skip"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""


def decide(
    module: str,
    event: str,
    status: str | None,
    approval: str | None,
    linked: bool,
    conn: Connection,
) -> Decision:
    """What to do with a sales document event.

    `linked`: this document, or one it was converted from, already has a Xero invoice. Linked
    documents are kept in step whatever their status; unlinked ones need a trigger status.
    """
    if event == "delete" or (status is not None and status in conn.cancelled_statuses):
        if linked:
            return Decision("cancel", f"{module} is {'deleted' if event == 'delete' else status}")
        return Decision("skip", f"{module} is cancelled and nothing of it is in Xero")
    if not linked:
        if module not in conn.triggers:
            triggers = ", ".join(sorted(conn.triggers)) or "none"
            return Decision(
                "skip",
                f"{module} do not go to Xero for connection {conn.name} (triggers: {triggers})",
            )
        wanted = conn.triggers[module]
        if wanted and status not in wanted:
            return Decision(
                "skip", f"status '{status}' is not a trigger (waiting for {' or '.join(wanted)})"
            )
    if conn.approval_field and approval != conn.approval_value:
        return Decision(
            "await_approval",
            f"awaiting approval: {conn.approval_field} is '{approval}', "
            f"needs '{conn.approval_value}'",
        )
    return Decision("sync")
