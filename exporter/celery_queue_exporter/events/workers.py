"""The worker book: which Celery workers the events show, whether each is up, lost or
offline, what it consumes, and the cap on worker labels. No I/O, no lock of its own.

Split out of tracker.py (which joins task runs): the tracker owns one instance and calls it
with the tracker's lock held, so a batch of events, a scrape and a state-file save each see
one consistent picture of tasks and workers.

Liveness uses the exporter's own clock (when it last heard from the worker), so worker clock
skew cannot make a worker look dead or alive. A worker is *lost* when nothing was heard from it
for heartbeat_timeout_seconds (kept, down, for worker_retention_seconds) and *offline* when it
announced a graceful shutdown (worker-offline; kept, down and flagged offline, for
worker_offline_grace_seconds, then dropped). Workers past ``max_workers`` share one record
exported as worker ``(other)`` (up while any of them is heard from, no per-worker readings).
:meth:`WorkerBook.state` and :meth:`WorkerBook.restore` carry the known workers across
restarts (events/state.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..catalogue import OTHER_WORKER
from ..config.model import EventSettings
from ..instrumentation import WORKER_QUEUES_EVENT
from .budget import cut
from .fields import number as _number

#: Event types the worker book handles.
WORKER_EVENTS = frozenset(
    ("worker-online", "worker-heartbeat", "worker-offline", WORKER_QUEUES_EVENT)
)


@dataclass
class _Worker:
    last_heard: float
    #: When it announced a graceful shutdown (worker-offline); None while it runs or was lost.
    offline_at: float | None = None
    active: float | None = None
    processed: float | None = None
    load1: float | None = None
    pool_size: float | None = None
    pool: str | None = None
    prefetch_multiplier: float | None = None
    announced_queues: set[str] | None = None
    task_queues: dict[str, float] = field(default_factory=dict)
    #: The record of the workers past max_workers (OTHER_WORKER): liveness and queues only.
    folded: bool = False
    #: Folded record: when one of its workers last announced its queues (install(app)).
    announced_at: float | None = None
    #: A worker-heartbeat came (not only worker-online). install(app) announces the queues
    #: before each heartbeat but cannot with worker-online (the consumer is not ready yet), so
    #: only a worker that sent a heartbeat without announcing is known to lack install(app).
    beat: bool = False
    #: Restored from the state file as up at save time and not heard from since: when it was
    #: restored. Silent past the heartbeat timeout it reads as offline (it may have stopped
    #: gracefully while the exporter was down), and it is dropped heartbeat_timeout +
    #: worker_offline_grace_seconds after this, never exported as lost.
    restored_at: float | None = None

    @property
    def offline(self) -> bool:
        return self.offline_at is not None

    def queues(self, now: float, retention: float) -> set[str]:
        if self.announced_queues is not None:
            return self.announced_queues
        return {q for q, seen in self.task_queues.items() if now - seen <= retention}


@dataclass
class WorkerReading:
    worker: str
    up: bool
    last_heard: float
    active: float | None
    processed: float | None
    load1: float | None
    pool_size: float | None = None
    pool: str | None = None
    prefetch_multiplier: float | None = None
    #: Went offline gracefully less than worker_offline_grace_seconds ago.
    offline: bool = False


class WorkerBook:
    """The known workers of one broker's event stream; the caller holds the tracker's lock
    around every method."""

    def __init__(self, settings: EventSettings, queue_label: Callable[[Any], str | None]) -> None:
        self.settings = settings
        #: The tracker's queue label (shares its max_queue_names slots).
        self._queue_label = queue_label
        self._workers: dict[str, _Worker] = {}
        self._other_workers: _Worker | None = None  # the workers past max_workers
        self._workers_expired_at = float("-inf")
        #: Bumped whenever the worker state changes (the state file saves when it moved).
        self.version = 0
        #: Workers silent past the heartbeat timeout at the last state(): one turning lost
        #: changes the state, so the file records it was silent at its saved_at.
        self._silent_at_save: frozenset[str] = frozenset()
        self.handlers: dict[str, Callable[[dict[str, Any], float], None]] = {
            "worker-online": self._on_worker_alive,
            "worker-heartbeat": self._on_worker_alive,
            "worker-offline": self._on_worker_offline,
            WORKER_QUEUES_EVENT: self._on_worker_queues,
        }

    def ran_from(self, hostname: Any, queue: str, now: float) -> None:
        """A worker received or ran a task from ``queue``: it consumes it, install(app) or not."""
        worker = self.known(hostname)
        if worker is not None:
            worker.task_queues[queue] = now
            self.version += 1

    def readings(
        self, now: float
    ) -> tuple[list[WorkerReading], dict[str, int], dict[str, tuple[float, float]], int]:
        """(workers, live workers per queue, (slots, busy) per queue, live workers that did
        not announce their queues) for a scrape, expiring workers past their retention."""
        timeout = self.settings.heartbeat_timeout_seconds
        retention = self.settings.worker_retention_seconds
        workers: list[WorkerReading] = []
        queue_workers: dict[str, int] = {}
        queue_slots: dict[str, tuple[float, float]] = {}
        self.expire(now)
        entries = list(self._workers.items())
        if self._other_workers is not None:
            entries.append((OTHER_WORKER, self._other_workers))
        queues_unknown = 0
        for hostname, worker in entries:
            silent = now - worker.last_heard
            # A restored worker not heard since may have stopped gracefully unheard.
            offline = worker.offline or (worker.restored_at is not None and silent > timeout)
            up = not offline and silent <= timeout
            workers.append(
                WorkerReading(
                    hostname, up, worker.last_heard, worker.active, worker.processed,
                    worker.load1, worker.pool_size, worker.pool, worker.prefetch_multiplier,
                    offline,
                )
            )  # fmt: skip
            if up and not self._announced(worker, now, timeout):
                queues_unknown += 1
            for queue in worker.queues(now, retention):
                queue_workers[queue] = queue_workers.get(queue, 0) + (1 if up else 0)
                if up and worker.pool_size is not None:
                    slots, busy = queue_slots.get(queue, (0.0, 0.0))
                    queue_slots[queue] = (
                        slots + worker.pool_size,
                        busy + (worker.active or 0.0),
                    )
        return workers, queue_workers, queue_slots, queues_unknown

    @staticmethod
    def _announced(worker: _Worker, now: float, timeout: float) -> bool:
        """Whether the worker told its queues (install(app)). The folded record (OTHER_WORKER)
        counts as announced while one of its workers announced within the heartbeat timeout
        (queue events come with every heartbeat). A worker that sent no heartbeat yet (only
        worker-online: a worker starting up) has had no chance to announce: not counted."""
        if worker.folded:
            return worker.announced_at is not None and now - worker.announced_at <= timeout
        return worker.announced_queues is not None or not worker.beat

    def _worker(self, event: dict[str, Any], now: float) -> _Worker | None:
        hostname = event.get("hostname")
        if not isinstance(hostname, str) or not hostname:
            return None
        worker = self._workers.get(hostname)
        if worker is None:
            if len(self._workers) >= self.settings.max_workers and now >= (
                self._workers_expired_at + 1.0  # at most once a second: it scans them all
            ):
                self.expire(now)  # a slot held by a long-gone worker frees up
            if len(self._workers) < self.settings.max_workers:
                worker = self._workers[hostname] = _Worker(last_heard=now)
            else:
                worker = self._other_workers
                if worker is None:
                    worker = self._other_workers = _Worker(last_heard=now, folded=True)
        worker.last_heard = now
        worker.restored_at = None  # heard again: what it does from now on is known
        self.version += 1
        return worker

    def known(self, hostname: Any) -> _Worker | None:
        """The record a worker's events go to, without creating one."""
        if not isinstance(hostname, str):
            return None
        worker = self._workers.get(hostname)
        if worker is None and len(self._workers) >= self.settings.max_workers:
            return self._other_workers
        return worker

    def _on_worker_alive(self, event: dict[str, Any], now: float) -> None:
        worker = self._worker(event, now)
        if worker is None:
            return
        worker.offline_at = None  # back (or never gone): up again
        if event.get("type") == "worker-heartbeat":
            worker.beat = True
        if worker.folded:
            return  # readings of many workers cannot share one series
        worker.active = _number(event.get("active"), worker.active)
        worker.processed = _number(event.get("processed"), worker.processed)
        loadavg = event.get("loadavg")
        if isinstance(loadavg, list | tuple) and loadavg:
            worker.load1 = _number(loadavg[0], worker.load1)

    def _on_worker_offline(self, event: dict[str, Any], now: float) -> None:
        worker = self._worker(event, now)
        if worker is not None and not worker.folded:  # one gone says nothing of the others
            worker.offline_at = now

    def _on_worker_queues(self, event: dict[str, Any], now: float) -> None:
        worker = self._worker(event, now)
        queues = event.get("queues")
        if worker is None or not isinstance(queues, list):
            return
        labels = {self._queue_label(q) for q in queues} - {None}
        if worker.folded:  # merged, expiring like queues learnt from tasks
            worker.task_queues.update(dict.fromkeys(labels, now))  # type: ignore[arg-type]
            worker.announced_at = now
        else:
            worker.announced_queues = labels  # type: ignore[assignment]
            size = _number(event.get("pool_size"))
            worker.pool_size = size if size is not None and size >= 0 else worker.pool_size
            pool = event.get("pool")
            if isinstance(pool, str) and pool:
                worker.pool = pool[:32]
            worker.prefetch_multiplier = _number(
                event.get("prefetch_multiplier"), worker.prefetch_multiplier
            )

    def expire(self, now: float) -> None:
        """Drop the workers silent for longer than the retention (lost ones) and those that
        went offline gracefully worker_offline_grace_seconds ago or more."""
        self._workers_expired_at = now
        oldest = now - self.settings.worker_retention_seconds
        gone = now - self.settings.worker_offline_grace_seconds
        unconfirmed = gone - self.settings.heartbeat_timeout_seconds
        for hostname, worker in list(self._workers.items()):
            offline_at = worker.offline_at
            restored_at = worker.restored_at
            if (
                worker.last_heard < oldest
                or (offline_at is not None and offline_at <= gone)
                or (restored_at is not None and restored_at <= unconfirmed)
            ):
                del self._workers[hostname]
                self.version += 1
        other = self._other_workers
        if other is not None and other.last_heard < oldest:
            self._other_workers = None

    # --- kept across restarts (events/state.py) ---------------------------------------------

    def state(self, now: float) -> tuple[int, dict[str, dict[str, Any]]]:
        """(version, {hostname: entry}) for the state file (the caller holds the lock): what
        the exporter knows of each worker exported one by one (the folded '(other)' record is
        not kept). A worker that turned silent past the heartbeat timeout since the last call
        bumps the version: a restart restores a worker as lost only when it was silent at the
        file's saved_at."""
        timeout = self.settings.heartbeat_timeout_seconds
        silent = frozenset(
            hostname
            for hostname, worker in self._workers.items()
            if now - worker.last_heard > timeout
        )
        if silent != self._silent_at_save:
            self._silent_at_save = silent
            self.version += 1
        entries = {
            hostname: {
                "last_heard": worker.last_heard,
                "offline_at": worker.offline_at,
                "restored_at": worker.restored_at,
                "queues": (
                    sorted(worker.announced_queues) if worker.announced_queues is not None else None
                ),
                "task_queues": dict(sorted(worker.task_queues.items())),
                "pool": worker.pool,
                "pool_size": worker.pool_size,
                "prefetch_multiplier": worker.prefetch_multiplier,
            }
            for hostname, worker in sorted(self._workers.items())
        }
        return self.version, entries

    def restore(self, entries: dict[Any, Any], now: float, saved_at: float | None = None) -> int:
        """Take back the workers of a state file (the caller holds the lock): see
        EventTracker.restore_workers. Returns how many entries were unreadable."""
        settings = self.settings
        restored: list[tuple[str, _Worker]] = []
        bad = 0
        for hostname, entry in entries.items():
            try:
                worker = _restored_worker(hostname, entry, now)
            except (TypeError, ValueError, ArithmeticError):  # 1e400 as an integer, "\ud800"
                worker = None
            if worker is None:
                bad += 1
                continue
            if now - worker.last_heard > settings.worker_retention_seconds:
                continue
            offline_at = worker.offline_at
            if offline_at is not None and now - offline_at >= settings.worker_offline_grace_seconds:
                continue
            if offline_at is not None:
                worker.restored_at = None
            elif worker.restored_at is None and (
                saved_at is not None
                and min(saved_at, now) - worker.last_heard <= settings.heartbeat_timeout_seconds
            ):
                worker.restored_at = now  # up at save time: unconfirmed from now on
            worker.announced_queues = (
                None
                if worker.announced_queues is None
                else {self._queue_label(q) for q in sorted(worker.announced_queues)} - {None}  # type: ignore[misc]
            )
            worker.task_queues = {
                label: seen
                for queue, seen in worker.task_queues.items()
                if (label := self._queue_label(queue)) is not None
            }
            # Cut as on receipt: a state file may hold a hostname of any length.
            restored.append((cut(hostname, self.settings.max_label_length), worker))
        restored.sort(key=lambda item: -item[1].last_heard)  # the most recent first
        for hostname, worker in restored:
            if hostname in self._workers:
                continue
            if len(self._workers) >= settings.max_workers:
                break
            self._workers[hostname] = worker
        self.version += 1
        return bad


def _restored_worker(hostname: Any, entry: Any, now: float) -> _Worker | None:
    """A worker record from a state file entry; None when it does not read as one."""
    if not isinstance(hostname, str) or not hostname or not isinstance(entry, dict):
        return None
    last_heard = _number(entry.get("last_heard"))
    if last_heard is None:
        return None
    offline_at = _number(entry.get("offline_at"))
    if entry.get("offline_at") is not None and offline_at is None:
        return None
    restored_at = _number(entry.get("restored_at"))
    if entry.get("restored_at") is not None and restored_at is None:
        return None
    queues = entry.get("queues")
    if queues is not None and not (
        isinstance(queues, list) and all(isinstance(q, str) for q in queues)
    ):
        return None
    task_queues = entry.get("task_queues") or {}
    if not isinstance(task_queues, dict):
        return None
    seen: dict[str, float] = {}
    for queue, when in task_queues.items():
        moment = _number(when)
        if not isinstance(queue, str) or moment is None:
            return None
        seen[queue] = min(moment, now)
    pool = entry.get("pool")
    for text in (hostname, pool if isinstance(pool, str) else "", *(queues or ()), *seen):
        text.encode("utf-8")  # UnicodeEncodeError (a lone surrogate): no label can carry it
    size = _number(entry.get("pool_size"))
    return _Worker(
        last_heard=min(last_heard, now),  # a clock set back must not keep it up for long
        offline_at=None if offline_at is None else min(offline_at, now),
        # Restored unconfirmed before and still not heard (a second restart): keeps its clock.
        restored_at=None if restored_at is None else min(restored_at, now),
        pool_size=size if size is not None and size >= 0 else None,
        pool=pool[:32] if isinstance(pool, str) and pool else None,
        prefetch_multiplier=_number(entry.get("prefetch_multiplier")),
        announced_queues=set(queues) if queues is not None else None,
        task_queues=seen,
        beat=True,  # it was heard before the restart: a missing announcement is no startup's
    )
