"""The events a record's history names (workers/history.py `RecordHistory.log`): one list that
writers must pick from and readers (the console, `zxsync status`, tests) can rely on. The
values are the strings stored since the first release, so old rows read unchanged."""

from __future__ import annotations

from enum import StrEnum


class HistoryEvent(StrEnum):
    # the door (tasks/ingest.py) and the tenant's waiting room (workers/admission.py)
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUEUED = "queued"
    ADMITTED = "admitted"
    # how a stage ended (workers/stage.py) and the app's policies (workers/policies, deferral)
    DONE = "done"
    SKIPPED = "skipped"
    BATCHED = "batched"
    RETRY = "retry"
    DEFERRED = "deferred"
    THROTTLED = "throttled"
    DEAD_LETTER = "dead_letter"
    REDRIVEN = "redriven"  # beat's stall sweep sent the job again (workers/redrive.py)
    # what a stage decided or learned on the way
    DECISION = "decision"  # a mapping choice (stage "mapping"), in words in `detail`
    CONTACT = "contact"  # how the account's Xero contact was found or made
    ITEM = "item"  # how a product's Xero item was found or made
    CONVERTED = "converted"  # adopts the Xero invoice of the quote/sales order it came from
    TOTAL_ACCEPTED = "total_accepted"  # an operator accepted Xero's differing total
    WAITING = "waiting"  # the invoice is not in a state Xero e-mails yet
    SENT = "sent"
    STATUS = "status"  # a purchase order's Xero status, polled
    PAYMENT_FEEDBACK = "payment_feedback"  # Xero's payment state written back to Zoho
    CONTACT_SYNC = "contact_sync"  # a Xero contact's change brought to the Zoho account
    CONTACT_PUSH = "contact_push"  # a Zoho account's change brought to the Xero contact
    ADOPTED = "adopted"  # `zxsync backfill` linked a document Xero already held
