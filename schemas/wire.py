"""JSON on the wire with exact Decimals.

The standard library can parse numbers as Decimal but cannot write a Decimal as a JSON number;
simplejson can, so every body we send or serve goes through these two functions.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import simplejson


def dumps(payload: Any) -> str:
    """Serialise with Decimals as exact JSON numbers (never via float)."""
    return str(simplejson.dumps(payload, use_decimal=True, ensure_ascii=False))


def loads(raw: str | bytes) -> Any:
    """Parse with every non-integer number as a Decimal."""
    return json.loads(raw, parse_float=Decimal)
