"""What every room of the Xero sandbox shares: JSON, money and Xero's date formats, the
organisation record, Xero's 400 body and the outcome of a save."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

JSON = dict[str, Any]


CENT = Decimal("0.01")


HUNDRED = Decimal("100")


_SEED_NS = uuid.UUID("6f1c3a52-8a0e-4c1b-9d55-2f0a7e1b9c11")


MSG_ACCOUNT = "Account code '{code}' is not a valid code for this document."


MSG_ITEM = "Item code '{code}' is not valid"


MSG_TAX = "The TaxType code {code} does not exist or cannot be used with this type of transaction."


MSG_CURRENCY = "Organisation is not subscribed to currency {code}"


def ms_date(when: datetime) -> str:
    """Xero's WCF date, `/Date(1700000000000+0000)/`, used for dates in documents."""
    return f"/Date({int(when.timestamp() * 1000)}+0000)/"


def envelope_date(now: float) -> str:
    """The envelope's `DateTimeUTC`, which Xero writes without an offset."""
    return f"/Date({int(now * 1000)})/"


def _utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _day_fields(name: str, day: date) -> JSON:
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return {name: ms_date(midnight), f"{name}String": midnight.strftime("%Y-%m-%dT%H:%M:%S")}


def parse_day(value: Any) -> date | None:
    """Accept `YYYY-MM-DD`, an ISO date-time or a `/Date(ms)/`; None when unreadable."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("/Date("):
        digits = text[6:].split("+")[0].split(")")[0]
        try:
            return datetime.fromtimestamp(int(digits) / 1000, UTC).date()
        except ValueError:
            return None
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def money(value: Decimal) -> Decimal:
    """Round to cents half away from zero, as Xero does for every line and total."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _places(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _number(value: Any) -> Decimal:
    """A JSON number (int or Decimal) or numeric string as a Decimal; ValueError otherwise."""
    if isinstance(value, bool) or value is None:
        raise ValueError(value)
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(value) from exc


def _ms_of(value: str) -> int:
    return int(value[6:].split("+")[0].split(")")[0])


@dataclass(frozen=True)
class _TaxSeed:
    name: str
    tax_type: str
    rate: str
    report: str
    revenue: bool
    expenses: bool


@dataclass(frozen=True)
class _Country:
    code: str
    version: str
    timezone: str
    year_end: tuple[int, int]
    tax_basis: str
    taxes: tuple[_TaxSeed, ...]
    sales: str
    purchases: str
    no_tax: str
    exempt: str


@dataclass
class Reply:
    """An HTTP answer kept by value, so idempotent replays return exactly the first one."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Tenant:
    """One Xero organisation and its documents, keyed by their IDs."""

    tenant_id: str
    name: str
    country: _Country
    base_currency: str
    currencies: list[str]
    organisation: JSON
    tax_rates: dict[str, JSON]
    accounts: dict[str, JSON]
    created_at: float
    contacts: dict[str, JSON] = field(default_factory=dict)
    items: dict[str, JSON] = field(default_factory=dict)
    invoices: dict[str, JSON] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    invoice_counter: int = 0
    purchase_orders: dict[str, JSON] = field(default_factory=dict)
    po_counter: int = 0
    credit_notes: dict[str, JSON] = field(default_factory=dict)
    credit_note_counter: int = 0
    overpayments: dict[str, JSON] = field(default_factory=dict)
    prepayments: dict[str, JSON] = field(default_factory=dict)
    payment_accounts: dict[str, JSON] = field(default_factory=dict)  # PaymentID -> Account


class ValidationFailed(ValueError):
    """Raised by the seeding helpers when Xero would have refused the object."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


Outcome = tuple[JSON | None, list[str]]


def validation_error(message: str, elements: list[JSON]) -> JSON:
    """Xero's 400 body (ErrorNumber 10); `elements` echo the refused objects."""
    body: JSON = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": message,
    }
    if elements:
        body["Elements"] = elements
    return body


def updated_since(obj: JSON, since: datetime) -> bool:
    """If-Modified-Since is accurate to the second (FACTS "Documents", Paging)."""
    return _ms_of(obj["UpdatedDateUTC"]) // 1000 >= int(since.timestamp())
