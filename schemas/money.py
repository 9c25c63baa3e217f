"""Decimal money helpers shared by the mapping and the sandbox-facing checks.

Xero rounds every line's amount and tax to 2 decimals, half away from zero, and then sums the
lines (developer.xero.com/documentation/api-guides/rounding-in-xero); these helpers encode that.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0")
HUNDRED = Decimal("100")


def round_money(amount: Decimal) -> Decimal:
    """Round to cents the way Xero does (half away from zero)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def exclusive_tax(line_amount: Decimal, rate_percent: Decimal) -> Decimal:
    """Tax Xero computes on a tax-exclusive line amount."""
    return round_money(line_amount * rate_percent / HUNDRED)


def inclusive_tax(line_amount: Decimal, rate_percent: Decimal) -> Decimal:
    """Tax Xero extracts from a tax-inclusive line amount."""
    return round_money(line_amount - line_amount / (1 + rate_percent / HUNDRED))
