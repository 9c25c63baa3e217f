"""In-memory state of the Zoho CRM sandbox: field lists, records, totals, OAuth tokens, limits.

Everything here sits behind one `threading.Lock`, because the HTTP app runs on a uvicorn thread
while tests and the demo read and seed the same object from their own thread. Section numbers
(§n) refer to the project's Zoho facts file (FACTS.md, Zoho's CRM v7 documentation
summarised, kept beside the repository); "(u)" marks behaviour FACTS lists as unverified.

Faithful:
- OAuth (§2): 1 h access tokens (`zoho_access_token_seconds`), 10 access tokens per 10 min per
  refresh token, 30 live access tokens per refresh token and 20 refresh tokens (Zoho: per user;
  here per client) with the oldest evicted, single-use grant codes that live one sandbox
  minute, `invalid_client` and `invalid_code`.
- Records (§3, §5): 19-digit numeric ids, per-record results in request order, `INVALID_DATA`,
  `MANDATORY_NOT_FOUND`, `DUPLICATE_DATA`, lookups stored as {"name", "id"}, subform rows kept
  only when their `id` is sent again, inventory totals computed by the server.
- Workflow: the API runs workflow rules unless `trigger` is given without "workflow"; an omitted
  `trigger` runs them, as in Zoho, so write-backs must send `"trigger": []`.
- Limits (§6; zoho.com/crm/developer/docs/api/v4/api-limits.html: "Maximum credit limit in a
  24-hour window", Standard 50,000 + 250 per user): API credits per org over a rolling day and
  concurrent calls per org, both from `SandboxConfig.zoho_limits`; a sandbox day is
  `minute_seconds * 1440`.

Field lists (`MODULE_FIELDS`) hold the standard fields of §5 plus these CUSTOM fields, which a
user must create in their own org (Setup > Modules and Fields) before the integration writes back:
- Invoices, Quotes, Sales_Orders: Xero_Invoice_ID, Xero_Invoice_Number, Xero_Invoice_Status
  (text), Xero_Sync_Status (pick list Pending/Synced/Failed), Xero_Sync_Error (text area),
  Xero_Online_Invoice_URL (URL), Xero_Credit_Note (text area), Xero_Payment_Status (pick
  list), Xero_Amount_Paid, Xero_Amount_Due, Xero_Last_Payment_Amount (currency),
  Xero_Last_Payment_Date (date).
- Purchase_Orders: Xero_Purchase_Order_ID, Xero_Purchase_Order_Number, Xero_PO_Status (text),
  Xero_Sync_Status, Xero_Sync_Error.
- Accounts: Xero_Contact_ID (text), Xero_Credit_Balance, Xero_Outstanding_Balance,
  Xero_Overdue_Balance (currency), Xero_Credit_Hold (boolean), Xero_Email (email) and
  Xero_Tax_Number (text) for contact sync.
- Vendors: Xero_Contact_ID (text).
An org starts with them (most tests need them); `without_custom_fields` makes a fresh org, and
`POST /settings/fields?module=X` (§11) creates them, as `zxsync setup zoho` does. A write to a
field the org lacks is `INVALID_DATA` (u: Zoho's docs say "use only field API names" without
naming the error; an old v1 report says Zoho ignored unknown fields silently; refusing is the
stricter choice and makes a missing setup loud).
"""

from __future__ import annotations

import copy
import random
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from sandbox.config import SandboxConfig
from sandbox.faults import Faults
from sandbox.zoho_notifications import ZohoNotifications

Record = dict[str, Any]
Predicate = Callable[[Record], bool]

#: §2: access tokens per refresh token per 10 minutes, live access tokens, refresh tokens.
TOKENS_PER_WINDOW = 10
TOKEN_WINDOW_MINUTES = 10
LIVE_ACCESS_TOKENS = 30
REFRESH_TOKENS_PER_CLIENT = 20
#: §3: records per insert/update call.
MAX_RECORDS_PER_CALL = 100
CENT = Decimal("0.01")


class FieldSpec(NamedTuple):
    """One field as Zoho's field metadata describes it (`GET /settings/fields`, §9)."""

    data_type: str
    target: str | None = None  # lookup module
    values: tuple[str, ...] = ()  # allowed pick-list values; empty means unrestricted
    mandatory: bool = False
    read_only: bool = False
    custom: bool = False


def _many(data_type: str, names: str, **kw: Any) -> dict[str, FieldSpec]:
    return {name: FieldSpec(data_type, **kw) for name in names.split()}


def _address(prefix: str, code: str) -> dict[str, FieldSpec]:
    parts = f"Street City State {code} Country".split()
    return _many("text", " ".join(f"{prefix}_{part}" for part in parts))


SYSTEM_FIELDS: dict[str, FieldSpec] = {
    "id": FieldSpec("bigint", read_only=True),
    "Owner": FieldSpec("ownerlookup"),
    "Created_By": FieldSpec("ownerlookup", read_only=True),
    "Modified_By": FieldSpec("ownerlookup", read_only=True),
    "Created_Time": FieldSpec("datetime", read_only=True),
    "Modified_Time": FieldSpec("datetime", read_only=True),
    "Currency": FieldSpec("picklist"),
    "Exchange_Rate": FieldSpec("double"),
}

LINE_ITEM_FIELDS: dict[str, FieldSpec] = {
    "id": FieldSpec("bigint", read_only=True),
    "Product_Name": FieldSpec("lookup", "Products", mandatory=True),
    "Quantity": FieldSpec("double", mandatory=True),
    "List_Price": FieldSpec("currency"),
    "Discount": FieldSpec("currency"),
    "Line_Tax": FieldSpec("linetax"),
    "Description": FieldSpec("textarea"),
    **_many("currency", "Tax Total Total_After_Discount Net_Total", read_only=True),
}

SYNC_STATUS = ("Pending", "Synced", "Failed")

_XERO_SALES = {
    **_many("text", "Xero_Invoice_ID Xero_Invoice_Number Xero_Invoice_Status", custom=True),
    "Xero_Sync_Status": FieldSpec("picklist", values=SYNC_STATUS, custom=True),
    "Xero_Sync_Error": FieldSpec("textarea", custom=True),
    "Xero_Online_Invoice_URL": FieldSpec("website", custom=True),
    "Xero_Credit_Note": FieldSpec("textarea", custom=True),
    "Xero_Payment_Status": FieldSpec("picklist", custom=True),
    **_many("currency", "Xero_Amount_Paid Xero_Amount_Due Xero_Last_Payment_Amount", custom=True),
    "Xero_Last_Payment_Date": FieldSpec("date", custom=True),
}

_XERO_PURCHASE = {
    **_many(
        "text", "Xero_Purchase_Order_ID Xero_Purchase_Order_Number Xero_PO_Status", custom=True
    ),
    "Xero_Sync_Status": FieldSpec("picklist", values=SYNC_STATUS, custom=True),
    "Xero_Sync_Error": FieldSpec("textarea", custom=True),
}


def _inventory(items: str, **extra: FieldSpec) -> dict[str, FieldSpec]:
    """Fields every inventory module shares (§5); `items` is its line-item subform."""
    return {
        **SYSTEM_FIELDS,
        "Subject": FieldSpec("text", mandatory=True),
        "Contact_Name": FieldSpec("lookup", "Contacts"),
        "Status": FieldSpec("picklist"),
        "Discount": FieldSpec("currency"),
        "Adjustment": FieldSpec("currency"),
        **_many("currency", "Sub_Total Tax Grand_Total", read_only=True),
        **_many("textarea", "Terms_and_Conditions Description"),
        items: FieldSpec("subform", mandatory=True),
        **extra,
    }


MODULE_FIELDS: dict[str, dict[str, FieldSpec]] = {
    "Accounts": {
        **SYSTEM_FIELDS,
        "Account_Name": FieldSpec("text", mandatory=True),
        **_many("text", "Account_Number Account_Site Ticker_Symbol"),
        **_many("picklist", "Account_Type Industry Ownership Rating"),
        "Parent_Account": FieldSpec("lookup", "Accounts"),
        **_many("phone", "Phone Fax"),
        "Website": FieldSpec("website"),
        "Annual_Revenue": FieldSpec("currency"),
        **_many("integer", "Employees SIC_Code"),
        **_address("Billing", "Code"),
        **_address("Shipping", "Code"),
        "Description": FieldSpec("textarea"),
        "Xero_Contact_ID": FieldSpec("text", custom=True),
        **_many(
            "currency",
            "Xero_Credit_Balance Xero_Outstanding_Balance Xero_Overdue_Balance",
            custom=True,
        ),
        "Xero_Credit_Hold": FieldSpec("boolean", custom=True),
        "Xero_Email": FieldSpec("email", custom=True),
        "Xero_Tax_Number": FieldSpec("text", custom=True),
    },
    "Contacts": {
        **SYSTEM_FIELDS,
        "First_Name": FieldSpec("text"),
        "Last_Name": FieldSpec("text", mandatory=True),
        "Full_Name": FieldSpec("text", read_only=True),
        **_many("picklist", "Salutation Lead_Source"),
        **_many("email", "Email Secondary_Email"),
        **_many("phone", "Phone Mobile Home_Phone Other_Phone Fax Asst_Phone"),
        **_many("text", "Title Department Assistant Skype_ID Twitter"),
        "Account_Name": FieldSpec("lookup", "Accounts"),
        "Vendor_Name": FieldSpec("lookup", "Vendors"),
        "Reporting_To": FieldSpec("lookup", "Contacts"),
        "Date_of_Birth": FieldSpec("date"),
        "Email_Opt_Out": FieldSpec("boolean"),
        **_address("Mailing", "Zip"),
        **_address("Other", "Zip"),
        "Description": FieldSpec("textarea"),
    },
    "Products": {
        **SYSTEM_FIELDS,
        "Product_Name": FieldSpec("text", mandatory=True),
        "Product_Code": FieldSpec("text"),
        **_many("boolean", "Product_Active Taxable"),
        **_many("picklist", "Product_Category Manufacturer Usage_Unit"),
        "Vendor_Name": FieldSpec("lookup", "Vendors"),
        **_many("currency", "Unit_Price Commission_Rate"),
        "Tax": FieldSpec("multiselectpicklist"),
        **_many("double", "Qty_Ordered Qty_in_Stock Reorder_Level Qty_in_Demand"),
        **_many("date", "Sales_Start_Date Sales_End_Date Support_Start_Date Support_Expiry_Date"),
        "Description": FieldSpec("textarea"),
    },
    "Vendors": {
        **SYSTEM_FIELDS,
        "Vendor_Name": FieldSpec("text", mandatory=True),
        "Email": FieldSpec("email"),
        "Phone": FieldSpec("phone"),
        "Website": FieldSpec("website"),
        **_many("picklist", "GL_Account"),
        **_many("text", "Category Street City State Zip_Code Country"),
        "Description": FieldSpec("textarea"),
        "Xero_Contact_ID": FieldSpec("text", custom=True),
    },
    "Quotes": _inventory(
        "Quoted_Items",
        Account_Name=FieldSpec("lookup", "Accounts", mandatory=True),
        Quote_Stage=FieldSpec("picklist"),
        Valid_Till=FieldSpec("date"),
        Team=FieldSpec("text"),
        Carrier=FieldSpec("picklist"),
        **_address("Billing", "Code"),
        **_address("Shipping", "Code"),
        **_XERO_SALES,
    ),
    "Sales_Orders": _inventory(
        "Ordered_Items",
        Account_Name=FieldSpec("lookup", "Accounts", mandatory=True),
        Quote_Name=FieldSpec("lookup", "Quotes"),
        **_many("text", "SO_Number Customer_No Purchase_Order Pending"),
        Due_Date=FieldSpec("date"),
        Carrier=FieldSpec("picklist"),
        **_many("currency", "Excise_Duty Sales_Commission"),
        **_address("Billing", "Code"),
        **_address("Shipping", "Code"),
        **_XERO_SALES,
    ),
    "Invoices": _inventory(
        "Invoiced_Items",
        Account_Name=FieldSpec("lookup", "Accounts", mandatory=True),
        Sales_Order=FieldSpec("lookup", "Sales_Orders"),
        **_many("text", "Invoice_Number Purchase_Order"),
        **_many("date", "Invoice_Date Due_Date"),
        **_many("currency", "Excise_Duty Sales_Commission"),
        **_address("Billing", "Code"),
        **_address("Shipping", "Code"),
        **_XERO_SALES,
    ),
    "Purchase_Orders": _inventory(
        "Purchase_Items",
        Vendor_Name=FieldSpec("lookup", "Vendors", mandatory=True),
        **_many("text", "PO_Number Requisition_No Tracking_Number"),
        **_many("date", "PO_Date Due_Date"),
        Carrier=FieldSpec("picklist"),
        **_many("currency", "Excise_Duty Sales_Commission"),
        **_address("Billing", "Code"),
        **_address("Shipping", "Code"),
        **_XERO_PURCHASE,
    ),
}

#: The line-item subform of each inventory module (§5).
ITEMS_FIELD = {
    "Quotes": "Quoted_Items",
    "Sales_Orders": "Ordered_Items",
    "Invoices": "Invoiced_Items",
    "Purchase_Orders": "Purchase_Items",
}
#: The field a lookup to the module shows as its "name".
NAME_FIELD = {
    "Accounts": "Account_Name",
    "Contacts": "Full_Name",
    "Products": "Product_Name",
    "Vendors": "Vendor_Name",
    **dict.fromkeys(ITEMS_FIELD, "Subject"),
}
#: Fields set to "Do not allow duplicate values", as a typical org has them (u).
UNIQUE_FIELDS = {
    "Products": ("Product_Code",),
    "Invoices": ("Invoice_Number",),
    "Sales_Orders": ("SO_Number",),
    "Purchase_Orders": ("PO_Number",),
}
_ID_KINDS = (*MODULE_FIELDS, "Line_Items", "Notes", "Attachments", "Users", "Fields")
#: data types `POST /settings/fields` accepts (Field Types: Data Types and Length Limits).
CREATABLE_TYPES = frozenset(
    {
        "text",
        "textarea",
        "email",
        "phone",
        "picklist",
        "multiselectpicklist",
        "date",
        "datetime",
        "integer",
        "currency",
        "percent",
        "bigint",
        "double",
        "website",
        "boolean",
        "lookup",
    }
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RecordError(Exception):
    """A per-record failure, reported in the record's slot of a batch result (§3)."""

    def __init__(self, code: str, message: str, details: Record) -> None:
        super().__init__(f"{code}: {message} {details}")
        self.body: Record = {
            "code": code,
            "details": details,
            "message": message,
            "status": "error",
        }


class ZohoValidationError(ValueError):
    """Raised by the admin API (`insert`/`update`) with the error body the REST API would send."""

    def __init__(self, error: RecordError) -> None:
        super().__init__(str(error))
        self.body = error.body


def _invalid(name: str, path: str, expected: str | None = None, **extra: Any) -> RecordError:
    details: Record = {"api_name": name, "json_path": path, **extra}
    if expected:
        details["expected_data_type"] = expected
    return RecordError("INVALID_DATA", "invalid data", details)


def cents(amount: Decimal) -> Decimal:
    """Round half up to cents, as Zoho shows currency fields."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def compute_totals(record: Record, items_field: str) -> None:
    """Fill line and record totals the way Zoho computes them (§5); keeps given tax values.

    Line: Total = Quantity x List_Price, Total_After_Discount = Total - Discount (an amount),
    each Line_Tax value = TAD x percentage / 100 (half up), Net_Total = TAD + Tax. Record:
    Sub_Total = sum of TAD, Grand_Total = Sub_Total - Discount + Tax + Adjustment.
    """
    sub_total = tax = Decimal(0)
    summary: dict[tuple[str, Decimal], Decimal] = {}
    for row in record.get(items_field) or []:
        total = cents(Decimal(row["Quantity"]) * Decimal(row.get("List_Price") or 0))
        after_discount = total - Decimal(row.get("Discount") or 0)
        line_tax = Decimal(0)
        for entry in row.get("Line_Tax") or []:
            if entry.get("value") is None:
                entry["value"] = cents(after_discount * entry["percentage"] / 100)
            line_tax += entry["value"]
            key = (entry["name"], entry["percentage"])
            summary[key] = summary.get(key, Decimal(0)) + entry["value"]
        row.update(
            Total=total,
            Discount=Decimal(row.get("Discount") or 0),
            Total_After_Discount=after_discount,
            Tax=line_tax,
            Net_Total=after_discount + line_tax,
        )
        sub_total += after_discount
        tax += line_tax
    discount = Decimal(record.get("Discount") or 0)
    adjustment = Decimal(record.get("Adjustment") or 0)
    record.update(
        Sub_Total=sub_total,
        Tax=tax,
        Discount=discount,
        Adjustment=adjustment,
        Grand_Total=sub_total - discount + tax + adjustment,
    )
    record["$line_tax"] = [
        {"name": name, "percentage": pct, "value": value} for (name, pct), value in summary.items()
    ]


def iso(ts: float) -> str:
    """Zoho's timestamp format, e.g. 2026-11-25T10:00:00+00:00."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


@dataclass
class _RefreshToken:
    client_id: str
    org_id: str
    issued: deque[float] = field(default_factory=deque)  # access tokens, for the 10/10 min rule
    live: deque[str] = field(default_factory=deque)  # access tokens, oldest first


@dataclass
class _Client:
    secret: str
    org_id: str
    refresh_tokens: deque[str] = field(default_factory=deque)


@dataclass
class _Org:
    user: Record
    records: dict[str, dict[str, Record]] = field(default_factory=dict)
    unique: dict[tuple[str, str], dict[Any, str]] = field(default_factory=dict)
    notes: list[Record] = field(default_factory=list)
    attachments: list[Record] = field(default_factory=list)
    deleted: dict[str, list[Record]] = field(default_factory=dict)  # module -> deleted entries
    credits: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    # this org's fields per module: the standard ones plus the custom ones it has (§9, §11)
    fields: dict[str, dict[str, FieldSpec]] = field(
        default_factory=lambda: {module: dict(specs) for module, specs in MODULE_FIELDS.items()}
    )


class ZohoSandbox:
    """A Zoho CRM org store shared by the HTTP app and Python callers (tests, seed, demo)."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, _Client] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self.notifications = ZohoNotifications(clock)
        self.reset()

    # ----------------------------------------------------------------- admin API (no credits)

    def reset(self) -> None:
        """Drop records, tokens, stats and events; registered clients and refresh tokens stay."""
        with self._lock:
            self._orgs: dict[str, _Org] = {}
            self._seq: Counter[str] = Counter()
            self._access: dict[str, tuple[str, str, float]] = {}  # token -> org, refresh, expiry
            self._codes: dict[str, tuple[str, str, float]] = {}  # code -> client, redirect, expiry
            self._events: list[Record] = []
            self._calls: Counter[str] = Counter()
            self._by_route: Counter[str] = Counter()
            self._status: Counter[int] = Counter()
            self._token_refreshes = 0
            self._rng = random.Random(self.config.seed)
            self.faults = Faults(self.config)
            for rt in self._refresh.values():
                rt.issued.clear()
                rt.live.clear()

    def add_client(
        self, client_id: str, client_secret: str, refresh_token: str, org_id: str
    ) -> None:
        """Register an OAuth client of `org_id` with a refresh token it already holds."""
        with self._lock:
            self._org(org_id)
            client = self._clients.setdefault(client_id, _Client(client_secret, org_id))
            client.secret, client.org_id = client_secret, org_id
            self._add_refresh_token(client_id, client, refresh_token)

    def insert(self, org_id: str, module: str, record: Record) -> Record:
        """Store a record as a UI user or import would (no credits, no workflow); returns it.

        Values are validated like the API's. `Line_Tax` values given here are kept, and
        `"$zxs_keep_totals": True` keeps all given totals, to plant Zoho-side rounding.
        """
        with self._lock:
            keep = bool(record.get("$zxs_keep_totals"))
            try:
                stored, _ = self._save(org_id, module, record, None, 0, admin=True, keep=keep)
            except RecordError as exc:
                raise ZohoValidationError(exc) from exc
            self.notifications.notify(org_id, module, str(stored["id"]), "insert", list(record))
            return copy.deepcopy(stored)

    def update(self, org_id: str, module: str, record_id: str, fields: Record) -> Record:
        """Edit a record as a UI user would (recomputes totals, bumps Modified_Time)."""
        with self._lock:
            existing = self._org(org_id).records.get(module, {}).get(record_id)
            if existing is None:
                raise KeyError(f"{module}/{record_id} not found in org {org_id}")
            try:
                stored, _ = self._save(org_id, module, fields, existing, 0, admin=True, keep=False)
            except RecordError as exc:
                raise ZohoValidationError(exc) from exc
            self.notifications.notify(org_id, module, record_id, "update", list(fields))
            return copy.deepcopy(stored)

    def delete(self, org_id: str, module: str, record_id: str, *, permanent: bool = False) -> None:
        """Delete a record as a UI user would: reads of it answer 204 from now on, and it is
        listed by `GET /{module}/deleted` (type `recycle`, or `permanent`), as in Zoho v2+."""
        with self._lock:
            org = self._org(org_id)
            record = org.records.get(module, {}).pop(record_id, None)
            if record is None:
                raise KeyError(f"{module}/{record_id} not found in org {org_id}")
            name = record.get("Subject") or record.get("Account_Name") or record.get("Product_Name")
            org.deleted.setdefault(module, []).append(
                {
                    "deleted_by": {"name": org.user["name"], "id": org.user["id"]},
                    "id": record_id,
                    "display_name": name,
                    "type": "permanent" if permanent else "recycle",
                    "Created_By": record.get("Created_By"),
                    "deleted_time": iso(self._clock()),
                }
            )

    def deleted(self, org_id: str, module: str, kind: str = "all") -> list[Record]:
        """The module's deleted-records list, newest first; `kind` all, recycle or permanent."""
        with self._lock:
            rows = self._org(org_id).deleted.get(module, [])
            chosen = [r for r in rows if kind == "all" or r["type"] == kind]
            return copy.deepcopy(chosen[::-1])

    def without_custom_fields(self, org_id: str) -> None:
        """Make `org_id` a fresh org: none of the integration's custom fields exist yet."""
        with self._lock:
            org = self._org(org_id)
            for specs in org.fields.values():
                for name in [n for n, spec in specs.items() if spec.custom]:
                    del specs[name]

    def fields(self, org_id: str, module: str) -> dict[str, FieldSpec] | None:
        """The org's fields of `module` (None: no such module)."""
        with self._lock:
            specs = self._org(org_id).fields.get(module)
            return dict(specs) if specs is not None else None

    def create_fields(self, org_id: str, module: str, items: list[Any]) -> list[Record]:
        """`POST /settings/fields?module=X` (§11): one result per field in request order; the
        API name comes from the label (spaces to underscores, §9); a label or API name the
        module already has is `DUPLICATE_DATA`, an unknown data type `INVALID_DATA`."""
        with self._lock:
            specs = self._org(org_id).fields[module]
            results: list[Record] = []
            for index, item in enumerate(items):
                path = f"$.fields[{index}]"
                label = item.get("field_label") if isinstance(item, dict) else None
                kind = item.get("data_type") if isinstance(item, dict) else None
                if not isinstance(label, str) or not label.strip():
                    results.append(
                        _error(
                            "MANDATORY_NOT_FOUND",
                            "required field not found",
                            {"api_name": "field_label", "json_path": path},
                        )
                    )
                    continue
                if kind not in CREATABLE_TYPES:
                    results.append(
                        _error(
                            "INVALID_DATA",
                            "invalid data",
                            {"api_name": "data_type", "json_path": path},
                        )
                    )
                    continue
                api_name = re.sub(r"\W", "_", label.strip())
                if api_name in specs or any(
                    n.replace("_", " ").lower() == label.strip().lower() for n in specs
                ):
                    results.append(
                        _error(
                            "DUPLICATE_DATA",
                            "duplicate data",
                            {"api_name": "field_label", "json_path": path},
                        )
                    )
                    continue
                values = tuple(
                    str(v.get("actual_value"))
                    for v in item.get("pick_list_values") or []
                    if isinstance(v, dict)
                )
                specs[api_name] = FieldSpec(kind, values=values, custom=True)
                results.append(
                    {
                        "code": "SUCCESS",
                        "status": "success",
                        "message": "field created",
                        "details": {"id": self._new_id("Fields"), "api_name": api_name},
                    }
                )
            return results

    def get(self, org_id: str, module: str, record_id: str) -> Record | None:
        with self._lock:
            found = self._org(org_id).records.get(module, {}).get(record_id)
            return copy.deepcopy(found)

    def records(self, org_id: str, module: str) -> list[Record]:
        return self.select(org_id, module)

    def notes(self, org_id: str, module: str, record_id: str) -> list[Record]:
        with self._lock:
            found = [n for n in self._org(org_id).notes if _parent(n) == (module, record_id)]
            return copy.deepcopy(found)

    def attachments(self, org_id: str, module: str, record_id: str) -> list[Record]:
        with self._lock:
            found = [a for a in self._org(org_id).attachments if _parent(a) == (module, record_id)]
            return copy.deepcopy(found)

    def workflow_events(self) -> list[Record]:
        """Workflow rule runs caused by API writes: {org_id, module, id, operation, fields}."""
        with self._lock:
            return copy.deepcopy(self._events)

    def stats(self) -> Record:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "by_route": dict(self._by_route),
                "status": dict(self._status),
                "token_refreshes": self._token_refreshes,
            }

    # ------------------------------------------------------------------------- OAuth (§2)

    def refresh(self, client_id: str, secret: str, refresh_token: str) -> tuple[int, Record]:
        """grant_type=refresh_token: (HTTP status, body without api_domain)."""
        with self._lock:
            client = self._clients.get(client_id)
            if client is None or client.secret != secret:
                return 200, {"error": "invalid_client"}
            rt = self._refresh.get(refresh_token)
            if rt is None or rt.client_id != client_id:
                return 200, {"error": "invalid_code"}
            issued = self._issue(refresh_token, rt)
            if issued is None:
                return 400, {
                    "error": "Access Denied",
                    "error_description": "You have made too many requests continuously. "
                    "Please try again after some time.",
                }
            self._token_refreshes += 1
            return 200, issued

    def grant_code(self, client_id: str, redirect_uri: str) -> str | None:
        """The sandbox's consent screen always says yes; None for an unknown client."""
        with self._lock:
            if client_id not in self._clients:
                return None
            code = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
            expiry = self._clock() + self.config.minute_seconds
            self._codes[code] = (client_id, redirect_uri, expiry)
            return code

    def exchange_code(
        self, client_id: str, secret: str, code: str, redirect_uri: str
    ) -> tuple[int, Record]:
        """grant_type=authorization_code: a new refresh token plus an access token."""
        with self._lock:
            client = self._clients.get(client_id)
            if client is None or client.secret != secret:
                return 200, {"error": "invalid_client"}
            grant = self._codes.pop(code, None)
            if grant is None or grant[0] != client_id or grant[2] < self._clock():
                return 200, {"error": "invalid_code"}
            if grant[1] != redirect_uri:
                return 200, {"error": "invalid_redirect_uri"}
            refresh_token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
            rt = self._add_refresh_token(client_id, client, refresh_token)
            issued = self._issue(refresh_token, rt)
            assert issued is not None  # a new refresh token has no history
            return 200, {**issued, "refresh_token": refresh_token}

    def org_for_token(self, token: str) -> str | None:
        """The org an unexpired access token belongs to."""
        with self._lock:
            found = self._access.get(token)
            if found is None:
                return None
            if found[2] <= self._clock():
                del self._access[token]
                return None
            return found[0]

    # ----------------------------------------------------------------- limits and stats (§6)

    def admit(self, org_id: str) -> bool:
        """Take a credit and a concurrency slot for one API call; False means 429."""
        with self._lock:
            org = self._org(org_id)
            now = self._clock()
            if self.config.enforce_limits:
                limits = self.config.zoho_limits
                day_start = now - self.config.minute_seconds * 1440
                while org.credits and org.credits[0] <= day_start:
                    org.credits.popleft()
                if org.in_flight >= limits.concurrent or len(org.credits) >= limits.credits_per_day:
                    return False
            org.credits.append(now)
            org.in_flight += 1
            self._calls[org_id] += 1
            return True

    def release(self, org_id: str) -> None:
        with self._lock:
            self._org(org_id).in_flight -= 1

    def roll_fault(self) -> bool:
        """Whether this call is answered with a 500 (seeded, so runs repeat)."""
        with self._lock:
            return self._rng.random() < self.config.fault_rate

    def count(self, route: str, status: int) -> None:
        with self._lock:
            self._by_route[route] += 1
            self._status[status] += 1

    # --------------------------------------------------------------------- records API (§3)

    def select(
        self,
        org_id: str,
        module: str,
        predicate: Predicate | None = None,
        fields: list[str] | None = None,
    ) -> list[Record]:
        """Deep copies of matching records, in insertion order; `fields` projects (id kept)."""
        with self._lock:
            rows = self._org(org_id).records.get(module, {}).values()
            found = [r for r in rows if predicate is None or predicate(r)]
            if fields is not None:
                found = [{"id": r["id"], **{f: r.get(f) for f in fields}} for r in found]
            return copy.deepcopy(found)

    def write(
        self,
        org_id: str,
        module: str,
        rows: list[Any],
        *,
        path_id: str | None,
        insert: bool,
        workflow: bool,
    ) -> list[Record]:
        """Insert or update a batch; one result per row in request order (§3)."""
        results: list[Record] = []
        with self._lock:
            for index, row in enumerate(rows):
                try:
                    results.append(
                        self._write_one(org_id, module, row, index, path_id, insert, workflow)
                    )
                except RecordError as exc:
                    results.append(exc.body)
        return results

    def _write_one(
        self,
        org_id: str,
        module: str,
        row: Any,
        index: int,
        path_id: str | None,
        insert: bool,
        workflow: bool,
    ) -> Record:
        if not isinstance(row, dict):
            raise _invalid("data", f"$.data[{index}]", "jsonobject")
        existing = None
        if not insert:
            record_id = path_id or row.get("id")
            if record_id is None:
                raise RecordError(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": "id", "json_path": f"$.data[{index}].id"},
                )
            existing = self._org(org_id).records.get(module, {}).get(str(record_id))
            if existing is None:
                raise RecordError(
                    "INVALID_DATA",
                    "the id given seems to be invalid",
                    {"api_name": "id", "json_path": f"$.data[{index}].id"},
                )
        stored, changed = self._save(org_id, module, row, existing, index, admin=False, keep=False)
        if workflow:
            self._events.append(
                {
                    "org_id": org_id,
                    "module": module,
                    "id": stored["id"],
                    "operation": "create" if insert else "edit",
                    "fields": changed,
                    "time": stored["Modified_Time"],
                }
            )
        return _success(stored, "record added" if insert else "record updated")

    def create_notes(
        self, org_id: str, rows: list[Any], parent: tuple[str, str] | None
    ) -> list[Record]:
        """Notes on records (§8): `parent` from the URL, else each row's Parent_Id."""
        results: list[Record] = []
        with self._lock:
            for index, row in enumerate(rows):
                try:
                    results.append(self._note(org_id, row, index, parent))
                except RecordError as exc:
                    results.append(exc.body)
        return results

    def add_attachment(
        self, org_id: str, module: str, record_id: str, name: str, size: int, content_type: str
    ) -> Record | None:
        """Attach a file's metadata to a record (§8); None when the record does not exist."""
        with self._lock:
            org = self._org(org_id)
            target = org.records.get(module, {}).get(record_id)
            if target is None:
                return None
            now = iso(self._clock())
            attachment = {
                "id": self._new_id("Attachments"),
                "File_Name": name,
                "Size": str(size),
                "$content_type": content_type,
                "$se_module": module,
                "Parent_Id": _parent_ref(module, target),
                **self._stamps(org, now),
            }
            org.attachments.append(attachment)
            return _success(attachment, "attachment uploaded successfully")

    # ---------------------------------------------------------------------------- internals

    def _org(self, org_id: str) -> _Org:
        org = self._orgs.get(org_id)
        if org is None:
            user_id = self._new_id("Users")
            user = {"name": "Sandbox User", "id": user_id, "email": f"admin@{org_id}.example"}
            org = self._orgs[org_id] = _Org(user=user)
        return org

    def _new_id(self, kind: str) -> str:
        """19-digit ids like Zoho's: a per-kind base plus a step of 1000, ending in 001."""
        self._seq[kind] += 1
        return f"5843{_ID_KINDS.index(kind):03d}{self._seq[kind]:09d}001"

    def _stamps(self, org: _Org, now: str) -> Record:
        return {
            "Owner": dict(org.user),
            "Created_By": dict(org.user),
            "Modified_By": dict(org.user),
            "Created_Time": now,
            "Modified_Time": now,
        }

    def _add_refresh_token(self, client_id: str, client: _Client, token: str) -> _RefreshToken:
        rt = self._refresh.setdefault(token, _RefreshToken(client_id, client.org_id))
        if token not in client.refresh_tokens:
            client.refresh_tokens.append(token)
        while len(client.refresh_tokens) > REFRESH_TOKENS_PER_CLIENT:
            evicted = self._refresh.pop(client.refresh_tokens.popleft())
            for access in evicted.live:
                self._access.pop(access, None)
        return rt

    def _issue(self, refresh_token: str, rt: _RefreshToken) -> Record | None:
        now = self._clock()
        window_start = now - TOKEN_WINDOW_MINUTES * self.config.minute_seconds
        while rt.issued and rt.issued[0] <= window_start:
            rt.issued.popleft()
        if self.config.enforce_limits and len(rt.issued) >= TOKENS_PER_WINDOW:
            return None
        rt.issued.append(now)
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        ttl = self.config.zoho_access_token_seconds
        self._access[token] = (rt.org_id, refresh_token, now + ttl)
        rt.live.append(token)
        while len(rt.live) > LIVE_ACCESS_TOKENS:
            self._access.pop(rt.live.popleft(), None)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(ttl) if ttl == int(ttl) else ttl,
        }

    def _save(
        self,
        org_id: str,
        module: str,
        fields: Record,
        existing: Record | None,
        index: int,
        *,
        admin: bool,
        keep: bool,
    ) -> tuple[Record, list[str]]:
        """Validate `fields` onto a copy of `existing` (or a new record) and store it."""
        org = self._org(org_id)
        specs = org.fields.get(module)
        if specs is None:
            raise RecordError(
                "INVALID_MODULE", "the module name given seems to be invalid", {"module": module}
            )
        new = copy.deepcopy(existing) if existing is not None else {}
        changed: list[str] = []
        for name, value in fields.items():
            spec = specs.get(name)
            path = f"$.data[{index}].{name}"
            if name.startswith("$") or (spec is not None and _ignored(spec, keep)):
                continue  # system and computed fields are Zoho's to set
            if spec is None:
                raise _invalid(name, path)
            if spec.data_type == "subform":
                old_rows = (existing or {}).get(name) or []
                new[name] = self._rows(org, value, old_rows, path, admin=admin, keep=keep)
            else:
                new[name] = self._coerce(org, name, spec, value, path)
            if existing is None or existing.get(name) != new[name]:
                changed.append(name)
        if keep and "$line_tax" in fields:
            new["$line_tax"] = copy.deepcopy(fields["$line_tax"])
        _check_mandatory(specs, new, f"$.data[{index}]")
        if module == "Contacts":
            new["Full_Name"] = " ".join(filter(None, [new.get("First_Name"), new["Last_Name"]]))
        self._check_unique(org, module, new, existing, index)
        items = ITEMS_FIELD.get(module)
        touched = {items, "Discount", "Adjustment"}.intersection(changed)
        if items and not keep and (existing is None or touched):
            compute_totals(new, items)
        now = iso(self._clock())
        if existing is None:
            new = {"id": self._new_id(module), **new, **self._stamps(org, now)}
        else:
            new["Modified_Time"], new["Modified_By"] = now, dict(org.user)
        for api_name in UNIQUE_FIELDS.get(module, ()):
            index_map = org.unique.setdefault((module, api_name), {})
            if existing is not None and existing.get(api_name) is not None:
                index_map.pop(existing[api_name], None)
            if new.get(api_name) is not None:
                index_map[new[api_name]] = new["id"]
        org.records.setdefault(module, {})[new["id"]] = new
        return new, changed

    @staticmethod
    def _check_unique(
        org: _Org, module: str, record: Record, existing: Record | None, index: int
    ) -> None:
        for api_name in UNIQUE_FIELDS.get(module, ()):
            holder = org.unique.get((module, api_name), {}).get(record.get(api_name))
            if holder is not None and (existing is None or holder != existing["id"]):
                raise RecordError(
                    "DUPLICATE_DATA",
                    "duplicate data",
                    {
                        "api_name": api_name,
                        "json_path": f"$.data[{index}].{api_name}",
                        "duplicate_record": {"id": holder, "module": {"api_name": module}},
                    },
                )

    def _rows(
        self, org: _Org, value: Any, old_rows: list[Record], path: str, *, admin: bool, keep: bool
    ) -> list[Record]:
        """A line-item subform: rows with a known `id` are edited, rows not sent are removed.

        Tax values of every row sent are recomputed unless the admin API gives them.
        """
        if not isinstance(value, list):
            raise _invalid(path.rsplit(".", 1)[-1], path, "jsonarray")
        old = {row["id"]: row for row in old_rows}
        rows: list[Record] = []
        for i, given in enumerate(value):
            row_path = f"{path}[{i}]"
            if not isinstance(given, dict):
                raise _invalid("Line_Items", row_path, "jsonobject")
            row_id = given.get("id")
            if row_id is not None and row_id not in old:
                raise _invalid("id", f"{row_path}.id")
            if "_delete" in given:
                continue
            row: Record = copy.deepcopy(old[row_id]) if row_id is not None else {"id": None}
            for entry in row.get("Line_Tax") or []:
                entry.pop("value", None)
            for name, field_value in given.items():
                spec = LINE_ITEM_FIELDS.get(name)
                if spec is None:
                    raise _invalid(name, f"{row_path}.{name}")
                if _ignored(spec, keep):
                    continue
                if spec.data_type == "linetax":
                    row[name] = _line_tax(field_value, f"{row_path}.{name}", keep_values=admin)
                else:
                    row[name] = self._coerce(org, name, spec, field_value, f"{row_path}.{name}")
            _check_mandatory(LINE_ITEM_FIELDS, row, row_path)
            if row.get("List_Price") is None:
                product = org.records["Products"][row["Product_Name"]["id"]]
                row["List_Price"] = product.get("Unit_Price") or Decimal(0)
            row["id"] = row["id"] or self._new_id("Line_Items")
            rows.append(row)
        return rows

    def _coerce(self, org: _Org, name: str, spec: FieldSpec, value: Any, path: str) -> Any:
        """Check a value against its field's data type; returns the value as Zoho stores it."""
        kind = spec.data_type
        if value is None:
            return None
        bad = _invalid(name, path, kind)
        if kind in ("text", "textarea", "phone", "website", "picklist"):
            if not isinstance(value, str) or (spec.values and value not in spec.values):
                raise bad
            return value
        if kind in _PLAIN_TYPES:
            accepts, stored = _PLAIN_TYPES[kind]
            if not accepts(value):
                raise bad
            return stored(value)
        if kind == "ownerlookup":
            given = value.get("id") if isinstance(value, dict) else value
            if str(given) != org.user["id"]:
                raise bad
            return dict(org.user)
        # lookup: {"id": ...} or a bare id; Zoho answers with {"name", "id"}.
        given = value.get("id") if isinstance(value, dict) else value
        assert spec.target is not None
        target = org.records.get(spec.target, {}).get(str(given))
        if target is None:
            raise _invalid(name, path, kind, id=given)
        return {"name": target.get(NAME_FIELD[spec.target]), "id": target["id"]}

    def _note(self, org_id: str, row: Any, index: int, parent: tuple[str, str] | None) -> Record:
        path = f"$.data[{index}]"
        if not isinstance(row, dict):
            raise _invalid("data", path, "jsonobject")
        for name in row:
            if name not in ("Note_Title", "Note_Content", "Parent_Id", "$se_module"):
                raise _invalid(name, f"{path}.{name}")
        content = row.get("Note_Content")
        if not content:
            raise RecordError(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                {"api_name": "Note_Content", "json_path": f"{path}.Note_Content"},
            )
        title = row.get("Note_Title")
        if not isinstance(content, str) or not isinstance(title, str | None):
            raise _invalid("Note_Content", f"{path}.Note_Content", "textarea")
        if parent is None:
            ref = row.get("Parent_Id")
            if isinstance(ref, dict):
                module = (ref.get("module") or {}).get("api_name") or row.get("$se_module")
                parent = (str(module), str(ref.get("id")))
            else:
                parent = (str(row.get("$se_module")), str(ref))
        org = self._org(org_id)
        target = org.records.get(parent[0], {}).get(parent[1])
        if target is None:
            raise _invalid("Parent_Id", f"{path}.Parent_Id", "lookup")
        now = iso(self._clock())
        note = {
            "id": self._new_id("Notes"),
            "Note_Title": title,
            "Note_Content": content,
            "Parent_Id": _parent_ref(parent[0], target),
            "$se_module": parent[0],
            **self._stamps(org, now),
        }
        org.notes.append(note)
        return _success(note, "record added")


def _ignored(spec: FieldSpec, keep_totals: bool) -> bool:
    """Read-only fields are dropped from writes; planted totals keep the computed currency ones."""
    return spec.read_only and not (keep_totals and spec.data_type == "currency")


def _check_mandatory(specs: dict[str, FieldSpec], record: Record, path: str) -> None:
    for name, spec in specs.items():
        if spec.mandatory and record.get(name) in (None, "", []):
            raise RecordError(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                {"api_name": name, "json_path": f"{path}.{name}"},
            )


def _line_tax(value: Any, path: str, *, keep_values: bool) -> list[Record]:
    """Line_Tax entries [{name, percentage[, value]}]; values are kept only from the admin API."""
    if not isinstance(value, list):
        raise _invalid("Line_Tax", path, "jsonarray")
    taxes: list[Record] = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _invalid("Line_Tax", path, "linetax")
        pct: Any = entry.get("percentage")
        amount: Any = entry.get("value")
        if not _is_number(pct) or not (amount is None or _is_number(amount)):
            raise _invalid("Line_Tax", path, "linetax")
        tax: Record = {"name": entry["name"], "percentage": Decimal(pct)}
        if keep_values and amount is not None:
            tax["value"] = Decimal(amount)
        taxes.append(tax)
    return taxes


def _is_number(value: Any) -> bool:
    """JSON numbers arrive as int or Decimal (floats are parsed as Decimal); bool is not one."""
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _is_iso_date(value: Any) -> bool:
    """`YYYY-MM-DD` and a real day."""
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _as_given(value: Any) -> Any:
    return value


# The data types a value is checked for by itself: (accepts it, the form Zoho stores)
_PLAIN_TYPES: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    "email": (lambda v: isinstance(v, str) and (v == "" or bool(_EMAIL.match(v))), _as_given),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), _as_given),
    "currency": (_is_number, Decimal),
    "double": (_is_number, Decimal),
    "boolean": (lambda v: isinstance(v, bool), _as_given),
    "date": (_is_iso_date, _as_given),
    "multiselectpicklist": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        list,
    ),
}


def _parent_ref(module: str, target: Record) -> Record:
    return {
        "module": {"api_name": module},
        "name": target.get(NAME_FIELD[module]),
        "id": target["id"],
    }


def _parent(item: Record) -> tuple[str, str]:
    return item["Parent_Id"]["module"]["api_name"], item["Parent_Id"]["id"]


def _success(item: Record, message: str) -> Record:
    keys = ("Modified_Time", "Modified_By", "Created_Time", "id", "Created_By")
    return {
        "code": "SUCCESS",
        "details": {key: item[key] for key in keys},
        "message": message,
        "status": "success",
    }


def _error(code: str, message: str, details: Record) -> Record:
    return RecordError(code, message, details).body
