"""The custom Zoho fields the product writes back, and the plan to create them (pure).

Every `Xero_*` field a stage writes to Zoho is listed here once, per module; `zxsync setup zoho`
reads the org's fields (`GET /settings/fields?module=X`, FACTS §9) and creates the missing ones
(`POST /settings/fields?module=X`, FACTS §11; scope `ZohoCRM.settings.fields.ALL`). A field that
exists with another data type is reported, never changed: converting it could lose the client's
data, and a person should decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: Zoho's data types for the fields we create (Field Types: Data Types and Length Limits).
DataType = Literal[
    "text", "textarea", "picklist", "website", "currency", "date", "boolean", "email"
]
SYNC_STATUS = ("Pending", "Synced", "Failed")
PAYMENT_STATUS = ("Unpaid", "Partially paid", "Paid", "Voided")
#: Zoho creates at most this many fields per call (u: the v8 page's request schema says 5).
FIELDS_PER_CALL = 5


@dataclass(frozen=True)
class WantedField:
    """One write-back field: its module, API name, Zoho data type and pick-list values."""

    module: str
    api_name: str
    data_type: DataType
    values: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Zoho derives a custom field's API name from its label, spaces to underscores (§9)."""
        return self.api_name.replace("_", " ")

    def body(self) -> dict[str, Any]:
        """The field as `POST /settings/fields` takes it."""
        body: dict[str, Any] = {"field_label": self.label, "data_type": self.data_type}
        if self.data_type == "text":
            body["length"] = 255
        if self.values:
            body["pick_list_values"] = [
                {"display_value": v, "actual_value": v} for v in self.values
            ]
        return body


def _fields(module: str, spec: list[tuple[str, DataType, tuple[str, ...]]]) -> list[WantedField]:
    return [WantedField(module, name, kind, values) for name, kind, values in spec]


_SALES: list[tuple[str, DataType, tuple[str, ...]]] = [
    ("Xero_Invoice_ID", "text", ()),
    ("Xero_Invoice_Number", "text", ()),
    ("Xero_Invoice_Status", "text", ()),
    ("Xero_Sync_Status", "picklist", SYNC_STATUS),
    ("Xero_Sync_Error", "textarea", ()),
    ("Xero_Online_Invoice_URL", "website", ()),
    ("Xero_Payment_Status", "picklist", PAYMENT_STATUS),
    ("Xero_Amount_Paid", "currency", ()),
    ("Xero_Amount_Due", "currency", ()),
    ("Xero_Last_Payment_Amount", "currency", ()),
    ("Xero_Last_Payment_Date", "date", ()),
    ("Xero_Credit_Note", "textarea", ()),  # what a credit note after payment did (paid_change)
]
_PURCHASE: list[tuple[str, DataType, tuple[str, ...]]] = [
    ("Xero_Purchase_Order_ID", "text", ()),
    ("Xero_Purchase_Order_Number", "text", ()),
    ("Xero_PO_Status", "text", ()),
    ("Xero_Sync_Status", "picklist", SYNC_STATUS),
    ("Xero_Sync_Error", "textarea", ()),
]
_ACCOUNTS: list[tuple[str, DataType, tuple[str, ...]]] = [
    ("Xero_Contact_ID", "text", ()),
    ("Xero_Outstanding_Balance", "currency", ()),
    ("Xero_Overdue_Balance", "currency", ()),
    ("Xero_Credit_Balance", "currency", ()),
    ("Xero_Credit_Hold", "boolean", ()),
    # contact_sync "both": Xero's e-mail and tax number (the address and phone are Zoho's own)
    ("Xero_Email", "email", ()),
    ("Xero_Tax_Number", "text", ()),
]

WRITEBACK_FIELDS: tuple[WantedField, ...] = (
    *_fields("Invoices", _SALES),
    *_fields("Quotes", _SALES),
    *_fields("Sales_Orders", _SALES),
    *_fields("Purchase_Orders", _PURCHASE),
    *_fields("Accounts", _ACCOUNTS),
    *_fields("Vendors", [("Xero_Contact_ID", "text", ())]),
)


@dataclass(frozen=True)
class FieldStep:
    """What setup does with one wanted field: create, skip (exists, right type) or report."""

    field: WantedField
    action: Literal["create", "skip", "wrong_type"]
    found_type: str | None = None

    def describe(self) -> str:
        f = self.field
        if self.action == "create":
            return f"create {f.module}.{f.api_name} ({f.data_type})"
        if self.action == "skip":
            return f"exists {f.module}.{f.api_name} ({f.data_type})"
        return (
            f"WRONG TYPE {f.module}.{f.api_name}: is {self.found_type}, the sync writes "
            f"{f.data_type}; change or rename it in Setup > Modules and Fields"
        )


def plan_fields(
    wanted: tuple[WantedField, ...], existing: dict[str, dict[str, str]]
) -> list[FieldStep]:
    """The steps for `wanted`, given each module's existing fields (api_name -> data_type)."""
    steps = []
    for f in wanted:
        found = existing.get(f.module, {}).get(f.api_name)
        if found is None:
            steps.append(FieldStep(f, "create"))
        elif found == f.data_type:
            steps.append(FieldStep(f, "skip", found))
        else:
            steps.append(FieldStep(f, "wrong_type", found))
    return steps
