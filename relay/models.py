"""What Xero and Zoho POST to the relay, as pydantic models (shapes: README "Payment feedback").

Xero's body follows xero-webhooks.yaml (`WebhookEvent`); Zoho's Notification API callback
follows FACTS §7; a Zoho workflow webhook carries what the org configured, so its model is the
minimum the relay needs: module, record id(s) and what happened.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from schemas.jobs import Event
from schemas.zoho import Module

ZOHO_OPERATIONS = {
    "insert": "insert",
    "create": "insert",
    "update": "update",
    "edit": "update",
    "delete": "delete",
    "approve": "approve",
}


class XeroEvent(BaseModel):
    """One event of a delivery. Category and type are open strings: Xero adds categories
    (CREDITNOTE in 2026) and a signed delivery must be answered 200 whatever it carries, so what
    we do not handle is logged, not refused (FACTS "The 2026 platform")."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    resourceUrl: str
    resourceId: str = Field(min_length=1, max_length=64)
    eventDateUtc: str
    eventType: str = Field(max_length=64)
    eventCategory: str = Field(max_length=64)
    tenantId: str = Field(min_length=1, max_length=64)
    tenantType: str = Field(max_length=64)


class ZohoChange(BaseModel):
    """Records of one module that changed in Zoho, from either kind of Zoho callback."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    module: Module | Literal["Accounts"]  # Accounts: contact sync, not the invoice pipeline
    ids: list[str] = Field(
        min_length=1, max_length=100, validation_alias=AliasChoices("ids", "id", "record_id")
    )
    operation: Event = Field(
        "update", validation_alias=AliasChoices("operation", "event", "action")
    )
    token: str | None = None
    channel_id: str | None = None
    server_time: datetime | None = None
    event_id: str | None = Field(None, max_length=100)

    @field_validator("ids", mode="before")
    @classmethod
    def _ids(cls, value: object) -> object:
        """Workflow webhooks send one id, or several comma-separated; notifications a list."""
        if isinstance(value, str | int):
            return [v.strip() for v in str(value).split(",") if v.strip()]
        return value

    @field_validator("ids")
    @classmethod
    def _digits(cls, value: list[str]) -> list[str]:
        if not all(v.isdigit() and len(v) <= 30 for v in value):
            raise ValueError("record ids are digits only")
        return value

    @field_validator("operation", mode="before")
    @classmethod
    def _operation(cls, value: object) -> object:
        """Zoho's words (create, edit...) as the job contract's events."""
        if not isinstance(value, str) or value.lower() not in ZOHO_OPERATIONS:
            raise ValueError(f"operation must be one of {sorted(ZOHO_OPERATIONS)}")
        return ZOHO_OPERATIONS[value.lower()]

    @field_validator("channel_id", mode="before")
    @classmethod
    def _channel(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value
