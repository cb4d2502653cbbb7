"""Reading event fields shared by the task tracker and the worker book."""

from __future__ import annotations

import math
from typing import Any


def number(value: Any, default: float | None = None) -> float | None:
    """A finite number from an event field, else ``default``: NaN or infinity (which the
    JSON fallback accepts) would poison a histogram's sum for good."""
    if type(value) is float:  # the usual case (timestamps): x - x is 0.0 only when finite
        return value if value - value == 0.0 else default
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    result = float(value)
    return result if math.isfinite(result) else default
