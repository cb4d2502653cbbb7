"""The time window of one scrape: when its request arrived and when its answer is due.

The HTTP server opens a window per request (from Prometheus' X-Prometheus-Scrape-Timeout-Seconds
header when it sends one); the queue collector reads it to decide which inspection a scrape may
share and how long it may wait. A context variable carries it because prometheus_client's
``registry.collect()`` takes no arguments.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

#: The header Prometheus sends with every scrape (its scrape_timeout, in seconds).
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
#: At most this much of Prometheus' timeout is kept back for rendering and the network.
MAX_MARGIN_SECONDS = 0.5


@dataclass
class ScrapeWindow:
    """Monotonic times: the request's arrival, and the latest moment to stop waiting; and
    whether the scrape stopped waiting for an inspection (its body then reports that broker
    down, so a scrape with a later due time must not take it: shared_render.py)."""

    arrived: float
    due: float | None = None
    gave_up: bool = False


_window: ContextVar[ScrapeWindow | None] = ContextVar("scrape_window", default=None)


def current_window() -> ScrapeWindow:
    """The open window, or one that starts now with no due time of its own (``--once``)."""
    return _window.get() or ScrapeWindow(time.monotonic())


@contextmanager
def scrape_window(arrived: float, budget_seconds: float | None) -> Iterator[ScrapeWindow]:
    """Collections inside this block belong to a request that arrived at ``arrived``."""
    window = ScrapeWindow(arrived, None if budget_seconds is None else arrived + budget_seconds)
    token = _window.set(window)
    try:
        yield window
    finally:
        _window.reset(token)


def budget_from_header(value: str | None) -> float | None:
    """Seconds the exporter may spend on a scrape whose Prometheus timeout is ``value``: the
    timeout minus a margin (10%, at most 0.5 s). None when absent or not a positive number."""
    if value is None:
        return None
    try:
        timeout = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(timeout) or timeout <= 0:
        return None
    return timeout - min(MAX_MARGIN_SECONDS, 0.1 * timeout)
