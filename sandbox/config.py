"""Knobs shared by the Xero and Zoho sandboxes.

The sandbox is part of the product (demo, tests, users' dry runs), so every limit the real APIs
enforce is here with its real default, and a time scale lets tests shrink a "minute" to seconds.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field

# the simulated latency a user's dry run or a bench sets without code (`zxsync sandbox`)
ENV_SETTINGS = {
    "ZXS_SANDBOX_XERO_CALL_SECONDS": "xero_call_seconds",
    "ZXS_SANDBOX_XERO_ELEMENT_SECONDS": "xero_element_seconds",
}


class XeroLimits(BaseModel):
    """Xero's published limits (developer.xero.com/faq/limits)."""

    per_minute: int = 60
    per_day: int = 5000
    concurrent: int = 5
    app_per_minute: int = 10_000


class ZohoLimits(BaseModel):
    """Zoho CRM's per-org API credits (rolling 24 h) and concurrency (Standard edition)."""

    credits_per_day: int = 50_000
    concurrent: int = 10


class SandboxConfig(BaseModel):
    """Behaviour of both sandboxes; defaults mirror the real services."""

    minute_seconds: float = Field(60.0, gt=0, description="Length of a sandbox 'minute'.")
    enforce_limits: bool = True
    xero_limits: XeroLimits = XeroLimits()
    zoho_limits: ZohoLimits = ZohoLimits()
    xero_access_token_seconds: float = 30 * 60
    xero_refresh_grace_seconds: float = 30 * 60
    xero_refresh_token_idle_seconds: float = Field(
        60 * 24 * 3600, description="A Xero refresh token unused this long expires (60 days)."
    )
    zoho_access_token_seconds: float = 60 * 60
    idempotency_window_seconds: float = 6 * 60
    latency_seconds: float = 0.0
    xero_call_seconds: float = Field(
        0.0, ge=0, description="Simulated time Xero takes per Accounting call (0: at once)."
    )
    xero_element_seconds: float = Field(
        0.0, ge=0, description="Simulated time per element of a Xero batch write, on top."
    )
    fault_rate: float = Field(0.0, ge=0, le=1, description="Share of calls answered with a 5xx.")
    timeout_rate: float = Field(
        0.0, ge=0, le=1, description="Share of calls done but answered only after timeout_seconds."
    )
    timeout_seconds: float = Field(35.0, gt=0, description="Longer than the client's timeout.")
    drop_rate: float = Field(
        0.0, ge=0, le=1, description="Share of calls done whose connection drops mid-answer."
    )
    write_fault_rate: float = Field(
        0.0, ge=0, le=1, description="Share of Xero writes answered 500 (some after saving)."
    )
    write_fault_after_share: float = Field(
        0.5, ge=0, le=1, description="Share of those write faults given after the work was saved."
    )
    lookup_fault_rate: float = Field(
        0.0, ge=0, le=1, description="Share of Xero reads answered 500."
    )
    max_url_chars: int = Field(
        2000, gt=0, description="Longer request URLs get Xero's 404 (FACTS 'URL length')."
    )
    slow_rate: float = Field(0.0, ge=0, le=1, description="Share of calls slowed down.")
    slow_seconds: float = Field(2.0, ge=0, description="Extra latency of a slowed call.")
    seed: int = 7

    @classmethod
    def from_env(cls, **fields: Any) -> SandboxConfig:
        """These fields, with the `ZXS_SANDBOX_*` variables set in the environment on top
        (an empty variable means the default)."""
        found = {f: os.environ[v] for v, f in ENV_SETTINGS.items() if os.environ.get(v, "")}
        return cls(**{**fields, **found})
