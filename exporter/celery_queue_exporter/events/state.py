"""The state file (``events.state_file``): the known workers, kept across exporter restarts.

Without it a restarted exporter knows no worker until it hears one: a worker that crashed
(SIGKILL, OOM, lost host) before the restart is never exported again, so its
``celery_worker_up 0`` and the CeleryWorkerDown alert on it vanish. With it, the workers of
each broker (hostname, when the exporter last heard from it, graceful shutdown and when,
announced queues, queues learnt from its tasks, pool) are written as JSON:

* atomically: a temporary file in the same directory, then ``os.replace``, so a crash mid-write
  leaves the previous file whole;
* at most every SAVE_INTERVAL_SECONDS, by a small daemon thread, and only when the worker state
  changed (``EventTracker.workers_version``), and once more at shutdown (SIGTERM/SIGINT);
* read once at start, before any event is consumed. A missing file is a first start; an
  unreadable or corrupt one gives one warning and an empty start, never a crash. A file
  larger than ``events.state_file_max_bytes`` is not read at all (one warning, an empty
  start): its size would be the exporter's memory. Hostnames and queue names read from it are
  cut to ``events.max_label_length`` like those of events (events/workers.py).

Times are epoch seconds of the exporter's clock (``time.time()``). A restored worker already
silent past the heartbeat timeout when the file was saved (``saved_at``) is down (lost) at
once. One that was up at save time may have stopped gracefully while the exporter was down: it
is restored, and dropped like an offline worker if not heard within heartbeat_timeout +
worker_offline_grace_seconds of the restart (never exported as lost; see docs/events.md).
Task counters, histograms and the priority levels seen are not kept: Prometheus'
counter-reset handling covers the counters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .tracker import EventTracker

log = logging.getLogger(__name__)

#: Format of the file; another version is not read (an empty start, with a warning).
STATE_VERSION = 1
#: The state is written at most this often (and at shutdown).
SAVE_INTERVAL_SECONDS = 10.0
#: A larger file is refused unless the caller says otherwise (events.state_file_max_bytes).
DEFAULT_MAX_BYTES = 16 << 20


class StateFile:
    """Loads the workers of every tracker from ``path`` and saves them back."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        trackers: Sequence[EventTracker],
        *,
        interval: float = SAVE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.path = Path(path)
        #: A larger file is not read (events.state_file_max_bytes).
        self.max_bytes = max_bytes
        self.trackers = list(trackers)
        self.interval = interval
        self.clock = clock
        #: The trackers' clock (epoch seconds): the file's saved_at.
        self.wall_clock = wall_clock
        self._lock = threading.Lock()  # one writer at a time (timer thread, shutdown)
        self._saved: dict[str, int] = {}  # broker -> workers_version written last
        self._last_save = -math.inf
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading ----------------------------------------------------------------------------

    def load(self) -> None:
        """Restore every tracker's workers from the file; never raises."""
        try:
            self._load()
        except Exception as exc:  # a last resort: a state file must never stop the exporter
            self._unreadable(f"{type(exc).__name__}: {exc}")
        finally:  # what was read (or nothing) needs no writing back until it changes
            for tracker in self.trackers:
                self._saved[tracker.broker] = tracker.worker_state()[0]

    def _load(self) -> None:
        try:
            with self.path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                # Read one byte past the limit: a file growing (or a FIFO) is caught too.
                raw = b"" if size > self.max_bytes else handle.read(self.max_bytes + 1)
            if size > self.max_bytes or len(raw) > self.max_bytes:
                log.warning(
                    "events state file %s is %d bytes, over events.state_file_max_bytes (%d): "
                    "not read, starting without known workers (raise the limit if the file is "
                    "genuine)",
                    self.path,
                    max(size, len(raw)),
                    self.max_bytes,
                )
                return
            text = raw.decode("utf-8")
        except FileNotFoundError:
            log.info("events state file %s not found: starting without known workers", self.path)
            return
        except (OSError, UnicodeDecodeError) as exc:
            self._unreadable(f"{type(exc).__name__}: {exc}")
            return
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            self._unreadable(f"not JSON ({type(exc).__name__})")
            return
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            self._unreadable(f"not a version {STATE_VERSION} state file")
            return
        brokers = data.get("brokers")
        if not isinstance(brokers, dict):
            self._unreadable("no brokers mapping")
            return
        saved_at = data.get("saved_at")
        if isinstance(saved_at, bool) or not isinstance(saved_at, int | float):
            saved_at = None  # unknown: every silent worker is restored as lost
        elif not math.isfinite(saved_at):
            saved_at = None
        bad = restored = 0
        for tracker in self.trackers:
            entry = brokers.get(tracker.broker)
            if entry is None:
                continue
            workers = entry.get("workers") if isinstance(entry, dict) else None
            bad += tracker.restore_workers(workers, saved_at)
            restored += len(tracker.worker_state()[1])
        if bad:
            log.warning(
                "events state file %s: %d unreadable worker entries skipped", self.path, bad
            )
        log.info("events state file %s: %d workers restored", self.path, restored)

    def _unreadable(self, why: str) -> None:
        log.warning(
            "events state file %s is unreadable (%s): starting without known workers",
            self.path,
            why,
        )

    # --- writing ----------------------------------------------------------------------------

    def save_if_due(self) -> bool:
        """Write when SAVE_INTERVAL_SECONDS passed since the last write and a tracker's workers
        changed since; True when it wrote."""
        with self._lock:
            if self.clock() - self._last_save < self.interval:
                return False
            states = [(tracker.broker, *tracker.worker_state()) for tracker in self.trackers]
            if all(self._saved.get(broker) == version for broker, version, _ in states):
                return False
            return self._write(states)

    def save(self) -> bool:
        """Write now (shutdown); True when it wrote."""
        with self._lock:
            return self._write(
                [(tracker.broker, *tracker.worker_state()) for tracker in self.trackers]
            )

    def _write(self, states: list[tuple[str, int, dict[str, Any]]]) -> bool:
        self._last_save = self.clock()
        document = {
            "version": STATE_VERSION,
            "saved_at": self.wall_clock(),
            "brokers": {broker: {"workers": workers} for broker, _, workers in states},
        }
        folder = self.path.parent
        temporary = None
        try:
            text = json.dumps(document, allow_nan=False, sort_keys=True)
            with tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", dir=folder, prefix=f".{self.path.name}.", suffix=".tmp",
                delete=False,
            ) as handle:  # fmt: skip
                temporary = handle.name
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            temporary = None
        except (OSError, ValueError) as exc:
            if not self._failing:  # once until a write succeeds again
                log.warning("cannot write events state file %s: %s", self.path, exc)
            self._failing = True
            return False
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
        self._failing = False
        for broker, version, _ in states:
            self._saved[broker] = version
        return True

    # --- the timer --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="events-state", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.save_if_due()
            except Exception:  # never let the timer die: the next round tries again
                log.exception("saving the events state file failed")

    def close(self) -> None:
        """Stop the timer and write the final state (call after the consumers stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        self.save()
