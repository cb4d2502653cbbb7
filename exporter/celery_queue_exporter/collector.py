"""The Prometheus collector: inspects every broker at scrape time, concurrently, one inspection
per broker at a time however many scrapes arrive.

Design: on demand, with a single flight per broker (not a background loop). A scrape starts
an inspection of a broker only when none is running and none finished after the scrape's
request arrived; otherwise it shares that one. So broker load is at most one inspection per
broker at a time whatever the number of scrapers, data is never older than the scrape that
asked for it (as with a dedicated inspection, minus at most one inspection's duration), and a
broker nobody scrapes is not read at all. A background loop would decouple the two but read
brokers on its own clock and serve results up to a whole interval old.

Each scrape waits for all brokers at once, until the earlier of ``--scrape-timeout`` and the
deadline from Prometheus' X-Prometheus-Scrape-Timeout-Seconds header (deadline.py). A broker
whose inspection is still running then is reported down for this scrape
(``celery_exporter_inspection_running_seconds`` says for how long it has been running), the
others are reported in full, and the next scrape joins the same inspection rather than queueing
a second one behind it. ``celery_broker_last_success_timestamp_seconds`` dates the last good
reading of each broker.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from operator import attrgetter

import celery
import kombu
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from . import catalogue as cat
from .brokers import Inspector
from .catalogue import MetricSpec
from .config.urls import redact_urls_in
from .deadline import ScrapeWindow, current_window
from .families import add_known, counter, flag, gauge
from .linefamily import (
    LevelLines,
    LineFamily,
    Lines,
    Prefixes,
    QueueColumn,
    SameLines,
    level_rows,
    urgency_line,
    urgency_rows,
)
from .pressure import pressure_families
from .snapshot import BrokerSnapshot
from .urgency import (
    DEFAULT_MEMORY_SECONDS,
    LevelsInUse,
    LevelsSource,
    UrgencyResolver,
    resolver_for,
)

log = logging.getLogger(__name__)


@dataclass
class BrokerResult:
    """Outcome of one broker's inspection as one scrape saw it."""

    name: str
    snapshot: BrokerSnapshot | None
    duration_seconds: float
    error: str | None = None
    #: Seconds the inspection had been running when the scrape stopped waiting (0: finished).
    running_seconds: float = 0.0


@dataclass
class _Inspection:
    """One run of a broker's inspector, shared by every scrape that arrives while it runs."""

    started: float  # monotonic
    future: Future[BrokerResult] = field(default_factory=Future)
    finished: float | None = None  # monotonic
    #: An error was already counted and logged for it (a scrape gave up waiting).
    counted: bool = False


@dataclass
class _BrokerState:
    """Per broker: its own inspection thread (a slow broker never queues the others behind
    it, and calls to one inspector are serialised), the inspection in flight and the last
    finished one, and its counters."""

    inspector: Inspector
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspect")
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: _Inspection | None = None
    last: _Inspection | None = None
    errors_total: int = 0
    malformed_total: int = 0
    #: Unix time the last successful inspection finished.
    last_success: float | None = None
    #: Most and least urgent level in use per queue, learnt over inspections.
    urgency: UrgencyResolver | None = None
    #: The broker's EventTracker.levels_last_seen (set when events are consumed).
    levels_in_use: LevelsSource | LevelsInUse | None = None
    #: A level not seen carrying messages for this long is forgotten (urgency_memory_seconds).
    urgency_memory_seconds: float = DEFAULT_MEMORY_SECONDS
    #: Rendered per-level lines, reused while a level's reading is unchanged (linefamily.py).
    level_lines: LevelLines | None = None
    #: Rendered urgency marks, reused while the resolver hands over the same readings.
    urgency_lines: SameLines | None = None
    #: Per-queue families' lines, reused where a queue's value is unchanged (by family name).
    columns: dict[str, QueueColumn] = field(default_factory=dict)

    def column(self, spec: MetricSpec, broker: str) -> QueueColumn:
        """The per-queue lines of ``spec`` for this broker (named ``broker``)."""
        column = self.columns.get(spec.family_name)
        if column is None or column.broker != broker:
            column = self.columns[spec.family_name] = QueueColumn(spec.family_name, broker)
        return column

    def __post_init__(self) -> None:
        if self.level_lines is None:
            self.level_lines = LevelLines(self.inspector.config.name)
        if self.urgency_lines is None:
            self.urgency_lines = SameLines(urgency_line(self.inspector.config.name))
        if self.urgency is None:
            self.urgency = resolver_for(self.inspector.config, self.urgency_memory_seconds)

    def resolve_urgency(self, snapshot: BrokerSnapshot) -> None:
        """Most/least urgent levels from what this and earlier inspections (and the event
        stream) saw. A failing event source costs only what it would have added; a failure
        of the resolver itself the marks of this scrape, never the snapshot."""
        name = self.inspector.config.name
        source = self.levels_in_use
        in_use = None
        try:
            in_use = source() if callable(source) else source
        except Exception:  # noqa: BLE001 - the tracker's levels are an extra, not a must
            log.warning("broker %s: levels in use from events unavailable", name, exc_info=True)
        try:
            assert self.urgency is not None
            self.urgency.resolve(snapshot, in_use)
        except Exception:  # noqa: BLE001 - the queue readings must still be exported
            log.warning("broker %s: resolving urgent levels failed", name, exc_info=True)


class QueueCollector(Collector):
    """Collects queue metrics from all configured brokers."""

    def __init__(
        self,
        inspectors: Iterable[Inspector],
        timeout_seconds: float,
        urgency_memory_seconds: float = DEFAULT_MEMORY_SECONDS,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._brokers = [
            _BrokerState(inspector, urgency_memory_seconds=urgency_memory_seconds)
            for inspector in inspectors
        ]
        #: Outcome of the latest scrape, per broker (``--once`` reads it for its exit code).
        self.last_results: list[BrokerResult] = []
        self._families_lock = threading.Lock()
        #: Label text of the per-queue families, kept across scrapes (linefamily.py).
        self._prefixes = {
            spec.family_name: Prefixes(spec.family_name, spec.labels) for spec in _PER_QUEUE
        }
        #: Label text of the broker-specific (ExtraSample) families, by spec name.
        self._extra_prefixes: dict[str, Prefixes] = {}
        #: celery_queue_unbound's lines per broker name (pressure.py).
        self._unbound_columns: dict[str, QueueColumn] = {}

    def _extra_prefix(self, spec: MetricSpec) -> Prefixes:
        """The kept label text of a broker-specific family (a counter's lines end in _total)."""
        prefixes = self._extra_prefixes.get(spec.name)
        if prefixes is None:
            name = spec.family_name + ("_total" if spec.type == "counter" else "")
            prefixes = self._extra_prefixes[spec.name] = Prefixes(name, spec.labels)
        return prefixes

    def use_levels_in_use(self, broker: str, source: LevelsSource | LevelsInUse) -> None:
        """Learn urgent levels also from ``source`` (the broker's EventTracker.levels_in_use:
        queue -> level labels of tasks received), not only from non-empty levels."""
        for state in self._brokers:
            if state.inspector.config.name == broker:
                state.levels_in_use = source

    def use_level_estimates(
        self, broker: str, source: Callable[[], dict[str, dict[str, int]]]
    ) -> None:
        """Per-level depth from ``source`` (the broker's EventTracker.waiting_levels: tasks
        published per level and not yet received) for inspectors whose broker reports only a
        queue's total (RabbitMQ classic priority queues on 3.12.7+ / 4.x)."""
        for state in self._brokers:
            inspector = state.inspector
            if inspector.config.name == broker and hasattr(inspector, "waiting_levels"):
                inspector.waiting_levels = source

    def use_clock_offsets(self, broker: str, source: Callable[[str | None], float | None]) -> None:
        """Correct head ages by the producer's clock offset from ``source`` (the broker's
        EventTracker.clock_offset), for inspectors that read the producer's host."""
        for state in self._brokers:
            if state.inspector.config.name == broker and hasattr(state.inspector, "clock_offset"):
                state.inspector.clock_offset = source

    def describe(self) -> list[Metric]:
        return []  # families depend on the brokers; don't inspect at registration time

    # --- inspection -------------------------------------------------------------------------

    def _run(self, state: _BrokerState, inspection: _Inspection) -> None:
        """The inspection thread: inspect, record the outcome once, wake the scrapes."""
        name = state.inspector.config.name
        try:
            snapshot = state.inspector.inspect()
            state.resolve_urgency(snapshot)
            result = BrokerResult(name, snapshot, time.monotonic() - inspection.started)
        except Exception as exc:  # any broker failure must become a metric, not a crash
            result = BrokerResult(name, None, time.monotonic() - inspection.started, _describe(exc))
        with state.lock:
            inspection.finished = time.monotonic()
            state.running = None
            state.last = inspection
            if result.snapshot is not None:
                state.malformed_total += result.snapshot.malformed_messages
                state.last_success = time.time()
            elif not inspection.counted:
                state.errors_total += 1
                inspection.counted = True
        if result.error is not None:
            log.warning("broker %s: inspection failed: %s", name, result.error)
        inspection.future.set_result(result)

    def _inspection_for(self, state: _BrokerState, window: ScrapeWindow) -> _Inspection:
        """The inspection this scrape uses: one that finished after the request arrived, else
        the one in flight, else a new one."""
        with state.lock:
            last = state.last
            if last is not None and last.finished is not None and last.finished >= window.arrived:
                return last
            if state.running is None:
                state.running = _Inspection(started=time.monotonic())
                state.pool.submit(self._run, state, state.running)
            return state.running

    def _gave_up(self, state: _BrokerState, inspection: _Inspection) -> BrokerResult:
        """The scrape's deadline passed with the inspection still running: down for this
        scrape, one error and one log line per inspection (not per scrape)."""
        name = state.inspector.config.name
        running = time.monotonic() - inspection.started
        with state.lock:
            first = not inspection.counted and inspection.finished is None
            if first:
                inspection.counted = True
                state.errors_total += 1
        if first:
            log.warning(
                "broker %s: inspection still running after %.1fs, reported down until it ends",
                name,
                running,
            )
        return BrokerResult(
            name, None, running, f"still inspecting after {running:.1f}s", running_seconds=running
        )

    def inspect_all(self) -> list[BrokerResult]:
        """Every broker at once, sharing inspections in flight; wait until the window is due
        or ``timeout_seconds`` after the request arrived, whichever comes first."""
        window = current_window()
        due = window.arrived + self.timeout_seconds
        if window.due is not None:
            due = min(due, window.due)
        inspections = [self._inspection_for(state, window) for state in self._brokers]
        results: list[BrokerResult] = []
        for state, inspection in zip(self._brokers, inspections, strict=True):
            # An inspection gets timeout_seconds from its own start: a scrape that joins one
            # already overdue (a hung broker) does not wait for it all over again.
            until = min(due, inspection.started + self.timeout_seconds)
            try:
                result = inspection.future.result(timeout=max(0.0, until - time.monotonic()))
            except FutureTimeout:
                result = self._gave_up(state, inspection)
                window.gave_up = True
            results.append(result)
        return results

    # --- exposition -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        results = self.last_results = self.inspect_all()
        yield from self.families(results)

    def families(self, results: list[BrokerResult]) -> Iterator[Metric]:
        """The metric families of one scrape. Built under a lock: the rendered-line caches
        (linefamily.py) are shared by scrapes, and two may build at once (a scrape that gave
        up waiting for a shared render renders alone)."""
        with self._families_lock:
            built = list(self._families(results))
        yield from built

    def _families(self, results: list[BrokerResult]) -> Iterator[Metric]:
        message_lines: list[str] = []
        age_lines: list[str] = []
        unstamped_lines: list[str] = []
        per_broker_levels: list[tuple[str, list]] = []
        for prefixes in self._prefixes.values():
            prefixes.start()
        reserved, consumers, utilisation, max_priority, missing, unreadable = (
            Lines(self._prefixes[spec.family_name], spec) for spec in _PER_QUEUE
        )
        urgency_lines: list[str] = []
        per_broker_urgency: list[tuple[str, list]] = []
        reserved_total = gauge(cat.BROKER_RESERVED_MESSAGES)
        reserved_oldest = gauge(cat.BROKER_RESERVED_OLDEST_AGE)
        reserved_overdue = gauge(cat.BROKER_RESERVED_OVERDUE)
        visibility = gauge(cat.BROKER_VISIBILITY_TIMEOUT)
        up = gauge(cat.BROKER_UP)
        last_success = gauge(cat.BROKER_LAST_SUCCESS)
        running = gauge(cat.INSPECTION_RUNNING)
        management_up = gauge(cat.RABBITMQ_MANAGEMENT_UP)
        duration = gauge(cat.SCRAPE_DURATION)
        errors = counter(cat.SCRAPE_ERRORS)
        malformed = counter(cat.MALFORMED_MESSAGES)
        over_limit = gauge(cat.QUEUES_OVER_LIMIT)
        unreadable_keys = gauge(cat.UNREADABLE_KEYS)
        info = InfoMetricFamily(
            cat.BROKER_INFO.family_name, cat.BROKER_INFO.help, labels=["broker"]
        )

        # Broker-specific families (ExtraSample), by name: rendered as lines, the label text
        # and unchanged lines kept across scrapes (a RabbitMQ vhost's per-queue facts are
        # several samples per queue on every scrape).
        extra: dict[str, Lines] = {}
        for prefixes in self._extra_prefixes.values():
            prefixes.start()
        for state, result in zip(self._brokers, results, strict=True):
            broker = result.name
            config = state.inspector.config
            info.add_metric([broker], {"transport": config.transport.name, "url": config.safe_url})
            up.add_metric([broker], 0.0 if result.snapshot is None else 1.0)
            duration.add_metric([broker], result.duration_seconds)
            running.add_metric([broker], result.running_seconds)
            if state.last_success is not None:
                last_success.add_metric([broker], state.last_success)
            errors.add_metric([broker], state.errors_total)
            malformed.add_metric([broker], state.malformed_total)
            snap = result.snapshot
            if snap is None:
                continue
            assert state.level_lines is not None
            state.level_lines.render(snap.levels, message_lines, age_lines, unstamped_lines)
            per_broker_levels.append((broker, snap.levels))
            assert state.urgency_lines is not None
            urgency_lines.extend(state.urgency_lines.render(snap.urgency))
            per_broker_urgency.append((broker, snap.urgency))
            # Per-queue families a column at a time (linefamily.QueueColumn): a family that
            # reports nothing for this broker kind (all None) costs one count.
            readings = list(snap.queues.values())
            names = [queue.queue for queue in readings]
            for lines, attribute in (
                (reserved, "reserved"),
                (consumers, "consumers"),
                (utilisation, "consumer_utilisation"),
                (max_priority, "max_priority"),
                (missing, "missing"),
                (unreadable, "unreadable"),
            ):
                values = list(map(attrgetter(attribute), readings))
                if values.count(None) != len(values):
                    lines.add_column(state.column(lines.spec, broker), names, values)
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
            for sample in snap.extra:
                lines = extra.get(sample.spec.name)
                if lines is None:
                    lines = extra[sample.spec.name] = Lines(
                        self._extra_prefix(sample.spec), sample.spec
                    )
                lines.add((broker, *sample.labels), sample.value)

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
        messages = LineFamily(
            cat.QUEUE_MESSAGES,
            message_lines,
            lambda: level_rows(per_broker_levels, "messages"),
        )
        ages = LineFamily(
            cat.QUEUE_OLDEST_MESSAGE_AGE,
            age_lines,
            lambda: level_rows(per_broker_levels, "oldest_age_seconds"),
        )
        unstamped = LineFamily(
            cat.QUEUE_OLDEST_MESSAGE_UNSTAMPED,
            unstamped_lines,
            lambda: level_rows(per_broker_levels, "unstamped"),
        )
        for family in (
            messages,
            ages,
            unstamped,
            LineFamily(
                cat.QUEUE_PRIORITY_URGENCY, urgency_lines, lambda: urgency_rows(per_broker_urgency)
            ),
            reserved.family(),
            consumers.family(),
            utilisation.family(),
            max_priority.family(),
            missing.family(),
            unreadable.family(),
            reserved_total,
            reserved_oldest,
            reserved_overdue,
            visibility,
            up,
            last_success,
            management_up,
            duration,
            running,
            errors,
            malformed,
            over_limit,
            unreadable_keys,
            info,
            build,
            *(lines.family(lines.spec.type) for lines in extra.values()),
        ):
            if family.lines if isinstance(family, LineFamily) else family.samples:
                yield family
        yield from pressure_families(
            ((result.name, result.snapshot) for result in results if result.snapshot is not None),
            self._unbound_columns,
        )

    def close(self) -> None:
        for state in self._brokers:
            state.pool.shutdown(wait=False, cancel_futures=True)
            try:
                state.inspector.close()
            except Exception:  # closing a dead connection may fail; nothing to do about it
                log.debug("closing %s failed", state.inspector.config.name, exc_info=True)


#: Per-queue families, rendered as Lines (in this order in ``families``).
_PER_QUEUE = (
    cat.QUEUE_RESERVED_MESSAGES,
    cat.QUEUE_CONSUMERS,
    cat.QUEUE_CONSUMER_UTILISATION,
    cat.QUEUE_MAX_PRIORITY,
    cat.QUEUE_MISSING,
    cat.QUEUE_UNREADABLE,
)


def _describe(exc: BaseException) -> str:
    """An error message for logs: type and text, without URLs that may carry passwords."""
    return f"{type(exc).__name__}: {redact_urls_in(str(exc))}"
