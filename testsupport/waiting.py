"""Polling for a condition with a deadline, the one way tests and benchmarks wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ServiceError(RuntimeError):
    """A service a benchmark needs is missing or did not come up (a clean message, no trace)."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 20.0,
    what: str = "condition",
    interval: float = 0.1,
    *,
    error: type[BaseException] = AssertionError,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    On timeout raise ``error`` naming ``what`` and the last value seen. The default,
    AssertionError, makes a test fail (not error) on a condition that never came; the
    benchmarks pass ServiceError. Exceptions from ``predicate`` propagate: a process that died
    should stop the wait at once, not after the timeout.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise error(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
