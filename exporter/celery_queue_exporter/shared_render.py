"""One render per inspection round: concurrent scrapes share the rendered body and its gzip.

Scrapes already share each broker's inspection (collector.py), but rendering the body is the
larger cost at 1,000 queues x 10 levels (megabytes of text), so 50 scrapes arriving together
each rendering their own copy cost 50 renders. Here a scrape joins the render in flight, or
reuses the last render when that render finished after the scrape's request arrived: the same
freshness rule as a shared inspection (what it serves is never older than the request, minus
at most one render's duration). A render's gzip is made once, by the first scrape that asks for
it. A scrape whose own deadline passes while it waits for another's render stops waiting and
renders for itself (the inspection in flight is still shared), so a joined render never
stretches a scrape past its window.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from .deadline import scrape_window

#: gzip level for /metrics: level 1 is several times faster than 9 and nearly as small on
#: repetitive exposition text.
GZIP_LEVEL = 1


@dataclass(eq=False)
class Rendered:
    """One rendered body; its gzip is made on first demand, once."""

    body: bytes
    _gzip: bytes | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: How many times this body was gzipped (0 or 1; read by tests through SharedRender).
    on_gzip: Callable[[], None] | None = None

    def gzipped(self) -> bytes:
        with self._lock:
            if self._gzip is None:
                self._gzip = gzip.compress(self.body, compresslevel=GZIP_LEVEL)
                if self.on_gzip is not None:
                    self.on_gzip()
            return self._gzip


@dataclass(eq=False)
class _Round:
    started: float  # monotonic
    future: Future[Rendered] = field(default_factory=Future)
    finished: float | None = None


class SharedRender:
    """Single-flight rendering of ``render()``; ``renders`` and ``gzips`` count the work done
    (what tests assert on, instead of times)."""

    def __init__(self, render: Callable[[], bytes]) -> None:
        self._render = render
        self._lock = threading.Lock()
        self._running: _Round | None = None
        self._last: _Round | None = None
        self.renders = 0
        self.gzips = 0

    def _count_gzip(self) -> None:
        with self._lock:
            self.gzips += 1

    def get(self, arrived: float, budget: float | None) -> Rendered:
        """The body for a request that arrived at ``arrived`` (monotonic) with ``budget``
        seconds to answer (None: no deadline of its own)."""
        with self._lock:
            last = self._last
            if last is not None and last.finished is not None and last.finished >= arrived:
                return last.future.result()
            joined = self._running
            if joined is None:
                mine = self._running = _Round(started=time.monotonic())
        if joined is not None:
            due = None if budget is None else arrived + budget
            timeout = None if due is None else max(0.0, due - time.monotonic())
            try:
                return joined.future.result(timeout=timeout)
            except FutureTimeout:
                return self._render_alone(arrived, budget)
        return self._lead(mine, arrived, budget)

    def _lead(self, mine: _Round, arrived: float, budget: float | None) -> Rendered:
        try:
            rendered = self._render_alone(arrived, budget)
        except BaseException as exc:
            with self._lock:
                self._running = None
            mine.future.set_exception(exc)
            raise
        mine.future.set_result(rendered)
        with self._lock:
            mine.finished = time.monotonic()
            self._running = None
            self._last = mine
        return rendered

    def _render_alone(self, arrived: float, budget: float | None) -> Rendered:
        with scrape_window(arrived, budget):
            body = self._render()
        with self._lock:
            self.renders += 1
        return Rendered(body, on_gzip=self._count_gzip)
