"""Which Xero scopes the product asks for, and which feature needs which (pure).

Xero apps created on or after 2 March 2026 cannot request the broad `accounting.transactions`;
they use granular scopes, one per family of endpoints (developer.xero.com/faq/granular-scopes,
developer.xero.com/documentation/oauth2/scopes; FACTS "The 2026 platform"): invoices, credit
notes, purchase orders and items are in `accounting.invoices`; payments in `accounting.payments`.
Older apps keep the broad set until September 2027. Scopes are never added to a token: a
connection that lacks one consents again (`zxsync connect xero`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AppScopes = Literal["granular", "broad"]

XERO_SCOPES: dict[AppScopes, str] = {
    "granular": (
        "offline_access accounting.invoices accounting.payments.read accounting.contacts "
        "accounting.settings.read"
    ),
    "broad": "offline_access accounting.transactions accounting.contacts accounting.settings",
}


@dataclass(frozen=True)
class Feature:
    """A part of the product and the scopes that open it: any one of `any_of` will do."""

    name: str
    any_of: tuple[str, ...]


FEATURES = (
    Feature("staying connected (refresh tokens)", ("offline_access",)),
    # create, update, e-mail and PDF of invoices; purchase orders and their status poll; the
    # credit notes read by payment feedback; items created by the item pre-check
    Feature("invoices and purchase orders", ("accounting.invoices", "accounting.transactions")),
    # a payment is read from its invoice; Xero files Payments under accounting.payments
    Feature(
        "payment feedback",
        ("accounting.payments.read", "accounting.payments", "accounting.transactions"),
    ),
    Feature("contacts", ("accounting.contacts",)),
    Feature(
        "settings check (accounts, tax rates, tracking)",
        ("accounting.settings.read", "accounting.settings"),
    ),
)


def missing_scopes(granted: frozenset[str]) -> list[tuple[str, str]]:
    """(feature, the scope to add) for every feature the granted scopes do not open."""
    return [(f.name, f.any_of[0]) for f in FEATURES if not granted & set(f.any_of)]
