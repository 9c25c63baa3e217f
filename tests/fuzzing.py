"""How many examples the property tests draw: all of them in `make test`, a share of them in
`make test-fast` (ZXS_FUZZ_SCALE=0.25 there), so the quick loop still fuzzes every door but
spends a quarter of the time on it; the full count runs in CI."""

from __future__ import annotations

import os


def examples(full: int) -> int:
    """`full` scaled by ZXS_FUZZ_SCALE (default 1), never below 5."""
    return max(5, round(full * float(os.environ.get("ZXS_FUZZ_SCALE", "1"))))
