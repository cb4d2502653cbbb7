"""Prometheus collector for the Celery event metrics of every configured broker."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from .. import catalogue as cat
from ..brokers.base import EventConsumer
from ..config.model import BrokerConfig, EventSettings
from ..families import add_known
from ..families import counter as _counter
from ..families import gauge as _gauge
from ..families import histogram as _histogram
from .budget import SeriesBudget
from .state import StateFile
from .tracker import TASK_COUNTER_KINDS, EventSnapshot, EventTracker

log = logging.getLogger(__name__)

_TASK_COUNTERS = dict(
    zip(
        TASK_COUNTER_KINDS,
        (
            cat.TASK_SENT,
            cat.TASK_RECEIVED,
            cat.TASK_STARTED,
            cat.TASK_SUCCEEDED,
            cat.TASK_FAILED,
            cat.TASK_RETRIED,
            cat.TASK_REJECTED,
            cat.TASK_REVOKED,
        ),
        strict=True,
    )
)


class EventCollector(Collector):
    """Owns one tracker and one consumer thread per broker; exposes their metrics."""

    def __init__(
        self,
        brokers: Sequence[BrokerConfig],
        settings: EventSettings,
        consumers: bool = True,
    ) -> None:
        self.trackers: list[EventTracker] = []
        self.consumers: list[EventConsumer] = []
        #: One series budget for the task metrics of every broker (events/budget.py).
        self.budget = SeriesBudget(settings.max_series_per_family, settings.max_event_samples)
        for broker in brokers:
            transport = broker.transport
            tracker = EventTracker(
                broker.name,
                settings,
                priority_level=transport.priority_levels(broker),
                budget=self.budget,
            )
            self.trackers.append(tracker)
            if consumers:
                self.consumers.append(transport.event_consumer(broker, tracker))
        #: The known workers kept across restarts (events.state_file), read before any event.
        self.state: StateFile | None = None
        if settings.state_file:
            self.state = StateFile(
                settings.state_file, self.trackers, max_bytes=settings.state_file_max_bytes
            )
            self.state.load()

    def start(self) -> None:
        for consumer in self.consumers:
            consumer.start()
        if self.state is not None:
            self.state.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the consumers (waiting at most ``timeout`` in all: one stuck connecting to a
        hung broker is a daemon thread, left behind), then write the state file."""
        deadline = time.monotonic() + timeout
        for consumer in self.consumers:
            consumer.stopping_soon()
        for consumer in self.consumers:
            try:
                consumer.stop(max(0.0, deadline - time.monotonic()))
            except Exception:  # stopping a consumer of a dead broker may fail
                log.debug("stopping an event consumer failed", exc_info=True)
        if self.state is not None:  # after the consumers: the last events are in it
            self.state.close()
            self.state = None  # closed once, even when close() is called again

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snapshots = [(tracker.broker, tracker, tracker.snapshot()) for tracker in self.trackers]
        yield from families(snapshots)


def _add_histogram(
    family: Metric,
    labels: dict[str, str],
    bounds: Sequence[float],
    cumulative: list[int],
    total: float,
) -> None:
    """Histogram samples with an arbitrary label set (some queue-wait series have no
    priority label, which HistogramMetricFamily.add_metric cannot express)."""
    name = family.name
    for bound, count in zip(list(bounds) + [float("inf")], cumulative, strict=True):
        le = "+Inf" if bound == float("inf") else _le(bound)
        family.samples.append(Sample(f"{name}_bucket", {**labels, "le": le}, float(count)))
    family.samples.append(Sample(f"{name}_count", dict(labels), float(cumulative[-1])))
    family.samples.append(Sample(f"{name}_sum", dict(labels), float(total)))


def _le(bound: float) -> str:
    from prometheus_client.utils import floatToGoString

    return floatToGoString(bound)


def families(snapshots: list[tuple[str, EventTracker, EventSnapshot]]) -> Iterator[Metric]:
    counters = {kind: _counter(spec) for kind, spec in _TASK_COUNTERS.items()}
    failures = _counter(cat.TASK_FAILED)
    counters["failed"] = failures  # with the exception label, from snap.failures
    time_limits = _counter(cat.TASK_TIME_LIMIT)
    runtime = _histogram(cat.TASK_RUNTIME)
    task_wait = _histogram(cat.TASK_QUEUE_WAIT)
    queue_wait = _histogram(cat.QUEUE_WAIT)
    end_to_end = _histogram(cat.TASK_END_TO_END)
    prefetch = _histogram(cat.QUEUE_PREFETCH)
    worker_up = _gauge(cat.WORKER_UP)
    worker_offline = _gauge(cat.WORKER_OFFLINE)
    queues_unknown = _gauge(cat.WORKERS_QUEUES_UNKNOWN)
    by_priority = _counter(cat.TASK_RECEIVED_BY_PRIORITY)
    worker_active = _gauge(cat.WORKER_ACTIVE_TASKS)
    worker_processed = _counter(cat.WORKER_PROCESSED)
    worker_load = _gauge(cat.WORKER_LOAD)
    worker_heard = _gauge(cat.WORKER_LAST_HEARTBEAT)
    worker_pool = _gauge(cat.WORKER_POOL_SIZE)
    worker_prefetch = _gauge(cat.WORKER_PREFETCH_MULTIPLIER)
    queue_workers = _gauge(cat.QUEUE_WORKERS)
    queue_slots = _gauge(cat.QUEUE_WORKER_SLOTS)
    queue_busy = _gauge(cat.QUEUE_WORKER_BUSY_SLOTS)
    consumer_up = _gauge(cat.EVENT_CONSUMER_UP)
    received = _counter(cat.EVENTS_RECEIVED)
    malformed = _counter(cat.EVENTS_MALFORMED)
    interruptions = _counter(cat.EVENT_STREAM_INTERRUPTIONS)
    skew = _counter(cat.EVENT_CLOCK_SKEW)
    clock_offset = _gauge(cat.HOST_CLOCK_OFFSET)
    tracked = _gauge(cat.EVENT_TRACKED_TASKS)
    dropped = _counter(cat.EVENT_SERIES_DROPPED)

    for broker, tracker, snap in snapshots:
        # The tracker starts a seen task's outcome series at 0 (EventTracker._known_pair).
        for (kind, queue, task), value in sorted(snap.counts_with_zeros().items()):
            if kind != "failed":
                counters[kind].add_metric([broker, queue, task], value)
        for (queue, task, priority), value in sorted(snap.received_by_priority.items()):
            by_priority.add_metric([broker, queue, task, priority], value)
        for (queue, task, exception), value in sorted(snap.failures.items()):
            failures.add_metric([broker, queue, task, exception], value)
        for (queue, task, limit), value in sorted(snap.limits_with_zeros().items()):
            time_limits.add_metric([broker, queue, task, limit], value)
        for (queue, task), (buckets, total) in sorted(snap.runtime.items()):
            labels = {"broker": broker, "queue": queue, "task": task}
            _add_histogram(runtime, labels, tracker.runtime_bounds, buckets, total)
        for (queue, task), (buckets, total) in sorted(snap.task_wait.items()):
            labels = {"broker": broker, "queue": queue, "task": task}
            _add_histogram(task_wait, labels, tracker.wait_bounds, buckets, total)
        for (queue, task), (buckets, total) in sorted(snap.end_to_end.items()):
            labels = {"broker": broker, "queue": queue, "task": task}
            _add_histogram(end_to_end, labels, tracker.wait_bounds, buckets, total)
        for family, series in ((queue_wait, snap.queue_wait), (prefetch, snap.prefetch)):
            for (queue, priority), (buckets, total) in sorted(
                series.items(), key=lambda item: (item[0][0], item[0][1] or "")
            ):
                labels = {"broker": broker, "queue": queue}
                if priority is not None:
                    labels["priority"] = priority
                _add_histogram(family, labels, tracker.wait_bounds, buckets, total)
        for worker in sorted(snap.workers, key=lambda w: w.worker):
            labels = [broker, worker.worker]
            worker_up.add_metric(labels, 1.0 if worker.up else 0.0)
            worker_offline.add_metric(labels, 1.0 if worker.offline else 0.0)
            worker_heard.add_metric(labels, worker.last_heard)
            if not worker.up:
                continue  # a dead worker's last load and activity would mislead
            add_known(
                labels,
                (worker_active, worker.active),
                (worker_processed, worker.processed),
                (worker_load, worker.load1),
                (worker_prefetch, worker.prefetch_multiplier),
            )
            if worker.pool_size is not None:
                worker_pool.add_metric(labels + [worker.pool or ""], worker.pool_size)
        queues_unknown.add_metric([broker], snap.queues_unknown)
        for queue, count in sorted(snap.queue_workers.items()):
            queue_workers.add_metric([broker, queue], count)
        for queue, (slots, busy) in sorted(snap.queue_slots.items()):
            queue_slots.add_metric([broker, queue], slots)
            queue_busy.add_metric([broker, queue], busy)
        consumer_up.add_metric([broker], 1.0 if snap.consumer_up else 0.0)
        received.add_metric([broker], snap.events_received)
        malformed.add_metric([broker], snap.malformed)
        for reason in ("disconnected", "overflow"):
            interruptions.add_metric([broker, reason], snap.interruptions.get(reason, 0))
        skew.add_metric([broker], snap.clock_skew_clamped)
        for host, offset in sorted(snap.clock_offsets.items()):
            clock_offset.add_metric([broker, host], offset)
        tracked.add_metric([broker], snap.tracked_tasks)
        for metric, count in sorted(snap.series_dropped.items()):
            dropped.add_metric([broker, metric], count)

    yield from counters.values()
    yield from (
        by_priority,
        time_limits,
        runtime,
        task_wait,
        queue_wait,
        end_to_end,
        prefetch,
        worker_up,
        worker_offline,
        worker_active,
        worker_processed,
        worker_load,
        worker_heard,
        worker_pool,
        worker_prefetch,
        queue_workers,
        queues_unknown,
        queue_slots,
        queue_busy,
        consumer_up,
        received,
        malformed,
        interruptions,
        skew,
        clock_offset,
        tracked,
        dropped,
    )
