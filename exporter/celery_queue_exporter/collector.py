"""The Prometheus collector: inspects every broker at scrape time, concurrently.

Each broker gets its own worker thread and the whole scrape waits at most the per-broker
timeout, so a broker that hangs or is down costs one timeout, not one per broker, and never
hides the others' metrics: it shows up as ``celery_broker_up 0``. Calls to one broker are
serialised (overlapping scrapes wait for each other, at most the timeout).
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import celery
import kombu
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from . import __version__
from . import catalogue as cat
from .brokers import Inspector
from .config.urls import redact_url
from .families import add_known, counter, flag, gauge
from .snapshot import BrokerSnapshot

log = logging.getLogger(__name__)


@dataclass
class BrokerResult:
    """Outcome of one broker's inspection in one scrape."""

    name: str
    snapshot: BrokerSnapshot | None
    duration_seconds: float
    error: str | None = None


@dataclass
class _BrokerState:
    """Per broker: its own inspection thread (a slow broker never queues the others behind
    it, and calls to one inspector are serialised) and its counters."""

    inspector: Inspector
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspect")
    )
    errors_total: int = 0
    malformed_total: int = 0


class QueueCollector(Collector):
    """Collects queue metrics from all configured brokers."""

    def __init__(self, inspectors: Iterable[Inspector], timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._brokers = [_BrokerState(inspector) for inspector in inspectors]
        #: Outcome of the latest scrape, per broker (``--once`` reads it for its exit code).
        self.last_results: list[BrokerResult] = []
        self._counters_lock = threading.Lock()  # scrapes can run concurrently

    def describe(self) -> list[Metric]:
        return []  # families depend on the brokers; don't inspect at registration time

    # --- inspection -------------------------------------------------------------------------

    def _inspect_one(self, state: _BrokerState) -> BrokerResult:
        name = state.inspector.config.name
        started = time.perf_counter()
        try:
            snapshot = state.inspector.inspect()
            return BrokerResult(name, snapshot, time.perf_counter() - started)
        except Exception as exc:  # any broker failure must become a metric, not a crash
            return BrokerResult(name, None, time.perf_counter() - started, _describe(exc))

    def inspect_all(self) -> list[BrokerResult]:
        """Inspect every broker at once; wait at most the per-broker timeout."""
        started = time.perf_counter()
        futures: list[Future[BrokerResult]] = [
            state.pool.submit(self._inspect_one, state) for state in self._brokers
        ]
        results: list[BrokerResult] = []
        for state, future in zip(self._brokers, futures, strict=True):
            remaining = max(0.0, self.timeout_seconds - (time.perf_counter() - started))
            try:
                result = future.result(timeout=remaining)
            except FutureTimeout:
                result = BrokerResult(
                    state.inspector.config.name,
                    None,
                    time.perf_counter() - started,
                    f"timed out after {self.timeout_seconds:g}s",
                )
            if result.error is not None:
                log.warning("broker %s: inspection failed: %s", result.name, result.error)
            with self._counters_lock:
                if result.error is not None:
                    state.errors_total += 1
                elif result.snapshot is not None:
                    state.malformed_total += result.snapshot.malformed_messages
            results.append(result)
        return results

    # --- exposition -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        results = self.last_results = self.inspect_all()
        yield from self.families(results)

    def families(self, results: list[BrokerResult]) -> Iterator[Metric]:
        messages = gauge(cat.QUEUE_MESSAGES)
        ages = gauge(cat.QUEUE_OLDEST_MESSAGE_AGE)
        urgency = gauge(cat.QUEUE_PRIORITY_URGENCY)
        reserved = gauge(cat.QUEUE_RESERVED_MESSAGES)
        consumers = gauge(cat.QUEUE_CONSUMERS)
        utilisation = gauge(cat.QUEUE_CONSUMER_UTILISATION)
        max_priority = gauge(cat.QUEUE_MAX_PRIORITY)
        missing = gauge(cat.QUEUE_MISSING)
        unreadable = gauge(cat.QUEUE_UNREADABLE)
        reserved_total = gauge(cat.BROKER_RESERVED_MESSAGES)
        reserved_oldest = gauge(cat.BROKER_RESERVED_OLDEST_AGE)
        reserved_overdue = gauge(cat.BROKER_RESERVED_OVERDUE)
        visibility = gauge(cat.BROKER_VISIBILITY_TIMEOUT)
        up = gauge(cat.BROKER_UP)
        management_up = gauge(cat.RABBITMQ_MANAGEMENT_UP)
        duration = gauge(cat.SCRAPE_DURATION)
        errors = counter(cat.SCRAPE_ERRORS)
        malformed = counter(cat.MALFORMED_MESSAGES)
        over_limit = gauge(cat.QUEUES_OVER_LIMIT)
        unreadable_keys = gauge(cat.UNREADABLE_KEYS)
        info = InfoMetricFamily(
            cat.BROKER_INFO.family_name, cat.BROKER_INFO.help, labels=["broker"]
        )

        for state, result in zip(self._brokers, results, strict=True):
            broker = result.name
            config = state.inspector.config
            info.add_metric([broker], {"transport": config.transport, "url": config.safe_url})
            up.add_metric([broker], 0.0 if result.snapshot is None else 1.0)
            duration.add_metric([broker], result.duration_seconds)
            errors.add_metric([broker], state.errors_total)
            malformed.add_metric([broker], state.malformed_total)
            snap = result.snapshot
            if snap is None:
                continue
            for level in snap.levels:
                # One labels dict per level, shared by its depth and age samples (rendered once).
                if level.priority is None:  # no per-level data: no priority label
                    labels = {"broker": broker, "queue": level.queue}
                else:
                    labels = {"broker": broker, "queue": level.queue, "priority": level.priority}
                messages.samples.append(Sample(messages.name, labels, level.messages))
                if level.oldest_age_seconds is not None:
                    ages.samples.append(Sample(ages.name, labels, level.oldest_age_seconds))
            for rank in snap.urgency:
                urgency.add_metric([broker, rank.queue, rank.priority, rank.urgency], rank.rank)
            for queue in snap.queues.values():
                add_known(
                    [broker, queue.queue],
                    (reserved, queue.reserved),
                    (consumers, queue.consumers),
                    (utilisation, queue.consumer_utilisation),
                    (max_priority, queue.max_priority),
                    (missing, flag(queue.missing)),
                    (unreadable, flag(queue.unreadable)),
                )
            add_known(
                [broker],
                (reserved_total, snap.reserved_total),
                (reserved_oldest, snap.reserved_oldest_age_seconds),
                (reserved_overdue, snap.reserved_overdue),
                (visibility, snap.visibility_timeout_seconds),
                (over_limit, snap.queues_over_limit),
                (unreadable_keys, snap.unreadable_keys),
                (management_up, flag(snap.management_api_up)),
            )

        build = InfoMetricFamily(cat.BUILD_INFO.family_name, cat.BUILD_INFO.help)
        build.add_metric(
            [],
            {
                "version": __version__,
                "python_version": platform.python_version(),
                "celery_version": celery.__version__,
                "kombu_version": kombu.__version__,
            },
        )
        for family in (
            messages,
            ages,
            urgency,
            reserved,
            consumers,
            utilisation,
            max_priority,
            missing,
            unreadable,
            reserved_total,
            reserved_oldest,
            reserved_overdue,
            visibility,
            up,
            management_up,
            duration,
            errors,
            malformed,
            over_limit,
            unreadable_keys,
            info,
            build,
        ):
            if family.samples:
                yield family

    def close(self) -> None:
        for state in self._brokers:
            state.pool.shutdown(wait=False, cancel_futures=True)
            try:
                state.inspector.close()
            except Exception:  # closing a dead connection may fail; nothing to do about it
                log.debug("closing %s failed", state.inspector.config.name, exc_info=True)


def _describe(exc: BaseException) -> str:
    """An error message for logs: type and text, without URLs that may carry passwords."""
    text = str(exc)
    for word in text.split():
        if "://" in word and "@" in word:
            text = text.replace(word, redact_url(word.strip("'\"(),")))
    return f"{type(exc).__name__}: {text}"
