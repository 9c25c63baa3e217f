"""Per-connection options: one Zoho org + one Xero tenant + how documents map between them."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SalesModule = Literal["Quotes", "Sales_Orders", "Invoices"]
# contact sync's default map: Xero's billing (POBOX) address and DEFAULT phone onto the account's
# standard billing fields; e-mail and tax number onto custom fields (README "Zoho setup")
DEFAULT_CONTACT_FIELDS = {
    "AddressLine1": "Billing_Street",
    "City": "Billing_City",
    "Region": "Billing_State",
    "PostalCode": "Billing_Code",
    "Country": "Billing_Country",
    "Phone": "Phone",
    "EmailAddress": "Xero_Email",
    "TaxNumber": "Xero_Tax_Number",
}


def _invoices_at_any_status() -> dict[SalesModule, list[str]]:
    return {"Invoices": []}


class Connection(BaseModel):
    """Everything that differs between two customers of the same deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    xero_tenant_id: str = Field(min_length=1)
    zoho_org_id: str = Field(min_length=1)
    xero_refresh_token: SecretStr | None = Field(
        None, description="Bootstrap refresh token; rotated copies live in the token store."
    )
    zoho_refresh_token: SecretStr | None = None
    xero_base_currency: str = Field("AUD", min_length=3, max_length=3)
    sales_account_code: str = "200"
    tax_types: dict[str, str] = Field(
        default_factory=dict, description="Zoho tax name -> Xero TaxType (e.g. GST -> OUTPUT)."
    )
    default_tax_type: str | None = Field(
        None, description="Xero TaxType for tax-inclusive lines that name no Zoho tax."
    )
    untaxed_tax_type: str = Field("NONE", description="TaxType of untaxed lines (rate 0).")
    line_amount_types: Literal["Exclusive", "Inclusive"] = "Exclusive"
    rounding: Literal["tax_override", "rounding_line"] = "tax_override"
    rounding_account_code: str = "260"
    rounding_tolerance: Decimal = Field(Decimal("0.05"), ge=0)
    invoice_status: Literal["DRAFT", "SUBMITTED", "AUTHORISED"] = "AUTHORISED"
    payment_terms_days: int = Field(30, ge=0, le=365)
    triggers: dict[SalesModule, list[str]] = Field(
        default_factory=_invoices_at_any_status,
        description="Zoho module -> statuses at which Xero takes over (empty list: any status).",
    )
    cancelled_statuses: list[str] = Field(
        default_factory=lambda: ["Cancelled"],
        description="Zoho statuses that void (or delete) the Xero invoice.",
    )
    approval_field: str | None = Field(
        None, description="Zoho field that must hold approval_value before anything goes to Xero."
    )
    approval_value: str = "Approved"
    numbering: Literal["xero", "zoho"] = Field(
        "xero", description="Xero's invoice numbers, or keep the Zoho document number."
    )
    sender: Literal["none", "xero", "zoho"] = Field(
        "none", description="Xero e-mails the invoice, or Zoho gets its online link and PDF."
    )
    product_account_codes: dict[str, str] = Field(
        default_factory=dict, description="Product code -> Xero sales account code."
    )
    tracking: dict[str, str] = Field(
        default_factory=dict, description="Xero tracking category name -> option, on every line."
    )
    branding_theme_id: str | None = None
    purchase_account_code: str = "300"
    purchase_tax_types: dict[str, str] = Field(
        default_factory=dict,
        description="Zoho tax name -> Xero purchase TaxType (e.g. GST -> INPUT).",
    )
    purchase_default_tax_type: str | None = Field(
        None, description="Tax-inclusive purchase lines that name no Zoho tax."
    )
    purchase_order_status: Literal["DRAFT", "SUBMITTED", "AUTHORISED"] = "AUTHORISED"
    purchase_order_sync_statuses: list[str] = Field(
        default_factory=list,
        description="Zoho PO statuses that create a Xero PO; empty: any but the cancelled one.",
    )
    purchase_order_cancelled_status: str = Field(
        "Cancelled", description="Zoho PO status that deletes the Xero purchase order."
    )
    xero_webhook_key: SecretStr | None = Field(
        None, description="The Xero app's webhook key: signs Xero's webhooks to the relay."
    )
    zoho_webhook_token: SecretStr | None = Field(
        None,
        max_length=50,
        description="Shared secret of Zoho workflow webhooks and Notification API channels.",
    )
    contact_name_clash: Literal["suffix", "dead_letter"] = Field(
        "suffix",
        description="A Zoho account whose name a Xero contact of another account holds: created "
        "as 'Name (City)' (else 'Name (Zoho id)'), or dead-lettered naming both.",
    )
    credit_hold_overdue: Decimal | None = Field(
        None,
        ge=0,
        description="Overdue balance above which Zoho's Xero_Credit_Hold is set; none: not used.",
    )
    contact_sync: Literal["none", "both"] = Field(
        "none",
        description="both: a Xero contact's changes update the linked Zoho account's mapped "
        "fields (CONTACT webhooks); none: contacts are only created from Zoho.",
    )
    contact_fields: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_CONTACT_FIELDS),
        description="Xero contact field -> Zoho Accounts field API name (contact sync).",
    )

    @field_validator("contact_fields")
    @classmethod
    def _known_contact_fields(cls, value: dict[str, str]) -> dict[str, str]:
        """A typo in the map would sync nothing, silently: refuse it naming the key."""
        known = set(DEFAULT_CONTACT_FIELDS)
        if unknown := sorted(k for k in value if k not in known):
            raise ValueError(f"contact_fields: not Xero contact fields we sync: {unknown}")
        return value

    paid_change: Literal["credit_note", "report"] = Field(
        "report",
        description="A cancel or reduction of an invoice Xero will not edit (paid or credited): "
        "an ACCRECCREDIT credit note, or an exception report for a person.",
    )
