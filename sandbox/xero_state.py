"""In-memory state and business rules of the Xero sandbox (the HTTP layer is `xero_app`).

`XeroSandbox` joins one room per resource, each in `sandbox/xero/`: organisations (tax rates,
chart of accounts), OAuth (apps, consents, tokens), limits (rate limits, idempotency), contacts,
items, documents (what invoices, credit notes and purchase orders share: lines, contacts,
rendering), invoices, credit notes, payments and purchase orders.

What is faithful, and where it comes from (the facts file kept beside the project, drawn from
Xero's developer documentation and its staff's answers, and the official OpenAPI spec
xero_accounting.yaml 16.1.0 for the shapes):

- OAuth2 (FACTS "OAuth2", developer.xero.com/faq/oauth2): 30-minute access tokens; refresh tokens
  rotate on every use, the previous one stays usable for a 30-minute grace period, unused ones
  expire after 60 days, then `invalid_grant`; a bad client is `invalid_client`.
- Rate limits (FACTS "Rate limits", developer.xero.com/faq/limits): per tenant 5 in flight,
  60 a minute, 5,000 a day, per app 10,000 a minute; fixed windows that start with a tenant's
  first call (so they reset at different times per tenant); a refused call spends nothing.
  Xero's FAQ page developer.xero.com/faq/limits/rate-limits words them as "a rolling 60 second
  window" and "a rolling 24 hour window"; FACTS (Xero staff answers) says fixed, which we keep.
- Idempotency (FACTS "Idempotency", developer.xero.com/documentation/guides/idempotent-requests/
  idempotency): keys are per app, live 6 minutes from the first call, replay errors too.
- Documents (FACTS "Documents", "Batches and errors", "Rounding"): validation messages, status
  rules, per-line tax rounded half-up to cents then summed, `unitdp=4`.

Money is `Decimal` throughout. The sandbox does its own arithmetic instead of importing the
project's mapping helpers, so it stays an independent oracle for them.
"""

from __future__ import annotations

from sandbox.xero.common import (
    JSON,
    Outcome,
    Reply,
    Tenant,
    ValidationFailed,
    envelope_date,
    money,
    parse_day,
    updated_since,
    validation_error,
)
from sandbox.xero.credit_notes import CreditNotesState
from sandbox.xero.limits import LimitsState
from sandbox.xero.oauth import OAuthState, scope_allows
from sandbox.xero.organisations import CURRENCY_NAMES
from sandbox.xero.payments import PaymentsState
from sandbox.xero.purchase_orders import PurchaseOrdersState

# the names the HTTP layer, the seeding and the tests use, from their rooms
__all__ = [
    "CURRENCY_NAMES",
    "JSON",
    "Outcome",
    "Reply",
    "Tenant",
    "ValidationFailed",
    "XeroSandbox",
    "envelope_date",
    "money",
    "parse_day",
    "scope_allows",
    "updated_since",
    "validation_error",
]


class XeroSandbox(OAuthState, LimitsState, PaymentsState, CreditNotesState, PurchaseOrdersState):
    """All state of one sandboxed Xero: organisations, OAuth apps and tokens, limits, stats.

    The seeding and read methods lock for themselves; `save_*`, `find_*` and `render_invoice`
    (which renders purchase orders too)
    are the HTTP layer's and expect `lock` to be held, so a batch is applied atomically.
    """

    def reset(self) -> None:
        """Forget everything (tenants, apps, tokens, documents, limits, stats): a fresh sandbox."""
        with self.lock:
            self._init_state()

    def stats(self) -> JSON:
        """Counters for benchmarks and tests: calls, routes, statuses, 429s, refreshes."""
        with self.lock:
            return {
                "calls": dict(self._calls),
                "by_route": dict(self._by_route),
                "status": dict(self._status),
                "rate_limited": dict(self._rate_limited),
                "token_refreshes": self._token_refreshes,
            }
