"""Joins Celery events into task and worker metrics: a pure state machine, no I/O.

The broker consumers (``brokers/<name>/events.py``) decode event messages and hand
lists of event dicts to :meth:`EventTracker.handle`; the collector reads :meth:`snapshot` at
scrape time. One lock guards all state; consumers take it once per batch.

Joining: task-started/succeeded/failed carry neither task name nor queue, so the tracker keeps
one small record per task id, filled by task-sent (name, queue, publish time), by the
worker-side hook of ``celery_queue_exporter.instrumentation.install(app)`` (name, queue,
priority, enqueue stamp) and by task-received (name), and dropped when the task finishes. The
records are bounded in number (``max_tracked_tasks``, oldest dropped first) and in age
(``max_task_age_seconds``); a task whose record was dropped is counted under queue/task
``(unknown)``.

Label cardinality: label values and task ids are cut to ``max_label_length`` (events/budget.py)
and every new series of the task metrics asks the exporter-wide :class:`~.budget.SeriesBudget`;
refused, it is observed under its family's ``(other)`` labels and counted in ``series_dropped``.
Task names (``task_names`` allow-list or the first ``max_task_names``) and
queue names (the first ``max_queue_names``) past their cap fold into ``(other)``; workers past
``max_workers`` share one record exported as worker ``(other)`` (up while any of them is heard
from, no per-worker readings). Names are never forgotten: a flood of dynamic names cannot push
out the real ones.

Waits: the queue wait of a run is its start minus the later of the run's own publish (the attempt
stamp of ``install(app)``, else its task-sent) and its ETA, so countdown/ETA delays and retry
backoffs are not mistaken for queueing. The end-to-end delay (first publish to start, ETA and
retries included) is a histogram of its own; the prefetch time is the start minus the later of
task-received and the ETA: how long the run sat reserved in a worker's buffer.

Times: event timestamps are the emitter's ``time.time()`` (epoch seconds, time-zone free); the
tracker never "localizes" them with utcoffset. Waits computed across hosts can come out
negative or absurd when clocks disagree. Every event also feeds :mod:`.clock` (each host's
offset against the exporter's clock), and a wait is corrected by the offsets of the producer's
host (the ``producer`` that install(app) stamps, else the task-sent's host) and the worker's
host where known; what remains out of range is clamped to [0, max_wait_seconds] and counted.
Worker liveness uses the exporter's own clock (when it last heard from the worker), so worker
clock skew cannot make a worker look dead or alive.

Workers: the worker book (liveness, lost/offline, restore, the max_workers cap) is
events/workers.py; the tracker owns one :class:`~.workers.WorkerBook` and calls it under its own
lock. :meth:`EventTracker.worker_state` and :meth:`EventTracker.restore_workers` carry the known
workers across restarts (events/state.py).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import catalogue as cat
from ..catalogue import OTHER_QUEUE, OTHER_TASK, UNKNOWN_QUEUE
from ..config.model import EventSettings
from ..delayed_delivery import strip_delay_prefix
from ..instrumentation import SENT_PRIORITY_FIELD, TASK_INFO_EVENT
from .budget import SeriesBudget, cut
from .clock import ClockOffsets, host_of
from .fields import number as _number
from .workers import WORKER_EVENTS as _WORKER_EVENTS
from .workers import WorkerBook, WorkerReading

__all__ = [
    "TASK_COUNTER_KINDS",
    "UNKNOWN_TASK",
    "EventSnapshot",
    "EventTracker",
    "Histogram",
    "WorkerReading",
    "time_limit_kind",
]

#: Budget family (the exposed metric name) of each task counter.
_COUNTER_FAMILIES = {
    "sent": cat.TASK_SENT.name,
    "received": cat.TASK_RECEIVED.name,
    "started": cat.TASK_STARTED.name,
    "succeeded": cat.TASK_SUCCEEDED.name,
    "failed": cat.TASK_FAILED.name,
    "retried": cat.TASK_RETRIED.name,
    "rejected": cat.TASK_REJECTED.name,
    "revoked": cat.TASK_REVOKED.name,
}

#: Label value for a task whose name the exporter could not learn (record dropped or missed).
UNKNOWN_TASK = "(unknown)"

#: Task outcome counters, in catalogue order; keys of :attr:`EventSnapshot.task_counts`.
#: A worker-producer clock difference under this is not corrected in waits (EventTracker._skew).
SKEW_DEAD_BAND_SECONDS = 5.0

#: The values of celery_task_time_limit_exceeded_total's ``limit`` label.
TIME_LIMITS = ("hard", "soft")

TASK_COUNTER_KINDS = (
    "sent",
    "received",
    "started",
    "succeeded",
    "failed",
    "retried",
    "rejected",
    "revoked",
)

#: How many ended task ids are remembered to drop duplicate final events.
FINISHED_MEMORY = 10_000

#: Hostnames whose host_of() is remembered (EventTracker._host); emptied when full, so a flood
#: of made-up hostnames costs memory no more than this many (cut) names.
HOST_MEMORY = 1024

_OTHER_PAIR = (OTHER_QUEUE, OTHER_TASK)

_SOFT_LIMIT = "SoftTimeLimitExceeded"
_HARD_LIMIT = "TimeLimitExceeded"


def _exception_name(text: str) -> str:
    """'TimeLimitExceeded' from 'TimeLimitExceeded(5,)' or 'billiard.exceptions.TimeLimit...'."""
    return text.strip().split("(", 1)[0].split(":", 1)[0].rsplit(".", 1)[-1].strip()


def time_limit_kind(exception: Any, traceback: Any = None) -> str | None:
    """'soft' or 'hard' when a task-failed event reports a Celery time limit.

    ``exception`` is safe_repr() of the exception, e.g. "SoftTimeLimitExceeded()". A hard
    limit reaches the event wrapped by billiard ("ExceptionWithTraceback()"); the last line of
    ``traceback`` then names it ("billiard.exceptions.TimeLimitExceeded: ...").
    """
    names = []
    if isinstance(exception, str):
        names.append(_exception_name(exception))
    if isinstance(traceback, str) and traceback.strip():
        names.append(_exception_name(traceback.strip().rsplit("\n", 1)[-1]))
    for name in names:
        if name == _SOFT_LIMIT:
            return "soft"
        if name == _HARD_LIMIT:
            return "hard"
    return None


class Histogram:
    """Bucket counts (non-cumulative, last is +Inf), sum and count of one series."""

    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        self.counts = [0] * (size + 1)
        self.sum = 0.0

    def observe(self, bounds: Sequence[float], value: float) -> None:
        self.counts[bisect_left(bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[int]:
        total, out = 0, []
        for count in self.counts:
            total += count
            out.append(total)
        return out


class FirstNames:
    """Label values for names: the first ``limit`` distinct names are their own label, later
    ones share ``other``. Names are never forgotten, so a flood of new names cannot push out
    the real ones."""

    __slots__ = ("limit", "other", "names")

    def __init__(self, limit: int, other: str) -> None:
        self.limit = limit
        self.other = other
        self.names: set[str] = set()

    def label(self, name: str) -> str:
        if name in self.names:
            return name
        if len(self.names) < self.limit:
            self.names.add(name)
            return name
        return self.other


class _Run:
    """Publish stamps of a task's next delivery (run), announced while the current one is
    still in flight; ``run`` is its ``retries`` number. The current run's stamps live in the
    task record itself (one object less per task in flight)."""

    __slots__ = ("run", "attempt_at", "sent_at", "eta")

    def __init__(self, run: int | None) -> None:
        self.run = run
        self.attempt_at: float | None = None  # this run's publish (install(app))
        self.sent_at: float | None = None  # this run's task-sent
        self.eta: float | None = None  # this run's ETA (epoch seconds)


class _Task:
    """What the tracker knows about one task id while it is in flight.

    A retry is published from inside the running task, and its task-sent and install(app)
    events are not batched like the worker's task events: they can arrive before the
    task-started and task-retried of the run that published it. So the current run's stamps
    (``run``, ``attempt_at``, ``sent_at``, ``eta``) and those of an announced next delivery
    (``pending``) are kept apart, and task-received (ordered with started/retried) says which
    run is which. With a prefork pool the main process may even receive, and another child
    start, the next delivery before it reports the retry of the previous run, so
    task-retried only drops the record when no later run was received or started.
    """

    __slots__ = (
        "name", "queue", "priority", "enqueued_at", "run", "attempt_at", "sent_at", "eta",
        "pending", "received_at", "started_run", "open_starts", "touched", "producer",
        "waiting", "received_run",
    )  # fmt: skip

    def __init__(self, now: float) -> None:
        self.name: str | None = None
        self.queue: str | None = None
        self.priority: str | None = None
        self.enqueued_at: float | None = None  # first publish (install(app))
        self.run: int | None = None  # ``retries`` of the current run
        self.attempt_at: float | None = None  # its publish (install(app))
        self.sent_at: float | None = None  # its task-sent
        self.eta: float | None = None  # its ETA (epoch seconds)
        self.pending: _Run | None = None
        self.received_at: float | None = None  # task-received, worker clock
        self.started_run: int | None = None  # ``run`` at the last task-started
        self.open_starts = 0  # task-started not yet followed by task-retried
        self.touched = now
        #: Host whose clock stamped the publish (install(app) header, else task-sent's host).
        self.producer: str | None = None
        #: (queue, level, run, task id) of a publish seen in task-sent with its priority and
        #: not yet seen received: counted in EventTracker._waiting while set.
        self.waiting: tuple[str, str, int, str] | None = None
        #: The latest run a worker was seen receiving (-1: none yet).
        self.received_run = -1

    def start(self) -> None:
        """task-started of the current run."""
        self.started_run = self.run
        self.open_starts += 1

    def run_for(self, retries: Any) -> _Task | _Run:
        """Where a sent/install(app) event with this ``retries`` puts its stamps: the current
        run (this record), or a later delivery announced before the current run's events."""
        run = _run(retries)
        if self.run is None:
            self.run = run
        if run is None or self.run is None or run <= self.run:
            return self
        if self.pending is None or self.pending.run != run:
            self.pending = _Run(run)
        return self.pending

    def next_run(self, retries: Any) -> None:
        """task-received (ordered with task-started/retried): the delivery it names begins."""
        run = _run(retries)
        pending = self.pending
        if pending is not None and pending.run == run:
            self._become(pending)
        elif self.run is None:
            self.run = run
        elif run is not None and run != self.run:
            self._become(_Run(run))  # a delivery whose stamps were not seen
        elif run is not None:
            self.open_starts = 0  # the same run delivered again: its earlier start is void

    def end_run(self) -> bool:
        """task-retried: a started run ended; True when a later delivery was already
        announced, received or started (the record stays for it), False when the record can
        go (the retry's own events rebuild it)."""
        self.open_starts = max(0, self.open_starts - 1)
        if self.pending is not None:
            self._become(self.pending)
            self.received_at = None
            return True
        if self.open_starts > 0:
            return True  # a later run started before this retry was reported
        later = self.run is not None and self.started_run is not None
        return later and self.run > self.started_run  # type: ignore[operator]

    def end_to_pending(self) -> bool:
        """task-revoked/rejected while a later delivery was already announced (a retry the
        run published before it was revoked): that delivery becomes the current run and the
        record stays (True). False when none was announced."""
        if self.pending is None:
            return False
        self.open_starts = max(0, self.open_starts - 1)
        self._become(self.pending)
        self.received_at = None
        return True

    def _become(self, run: _Run) -> None:
        self.run, self.attempt_at, self.sent_at, self.eta = (
            run.run, run.attempt_at, run.sent_at, run.eta,
        )  # fmt: skip
        self.pending = None


@dataclass
class EventSnapshot:
    """A consistent copy of the tracker's metrics for one scrape."""

    task_counts: dict[tuple[str, str, str], int]  # (kind, queue, task) -> count
    failures: dict[tuple[str, str, str], int]  # (queue, task, exception) -> count
    time_limits: dict[tuple[str, str, str], int]  # (queue, task, limit) -> count
    runtime: dict[tuple[str, str], tuple[list[int], float]]  # cumulative buckets, sum
    task_wait: dict[tuple[str, str], tuple[list[int], float]]
    queue_wait: dict[tuple[str, str | None], tuple[list[int], float]]
    end_to_end: dict[tuple[str, str], tuple[list[int], float]]
    prefetch: dict[tuple[str, str | None], tuple[list[int], float]]
    workers: list[WorkerReading]
    queue_workers: dict[str, int]
    #: queue -> (pool slots, busy slots) of the live workers that consume it
    queue_slots: dict[str, tuple[float, float]]
    events_received: int
    malformed: int
    clock_skew_clamped: int
    interruptions: dict[str, int]
    consumer_up: bool
    tracked_tasks: int
    #: Live workers that did not announce their queues (no install(app) on them).
    queues_unknown: int = 0
    #: (queue, task, priority level) -> tasks received at that level (task-info events)
    received_by_priority: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: metric name -> observations counted under '(other)' labels (series budget)
    series_dropped: dict[str, int] = field(default_factory=dict)
    #: host -> clock offset in seconds (host clock - exporter clock), events/clock.py
    clock_offsets: dict[str, float] = field(default_factory=dict)
    #: Outcome series of seen tasks exported at 0 until counted (EventTracker._known_pair):
    #: (kind, queue, task) of task_counts, (queue, task, limit) of time_limits.
    zero_counts: frozenset[tuple[str, str, str]] = frozenset()
    zero_limits: frozenset[tuple[str, str, str]] = frozenset()

    def counts_with_zeros(self) -> dict[tuple[str, str, str], int]:
        """``task_counts`` and the known outcome series still at 0."""
        return dict.fromkeys(self.zero_counts - self.task_counts.keys(), 0) | self.task_counts

    def limits_with_zeros(self) -> dict[tuple[str, str, str], int]:
        """``time_limits`` and the known limit series still at 0."""
        return dict.fromkeys(self.zero_limits - self.time_limits.keys(), 0) | self.time_limits


class EventTracker:
    """Metrics state for one broker's Celery event stream."""

    def __init__(
        self,
        broker: str,
        settings: EventSettings | None = None,
        *,
        priority_level: Callable[[Any, Any], str],
        clock: Callable[[], float] = time.time,
        budget: SeriesBudget | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings or EventSettings()
        #: (priority, x-max-priority) -> level label, from the broker's transport.
        self.priority_level = priority_level
        self.clock = clock
        self.lock = threading.Lock()
        self.runtime_bounds = tuple(float(b) for b in self.settings.runtime_buckets)
        self.wait_bounds = tuple(float(b) for b in self.settings.wait_buckets)
        self._allowed = frozenset(self.settings.task_names)
        self.max_label_length = self.settings.max_label_length
        #: Shared by the trackers of all brokers (events/collector.py), else this one's own.
        self.budget = budget or SeriesBudget(
            self.settings.max_series_per_family, self.settings.max_event_samples
        )
        #: metric name -> observations folded into '(other)' labels by the series budget
        self.series_dropped: dict[str, int] = {}
        self._task_names = FirstNames(self.settings.max_task_names, OTHER_TASK)
        self._queue_names = FirstNames(self.settings.max_queue_names, OTHER_QUEUE)
        self._exception_names = FirstNames(self.settings.max_exception_names, OTHER_TASK)
        self._counts: dict[tuple[str, str, str], int] = {}
        #: (queue, task) pairs whose outcome series were started at 0 (see _known_pair), and
        #: those series: admitted by the budget, at 0 until counted.
        self._zeroed: set[tuple[str, str]] = set()
        self._zero_counts: set[tuple[str, str, str]] = set()
        self._zero_limits: set[tuple[str, str, str]] = set()
        self._failures: dict[tuple[str, str, str], int] = {}
        self._time_limits: dict[tuple[str, str, str], int] = {}
        self._runtime: dict[tuple[str, str], Histogram] = {}
        self._task_wait: dict[tuple[str, str], Histogram] = {}
        self._queue_wait: dict[tuple[str, str | None], Histogram] = {}
        self._end_to_end: dict[tuple[str, str], Histogram] = {}
        self._prefetch: dict[tuple[str, str | None], Histogram] = {}
        self._tasks: OrderedDict[str, _Task] = OrderedDict()
        # Ids whose delivery ended (succeeded/failed/rejected/revoked), to drop duplicate final
        # events: Celery 5.7 sends task-failed twice for a hard time limit.
        self._finished: OrderedDict[str, None] = OrderedDict()
        #: The known workers (events/workers.py), guarded by this tracker's lock.
        self.workers = WorkerBook(self.settings, self.queue_label)
        self._by_priority: dict[tuple[str, str, str], int] = {}
        #: queue -> level -> when a task was last received at it (exporter clock).
        self._levels: dict[str, dict[str, float]] = {}
        #: queue -> level -> tasks seen published at that level (task-sent with the priority
        #: install(app) adds) and not yet seen received: the per-level depth of RabbitMQ
        #: classic priority queues whose broker no longer reports it (waiting_levels()).
        self._waiting: dict[str, dict[str, int]] = {}
        #: queue -> {task id: when its counted publish was seen (exporter clock)}, oldest
        #: first: what waiting_levels() settles when the broker reads the queue empty.
        self._waiting_since: dict[str, OrderedDict[str, float]] = {}
        #: (task id, retries) of the task-info events counted, to count a run once.
        self._info_counted: OrderedDict[tuple[str, int | None], None] = OrderedDict()
        self.events_received = 0
        self.malformed = 0
        self.clock_skew_clamped = 0
        #: Each host's clock offset (events/clock.py); hosts capped like workers.
        self.clocks = ClockOffsets(self.settings.max_workers)
        #: hostname -> host_of(hostname), for the few hostnames a stream carries.
        self._hosts: dict[str, str | None] = {}
        self.interruptions: dict[str, int] = {}
        self.consumer_up = False
        self._handlers: dict[str, Callable[[dict[str, Any], float], None]] = {
            "task-sent": self._on_sent,
            TASK_INFO_EVENT: self._on_task_info,
            "task-received": self._on_received,
            "task-started": self._on_started,
            "task-succeeded": self._on_succeeded,
            "task-failed": self._on_failed,
            "task-retried": self._on_finished_kind("retried"),
            "task-rejected": self._on_finished_kind("rejected"),
            "task-revoked": self._on_finished_kind("revoked"),
            **self.workers.handlers,
        }

    @property
    def workers_version(self) -> int:
        """Bumped whenever the worker state changes (the state file saves when it moved)."""
        return self.workers.version

    # --- input ------------------------------------------------------------------------------

    def handle(self, events: Iterable[Any], malformed: int = 0) -> None:
        """Apply decoded events (dicts); anything else counts as malformed and is skipped."""
        now = self.clock()
        # Bound once per batch: this loop runs for every event (docs/performance.md).
        handlers = self._handlers
        observe = self.clocks.observe
        host = self._host
        limit = self.max_label_length
        received = 0  # added to events_received once per batch
        with self.lock:
            self.malformed += malformed
            try:
                for event in events:
                    if not isinstance(event, dict):
                        self.malformed += 1
                        continue
                    kind = event.get("type")
                    if not isinstance(kind, str):
                        self.malformed += 1
                        continue
                    handler = handlers.get(kind)
                    if handler is None:
                        received += 1
                        continue  # an event type we do not use (e.g. task-progress from an app)
                    uuid = event.get("uuid")
                    if kind not in _WORKER_EVENTS and not isinstance(uuid, str):
                        self.malformed += 1  # a task event must name its task
                        continue
                    hostname = event.get("hostname")
                    if (isinstance(uuid, str) and len(uuid) > limit) or (
                        isinstance(hostname, str) and len(hostname) > limit
                    ):
                        event = self._cut_ids(event)
                        hostname = event.get("hostname")
                    observe(host(hostname), event.get("timestamp"), now)
                    try:
                        handler(event, now)
                    except (TypeError, ValueError, AttributeError, KeyError, ArithmeticError):
                        # A field of the wrong type, or a number no float holds (Infinity as a
                        # priority): this one event is malformed, the others of the batch count.
                        self.malformed += 1
                        continue
                    received += 1
            finally:
                self.events_received += received
            self._evict(now)

    def _host(self, hostname: Any) -> str | None:
        """host_of(hostname), remembered: a stream carries few hostnames, each in every one of
        its events (the clock sample, the skew of a wait)."""
        if type(hostname) is not str:
            return host_of(hostname)
        hosts = self._hosts
        try:
            return hosts[hostname]
        except KeyError:
            pass
        if len(hosts) >= HOST_MEMORY:
            hosts.clear()
        host = hosts[hostname] = host_of(hostname)
        return host

    def _cut_ids(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event with its task id and hostname cut to max_label_length: they key the
        records kept in memory and the worker label, so their length must be bounded too."""
        limit = self.max_label_length
        uuid, hostname = event.get("uuid"), event.get("hostname")
        long_uuid = isinstance(uuid, str) and len(uuid) > limit
        long_host = isinstance(hostname, str) and len(hostname) > limit
        if not (long_uuid or long_host):
            return event
        event = dict(event)
        if long_uuid:
            event["uuid"] = cut(uuid, limit)  # type: ignore[arg-type]
        if long_host:
            event["hostname"] = cut(hostname, limit)  # type: ignore[arg-type]
        return event

    def count_malformed(self, messages: int = 1) -> None:
        with self.lock:
            self.malformed += messages

    def count_interruption(self, reason: str) -> None:
        with self.lock:
            self.interruptions[reason] = self.interruptions.get(reason, 0) + 1

    def set_consumer_up(self, up: bool) -> None:
        with self.lock:
            self.consumer_up = up

    # --- labels -----------------------------------------------------------------------------

    def task_label(self, name: Any) -> str:
        """The task label for a name: allow-listed or among the first max_task_names, else
        OTHER_TASK, so a flood of dynamic task names cannot blow up the series count."""
        if not isinstance(name, str) or not name:
            return UNKNOWN_TASK
        if self._allowed:
            return cut(name, self.max_label_length) if name in self._allowed else OTHER_TASK
        if name in self._task_names.names:  # a label already (so no longer than the limit)
            return name
        return self._task_names.label(cut(name, self.max_label_length))

    def exception_label(self, exception: Any, traceback: Any = None) -> str:
        """The exception label of a failure: the exception's class name (from the traceback's
        last line when billiard wrapped it), among the first max_exception_names, else
        OTHER_TASK ('(other)'); '(unknown)' when the event names none."""
        name = _exception_name(exception) if isinstance(exception, str) else ""
        if (not name or name == "ExceptionWithTraceback") and isinstance(traceback, str):
            lines = traceback.strip().rsplit("\n", 1)
            name = _exception_name(lines[-1]) if lines[-1] else name
        if not name:
            return UNKNOWN_TASK
        return self._exception_names.label(cut(name, self.max_label_length))

    def queue_label(self, queue: Any) -> str | None:
        """The queue label for a name: among the first max_queue_names, else OTHER_QUEUE; None
        when the event names no queue."""
        if not isinstance(queue, str) or not queue:
            return None
        if queue in self._queue_names.names:  # a label already (so no longer than the limit)
            return queue
        return self._queue_names.label(cut(queue, self.max_label_length))

    def _admit(
        self, family: str, store: dict[Any, Any], key: Any, other: Any, cost: int = 1
    ) -> Any:
        """``key`` when its series exists or the budget admits it, else ``other`` (the
        family's '(other)' series, always kept), counting the fold in series_dropped."""
        if key in store or key == other or self.budget.admit(family, cost):
            return key
        self.series_dropped[family] = self.series_dropped.get(family, 0) + 1
        return other

    def _observe(
        self,
        family: str,
        histograms: dict[Any, Histogram],
        key: Any,
        other: Any,
        bounds: Sequence[float],
        value: float,
    ) -> None:
        histogram = histograms.get(key)
        if histogram is None:  # a new series: it must be admitted first
            key = self._admit(family, histograms, key, other, len(bounds) + 3)
            _observe(histograms, key, bounds, value)
        else:  # Histogram.observe, inlined: up to four per task run
            histogram.counts[bisect_left(bounds, value)] += 1
            histogram.sum += value

    # --- task events ------------------------------------------------------------------------

    def _record(self, uuid: Any, now: float) -> _Task | None:
        if not isinstance(uuid, str):
            return None
        task = self._tasks.get(uuid)
        if task is None:
            task = self._tasks[uuid] = _Task(now)
        else:
            task.touched = now
            self._tasks.move_to_end(uuid)
        return task

    def _inc(self, kind: str, queue: str, task: str) -> None:
        key = (kind, queue, task)
        counts = self._counts
        count = counts.get(key)
        if count is not None:
            # A counted series: admitted, and its pair already went through _known_pair
            # (every count of ``_counts`` is followed by it), so nothing else to do.
            counts[key] = count + 1
            return
        if key not in self._zero_counts:  # a series started at 0 holds its budget already
            key = self._admit(
                _COUNTER_FAMILIES[kind], self._counts, key, (kind, OTHER_QUEUE, OTHER_TASK)
            )
        self._counts[key] = self._counts.get(key, 0) + 1
        self._known_pair(key[1], key[2])

    def _known_pair(self, queue: str, task: str) -> None:
        """A task counted under its own labels for the first time: its other outcome series
        start at 0, as Prometheus' instrumentation guide asks, so that its first success, retry
        or time-limit kill is an increase ``increase()`` sees, not a new series first seen at 1
        (``failed`` carries the exception class, unknown before a failure: the rules count a
        new series at its value). Each zero series takes its place in the series budget; one
        the budget refuses is simply not started (it is no observation, so nothing is folded
        or counted as dropped), and an outcome that comes later folds as any other would."""
        if queue == OTHER_QUEUE and task == OTHER_TASK or (queue, task) in self._zeroed:
            return
        self._zeroed.add((queue, task))
        for kind in TASK_COUNTER_KINDS:
            key = (kind, queue, task)
            new = kind != "failed" and key not in self._counts
            if new and self.budget.admit(_COUNTER_FAMILIES[kind], 1):
                self._zero_counts.add(key)
        for limit in TIME_LIMITS:
            key = (queue, task, limit)
            if key not in self._time_limits and self.budget.admit(cat.TASK_TIME_LIMIT.name, 1):
                self._zero_limits.add(key)

    def _on_sent(self, event: dict[str, Any], now: float) -> None:
        uuid = event.get("uuid")
        # The producer's events travel on a connection of their own: its task-sent can arrive
        # after the worker's final event of the same task. It still counts, but opens no
        # record: nothing would close it (it would sit in celery_event_tracked_tasks until
        # max_task_age_seconds).
        ended = isinstance(uuid, str) and uuid in self._finished
        task = None if ended else self._record(uuid, now)
        queue = self.queue_label(event.get("queue") or _routing_queue(event.get("routing_key")))
        name = self.task_label(event.get("name"))
        if task is not None:
            task.name = task.name or name
            if task.queue is None and queue is not None:
                task.queue = queue
            run = task.run_for(event.get("retries"))
            run.sent_at = _number(event.get("timestamp"))
            if task.producer is None:
                task.producer = self._host(event.get("hostname"))
            eta = _iso_epoch(event.get("eta"))
            run.eta = eta if eta is not None else run.eta
            self._published_at_level(task, event, queue, uuid, now)
        self._inc("sent", queue or UNKNOWN_QUEUE, name)

    def _on_task_info(self, event: dict[str, Any], now: float) -> None:
        # First what can raise on a malformed event (priority: Infinity), so such an event
        # counts as malformed without leaving a half-applied record behind.
        priority = self.priority_level(event.get("priority"), event.get("max_priority"))
        task = self._record(event.get("uuid"), now)
        if task is None:
            return
        queue = self.queue_label(event.get("queue"))
        if queue is not None:
            task.queue = queue
            self.workers.ran_from(event.get("hostname"), queue, now)
        if event.get("name"):
            task.name = self.task_label(event.get("name"))
        task.priority = priority
        task.enqueued_at = _number(event.get("enqueued_at"))
        run = task.run_for(event.get("retries"))
        self._received_run(task, event.get("retries"))
        run.attempt_at = _number(event.get("attempt_at"))
        run.eta = _number(event.get("eta"), run.eta)
        self._producer_sample(task, event, now, scheduled=run.eta is not None)
        if _known_level(priority) and self._first_info(event["uuid"], event.get("retries")):
            queue = task.queue or UNKNOWN_QUEUE
            key = self._admit(
                cat.TASK_RECEIVED_BY_PRIORITY.name, self._by_priority,
                (queue, task.name or UNKNOWN_TASK, priority), (OTHER_QUEUE, OTHER_TASK, priority),
            )  # fmt: skip
            self._by_priority[key] = self._by_priority.get(key, 0) + 1
            if queue not in (UNKNOWN_QUEUE, OTHER_QUEUE):
                self._levels.setdefault(queue, {})[priority] = now

    def _producer_sample(
        self, task: _Task, event: dict[str, Any], now: float, scheduled: bool = False
    ) -> None:
        """The producer's host (install(app) header) and, when the worker's offset is known,
        one clock sample for it: published at ``attempt_at`` (producer clock), received by the
        worker at the event's ``timestamp`` (worker clock, brought to the exporter's). None for
        a ``scheduled`` run (countdown or ETA): it starts when due, so its start says nothing
        of when it was published."""
        producer = event.get("producer")
        if not isinstance(producer, str) or not producer:
            return
        producer = cut(producer, self.max_label_length)
        task.producer = producer
        received = _number(event.get("timestamp"))
        attempt = _number(event.get("attempt_at"))
        if received is None or attempt is None or scheduled:
            return
        worker_offset = self.clocks.offset(self._host(event.get("hostname")), now)
        if worker_offset is not None:
            self.clocks.observe(producer, attempt, received - worker_offset)

    def _first_info(self, uuid: str, retries: Any) -> bool:
        """True for the first task-info event of this run of the task (a run is counted once,
        whatever duplicates the stream carries); remembers the last FINISHED_MEMORY runs."""
        return _first_time(self._info_counted, (uuid, _run(retries)))

    def _on_received(self, event: dict[str, Any], now: float) -> None:
        uuid = event.get("uuid")
        if isinstance(uuid, str):
            self._finished.pop(uuid, None)  # delivered again: a new run may end again
        task = self._record(uuid, now)
        name = self.task_label(event.get("name"))
        queue = UNKNOWN_QUEUE
        if task is not None:
            if task.name is None or task.name == UNKNOWN_TASK:
                task.name = name
            name = task.name
            queue = task.queue or UNKNOWN_QUEUE
            task.next_run(event.get("retries"))
            self._received_run(task, event.get("retries"))
            task.received_at = _number(event.get("timestamp"))
            if task.eta is None:
                task.eta = _iso_epoch(event.get("eta"))
        self._inc("received", queue, name)

    def _known(self, event: dict[str, Any]) -> tuple[_Task | None, str, str]:
        uuid = event.get("uuid")
        task = self._tasks.get(uuid) if isinstance(uuid, str) else None
        if task is None:
            return None, UNKNOWN_QUEUE, UNKNOWN_TASK
        return task, task.queue or UNKNOWN_QUEUE, task.name or UNKNOWN_TASK

    def _on_started(self, event: dict[str, Any], now: float) -> None:
        task, queue, name = self._known(event)
        self._inc("started", queue, name)
        if task is None:
            return
        task.start()
        if queue != UNKNOWN_QUEUE:
            # A worker that runs a task from a queue consumes it, install(app) or not.
            self.workers.ran_from(event.get("hostname"), queue, now)
        started = _number(event.get("timestamp"))
        if started is None:
            return
        # install(app) stamps: this run's publish (older hooks sent only the first one).
        published = task.attempt_at if task.attempt_at is not None else task.enqueued_at
        priority = task.priority if published is not None else None
        if published is None:
            published = task.sent_at  # task-sent of this run (a retry sends its own)
        bounds = self.wait_bounds
        eta = task.eta
        if published is not None:
            ready = published if eta is None else max(published, eta)
            wait = self._clamp(started - ready - self._skew(event, task, now))
            other = _OTHER_PAIR
            self._observe(
                cat.TASK_QUEUE_WAIT.name, self._task_wait, (queue, name), other, bounds, wait
            )
            self._observe(
                cat.QUEUE_WAIT.name, self._queue_wait, (queue, priority),
                (OTHER_QUEUE, priority), bounds, wait,
            )  # fmt: skip
        if task.enqueued_at is not None:
            # Same clocks as the queue wait just measured: its skew is counted there, once.
            delay = min(max(0.0, started - task.enqueued_at), self.settings.max_wait_seconds)
            self._observe(
                cat.TASK_END_TO_END.name, self._end_to_end, (queue, name),
                _OTHER_PAIR, bounds, delay,
            )  # fmt: skip
        if task.received_at is not None:
            # Both on the worker's clock; an ETA run is not prefetched before its ETA.
            ready = task.received_at if eta is None else max(task.received_at, eta)
            self._observe(
                cat.QUEUE_PREFETCH.name, self._prefetch, (queue, task.priority),
                (OTHER_QUEUE, task.priority), bounds, max(0.0, started - ready),
            )  # fmt: skip

    def _skew(self, event: dict[str, Any], task: _Task, now: float) -> float:
        """Worker offset minus producer offset: what clock skew added to a wait measured as
        worker stamp minus producer stamp. 0 unless both offsets are known (one side alone
        would skew the wait of a producer sharing the worker's clock), and 0 within
        SKEW_DEAD_BAND_SECONDS: on a busy exporter event transit reaches seconds, so a new
        host's first estimates read that much low, while synced clocks differ by milliseconds;
        correcting by such noise turned sub-second waits negative."""
        if task.producer is None:
            return 0.0
        producer = self.clocks.offset(task.producer, now)
        if producer is None:
            return 0.0
        worker = self.clocks.offset(self._host(event.get("hostname")), now)
        if worker is None:
            return 0.0
        skew = worker - producer
        return skew if abs(skew) >= SKEW_DEAD_BAND_SECONDS else 0.0

    def _clamp(self, wait: float) -> float:
        if wait < 0:
            self.clock_skew_clamped += 1
            return 0.0
        if wait > self.settings.max_wait_seconds:
            self.clock_skew_clamped += 1
            return self.settings.max_wait_seconds
        return wait

    def _on_succeeded(self, event: dict[str, Any], now: float) -> None:
        if self._duplicate_end(event.get("uuid")):
            return
        _task, queue, name = self._known(event)
        self._inc("succeeded", queue, name)
        runtime = _number(event.get("runtime"))
        if runtime is not None:
            self._observe(
                cat.TASK_RUNTIME.name, self._runtime, (queue, name), _OTHER_PAIR,
                self.runtime_bounds, max(0.0, runtime),
            )  # fmt: skip
        self._end(event.get("uuid"))

    def _on_failed(self, event: dict[str, Any], now: float) -> None:
        if self._duplicate_end(event.get("uuid")):
            return
        _task, queue, name = self._known(event)
        limit = time_limit_kind(event.get("exception"), event.get("traceback"))
        if limit is None:
            exception = self.exception_label(event.get("exception"), event.get("traceback"))
            key = self._admit(
                cat.TASK_FAILED.name, self._failures, (queue, name, exception),
                (OTHER_QUEUE, OTHER_TASK, OTHER_TASK),
            )  # fmt: skip
            self._failures[key] = self._failures.get(key, 0) + 1
            # Not exported (the failures carry the exception): at most one per failure series.
            counted = ("failed", key[0], key[1])
            self._counts[counted] = self._counts.get(counted, 0) + 1
        else:
            key = (queue, name, limit)
            if key not in self._zero_limits:  # a series started at 0 holds its budget already
                key = self._admit(
                    cat.TASK_TIME_LIMIT.name, self._time_limits, key,
                    (OTHER_QUEUE, OTHER_TASK, limit),
                )  # fmt: skip
            self._time_limits[key] = self._time_limits.get(key, 0) + 1
        self._known_pair(key[0], key[1])
        self._end(event.get("uuid"))

    def _on_finished_kind(self, kind: str) -> Callable[[dict[str, Any], float], None]:
        def handler(event: dict[str, Any], now: float) -> None:
            if kind != "retried" and self._duplicate_end(event.get("uuid")):
                return
            task, queue, name = self._known(event)
            self._inc(kind, queue, name)
            # A retried task comes back as a new message (new sent/received events). Those of
            # the new delivery may arrive first (the install(app) event and task-sent are not
            # batched like the worker's task events): keep the record they started.
            if kind == "retried":
                if task is None or not task.end_run():
                    self._forget(event.get("uuid"))
                return
            # Revoked or rejected: this run ends, a later one already announced or started
            # (a retry it published first, or prefork's reordering) keeps the record.
            if task is not None and task.end_to_pending():
                return
            self._end(event.get("uuid"))

        return handler

    def _duplicate_end(self, uuid: Any) -> bool:
        """True when this delivery of the task already ended; else remember that it has."""
        if not isinstance(uuid, str):
            return False
        return not _first_time(self._finished, uuid)

    def _end(self, uuid: Any) -> None:
        """The last run ended. Prefork may report it before the retry of an earlier run that
        also started: then the record stays for that task-retried, which drops it."""
        task = self._tasks.get(uuid) if isinstance(uuid, str) else None
        if task is not None and task.open_starts > 1:
            task.open_starts -= 1
            return
        self._forget(uuid)

    def _forget(self, uuid: Any) -> None:
        if isinstance(uuid, str):
            task = self._tasks.pop(uuid, None)
            if task is not None:
                self._not_waiting(task)

    def _evict(self, now: float) -> None:
        tasks = self._tasks
        excess = len(tasks) - self.settings.max_tracked_tasks
        for _ in range(max(0, excess)):
            self._not_waiting(tasks.popitem(last=False)[1])
        oldest = now - self.settings.max_task_age_seconds
        while tasks:
            first = next(iter(tasks.values()))
            if first.touched >= oldest:
                break
            self._not_waiting(tasks.popitem(last=False)[1])

    # --- tasks published and not yet received (per-level depth, waiting_levels) ---------------

    def _published_at_level(
        self, task: _Task, event: dict[str, Any], queue: str | None, uuid: str, now: float
    ) -> None:
        """task-sent with the priority install(app) adds: the message waits at that level of
        ``queue`` until a worker is seen receiving it. Not counted: a run already seen
        received (its task-sent came late), a queue without a label of its own, a task-sent
        without the field (a producer without install(app): its level is unknown) or with a
        priority no level holds. One publish per record: a second one replaces the first."""
        if SENT_PRIORITY_FIELD not in event or queue in (None, OTHER_QUEUE, UNKNOWN_QUEUE):
            return
        run = _run(event.get("retries")) or 0
        if run <= task.received_run:
            return
        try:
            level = self.priority_level(event[SENT_PRIORITY_FIELD], None)
        except (TypeError, ValueError, ArithmeticError):
            return  # this count only: the task-sent itself still counts
        self._not_waiting(task)
        task.waiting = (queue, level, run, uuid)  # type: ignore[assignment]
        levels = self._waiting.setdefault(queue, {})  # type: ignore[arg-type]
        levels[level] = levels.get(level, 0) + 1
        self._waiting_since.setdefault(queue, OrderedDict())[uuid] = now  # type: ignore[index]

    def _received_run(self, task: _Task, retries: Any) -> None:
        """A worker received this run (task-received or install(app)'s task-info): its
        message left the queue."""
        run = _run(retries) or 0
        task.received_run = max(task.received_run, run)
        if task.waiting is not None and task.waiting[2] <= run:
            self._not_waiting(task)

    def _not_waiting(self, task: _Task) -> None:
        """The record's counted publish is no longer waiting (received, or the record is
        dropped: then the message, if still queued, is the broker total's unknown part)."""
        if task.waiting is None:
            return
        queue, level, _run_, uuid = task.waiting
        task.waiting = None
        since = self._waiting_since.get(queue)
        if since is not None:
            since.pop(uuid, None)
            if not since:
                del self._waiting_since[queue]
        levels = self._waiting.get(queue)
        if levels is None or level not in levels:
            return
        levels[level] -= 1
        if levels[level] <= 0:
            del levels[level]
            if not levels:
                del self._waiting[queue]

    # --- kept across restarts (events/state.py) ---------------------------------------------

    def worker_state(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """(workers_version, {hostname: entry}) for the state file: see WorkerBook.state."""
        with self.lock:
            return self.workers.state(self.clock())

    def restore_workers(self, entries: Any, saved_at: float | None = None) -> int:
        """Take back the workers of a state file (before any event arrives); returns how many
        entries were unreadable (skipped). Entries past the retention, or offline past the
        grace period, are not restored. A worker already silent past the heartbeat timeout at
        ``saved_at`` (the file's save time) is down at once (lost), as it was before the
        restart. One that was up at save time may have stopped gracefully while the exporter
        was down (its worker-offline unheard): it is restored unconfirmed, reads as offline
        once silent past the timeout, and is dropped if not heard within heartbeat_timeout +
        worker_offline_grace_seconds of the restart, never exported as lost. Without
        ``saved_at`` every silent worker is lost."""
        if not isinstance(entries, dict):
            return 1
        with self.lock:  # queue_label() hands out label slots
            return self.workers.restore(entries, self.clock(), saved_at)

    # --- output -----------------------------------------------------------------------------

    def snapshot(self) -> EventSnapshot:
        """Copy the metrics, expiring workers past their retention."""
        now = self.clock()
        with self.lock:
            self._evict(now)
            workers, queue_workers, queue_slots, queues_unknown = self.workers.readings(now)
            return EventSnapshot(
                task_counts=dict(self._counts),
                failures=dict(self._failures),
                time_limits=dict(self._time_limits),
                runtime={k: (h.cumulative(), h.sum) for k, h in self._runtime.items()},
                task_wait={k: (h.cumulative(), h.sum) for k, h in self._task_wait.items()},
                queue_wait={k: (h.cumulative(), h.sum) for k, h in self._queue_wait.items()},
                end_to_end={k: (h.cumulative(), h.sum) for k, h in self._end_to_end.items()},
                prefetch={k: (h.cumulative(), h.sum) for k, h in self._prefetch.items()},
                workers=workers,
                queue_workers=queue_workers,
                queue_slots=queue_slots,
                events_received=self.events_received,
                malformed=self.malformed,
                clock_skew_clamped=self.clock_skew_clamped,
                clock_offsets=self.clocks.offsets(now),
                interruptions=dict(self.interruptions),
                consumer_up=self.consumer_up,
                tracked_tasks=len(self._tasks),
                queues_unknown=queues_unknown,
                received_by_priority=dict(self._by_priority),
                series_dropped=dict(self.series_dropped),
                zero_counts=frozenset(self._zero_counts),
                zero_limits=frozenset(self._zero_limits),
            )

    def levels_in_use(self) -> dict[str, set[str]]:
        """{queue label: priority level labels} of the tasks workers received since the
        exporter started (task-info events of install(app)); bounded by max_queue_names and
        the broker's levels. Queues '(other)' and '(unknown)' are left out."""
        with self.lock:
            return {queue: set(levels) for queue, levels in self._levels.items()}

    def clock_offset(self, host: str | None) -> float | None:
        """``host``'s clock offset (host clock - exporter clock) if known: what the queue
        collector corrects a head message's age with (its producer's host)."""
        with self.lock:
            return self.clocks.offset(host, self.clock())

    def waiting_levels(
        self, empty_before: Mapping[str, float] | None = None
    ) -> dict[str, dict[str, int]]:
        """{queue label: {level label: tasks seen published at that level and not yet seen
        received}} since the exporter started (only non-zero levels). Bounded by the task
        records (max_tracked_tasks, max_task_age_seconds: a dropped record's message leaves
        the count), max_queue_names and the broker's levels. Not kept across restarts: the
        messages move while the exporter is down (docs/rabbitmq.md).

        ``empty_before``: {queue: time} for queues the broker read empty, statistics at most
        that old. A publish seen before then has left the queue, received or not (a purge,
        an expired message, a lost task-received): its count goes, so no level keeps a
        message that is gone until the record expires."""
        with self.lock:
            for queue, before in (empty_before or {}).items():
                since = self._waiting_since.get(queue)
                while since:
                    uuid, seen = next(iter(since.items()))
                    if seen >= before:
                        break
                    task = self._tasks.get(uuid)
                    if task is not None and task.waiting is not None:
                        self._not_waiting(task)  # pops ``uuid`` from ``since``
                    else:
                        since.popitem(last=False)
                if since is not None and not since:
                    self._waiting_since.pop(queue, None)
            return {queue: dict(levels) for queue, levels in self._waiting.items()}

    def levels_last_seen(self) -> dict[str, dict[str, float]]:
        """{queue label: {level label: Unix time a task was last received at it}}: the levels
        of levels_in_use() with when they were last used, so the urgency marks can forget a
        level not used for urgency_memory_seconds."""
        with self.lock:
            return {queue: dict(levels) for queue, levels in self._levels.items()}


def _first_time(memory: OrderedDict[Any, None], key: Any) -> bool:
    """Remember ``key`` in ``memory``, which keeps the last FINISHED_MEMORY keys; True when it
    was not there yet."""
    if key in memory:
        return False
    memory[key] = None
    if len(memory) > FINISHED_MEMORY:
        memory.popitem(last=False)
    return True


def _observe(
    histograms: dict[Any, Histogram], key: Any, bounds: Sequence[float], value: float
) -> None:
    histogram = histograms.get(key)
    if histogram is None:
        histogram = histograms[key] = Histogram(len(bounds))
    histogram.observe(bounds, value)


def _known_level(level: Any) -> bool:
    """A priority level label the broker serves (not None, empty or '(unknown)')."""
    return isinstance(level, str) and bool(level) and level != UNKNOWN_TASK


def _run(value: Any) -> int | None:
    """The ``retries`` field of an event (which delivery of the task it is about)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _iso_epoch(value: Any) -> float | None:
    """Epoch seconds of task-received's ``eta`` (ISO 8601, time-zone aware as Celery sends it;
    a naive one is taken as UTC), None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _number(moment.timestamp())


def _routing_queue(routing_key: Any) -> Any:
    """The queue a task-sent event's routing key names. A countdown/ETA task under Celery's
    native delayed delivery is sent with no queue and the delay's 28 binary digits before the
    original key ("0.0.....1.celery"): the app queue is the key without them, not one new label
    value per countdown."""
    return strip_delay_prefix(routing_key) if isinstance(routing_key, str) else routing_key
