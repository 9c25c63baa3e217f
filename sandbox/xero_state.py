"""In-memory state and business rules of the Xero sandbox (the HTTP layer is `xero_app`).

What is faithful, and where it comes from (see /work/shared/xero/FACTS.md and the official
OpenAPI spec xero_accounting.yaml 16.1.0 for the shapes):

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

import base64
import copy
import json
import math
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from sandbox.config import SandboxConfig
from sandbox.faults import Faults
from sandbox.xero_webhooks import CATEGORIES, XeroWebhooks

JSON = dict[str, Any]

CENT = Decimal("0.01")
HUNDRED = Decimal("100")
_SEED_NS = uuid.UUID("6f1c3a52-8a0e-4c1b-9d55-2f0a7e1b9c11")

MSG_ACCOUNT = "Account code '{code}' is not a valid code for this document."
MSG_ITEM = "Item code '{code}' is not valid"
MSG_TAX = "The TaxType code {code} does not exist or cannot be used with this type of transaction."
MSG_ARCHIVED = (
    "The contact with the specified contact details has been archived. The contact must be "
    "un-archived before creating new invoices or credit notes."
)
MSG_NAME_TAKEN = (
    "The contact name {name} is already assigned to another contact. The contact name must be "
    "unique across all active contacts."
)
MSG_NUMBER_TAKEN = (
    "The contact number {number} is already assigned to another contact. The contact number "
    "must be unique across all contacts."
)
MSG_INVOICE_NUMBER = "Invoice # must be unique."
MSG_PAID = "This document cannot be edited as it has a payment or credit note allocated to it."
MSG_STATUS = "Invoice not of valid status for modification"
MSG_CURRENCY = "Organisation is not subscribed to currency {code}"
MSG_PO_STATUS = "Purchase order not of valid status for modification"
MSG_PO_BILLED = "This purchase order cannot be edited as it has been billed."
MSG_PO_CONTACT = "A valid Contact must be specified: purchase orders do not create contacts."
MSG_PO_NUMBER = "Purchase Order Number must be unique."
#: Purchase order status changes the API allows (FACTS "Documents"); BILLED is set by Xero when a
#: bill is created from the order, and a billed order is final. Unconfirmed: AUTHORISED ->
#: DELETED (Xero's UI deletes approved orders), kept plausible rather than exact.
_PO_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "DELETED"},
}
PO = "PURCHASEORDER"  # the document type `_line` validates a purchase order's lines as


# --------------------------------------------------------------------------- time and numbers


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


def _b64(data: JSON) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _jwt(claims: JSON) -> str:
    """A JWT-shaped token (Xero's tokens are JWTs); the signature is random, nothing verifies it."""
    header = {"alg": "RS256", "kid": "zxsync-sandbox", "typ": "JWT"}
    return f"{_b64(header)}.{_b64(claims)}.{secrets.token_urlsafe(32)}"


# --------------------------------------------------------------------------- seeds by country


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


_COUNTRIES: dict[str, _Country] = {
    "AU": _Country(
        "AU", "AU", "AUSEASTERNSTANDARDTIME", (30, 6), "ACCRUALS",
        (
            _TaxSeed("GST on Income", "OUTPUT", "10", "OUTPUT", True, False),
            _TaxSeed("GST on Expenses", "INPUT", "10", "INPUT", False, True),
            _TaxSeed("GST Free Income", "EXEMPTOUTPUT", "0", "EXEMPTOUTPUT", True, False),
            _TaxSeed("BAS Excluded", "BASEXCLUDED", "0", "BASEXCLUDED", True, True),
        ),
        "OUTPUT", "INPUT", "BASEXCLUDED", "EXEMPTOUTPUT",
    ),
    "NZ": _Country(
        "NZ", "NZ", "NEWZEALANDSTANDARDTIME", (31, 3), "INVOICE",
        (
            _TaxSeed("GST on Income", "OUTPUT2", "15", "OUTPUT", True, False),
            _TaxSeed("GST on Expenses", "INPUT2", "15", "INPUT", False, True),
            _TaxSeed("No GST", "NONE", "0", "NONE", True, True),
            _TaxSeed("Zero Rated", "ZERORATED", "0", "EXEMPTOUTPUT", True, True),
        ),
        "OUTPUT2", "INPUT2", "NONE", "NONE",
    ),
    "GB": _Country(
        "GB", "UK", "GMTSTANDARDTIME", (31, 3), "ACCRUAL",
        (
            _TaxSeed("20% (VAT on Income)", "OUTPUT2", "20", "OUTPUT", True, False),
            _TaxSeed("20% (VAT on Expenses)", "INPUT2", "20", "INPUT", False, True),
            _TaxSeed("5% (VAT on Income)", "RROUTPUT", "5", "OUTPUT", True, False),
            _TaxSeed("Zero Rated Income", "ZERORATEDOUTPUT", "0", "ZERORATEDOUTPUT", True, False),
            _TaxSeed("No VAT", "NONE", "0", "NONE", True, True),
        ),
        "OUTPUT2", "INPUT2", "NONE", "NONE",
    ),
    "US": _Country(
        "US", "US", "EASTERNSTANDARDTIME", (31, 12), "ACCRUAL",
        (
            _TaxSeed("Sales Tax", "OUTPUT", "8.25", "OUTPUT", True, False),
            _TaxSeed("Tax Exempt", "NONE", "0", "NONE", True, True),
        ),
        "OUTPUT", "NONE", "NONE", "NONE",
    ),
}
_COUNTRY_ALIASES = {"UK": "GB"}

# (Code, Name, Type, Class, SystemAccount, which default tax: sales/purchases/no_tax/exempt)
_ACCOUNTS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("090", "Business Bank Account", "BANK", "ASSET", "", "no_tax"),
    ("200", "Sales", "REVENUE", "REVENUE", "", "sales"),
    ("260", "Rounding", "CURRLIAB", "LIABILITY", "ROUNDING", "no_tax"),
    ("270", "Interest Income", "OTHERINCOME", "REVENUE", "", "exempt"),
    ("300", "Purchases", "DIRECTCOSTS", "EXPENSE", "", "purchases"),
    ("310", "Cost of Goods Sold", "DIRECTCOSTS", "EXPENSE", "", "purchases"),
    ("400", "Advertising", "EXPENSE", "EXPENSE", "", "purchases"),
    ("610", "Accounts Receivable", "CURRENT", "ASSET", "DEBTORS", "no_tax"),
    ("800", "Accounts Payable", "CURRLIAB", "LIABILITY", "CREDITORS", "no_tax"),
    ("820", "Sales Tax", "CURRLIAB", "LIABILITY", "GST", "no_tax"),
)
# System accounts Xero refuses on invoice lines; ROUNDING is the one it allows.
_BLOCKED_SYSTEM_ACCOUNTS = {"DEBTORS", "CREDITORS", "GST", "RETAINEDEARNINGS", "HISTORICAL"}

CURRENCY_NAMES = {
    "AUD": "Australian Dollar", "NZD": "New Zealand Dollar", "GBP": "British Pound",
    "USD": "United States Dollar", "EUR": "Euro", "CAD": "Canadian Dollar",
    "JPY": "Japanese Yen", "SGD": "Singapore Dollar", "ZAR": "South African Rand",
    "INR": "Indian Rupee", "CHF": "Swiss Franc", "HKD": "Hong Kong Dollar",
}


# --------------------------------------------------------------------------- state records


@dataclass
class Reply:
    """An HTTP answer kept by value, so idempotent replays return exactly the first one."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Window:
    """A fixed rate-limit window that starts with the first call and then ticks on."""

    length: float
    start: float | None = None
    used: int = 0

    def roll(self, now: float) -> None:
        if self.start is None:
            self.start = now
        elif now >= self.start + self.length:
            self.start += math.floor((now - self.start) / self.length) * self.length
            self.used = 0

    def retry_after(self, now: float) -> int:
        start = now if self.start is None else self.start
        return max(1, math.ceil(start + self.length - now))


@dataclass
class _Limits:
    minute: _Window
    day: _Window
    in_flight: int = 0


@dataclass
class Admission:
    """Outcome of the rate limiter: `problem` is None when the call may proceed."""

    problem: str | None
    retry_after: int | None
    headers: dict[str, str]


@dataclass
class _Client:
    """An OAuth app; `tenant_ids` are the organisations a sandbox consent connects."""

    secret: str
    tenant_ids: list[str]
    granular: bool = True  # created on or after 2 March 2026: no broad scopes


@dataclass
class Grant:
    """One user's consent to an app (Xero's auth event): its tokens share these connections."""

    client_id: str
    auth_event_id: str
    connected_at: dict[str, float]


@dataclass
class _RefreshToken:
    grant: Grant
    scope: str
    issued_at: float
    superseded_at: float | None = None


@dataclass
class _AccessToken:
    grant: Grant
    expires_at: float
    scope: frozenset[str] = frozenset()


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    scope: str
    expires_at: float


@dataclass
class _Idempotent:
    first_at: float
    fingerprint: str
    reply: Reply


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


# --------------------------------------------------------------------------- the sandbox


class XeroSandbox:
    """All state of one sandboxed Xero: organisations, OAuth apps and tokens, limits, stats.

    The seeding and read methods lock for themselves; `save_*`, `find_*` and `render_invoice`
    (which renders purchase orders too)
    are the HTTP layer's and expect `lock` to be held, so a batch is applied atomically.
    """

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.webhooks = XeroWebhooks()
        self._init_state()

    def _init_state(self) -> None:
        self._tenants: dict[str, Tenant] = {}
        self._clients: dict[str, _Client] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._access: dict[str, _AccessToken] = {}
        self._codes: dict[str, _AuthCode] = {}
        self._limits: dict[str, _Limits] = {}
        self._app_windows: dict[str, _Window] = {}
        self._idempotency: dict[tuple[str, str], _Idempotent] = {}
        self.faults = Faults(self.config)
        self._rng = random.Random(self.config.seed)
        self._calls: Counter[str] = Counter()
        self._by_route: Counter[str] = Counter()
        self._status: Counter[str] = Counter()
        self._rate_limited: Counter[str] = Counter(
            {"minute": 0, "day": 0, "concurrent": 0, "appminute": 0}
        )
        self._token_refreshes = 0
        self._outages: dict[str, int] = {}

    # ----------------------------------------------------------------------- public seeding API

    def reset(self) -> None:
        """Forget everything (tenants, apps, tokens, documents, limits, stats): a fresh sandbox."""
        with self.lock:
            self._init_state()

    def add_tenant(
        self,
        tenant_id: str,
        name: str,
        country: str = "AU",
        base_currency: str = "AUD",
        currencies: list[str] | None = None,
    ) -> None:
        """Create an organisation with the tax rates and chart of accounts of its country."""
        code = _COUNTRY_ALIASES.get(country.upper(), country.upper())
        if code not in _COUNTRIES:
            raise ValueError(f"unsupported country {country!r}; use one of AU, NZ, UK, US")
        spec = _COUNTRIES[code]
        now = self.clock()
        taxes = {seed.tax_type: _tax_rate(seed) for seed in spec.taxes}
        defaults = {
            "sales": spec.sales, "purchases": spec.purchases,
            "no_tax": spec.no_tax, "exempt": spec.exempt,
        }
        accounts: dict[str, JSON] = {}
        for acc_code, acc_name, acc_type, acc_class, system, tax_kind in _ACCOUNTS:
            account: JSON = {
                "AccountID": str(uuid.uuid5(_SEED_NS, f"{tenant_id}/account/{acc_code}")),
                "Code": acc_code,
                "Name": acc_name,
                "Status": "ACTIVE",
                "Type": acc_type,
                "TaxType": defaults[tax_kind],
                "Class": acc_class,
                "SystemAccount": system,
                "EnablePaymentsToAccount": False,
                "ShowInExpenseClaims": acc_class == "EXPENSE",
                "BankAccountType": "BANK" if acc_type == "BANK" else "",
                "ReportingCode": "",
                "HasAttachments": False,
                "AddToWatchlist": False,
                "UpdatedDateUTC": ms_date(_utc(now)),
            }
            if acc_type == "BANK":
                account["BankAccountNumber"] = "0620000000000"
                account["CurrencyCode"] = base_currency
            accounts[acc_code] = account
        day, month = spec.year_end
        organisation: JSON = {
            "OrganisationID": tenant_id,
            "APIKey": secrets.token_hex(15).upper(),
            "Name": name,
            "LegalName": name,
            "PaysTax": True,
            "Version": spec.version,
            "OrganisationType": "COMPANY",
            "BaseCurrency": base_currency,
            "CountryCode": spec.code,
            "IsDemoCompany": False,
            "OrganisationStatus": "ACTIVE",
            "FinancialYearEndDay": day,
            "FinancialYearEndMonth": month,
            "SalesTaxBasis": spec.tax_basis,
            "SalesTaxPeriod": "QUARTERLY",
            "DefaultSalesTax": "Tax Exclusive",
            "DefaultPurchasesTax": "Tax Exclusive",
            "CreatedDateUTC": ms_date(_utc(now)),
            "Timezone": spec.timezone,
            "OrganisationEntityType": "COMPANY",
            "ShortCode": "!" + secrets.token_hex(3)[:5],
            "Class": "PREMIUM",
            "Edition": "BUSINESS",
            "LineOfBusiness": "Software",
            "Addresses": [],
            "Phones": [],
            "ExternalLinks": [],
            "PaymentTerms": {},
        }
        extra = [c for c in (currencies or []) if c != base_currency]
        try:
            uuid.UUID(tenant_id)
        except ValueError:
            raise ValueError(f"tenant id {tenant_id!r} is not a UUID, as Xero's are") from None
        with self.lock:
            self._tenants[tenant_id] = Tenant(
                tenant_id=tenant_id, name=name, country=spec, base_currency=base_currency,
                currencies=[base_currency, *extra], organisation=organisation,
                tax_rates=taxes, accounts=accounts, created_at=now,
            )

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        tenant_ids: list[str],
        *,
        granular: bool = True,
        scope: str | None = None,
    ) -> None:
        """Register an OAuth app (again: same secret) and a refresh token for `tenant_ids`.

        Each call is one user's consent, as in Xero: the token sees only its own tenants. An
        app is granular (created on or after 2 March 2026) unless `granular=False`; the refresh
        token carries `scope`, by default every scope of the app's kind.
        """
        now = self.clock()
        with self.lock:
            unknown = [t for t in tenant_ids if t not in self._tenants]
            if unknown:
                raise ValueError(f"unknown tenants {unknown}; add_tenant first")
            client = self._clients.setdefault(client_id, _Client(client_secret, [], granular))
            if client.secret != client_secret:
                raise ValueError(f"client {client_id!r} is registered with another secret")
            client.tenant_ids += [t for t in tenant_ids if t not in client.tenant_ids]
            grant = Grant(client_id, str(uuid.uuid4()), dict.fromkeys(tenant_ids, now))
            default = _GRANULAR_SCOPE if client.granular else _DEFAULT_SCOPE
            self._refresh[refresh_token] = _RefreshToken(grant, scope or default, now)

    def add_contact(self, tenant_id: str, contact: JSON) -> JSON:
        """Seed a contact without spending API calls; raises ValidationFailed like a 400."""
        with self.lock:
            saved, errors = self.save_contact(tenant_id, contact, create_only=True)
            if saved is None:
                raise ValidationFailed(errors)
            return copy.deepcopy(saved)

    def add_item(self, tenant_id: str, item: JSON) -> JSON:
        """Seed an item without spending API calls; raises ValidationFailed like a 400."""
        with self.lock:
            saved, errors = self.save_item(tenant_id, item, create_only=True, unitdp=4)
            if saved is None:
                raise ValidationFailed(errors)
            return copy.deepcopy(saved)

    def add_payment(
        self, tenant_id: str, invoice_id: str, amount: Decimal, on: date | None = None
    ) -> JSON:
        """Record a payment against an AUTHORISED invoice (what a user does in Xero's UI)."""
        with self.lock:
            invoice = self.tenant(tenant_id).invoices[invoice_id]
            if invoice["Status"] != "AUTHORISED":
                raise ValueError("Payments can only be made against AUTHORISED invoices")
            if amount <= 0 or amount > invoice["AmountDue"]:
                raise ValueError(f"payment {amount} must be > 0 and <= {invoice['AmountDue']}")
            now = self.clock()
            paid_on = on or _utc(now).date()
            payment: JSON = {
                "PaymentID": str(uuid.uuid4()),
                "Date": _day_fields("Date", paid_on)["Date"],
                "Amount": money(amount),
                "Reference": "",
                "CurrencyRate": invoice.get("CurrencyRate", Decimal("1.000000")),
                "HasAccount": False,
                "HasValidationErrors": False,
            }
            invoice["Payments"].append(payment)
            self._settle(self.tenant(tenant_id), invoice, "AmountPaid", amount, paid_on)
            return copy.deepcopy(payment)

    def apply_credit_note(
        self, tenant_id: str, invoice_id: str, amount: Decimal, credit: Decimal | None = None
    ) -> JSON:
        """Raise an AUTHORISED ACCRECCREDIT of `credit` (default `amount`, tax-free) for the
        invoice's contact and allocate `amount` of it to the invoice (Xero's UI does both)."""
        with self.lock:
            t = self.tenant(tenant_id)
            invoice = t.invoices[invoice_id]
            note, errors = self.save_credit_note(tenant_id, {
                "Type": "ACCRECCREDIT", "Status": "AUTHORISED",
                "Contact": {"ContactID": invoice["Contact"]["ContactID"]},
                "CurrencyCode": invoice["CurrencyCode"], "LineAmountTypes": "NoTax",
                "LineItems": [{"Description": "Credit", "Quantity": 1,
                               "UnitAmount": credit or amount, "AccountCode": "200"}],
            }, unitdp=2)
            if note is None:
                raise ValidationFailed(errors)
            allocation, errors = self.allocate_credit_note(t, note, {
                "Amount": amount, "Invoice": {"InvoiceID": invoice_id},
                "Date": _utc(self.clock()).date().isoformat(),
            })
            if allocation is None:
                raise ValidationFailed(errors)
            return copy.deepcopy(note)

    def add_prepaid(
        self, tenant_id: str, kind: Literal["Overpayments", "Prepayments"], contact_id: str,
        amount: Decimal,
    ) -> JSON:
        """Receive an overpayment or a prepayment from a customer (a bank transaction in Xero's
        UI): AUTHORISED, all of it RemainingCredit. Neither has a webhook (FACTS)."""
        with self.lock:
            t = self.tenant(tenant_id)
            contact = t.contacts[contact_id]
            if amount <= 0:
                raise ValueError("an overpayment or prepayment must be more than 0")
            singular = kind[:-1]
            doc: JSON = {
                f"{singular}ID": str(uuid.uuid4()),
                "Type": f"RECEIVE-{singular.upper()}",
                "Contact": {"ContactID": contact_id, "Name": contact["Name"]},
                **_day_fields("Date", _utc(self.clock()).date()),
                "Status": "AUTHORISED", "LineAmountTypes": "NoTax",
                "SubTotal": money(amount), "TotalTax": Decimal("0.00"), "Total": money(amount),
                "RemainingCredit": money(amount), "CurrencyCode": t.base_currency,
                "Allocations": [], "Payments": [],
            }
            self._touch(t, doc, f"{singular}ID", self.clock())
            getattr(t, kind.lower())[doc[f"{singular}ID"]] = doc
            return copy.deepcopy(doc)

    def refund(
        self, tenant_id: str, kind: Literal["CreditNotes", "Overpayments", "Prepayments"],
        doc_id: str, amount: Decimal,
    ) -> JSON:
        """Pay money back on a credit note, overpayment or prepayment (a payment on it, as
        Xero records a refund): only AUTHORISED ones, at most the credit left; PAID at 0."""
        with self.lock:
            t = self.tenant(tenant_id)
            store = {"CreditNotes": t.credit_notes, "Overpayments": t.overpayments,
                     "Prepayments": t.prepayments}[kind]
            doc = store[doc_id]
            if doc["Status"] != "AUTHORISED":
                raise ValueError("Refunds can only be made on AUTHORISED documents")
            if not 0 < amount <= doc["RemainingCredit"]:
                raise ValueError(f"refund {amount} must be > 0 and <= {doc['RemainingCredit']}")
            doc["Payments"] = [*doc.get("Payments", []), {
                "PaymentID": str(uuid.uuid4()), "Amount": money(amount),
                **_day_fields("Date", _utc(self.clock()).date())}]
            doc["RemainingCredit"] = money(doc["RemainingCredit"] - amount)
            if doc["RemainingCredit"] == 0:
                doc["Status"] = "PAID"
            id_field = "CreditNoteID" if kind == "CreditNotes" else f"{kind[:-1]}ID"
            self._touch(t, doc, id_field, self.clock())
            return copy.deepcopy(doc)

    def _settle(
        self, t: Tenant, invoice: JSON, applied: str, amount: Decimal, on: date
    ) -> None:
        """Apply a payment (AmountPaid) or credit (AmountCredited); PAID when nothing is due."""
        invoice[applied] = money(invoice[applied] + amount)
        invoice["AmountDue"] = money(invoice["AmountDue"] - amount)
        if invoice["AmountDue"] == 0:
            invoice["Status"] = "PAID"
            invoice["FullyPaidOnDate"] = _day_fields("Date", on)["Date"]
        self._touch(t, invoice, "InvoiceID", self.clock())

    def save_payment(self, t: Tenant, submitted: JSON) -> Outcome:
        """PUT /Payments, one element: a payment on an AUTHORISED invoice to a bank account
        (or one with EnablePaymentsToAccount), at most the amount due."""
        ref = submitted.get("Invoice")
        invoice = self.find_invoice(t, str(ref.get("InvoiceID", ""))) if isinstance(
            ref, dict) else None
        if invoice is None:
            return None, ["Invoice could not be found."]
        given = submitted.get("Account")
        account = None
        if isinstance(given, dict):
            account = next((a for a in t.accounts.values() if a["AccountID"] == given.get(
                "AccountID") or (given.get("Code") and a.get("Code") == given.get("Code"))), None)
        if account is None or not (account["Type"] == "BANK" or account.get(
                "EnablePaymentsToAccount")):
            return None, ["Payments must be made to a bank account, or an account with "
                          "payments enabled."]
        try:
            amount = money(_number(submitted.get("Amount")))
        except ValueError:
            return None, ["Amount must be a number."]
        if invoice["Status"] != "AUTHORISED":
            return None, ["Payments can only be made against AUTHORISED invoices."]
        if not 0 < amount <= invoice["AmountDue"]:
            return None, [f"The payment amount must be more than 0 and at most the amount due "
                          f"({invoice['AmountDue']})."]
        on = parse_day(submitted.get("Date")) or _utc(self.clock()).date()
        payment: JSON = {
            "PaymentID": str(uuid.uuid4()), "Date": _day_fields("Date", on)["Date"],
            "Amount": amount, "Reference": str(submitted.get("Reference") or ""),
            "CurrencyRate": invoice.get("CurrencyRate", Decimal("1.000000")),
            "HasAccount": True, "HasValidationErrors": False,
        }
        invoice["Payments"].append(payment)
        t.payment_accounts[payment["PaymentID"]] = {
            "AccountID": account["AccountID"], "Code": account.get("Code")}
        self._settle(t, invoice, "AmountPaid", amount, on)
        return self.render_payment(t, invoice, payment), []

    def payments(self, t: Tenant) -> list[JSON]:
        """Every payment on the tenant's invoices, as GET /Payments shows them."""
        return [
            self.render_payment(t, invoice, payment)
            for invoice in self.ordered(t, t.invoices, "InvoiceID")
            for payment in invoice.get("Payments") or []
        ]

    def render_payment(self, t: Tenant, invoice: JSON, payment: JSON) -> JSON:
        bank = next((a for a in t.accounts.values() if a["Type"] == "BANK"), None)
        account = t.payment_accounts.get(payment["PaymentID"]) or (
            {"AccountID": bank["AccountID"], "Code": bank.get("Code")} if bank else None)
        kind = "ACCRECPAYMENT" if invoice["Type"] == "ACCREC" else "ACCPAYPAYMENT"
        return {
            **copy.deepcopy(payment), "Status": "AUTHORISED", "PaymentType": kind,
            "UpdatedDateUTC": invoice["UpdatedDateUTC"],
            "Invoice": {"InvoiceID": invoice["InvoiceID"],
                        "InvoiceNumber": invoice.get("InvoiceNumber"), "Type": invoice["Type"]},
            **({"Account": account} if account else {}),
        }

    def bill_purchase_order(self, tenant_id: str, purchase_order_id: str) -> JSON:
        """Mark an AUTHORISED purchase order BILLED, as creating a bill from it in Xero does."""
        with self.lock:
            t = self.tenant(tenant_id)
            po = t.purchase_orders[purchase_order_id]
            if po["Status"] != "AUTHORISED":
                raise ValueError("Only AUTHORISED purchase orders can be billed")
            po["Status"] = "BILLED"
            self._touch(t, po, "PurchaseOrderID", self.clock())
            return self.render_invoice(t, po, 4)

    # ----------------------------------------------------------------------- public read API

    def contacts(self, tenant_id: str) -> list[JSON]:
        with self.lock:
            t = self.tenant(tenant_id)
            return copy.deepcopy(self.ordered(t, t.contacts, "ContactID"))

    def items(self, tenant_id: str) -> list[JSON]:
        with self.lock:
            t = self.tenant(tenant_id)
            return copy.deepcopy(self.ordered(t, t.items, "ItemID"))

    def invoices(self, tenant_id: str) -> list[JSON]:
        with self.lock:
            t = self.tenant(tenant_id)
            return [self.render_invoice(t, i, 4) for i in self.ordered(t, t.invoices, "InvoiceID")]

    def purchase_orders(self, tenant_id: str) -> list[JSON]:
        with self.lock:
            t = self.tenant(tenant_id)
            return [
                self.render_invoice(t, po, 4)
                for po in self.ordered(t, t.purchase_orders, "PurchaseOrderID")
            ]

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

    # ----------------------------------------------------------------------- bookkeeping

    def tenant(self, tenant_id: str) -> Tenant:
        return self._tenants[tenant_id]

    def record(self, route: str, status: int, tenant_id: str | None) -> None:
        """Count one answered call for `stats()`."""
        with self.lock:
            self._by_route[route] += 1
            self._status[str(status)] += 1
            if tenant_id is not None:
                self._calls[tenant_id] += 1

    def outage(self, tenant_id: str, status: int | None) -> None:
        """Every Accounting call for this tenant answers `status` (404, 503...) until cleared
        with None: one organisation's trouble, the others unaffected."""
        with self.lock:
            if status is None:
                self._outages.pop(tenant_id, None)
            else:
                self._outages[tenant_id] = status

    def outage_of(self, tenant_id: str) -> int | None:
        with self.lock:
            return self._outages.get(tenant_id)

    def roll_fault(self) -> bool:
        """Whether this call is one of the `fault_rate` share answered with a 503."""
        with self.lock:
            return self.config.fault_rate > 0 and self._rng.random() < self.config.fault_rate

    @staticmethod
    def ordered(t: Tenant, store: Mapping[str, JSON], id_field: str) -> list[JSON]:
        """Xero's default order: UpdatedDateUTC, then the internal (creation) id."""
        return sorted(
            store.values(), key=lambda o: (_ms_of(o["UpdatedDateUTC"]), t.seq.get(o[id_field], 0))
        )

    def _touch(self, t: Tenant, obj: JSON, id_field: str, now: float) -> None:
        """Stamp a change, and tell the webhook subscriber (a payment is an INVOICE UPDATE)."""
        obj["UpdatedDateUTC"] = ms_date(_utc(now))
        created = obj[id_field] not in t.seq
        t.seq.setdefault(obj[id_field], len(t.seq) + 1)
        category = CATEGORIES.get(id_field)
        if category is not None:
            note = category == "CREDITNOTE"
            data = {"Type": obj["Type"], "Status": obj["Status"]} if note else {}
            self.webhooks.emit(t.tenant_id, category, obj[id_field], created, **data)

    # ----------------------------------------------------------------------- OAuth2

    def check_client(self, client_id: str | None, secret: str | None) -> bool:
        client = self._clients.get(client_id or "")
        return client is not None and secrets.compare_digest(client.secret, secret or "")

    def scope_error(self, client_id: str, scope: str) -> str | None:
        """Why Xero's consent screen refuses these scopes for this app (None: it does not).

        A granular app may not ask for the broad scopes; nobody may ask for a scope Xero does
        not have (developer.xero.com/faq/granular-scopes; FACTS "The 2026 platform")."""
        with self.lock:
            client = self._clients.get(client_id)
            refused = [
                s for s in scope.split()
                if s not in KNOWN_SCOPES or (client is not None and client.granular and s in BROAD)
            ]
            return f"Invalid scope for client: {' '.join(refused)}" if refused else None

    def token_scope(self, access_token: str) -> frozenset[str]:
        with self.lock:
            token = self._access.get(access_token)
            return token.scope if token else frozenset()

    def authorize(self, client_id: str, redirect_uri: str, scope: str) -> str | None:
        """Consent is implicit in the sandbox: return an authorization code (None: bad client)."""
        with self.lock:
            if client_id not in self._clients:
                return None
            code = secrets.token_urlsafe(24)
            self._codes[code] = _AuthCode(client_id, redirect_uri, scope, self.clock() + 300)
            return code

    def grant(self, client_id: str, form: Mapping[str, str]) -> tuple[int, JSON]:
        """The token endpoint after client authentication: rotate or exchange, then issue."""
        with self.lock:
            now = self.clock()
            grant_type = form.get("grant_type", "")
            if grant_type == "refresh_token":
                token = self._refresh.get(form.get("refresh_token", ""))
                if token is None or token.grant.client_id != client_id or not (
                    self._refresh_usable(token, now)
                ):
                    return 400, {"error": "invalid_grant"}
                if token.superseded_at is None:
                    token.superseded_at = now
                self._token_refreshes += 1
                return 200, self._issue(token.grant, token.scope, now)
            if grant_type == "authorization_code":
                code = self._codes.pop(form.get("code", ""), None)
                if (
                    code is None
                    or code.client_id != client_id
                    or code.expires_at < now
                    or code.redirect_uri != form.get("redirect_uri", "")
                ):
                    return 400, {"error": "invalid_grant"}
                tenants = self._clients[client_id].tenant_ids
                grant = Grant(client_id, str(uuid.uuid4()), dict.fromkeys(tenants, now))
                return 200, self._issue(grant, code.scope, now)
            return 400, {"error": "unsupported_grant_type"}

    def _refresh_usable(self, token: _RefreshToken, now: float) -> bool:
        if token.superseded_at is not None:
            return now - token.superseded_at <= self.config.xero_refresh_grace_seconds
        return now - token.issued_at <= self.config.xero_refresh_token_idle_seconds

    def _issue(self, grant: Grant, scope: str, now: float) -> JSON:
        lifetime = self.config.xero_access_token_seconds
        claims = {
            "nbf": int(now), "exp": int(now + lifetime), "iss": "https://identity.xero.com",
            "client_id": grant.client_id, "authentication_event_id": grant.auth_event_id,
            "scope": scope.split(), "jti": secrets.token_hex(16),
        }
        access = _jwt(claims)
        self._access[access] = _AccessToken(grant, now + lifetime, frozenset(scope.split()))
        answer: JSON = {
            "id_token": _jwt({"sub": grant.auth_event_id, "iat": int(now), "exp": int(now + 300)}),
            "access_token": access,
            "expires_in": math.ceil(lifetime),
            "token_type": "Bearer",
            "scope": scope,
        }
        if "offline_access" in scope.split():
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = _RefreshToken(grant, scope, now)
            answer["refresh_token"] = refresh
        return answer

    def authenticate(self, access_token: str) -> tuple[Grant | None, str]:
        """(grant, "") for a live token, else (None, the 401 Detail Xero sends)."""
        with self.lock:
            token = self._access.get(access_token)
            if token is None:
                return None, "AuthenticationUnsuccessful"
            if self.clock() >= token.expires_at:
                expired = _utc(token.expires_at).strftime("%m/%d/%Y %H:%M:%S")
                return None, f"TokenExpired: token expired at {expired}"
            return token.grant, ""

    def is_connected(self, grant: Grant, tenant_id: str) -> bool:
        with self.lock:
            return tenant_id in grant.connected_at and tenant_id in self._tenants

    def connections(self, grant: Grant) -> list[JSON]:
        """`GET /connections`: the organisations this consent connected (xero-identity.yaml)."""
        with self.lock:
            return [
                {
                    "id": _connection_id(grant, tenant_id),
                    "authEventId": grant.auth_event_id,
                    "tenantId": tenant_id,
                    "tenantType": "ORGANISATION",
                    "tenantName": self._tenants[tenant_id].name,
                    "createdDateUtc": _iso7(at),
                    "updatedDateUtc": _iso7(at),
                }
                for tenant_id, at in grant.connected_at.items()
            ]

    def disconnect(self, grant: Grant, connection_id: str) -> bool:
        with self.lock:
            for tenant_id in list(grant.connected_at):
                if _connection_id(grant, tenant_id) == connection_id:
                    del grant.connected_at[tenant_id]
                    return True
            return False

    # ----------------------------------------------------------------------- rate limits

    def admit(self, client_id: str, tenant_id: str | None) -> Admission:
        """Spend one call of each window, or name the limit it would break (nothing spent)."""
        limits = self.config.xero_limits
        with self.lock:
            now = self.clock()
            app = self._app_windows.setdefault(client_id, _Window(self.config.minute_seconds))
            app.roll(now)
            checks: list[tuple[str, _Window, int]] = []
            state: _Limits | None = None
            if tenant_id is not None:
                state = self._limits.get(tenant_id)
                if state is None:
                    state = _Limits(
                        _Window(self.config.minute_seconds),
                        _Window(self.config.minute_seconds * 1440),
                    )
                    self._limits[tenant_id] = state
                state.day.roll(now)
                state.minute.roll(now)
                checks += [("day", state.day, limits.per_day),
                           ("minute", state.minute, limits.per_minute)]
            checks.append(("appminute", app, limits.app_per_minute))
            problem: str | None = None
            retry: int | None = None
            if self.config.enforce_limits:
                for name, window, limit in checks:
                    if window.used >= limit:
                        problem, retry = name, window.retry_after(now)
                        break
                if problem is None and state is not None and state.in_flight >= limits.concurrent:
                    problem = "concurrent"
            if problem is None:
                for _, window, _limit in checks:
                    window.used += 1
                if state is not None:
                    state.in_flight += 1
            else:
                self._rate_limited[problem] += 1
            headers = {"X-AppMinLimit-Remaining": str(max(0, limits.app_per_minute - app.used))}
            if state is not None:
                headers["X-DayLimit-Remaining"] = str(max(0, limits.per_day - state.day.used))
                headers["X-MinLimit-Remaining"] = str(
                    max(0, limits.per_minute - state.minute.used)
                )
            return Admission(problem, retry, headers)

    def release(self, tenant_id: str) -> None:
        """The call is answered: free its concurrency slot."""
        with self.lock:
            self._limits[tenant_id].in_flight -= 1

    # ----------------------------------------------------------------------- idempotency

    def idempotent(
        self, client_id: str, key: str, fingerprint: str, run: Callable[[], Reply]
    ) -> Reply:
        """Replay the first answer for a key, refuse a different request, else run and keep."""
        with self.lock:
            now = self.clock()
            entry = self._idempotency.get((client_id, key))
            if entry is not None and now - entry.first_at < self.config.idempotency_window_seconds:
                if entry.fingerprint != fingerprint:
                    return Reply(400, validation_error(
                        f"Idempotency Key: {key} is used with a different request.", []
                    ))
                return copy.deepcopy(entry.reply)
            reply = run()
            kept = _Idempotent(now, fingerprint, copy.deepcopy(reply))
            self._idempotency[(client_id, key)] = kept
            return reply

    # ----------------------------------------------------------------------- validation helpers

    def _account_for_line(self, t: Tenant, code: str) -> JSON | None:
        account = t.accounts.get(code)
        if account is None or account["Status"] != "ACTIVE" or account["Type"] == "BANK":
            return None
        if account["SystemAccount"] in _BLOCKED_SYSTEM_ACCOUNTS:
            return None
        return account

    def _tax_ok(self, t: Tenant, tax_type: str, doc_type: str) -> JSON | None:
        rate = t.tax_rates.get(tax_type)
        if rate is None or rate["Status"] != "ACTIVE":
            return None
        flag = "CanApplyToRevenue" if doc_type == "ACCREC" else "CanApplyToExpenses"
        return rate if rate[flag] else None

    # ----------------------------------------------------------------------- contacts

    def find_contact(self, t: Tenant, ref: str) -> JSON | None:
        """By ContactID, else by ContactNumber (what GET /Contacts/{id} accepts)."""
        found = t.contacts.get(ref.lower()) or t.contacts.get(ref)
        if found is not None:
            return found
        return next((c for c in t.contacts.values() if c.get("ContactNumber") == ref), None)

    def save_contact(self, tenant_id: str, submitted: JSON, *, create_only: bool) -> Outcome:
        """Create (PUT) or create-or-update by ContactID (POST) one contact."""
        t = self.tenant(tenant_id)
        existing: JSON | None = None
        contact_id = submitted.get("ContactID")
        if contact_id:
            existing = t.contacts.get(str(contact_id).lower())
            if existing is None:
                return None, [f"The contact with ContactID {contact_id} could not be found."]
            if create_only:
                return None, [f"A contact with ContactID {contact_id} already exists."]
        refused = sorted(k for k in submitted if k in CONTACT_SPEC_READ_ONLY)
        if refused:  # readOnly in the spec: Xero does not take them (FACTS "The 2026 platform")
            return None, [f"{k} is a read-only field and cannot be set" for k in refused]
        merged: JSON = copy.deepcopy(existing) if existing else {}
        for key, value in submitted.items():
            if key not in _CONTACT_READ_ONLY:
                merged[key] = value
        errors = self._contact_errors(t, merged, existing)
        if errors:
            return None, errors
        now = self.clock()
        if existing is None:
            merged = {
                "ContactID": str(uuid.uuid4()),
                "ContactStatus": "ACTIVE",
                "Addresses": [],
                "Phones": [],
                "ContactGroups": [],
                "ContactPersons": [],
                "IsSupplier": False,
                "IsCustomer": False,
                "HasAttachments": False,
                "HasValidationErrors": False,
                **merged,
            }
        merged["Name"] = str(merged["Name"]).strip()
        self._touch(t, merged, "ContactID", now)
        t.contacts[merged["ContactID"]] = merged
        return merged, []

    def _contact_errors(self, t: Tenant, contact: JSON, existing: JSON | None) -> list[str]:
        errors: list[str] = []
        name = str(contact.get("Name") or "").strip()
        own_id = existing["ContactID"] if existing else None
        others = [c for c in t.contacts.values() if c["ContactID"] != own_id]
        if not name:
            errors.append("The contact name must be specified.")
        elif len(name) > 255:
            errors.append("The contact name must not exceed 255 characters.")
        elif contact.get("ContactStatus", "ACTIVE") == "ACTIVE" and any(
            c["ContactStatus"] == "ACTIVE" and c["Name"].lower() == name.lower() for c in others
        ):
            errors.append(MSG_NAME_TAKEN.format(name=name))
        if contact.get("ContactStatus", "ACTIVE") not in ("ACTIVE", "ARCHIVED"):
            errors.append("ContactStatus must be ACTIVE or ARCHIVED.")
        number = contact.get("ContactNumber")
        if number:
            if len(str(number)) > 50:
                errors.append("The contact number must not exceed 50 characters.")
            elif any(c.get("ContactNumber") == number for c in others):
                errors.append(MSG_NUMBER_TAKEN.format(number=number))
        for text_field in ("EmailAddress", "FirstName", "LastName"):
            if len(str(contact.get(text_field) or "")) > 255:
                errors.append(f"The {text_field} must not exceed 255 characters.")
        return errors

    # ----------------------------------------------------------------------- items

    def find_item(self, t: Tenant, ref: str) -> JSON | None:
        """By ItemID, else by Code (case-insensitive, like Xero)."""
        found = t.items.get(ref.lower()) or t.items.get(ref)
        if found is not None:
            return found
        return next((i for i in t.items.values() if i["Code"].lower() == ref.lower()), None)

    def save_item(
        self, tenant_id: str, submitted: JSON, *, create_only: bool, unitdp: int
    ) -> Outcome:
        """Create (PUT) or create-or-update by ItemID or Code (POST) one item."""
        t = self.tenant(tenant_id)
        existing: JSON | None = None
        if submitted.get("ItemID"):
            existing = t.items.get(str(submitted["ItemID"]).lower())
            if existing is None:
                return None, [f"The item with ItemID {submitted['ItemID']} could not be found."]
        elif submitted.get("Code") and not create_only:
            existing = self.find_item(t, str(submitted["Code"]))
        if existing is not None and create_only:
            return None, [f"Item code '{existing['Code']}' already exists."]
        merged: JSON = copy.deepcopy(existing) if existing else {
            "IsSold": True, "IsPurchased": True, "IsTrackedAsInventory": False,
        }
        for key, value in submitted.items():
            if key not in _ITEM_READ_ONLY:
                merged[key] = value
        errors = self._item_errors(t, merged, existing)
        for details in ("SalesDetails", "PurchaseDetails"):
            block = merged.get(details)
            if isinstance(block, dict) and block.get("UnitPrice") is not None:
                try:
                    block["UnitPrice"] = _places(_number(block["UnitPrice"]), unitdp)
                except ValueError:
                    errors.append(f"{details}.UnitPrice must be a number.")
        if errors:
            return None, errors
        merged.setdefault("ItemID", str(uuid.uuid4()))
        self._touch(t, merged, "ItemID", self.clock())
        t.items[merged["ItemID"]] = merged
        return merged, []

    def _item_errors(self, t: Tenant, item: JSON, existing: JSON | None) -> list[str]:
        errors: list[str] = []
        code = str(item.get("Code") or "").strip()
        own_id = existing["ItemID"] if existing else None
        if not code:
            errors.append("Item Code must be specified.")
        elif len(code) > 30:
            errors.append("Item Code must not exceed 30 characters.")
        elif any(
            i["Code"].lower() == code.lower() and i["ItemID"] != own_id for i in t.items.values()
        ):
            errors.append(f"Item code '{code}' already exists.")
        if len(str(item.get("Name") or "")) > 50:
            errors.append("Item Name must not exceed 50 characters.")
        for details, doc_type in (("SalesDetails", "ACCREC"), ("PurchaseDetails", "ACCPAY")):
            block = item.get(details)
            if block is None:
                continue
            if not isinstance(block, dict):
                errors.append(f"{details} must be an object.")
                continue
            account = block.get("AccountCode")
            if account and self._account_for_line(t, str(account)) is None:
                errors.append(MSG_ACCOUNT.format(code=account))
            tax = block.get("TaxType")
            if tax and self._tax_ok(t, str(tax), doc_type) is None:
                errors.append(MSG_TAX.format(code=tax))
        return errors

    # ----------------------------------------------------------------------- invoices

    def find_invoice(self, t: Tenant, ref: str) -> JSON | None:
        """By InvoiceID, else by InvoiceNumber (ACCREC numbers are unique per organisation)."""
        found = t.invoices.get(ref.lower()) or t.invoices.get(ref)
        if found is not None:
            return found
        matches = [i for i in t.invoices.values() if i.get("InvoiceNumber") == ref]
        matches.sort(key=lambda i: i["Type"] != "ACCREC")
        return matches[0] if matches else None

    def render_invoice(self, t: Tenant, invoice: JSON, unitdp: int, lines: bool = True) -> JSON:
        """A deep copy of an invoice or purchase order with the contact as it is now and unit
        amounts at the asked precision."""
        out = copy.deepcopy(invoice)
        contact = t.contacts.get(invoice["Contact"]["ContactID"])
        if contact is not None:
            out["Contact"] = copy.deepcopy(contact)
        if not lines:
            out.pop("LineItems", None)
        for line in out.get("LineItems", []):
            if unitdp < 4 and line.get("UnitAmount") is not None:
                line["UnitAmount"] = _places(line["UnitAmount"], 2)
        return out

    def save_invoice(
        self, tenant_id: str, submitted: JSON, *, create_only: bool, unitdp: int
    ) -> Outcome:
        """Create (PUT) or create-or-update by InvoiceID/InvoiceNumber (POST) one invoice."""
        t = self.tenant(tenant_id)
        existing: JSON | None = None
        if submitted.get("InvoiceID"):
            existing = t.invoices.get(str(submitted["InvoiceID"]).lower())
            if existing is None:
                return None, [f"Invoice with InvoiceID {submitted['InvoiceID']} was not found."]
        elif submitted.get("InvoiceNumber") and submitted.get("Type", "ACCREC") == "ACCREC":
            number = str(submitted["InvoiceNumber"])
            existing = next(
                (i for i in t.invoices.values()
                 if i["Type"] == "ACCREC" and i.get("InvoiceNumber") == number),
                None,
            )
            if existing is not None and create_only:
                return None, [MSG_INVOICE_NUMBER]
        if existing is not None and create_only:
            return None, [f"Invoice with InvoiceID {existing['InvoiceID']} already exists."]
        if existing is not None:
            return self._update_invoice(t, existing, submitted, unitdp)
        return self._build_invoice(t, submitted, None, unitdp)

    def _update_invoice(self, t: Tenant, existing: JSON, submitted: JSON, unitdp: int) -> Outcome:
        """Apply FACTS' status rules, then rebuild the invoice from old fields + new ones."""
        if existing["AmountPaid"] > 0 or existing["AmountCredited"] > 0:
            return None, [MSG_PAID]
        old = existing["Status"]
        new = str(submitted.get("Status") or old).upper()
        allowed = {
            "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
            "SUBMITTED": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
            "AUTHORISED": {"AUTHORISED", "VOIDED"},
        }
        if new not in allowed.get(old, set()):
            return None, [MSG_STATUS]
        if new in ("DELETED", "VOIDED"):
            existing["Status"] = new
            existing["AmountDue"] = Decimal("0.00")
            self._touch(t, existing, "InvoiceID", self.clock())
            return existing, []
        return self._build_invoice(t, submitted, existing, unitdp)

    def _build_invoice(
        self, t: Tenant, submitted: JSON, existing: JSON | None, unitdp: int
    ) -> Outcome:
        errors: list[str] = []
        base: JSON = copy.deepcopy(existing) if existing else {}

        def pick(name: str, default: Any = None) -> Any:
            return submitted[name] if name in submitted else base.get(name, default)

        doc_type = str(base.get("Type") or submitted.get("Type") or "")
        if doc_type not in ("ACCREC", "ACCPAY"):
            errors.append("Invoice Type must be ACCREC or ACCPAY.")
        status = str(pick("Status") or "DRAFT").upper()
        if existing is None and status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            errors.append(MSG_STATUS)

        contact, new_contact, contact_errors = self._invoice_contact(t, submitted, base)
        errors += contact_errors

        today = _utc(self.clock()).date()
        issued = parse_day(pick("Date")) if pick("Date") else today
        due = parse_day(pick("DueDate")) if pick("DueDate") else None
        if issued is None:
            errors.append(f"The Date '{pick('Date')}' is not a valid date.")
        if pick("DueDate") and due is None:
            errors.append(f"The DueDate '{pick('DueDate')}' is not a valid date.")
        if doc_type == "ACCREC" and status in ("SUBMITTED", "AUTHORISED") and not pick("DueDate"):
            errors.append("Due Date is mandatory.")

        amount_type = _amount_type(pick("LineAmountTypes"), errors)

        currency = str(pick("CurrencyCode") or t.base_currency).upper()
        if currency not in t.currencies:
            errors.append(MSG_CURRENCY.format(code=currency))

        number = pick("InvoiceNumber")
        if number is not None and len(str(number)) > 255:
            errors.append("Invoice # must not exceed 255 characters.")
        elif number and doc_type == "ACCREC" and any(
            i["Type"] == "ACCREC" and i.get("InvoiceNumber") == str(number)
            and i is not existing for i in t.invoices.values()
        ):
            errors.append(MSG_INVOICE_NUMBER)

        lines = self._lines(t, submitted, base, doc_type, amount_type, status, unitdp, errors)

        if errors:
            return None, errors
        assert issued is not None

        if new_contact is not None:
            saved, problems = self.save_contact(t.tenant_id, new_contact, create_only=True)
            if saved is None:
                return None, problems
            contact = saved
        assert contact is not None
        contact["IsCustomer" if doc_type == "ACCREC" else "IsSupplier"] = True

        if doc_type == "ACCREC" and not number:
            number = self._next_invoice_number(t)
        sub_total, total_tax, total_discount = _totals(lines, amount_type)
        total = sub_total + total_tax
        invoice: JSON = {
            "Type": doc_type,
            "InvoiceID": base.get("InvoiceID") or str(uuid.uuid4()),
            "InvoiceNumber": str(number or ""),
            "Reference": str(pick("Reference") or ""),
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            **_day_fields("Date", issued),
            "Status": status,
            "LineAmountTypes": amount_type,
            "LineItems": lines,
            "SubTotal": sub_total,
            "TotalTax": total_tax,
            "Total": total,
            "TotalDiscount": total_discount,
            "AmountDue": total,
            "AmountPaid": Decimal("0.00"),
            "AmountCredited": Decimal("0.00"),
            "CurrencyCode": currency,
            "CurrencyRate": _currency_rate(pick("CurrencyRate"), currency == t.base_currency),
            "IsDiscounted": total_discount > 0,
            "HasAttachments": False,
            "HasErrors": False,
            "SentToContact": bool(pick("SentToContact", False)),
            "BrandingThemeID": pick("BrandingThemeID") or None,
            "Url": pick("Url") or None,
            "Payments": [],
            "Prepayments": [],
            "Overpayments": [],
            "CreditNotes": [],
        }
        if due is not None:
            invoice.update(_day_fields("DueDate", due))
        for optional in ("BrandingThemeID", "Url"):
            if invoice[optional] is None:
                del invoice[optional]
        self._touch(t, invoice, "InvoiceID", self.clock())
        t.invoices[invoice["InvoiceID"]] = invoice
        return invoice, []

    def _lines(
        self,
        t: Tenant,
        submitted: JSON,
        base: JSON,
        doc_type: str,
        amount_type: str,
        status: str,
        unitdp: int,
        errors: list[str],
    ) -> list[JSON]:
        """A document's lines, submitted or kept from `base`; problems go to `errors`."""
        base_lines: list[JSON] = base.get("LineItems", [])
        raw_lines = submitted.get("LineItems", base_lines)
        if base and "LineItems" not in submitted and amount_type != base["LineAmountTypes"]:
            # Kept lines are recomputed under the new LineAmountTypes, not with their old tax.
            raw_lines = [{k: v for k, v in li.items() if k != "TaxAmount"} for li in base_lines]
        if raw_lines is not None and not isinstance(raw_lines, list):
            errors.append("LineItems must be a list.")
            raw_lines = []
        if not raw_lines and status != "DRAFT":
            errors.append("At least one line item must be specified.")
        old_ids = {li["LineItemID"] for li in base_lines}
        lines: list[JSON] = []
        for index, raw in enumerate(raw_lines or [], start=1):
            if not isinstance(raw, dict):
                errors.append(f"Line {index} must be an object.")
                continue
            line, line_errors = self._line(t, raw, doc_type, amount_type, status, unitdp, old_ids)
            errors += line_errors
            lines.append(line)
        return lines

    def _next_invoice_number(self, t: Tenant) -> str:
        taken = {i.get("InvoiceNumber") for i in t.invoices.values() if i["Type"] == "ACCREC"}
        while True:
            t.invoice_counter += 1
            candidate = f"INV-{t.invoice_counter:04d}"
            if candidate not in taken:
                return candidate

    def _invoice_contact(
        self, t: Tenant, submitted: JSON, base: JSON
    ) -> tuple[JSON | None, JSON | None, list[str]]:
        """(existing contact, contact to create, errors): by ContactID, ContactNumber, Name."""
        ref = submitted.get("Contact")
        if ref is None and base:
            return t.contacts.get(base["Contact"]["ContactID"]), None, []
        if not isinstance(ref, dict) or not ref:
            return None, None, ["A Contact must be specified for this type of transaction."]
        found: JSON | None = None
        if ref.get("ContactID"):
            found = t.contacts.get(str(ref["ContactID"]).lower())
            if found is None:
                return None, None, [f"Contact with ContactID {ref['ContactID']} was not found."]
        elif ref.get("ContactNumber"):
            found = next(
                (c for c in t.contacts.values() if c.get("ContactNumber") == ref["ContactNumber"]),
                None,
            )
        if found is None and ref.get("Name"):
            name = str(ref["Name"]).strip().lower()
            named = [c for c in t.contacts.values() if c["Name"].lower() == name]
            named.sort(key=lambda c: c["ContactStatus"] != "ACTIVE")
            found = named[0] if named else None
            if found is None:
                fresh = {k: v for k, v in ref.items() if k not in _CONTACT_READ_ONLY}
                return None, fresh, []
        if found is None:
            return None, None, ["A Contact must be specified for this type of transaction."]
        if found["ContactStatus"] == "ARCHIVED":
            return None, None, [MSG_ARCHIVED]
        return found, None, []

    # ----------------------------------------------------------------------- credit notes

    def find_credit_note(self, t: Tenant, ref: str) -> JSON | None:
        """By CreditNoteID, else by CreditNoteNumber."""
        found = t.credit_notes.get(ref.lower()) or t.credit_notes.get(ref)
        return found or next(
            (c for c in t.credit_notes.values() if c.get("CreditNoteNumber") == ref), None
        )

    def save_credit_note(self, tenant_id: str, submitted: JSON, *, unitdp: int) -> Outcome:
        """Create (PUT) one ACCRECCREDIT; its lines follow the sales rules of an ACCREC."""
        t = self.tenant(tenant_id)
        errors: list[str] = []
        if submitted.get("Type") != "ACCRECCREDIT":
            errors.append("Credit note Type must be ACCRECCREDIT (ACCPAYCREDIT is not modelled).")
        status = str(submitted.get("Status") or "DRAFT").upper()
        if status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            errors.append(MSG_STATUS)
        contact, new_contact, contact_errors = self._invoice_contact(t, submitted, {})
        errors += contact_errors
        issued = parse_day(submitted.get("Date")) or _utc(self.clock()).date()
        amount_type = _amount_type(submitted.get("LineAmountTypes"), errors)
        currency = str(submitted.get("CurrencyCode") or t.base_currency).upper()
        if currency not in t.currencies:
            errors.append(MSG_CURRENCY.format(code=currency))
        lines = self._lines(t, submitted, {}, "ACCREC", amount_type, status, unitdp, errors)
        if errors:
            return None, errors
        if new_contact is not None:
            contact, problems = self.save_contact(tenant_id, new_contact, create_only=True)
            if contact is None:
                return None, problems
        assert contact is not None
        sub_total, total_tax, _ = _totals(lines, amount_type)
        t.credit_note_counter += 1
        note: JSON = {
            "Type": "ACCRECCREDIT",
            "CreditNoteID": str(uuid.uuid4()),
            "CreditNoteNumber": f"CN-{t.credit_note_counter:04d}",
            "Reference": str(submitted.get("Reference") or ""),
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            **_day_fields("Date", issued),
            "Status": status,
            "LineAmountTypes": amount_type,
            "LineItems": lines,
            "SubTotal": sub_total,
            "TotalTax": total_tax,
            "Total": sub_total + total_tax,
            "RemainingCredit": sub_total + total_tax,
            "CurrencyCode": currency,
            "CurrencyRate": Decimal("1.000000"),
            "Allocations": [],
            "HasErrors": False,
        }
        self._touch(t, note, "CreditNoteID", self.clock())
        t.credit_notes[note["CreditNoteID"]] = note
        return note, []

    def allocate_credit_note(self, t: Tenant, note: JSON, submitted: JSON) -> Outcome:
        """Allocate part of an AUTHORISED credit note to an AUTHORISED invoice of its contact."""
        ref = submitted.get("Invoice")
        invoice_id = ref.get("InvoiceID", "") if isinstance(ref, dict) else ""
        invoice = t.invoices.get(str(invoice_id).lower())
        try:
            amount = money(_number(submitted.get("Amount")))
        except ValueError:
            return None, ["Amount must be a number."]
        on = parse_day(submitted.get("Date"))
        if on is None:  # the spec's Allocation requires Amount, Invoice and Date
            return None, ["An allocation must have a Date."]
        if note["Status"] != "AUTHORISED":
            return None, ["Only AUTHORISED credit notes can be allocated."]
        if invoice is None or invoice["Type"] != "ACCREC":
            return None, ["Invoice could not be found."]
        if invoice["Contact"]["ContactID"] != note["Contact"]["ContactID"]:
            return None, ["The invoice must be for the same contact as the credit note."]
        if invoice["CurrencyCode"] != note["CurrencyCode"]:
            return None, ["The invoice must be in the same currency as the credit note."]
        if invoice["Status"] != "AUTHORISED":
            return None, [MSG_STATUS]
        if not 0 < amount <= min(note["RemainingCredit"], invoice["AmountDue"]):
            return None, [
                f"The allocation amount must be more than 0 and at most the credit remaining "
                f"({note['RemainingCredit']}) and the amount due ({invoice['AmountDue']})."
            ]
        allocation: JSON = {
            "AllocationID": str(uuid.uuid4()), "Amount": amount, **_day_fields("Date", on),
            "Invoice": {"InvoiceID": invoice["InvoiceID"],
                        "InvoiceNumber": invoice["InvoiceNumber"]},
        }
        note["Allocations"].append(allocation)
        note["RemainingCredit"] = money(note["RemainingCredit"] - amount)
        if note["RemainingCredit"] == 0:
            note["Status"] = "PAID"
        invoice["CreditNotes"].append({
            "CreditNoteID": note["CreditNoteID"], "CreditNoteNumber": note["CreditNoteNumber"],
            "Total": note["Total"], "AppliedAmount": amount, **_day_fields("Date", on),
        })
        self._settle(t, invoice, "AmountCredited", amount, on)
        self._touch(t, note, "CreditNoteID", self.clock())
        return allocation, []

    def render_contact(self, t: Tenant, contact: JSON) -> JSON:
        """A copy of the contact with its `Balances`: what is due on its AUTHORISED invoices
        (Overdue: past their DueDate), not converted to the base currency, as Xero reports."""
        out = copy.deepcopy(contact)
        today = _utc(self.clock()).date()
        balances: JSON = {}
        for doc_type, name in (("ACCREC", "AccountsReceivable"), ("ACCPAY", "AccountsPayable")):
            due = [
                i for i in t.invoices.values()
                if i["Type"] == doc_type and i["Status"] == "AUTHORISED"
                and i["Contact"]["ContactID"] == contact["ContactID"]
            ]
            balances[name] = {
                "Outstanding": sum((i["AmountDue"] for i in due), Decimal("0.00")),
                "Overdue": sum(
                    (i["AmountDue"] for i in due
                     if (parse_day(i.get("DueDate")) or today) < today),
                    Decimal("0.00"),
                ),
            }
        out["Balances"] = balances
        return out

    # ----------------------------------------------------------------------- purchase orders

    def find_purchase_order(self, t: Tenant, ref: str) -> JSON | None:
        """By PurchaseOrderID, else by PurchaseOrderNumber (unique per organisation)."""
        found = t.purchase_orders.get(ref.lower()) or t.purchase_orders.get(ref)
        if found is not None:
            return found
        return next(
            (po for po in t.purchase_orders.values() if po["PurchaseOrderNumber"] == ref), None
        )

    def save_purchase_order(
        self, tenant_id: str, submitted: JSON, *, create_only: bool, unitdp: int
    ) -> Outcome:
        """Create (PUT) or create-or-update by PurchaseOrderID/Number (POST) one order."""
        t = self.tenant(tenant_id)
        existing: JSON | None = None
        if submitted.get("PurchaseOrderID"):
            existing = t.purchase_orders.get(str(submitted["PurchaseOrderID"]).lower())
            if existing is None:
                return None, [
                    f"Purchase order with PurchaseOrderID {submitted['PurchaseOrderID']} "
                    "was not found."
                ]
        elif submitted.get("PurchaseOrderNumber") and not create_only:
            existing = self.find_purchase_order(t, str(submitted["PurchaseOrderNumber"]))
        if existing is not None and create_only:
            return None, [
                f"Purchase order with PurchaseOrderID {existing['PurchaseOrderID']} already exists."
            ]
        if existing is None:
            return self._build_purchase_order(t, submitted, None, unitdp)
        old = existing["Status"]
        new = str(submitted.get("Status") or old).upper()
        if old == "BILLED":
            return None, [MSG_PO_BILLED]
        if new not in _PO_TRANSITIONS.get(old, set()):
            return None, [MSG_PO_STATUS]
        if new == "DELETED":
            existing["Status"] = new
            self._touch(t, existing, "PurchaseOrderID", self.clock())
            return existing, []
        return self._build_purchase_order(t, submitted, existing, unitdp)

    def _build_purchase_order(
        self, t: Tenant, submitted: JSON, existing: JSON | None, unitdp: int
    ) -> Outcome:
        errors: list[str] = []
        base: JSON = copy.deepcopy(existing) if existing else {}

        def pick(name: str, default: Any = None) -> Any:
            return submitted[name] if name in submitted else base.get(name, default)

        status = str(pick("Status") or "DRAFT").upper()
        if existing is None and status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            errors.append(MSG_PO_STATUS)
        contact, new_contact, contact_errors = self._invoice_contact(t, submitted, base)
        errors += contact_errors
        if new_contact is not None:
            errors.append(MSG_PO_CONTACT)
        issued = parse_day(pick("Date")) if pick("Date") else _utc(self.clock()).date()
        if issued is None:
            errors.append(f"The Date '{pick('Date')}' is not a valid date.")
        delivery = parse_day(pick("DeliveryDate")) if pick("DeliveryDate") else None
        if pick("DeliveryDate") and delivery is None:
            errors.append(f"The DeliveryDate '{pick('DeliveryDate')}' is not a valid date.")
        amount_type = _amount_type(pick("LineAmountTypes"), errors)
        currency = str(pick("CurrencyCode") or t.base_currency).upper()
        if currency not in t.currencies:
            errors.append(MSG_CURRENCY.format(code=currency))
        number = str(pick("PurchaseOrderNumber") or "")
        if number and any(
            po["PurchaseOrderNumber"] == number and po is not existing
            for po in t.purchase_orders.values()
        ):
            errors.append(MSG_PO_NUMBER)
        lines = self._lines(t, submitted, base, PO, amount_type, status, unitdp, errors)
        if errors:
            return None, errors
        assert issued is not None and contact is not None
        sub_total, total_tax, total_discount = _totals(lines, amount_type)
        po: JSON = {
            "PurchaseOrderID": base.get("PurchaseOrderID") or str(uuid.uuid4()),
            "PurchaseOrderNumber": number or self._next_po_number(t),
            **_day_fields("Date", issued),
            "Reference": str(pick("Reference") or ""),
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            "Status": status,
            "LineAmountTypes": amount_type,
            "LineItems": lines,
            "SubTotal": sub_total,
            "TotalTax": total_tax,
            "Total": sub_total + total_tax,
            "TotalDiscount": total_discount,
            "CurrencyCode": currency,
            "CurrencyRate": _currency_rate(pick("CurrencyRate"), currency == t.base_currency),
            "IsDiscounted": total_discount > 0,
            "HasAttachments": False,
            "HasErrors": False,
            "SentToContact": bool(pick("SentToContact", False)),
        }
        for text in ("DeliveryAddress", "AttentionTo", "Telephone", "DeliveryInstructions"):
            po[text] = str(pick(text) or "")
        if delivery is not None:
            po.update(_day_fields("DeliveryDate", delivery))
        self._touch(t, po, "PurchaseOrderID", self.clock())
        t.purchase_orders[po["PurchaseOrderID"]] = po
        return po, []

    def _next_po_number(self, t: Tenant) -> str:
        taken = {po["PurchaseOrderNumber"] for po in t.purchase_orders.values()}
        while True:
            t.po_counter += 1
            candidate = f"PO-{t.po_counter:04d}"
            if candidate not in taken:
                return candidate

    def _line(
        self,
        t: Tenant,
        raw: JSON,
        doc_type: str,
        amount_type: str,
        status: str,
        unitdp: int,
        old_ids: set[str],
    ) -> tuple[JSON, list[str]]:
        """Validate one line and compute its amounts; see the module docstring for rounding."""
        errors: list[str] = []
        given_id = str(raw.get("LineItemID") or "").lower()
        line: JSON = {"LineItemID": given_id if given_id in old_ids else str(uuid.uuid4())}
        line["Description"] = raw.get("Description") or ""
        defaults: JSON = {}
        if raw.get("ItemCode"):
            item = self.find_item(t, str(raw["ItemCode"]))
            if item is None:
                errors.append(MSG_ITEM.format(code=raw["ItemCode"]))
            else:
                line["ItemCode"] = item["Code"]
                line["Item"] = {"ItemID": item["ItemID"], "Name": item.get("Name", ""),
                                "Code": item["Code"]}
                sales = doc_type == "ACCREC"
                defaults = dict(item.get("SalesDetails" if sales else "PurchaseDetails") or {})
                desc_key = "Description" if sales else "PurchaseDescription"
                line["Description"] = raw.get("Description") or item.get(desc_key) or ""

        def number(name: str, fallback: Any = None) -> Decimal | None:
            value = raw.get(name, fallback)
            if value is None:
                return None
            try:
                return _number(value)
            except ValueError:
                errors.append(f"{name} must be a number.")
                return None

        quantity = number("Quantity")
        unit = number("UnitAmount", defaults.get("UnitPrice"))
        given_line_amount = number("LineAmount")
        if quantity is None:
            quantity = Decimal(1) if (unit is not None or given_line_amount is not None) else None
        if unit is None and given_line_amount is not None and quantity:
            unit = given_line_amount / quantity
        quantity = _places(quantity, 4) if quantity is not None else Decimal("0.0000")
        unit = _places(unit, unitdp) if unit is not None else Decimal("0.00")
        gross = quantity * unit

        rate_off = number("DiscountRate")
        amount_off = number("DiscountAmount")
        discount = Decimal("0.00")
        if amount_off and doc_type == PO:
            errors.append("DiscountAmount is not supported on purchase orders; use DiscountRate.")
        elif (rate_off or amount_off) and doc_type not in ("ACCREC", PO):
            errors.append("Discounts are only supported on ACCREC invoices.")
        elif rate_off and amount_off:
            errors.append("Specify either DiscountRate or DiscountAmount, not both.")
        elif amount_off:
            discount = money(amount_off)
            line["DiscountAmount"] = discount
        elif rate_off:
            discount = money(gross * rate_off / HUNDRED)
            line["DiscountRate"] = _places(rate_off, 2)
        line_amount = money(gross - discount)

        account_code = raw.get("AccountCode") or defaults.get("AccountCode")
        account: JSON | None = None
        if account_code:
            account = self._account_for_line(t, str(account_code))
            if account is None:
                errors.append(MSG_ACCOUNT.format(code=account_code))
            else:
                line["AccountCode"] = account["Code"]
                line["AccountID"] = account["AccountID"]
        elif status != "DRAFT" and line_amount != 0:
            errors.append("Account code must be specified for line items with an amount.")

        tax_type = raw.get("TaxType") or defaults.get("TaxType") or (
            account["TaxType"] if account else None
        )
        rate = Decimal(0)
        if tax_type:
            tax_rate = self._tax_ok(t, str(tax_type), doc_type)
            if tax_rate is None:
                errors.append(MSG_TAX.format(code=tax_type))
            else:
                rate = tax_rate["EffectiveRate"]
                line["TaxType"] = tax_type
        override = number("TaxAmount")
        if amount_type == "NoTax":
            tax = Decimal("0.00")
        elif override is not None:
            tax = money(override)
        elif amount_type == "Inclusive":
            tax = money(line_amount - line_amount / (1 + rate / HUNDRED))
        else:
            tax = money(line_amount * rate / HUNDRED)
        line.update({
            "Quantity": quantity, "UnitAmount": unit, "TaxAmount": tax,
            "LineAmount": line_amount, "Tracking": list(raw.get("Tracking") or []),
        })
        return line, errors


_DEFAULT_SCOPE = (
    "openid profile email accounting.transactions accounting.contacts accounting.settings "
    "offline_access"
)
_GRANULAR_SCOPE = (
    "openid profile email offline_access accounting.invoices accounting.payments "
    "accounting.contacts accounting.settings"
)
# The broad scopes granular apps cannot request, and the scopes of the Accounting API an app may
# ask for (developer.xero.com/documentation/oauth2/scopes; apideck.com/blog/xero-scopes).
BROAD = frozenset({"accounting.transactions", "accounting.transactions.read",
                   "accounting.reports.read"})
_GRANULAR_FAMILIES = ("invoices", "payments", "banktransactions", "manualjournals",
                      "classicexpenses", "settings", "contacts", "attachments")
KNOWN_SCOPES = BROAD | {"openid", "profile", "email", "offline_access",
                        "accounting.journals.read", "accounting.budgets.read"} | {
    f"accounting.{family}{suffix}" for family in _GRANULAR_FAMILIES for suffix in ("", ".read")
}
# Which scope families open which Accounting endpoint (first path segment): a write needs the
# scope itself, a read also takes its `.read` variant; the broad accounting.transactions still
# opens invoices and payments for older apps. Items: invoices or settings (apideck.com).
SCOPE_FAMILIES: dict[str, tuple[str, ...]] = {
    "settings": ("accounting.settings",),
    "contacts": ("accounting.contacts",),
    "invoices": ("accounting.invoices", "accounting.transactions"),
    "payments": ("accounting.payments", "accounting.transactions"),
}
ENDPOINT_FAMILIES: dict[str, tuple[str, ...]] = {
    "Organisation": ("settings",), "TaxRates": ("settings",), "Accounts": ("settings",),
    "Currencies": ("settings",), "TrackingCategories": ("settings",),
    "Contacts": ("contacts",), "Items": ("invoices", "settings"),
    "Invoices": ("invoices",), "CreditNotes": ("invoices",), "PurchaseOrders": ("invoices",),
    "Payments": ("payments",), "Overpayments": ("payments",), "Prepayments": ("payments",),
}


def scope_allows(scope: frozenset[str], collection: str, method: str) -> bool:
    """Does a token with `scope` open `method` on this Accounting collection?"""
    for family in ENDPOINT_FAMILIES.get(collection, ()):
        for base in SCOPE_FAMILIES[family]:
            if base in scope or (method == "GET" and f"{base}.read" in scope):
                return True
    return False
_CONTACT_READ_ONLY = {
    "ContactID", "IsSupplier", "IsCustomer", "UpdatedDateUTC", "Balances", "HasValidationErrors",
    "ValidationErrors", "StatusAttributeString", "HasAttachments", "Website", "Discount",
}
CONTACT_SPEC_READ_ONLY = {"Website", "Discount", "UpdatedDateUTC"}  # Contact's readOnly (spec)
_ITEM_READ_ONLY = {
    "ItemID", "UpdatedDateUTC", "ValidationErrors", "StatusAttributeString", "TotalCostPool",
    "QuantityOnHand", "IsTrackedAsInventory",
}


def _tax_rate(seed: _TaxSeed) -> JSON:
    rate = _places(Decimal(seed.rate), 4)
    return {
        "Name": seed.name,
        "TaxType": seed.tax_type,
        "TaxComponents": [
            {"Name": seed.name.split(" ")[0], "Rate": rate, "IsCompound": False,
             "IsNonRecoverable": False},
        ],
        "Status": "ACTIVE",
        "ReportTaxType": seed.report,
        "CanApplyToAssets": seed.expenses,
        "CanApplyToEquity": seed.expenses,
        "CanApplyToExpenses": seed.expenses,
        "CanApplyToLiabilities": seed.expenses,
        "CanApplyToRevenue": seed.revenue,
        "DisplayTaxRate": rate,
        "EffectiveRate": rate,
    }


def _amount_type(given: Any, errors: list[str]) -> str:
    """A document's LineAmountTypes (Exclusive when absent); a bad value goes to `errors`."""
    amount_types = {"exclusive": "Exclusive", "inclusive": "Inclusive", "notax": "NoTax"}
    amount_type = amount_types.get(str(given or "Exclusive").lower())
    if amount_type is None:
        errors.append(f"LineAmountTypes '{given}' is not valid.")
    return amount_type or "Exclusive"


def _totals(lines: list[JSON], amount_type: str) -> tuple[Decimal, Decimal, Decimal]:
    """SubTotal, TotalTax and TotalDiscount: sums of per-line figures already at cents."""
    total_tax = sum((li["TaxAmount"] for li in lines), Decimal("0.00"))
    amounts = sum((li["LineAmount"] for li in lines), Decimal("0.00"))
    sub_total = amounts - total_tax if amount_type == "Inclusive" else amounts
    discount = Decimal("0.00")
    for li in lines:
        if "DiscountAmount" in li:
            discount += li["DiscountAmount"]
        elif "DiscountRate" in li:
            discount += money(li["Quantity"] * li["UnitAmount"] * li["DiscountRate"] / HUNDRED)
    return money(sub_total), money(total_tax), money(discount)


def _currency_rate(given: Any, is_base: bool) -> Decimal:
    if is_base or given is None:
        return Decimal("1.000000")
    try:
        return _places(_number(given), 6)
    except ValueError:
        return Decimal("1.000000")


def _ms_of(value: str) -> int:
    return int(value[6:].split("+")[0].split(")")[0])


def _iso7(at: float) -> str:
    """The identity API's timestamps: ISO with 7 fractional digits and no offset."""
    return _utc(at).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


def _connection_id(grant: Grant, tenant_id: str) -> str:
    return str(uuid.uuid5(_SEED_NS, f"{grant.auth_event_id}/connection/{tenant_id}"))


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

