"""How hard the fuzz and fault suites push: a fixed budget in every run, more with
`MICROSEG_FUZZ=long` (what `make fuzz` sets)."""

from __future__ import annotations

import os

LONG = os.environ.get("MICROSEG_FUZZ") == "long"


def budget(normal: int, long: int) -> int:
    return long if LONG else normal
