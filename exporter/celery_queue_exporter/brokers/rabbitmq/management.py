"""The management HTTP API way into a RabbitMQ broker: ONE ``GET /api/queues/{vhost}?columns=...``
per scrape for all queues of the vhost (default ``http://<amqp host>:15672``,
``https://<host>:15671`` for ``amqps://``, the broker's credentials unless the URL carries its
own). It gives ready and unacknowledged messages, consumers, consumer utilisation,
``x-max-priority``, per-priority ready counts where the broker reports them (classic priority
queues up to 3.12.6: ``backing_queue_status.priority_lengths``; quorum queues on 4.x:
``messages_ready_high``/``messages_ready_normal`` or ``messages_by_priority``) and
``head_message_timestamp``; on RabbitMQ 4 also returned messages, redeliveries, the delivery
limit and the dead-letter set-up (quorum.py) and Celery's native delayed delivery queues as
scheduled messages (delayed.py). Read-only: one GET.

``head_message_timestamp`` is the producer's stamp and names no producer, so its clock offset
cannot correct it (as on Redis): the age is bounded by what this reader saw (headbounds.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import requests

from ... import catalogue as cat
from ...config.model import BrokerConfig
from ...config.urls import redact_url, without_credentials
from ...headbounds import HeadBounds
from ...snapshot import BrokerSnapshot, ExtraSample, LevelReading, NodeReading, select_queues
from ..celery_layout import is_internal_queue
from ..peer_deadline import Deadline
from . import quorum
from .delayed import delayed_level, scheduled_samples, statistics_pending, work_queues
from .errors import RabbitMQInspectionError, broker_where
from .http import deadline_session
from .level_estimate import UNKNOWN_LEVEL, reconcile
from .nodes import NodesReader
from .options import RabbitMQOptions
from .tls import http_session
from .url import AmqpTarget, default_management_url

log = logging.getLogger(__name__)

#: {queue: {level: tasks seen published there and not yet received}} from the event tracker,
#: given {queue: time} of the queues read empty (EventTracker.waiting_levels).
WaitingLevels = Callable[[Mapping[str, float]], dict[str, dict[str, int]]]

#: Columns asked of /api/queues/{vhost}; the broker leaves out those it does not know.
MANAGEMENT_COLUMNS = (
    "name",
    "type",
    "state",
    "arguments",
    "exclusive",
    "auto_delete",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "consumer_utilisation",
    "consumer_capacity",
    "head_message_timestamp",
    "backing_queue_status.priority_lengths",
    "messages_ready_high",
    "messages_ready_normal",
    "messages_by_priority",
    # RabbitMQ 4 (issue 23): returned messages, redeliveries, the delivery limit and its DLX.
    "messages_ready_returned",
    "message_stats.redeliver",
    "delivery_limit",
    "effective_policy_definition",
)

#: RabbitMQ refuses an x-max-priority above 255 (rabbit_priority_queue's limit).
MAX_PRIORITY_CAP = 255
#: Quorum queues on RabbitMQ 4.0-4.2 have two priority buckets; 'high' is served first.
QUORUM_LEVELS_MOST_URGENT_FIRST = ("high", "normal")
#: Queue types whose management entry never carries head_message_timestamp.
HEADLESS_QUEUE_TYPES = frozenset({"quorum", "stream"})
#: How much older than its reading a "seen empty" may be, for the upper bound on head ages
#: (headbounds.py): queue statistics are refreshed every collect_statistics_interval (5 s by
#: default), and the AMQP timestamp is whole seconds (1 s).
STATS_SLACK_SECONDS = 6.0
#: How long after a publish was seen an empty reading settles it (the per-level counts from
#: events; a purged or expired message leaves no receipt). Wider than STATS_SLACK_SECONDS: a
#: queue the first publish declared was seen to read 0 for longer than 6 s on a busy 4.0 node,
#: and settling too early costs the messages' levels (they read 'unknown' until received).
SETTLE_AFTER_SECONDS = 30.0


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a double, from a faulty API
        return None
    return number if math.isfinite(number) else None


def _label_text(value: Any) -> bool:
    """A string a label can carry: a lone surrogate (JSON can write "\\ud800") would make
    every scrape fail to encode."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _max_priority(value: Any) -> int | None:
    """x-max-priority as RabbitMQ can hold it (0..255); anything else from a faulty API is
    unknown, never a loop over millions of levels on every scrape."""
    number = _as_int(value)
    return number if number is not None and 0 <= number <= MAX_PRIORITY_CAP else None


def _numbered_levels(raw: Any) -> dict[int, int] | None:
    """Per-priority counts from ``{"0": 4, "1": 0, ...}`` or ``[4, 0, ...]`` (index = level)."""
    if isinstance(raw, dict) and raw:
        levels: dict[int, int] = {}
        for key, value in raw.items():
            try:
                level = int(str(key))
            except ValueError:
                return None
            count = _as_int(value)
            if count is None or level < 0:
                return None
            levels[level] = count
        return levels
    if isinstance(raw, list) and raw and all(_as_int(v) is not None for v in raw):
        return {level: int(count) for level, count in enumerate(raw)}
    return None


def _levels_source(queue: str, source: str) -> ExtraSample:
    """Where ``queue``'s per-level depth comes from (celery_queue_priority_levels_source_info)."""
    return ExtraSample(cat.QUEUE_PRIORITY_LEVELS_SOURCE, (queue, source), 1.0)


def queue_levels(entry: dict[str, Any]) -> tuple[list[tuple[str, int]], list[str]] | None:
    """The per-priority ready counts of one queue from a management API entry, and the levels
    most urgent first; None when the broker does not report them for this queue."""
    backing = entry.get("backing_queue_status")
    numbered = None
    if isinstance(backing, dict):
        numbered = _numbered_levels(backing.get("priority_lengths"))
    if numbered is None:
        numbered = _numbered_levels(entry.get("messages_by_priority"))
    if numbered is not None:
        ordered = sorted(numbered)
        return (
            [(str(level), numbered[level]) for level in ordered],
            [str(level) for level in reversed(ordered)],  # RabbitMQ serves the highest first
        )
    high = _as_int(entry.get("messages_ready_high"))
    normal = _as_int(entry.get("messages_ready_normal"))
    if high is not None and normal is not None:
        return [("high", high), ("normal", normal)], list(QUORUM_LEVELS_MOST_URGENT_FIRST)
    return None


class ManagementReader:
    """Reads one vhost's queues from the management API; remembers the queues it discovered
    (the AMQP way has no listing and watches those)."""

    def __init__(
        self,
        config: BrokerConfig[RabbitMQOptions],
        target: AmqpTarget,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.where = broker_where(config)
        self.vhost = target.vhost
        self.clock = clock
        url, auth = without_credentials(
            config.options.management_url or default_management_url(target)
        )
        self.url = url
        self.auth = auth or (target.user, target.password)
        # The broker's CA and client certificate; connections report their sockets to the
        # inspection's Deadline.
        self._session = deadline_session(http_session(config.tls))
        self._session.headers["User-Agent"] = "celery-queue-exporter"
        #: Queues the API listed at the last answer (exclusive and auto-delete ones left out).
        self.discovered: list[str] = []
        #: kombu's prefix of Celery's native delayed delivery queues ("" for none).
        self.delayed_prefix: str = config.options.delayed_delivery_prefix
        #: Listed queues whose statistics the API did not have at the last answer (a quorum
        #: queue's first seconds): the inspector reads them by a passive queue.declare.
        self.stats_pending: list[str] = []
        #: The same for Celery's delay queues (celery_scheduled_messages per band).
        self.scheduled_pending: list[str] = []
        #: /api/queues requests made (celery_rabbitmq_management_queue_reads_total).
        self.reads = 0
        #: EventTracker.waiting_levels when events are consumed (QueueCollector
        #: .use_level_estimates): per-level depth of classic priority queues without one.
        self.waiting_levels: WaitingLevels | None = None
        self._waiting: dict[str, dict[str, int]] | None = None
        #: snapshot_from_entries' cache of per-queue fact samples, for the scrape in progress.
        self._fact_samples: dict[str, list[ExtraSample]] | None = None
        #: Bounds on the stamped head ages from what this reader saw (producer clock skew:
        #: the API names no producer, so no offset can correct the stamp).
        self.head_bounds = HeadBounds(STATS_SLACK_SECONDS)
        self._bounded_queues: frozenset[str] = frozenset()

    def read_nodes(self, nodes: NodesReader, deadline: float) -> list[NodeReading] | None:
        """The cluster's nodes (/api/nodes), through this reader's session and credentials."""
        return nodes.read(self._session, self.url, self.auth, deadline)

    def read(self, deadline: float) -> BrokerSnapshot:
        return self.snapshot_from_entries(self.fetch_entries(deadline))

    def fetch_entries(self, deadline: float) -> list[Any]:
        """The vhost's /api/queues entries (one GET); raises RabbitMQInspectionError."""
        self.reads += 1
        url = f"{self.url}/api/queues/{quote(self.vhost, safe='')}"
        remaining = max(0.05, deadline - time.monotonic())
        api = redact_url(self.url)
        # requests' timeouts are per read: the Deadline bounds the whole request (a server
        # that sends one byte every half second would otherwise hold us for hours).
        try:
            with Deadline(remaining) as whole_call:
                reply = self._session.get(
                    url,
                    params={"columns": ",".join(MANAGEMENT_COLUMNS)},
                    auth=self.auth,
                    timeout=(remaining, remaining),
                )
        except requests.RequestException as exc:
            if whole_call.expired or isinstance(exc, requests.Timeout):
                raise RabbitMQInspectionError(
                    f"{self.where}: management API {api} did not answer within {remaining:.1f}s"
                ) from None
            reason = type(exc).__name__
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} unreachable ({reason})"
            ) from None
        finally:
            self._session.close()  # a new connection (and socket to watch) for every call
        if reply.status_code == 401:
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} refused the credentials of user "
                f"{self.auth[0]!r} (401: wrong password, or the user lacks the "
                "'monitoring' or 'management' tag)"
            )
        if reply.status_code == 404:
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} knows no vhost {self.vhost!r} (404)"
            )
        if reply.status_code != 200:
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} answered HTTP {reply.status_code}"
            )
        try:
            entries = reply.json()
        except ValueError:
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} did not answer JSON"
            ) from None
        if not isinstance(entries, list):
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} answered an unexpected document"
            )
        return entries

    def snapshot_from_entries(
        self, entries: list[Any], fact_samples: dict[str, list[ExtraSample]] | None = None
    ) -> BrokerSnapshot:
        """The snapshot of these /api/queues entries. ``fact_samples``: a cache of each queue's
        quorum.queue_samples (type, dead-lettering, redeliveries, delivery limit), valid while
        the queues' facts stay the same (the plugin path holds one per facts read)."""
        now = self.clock()
        self._fact_samples = fact_samples
        by_name = {
            str(entry["name"]): entry
            for entry in entries
            if isinstance(entry, dict) and _label_text(entry.get("name"))
        }
        # Exclusive and auto-delete queues come and go with a connection (Celery's rpc result
        # queues, reply queues): watching them would churn series. Listed queues still count.
        self.stats_pending = []
        self.discovered = sorted(
            name
            for name, entry in by_name.items()
            if not is_internal_queue(name)
            and delayed_level(name, self.delayed_prefix) is None
            and not entry.get("exclusive")
            and not entry.get("auto_delete")
        )
        queues, over_limit = select_queues(self.config, self.discovered)
        # Celery's native delayed delivery queues hold scheduled messages: never work queues.
        queues = work_queues(queues, self.delayed_prefix)
        snapshot = BrokerSnapshot(
            management_api_up=True, reserved_total=0, queues_over_limit=over_limit
        )
        snapshot.extra.extend(scheduled_samples(by_name, self.delayed_prefix))
        self.scheduled_pending = statistics_pending(by_name, self.delayed_prefix)
        # A queue read empty held none of the publishes seen well before its statistics were
        # taken (SETTLE_AFTER_SECONDS): purged, expired or received unseen, they go.
        empty_before = {
            queue: now - SETTLE_AFTER_SECONDS
            for queue in queues
            if _as_int((by_name.get(queue) or {}).get("messages_ready")) == 0
        }
        self._waiting = self._read_waiting(empty_before)
        for queue in queues:
            entry = by_name.get(queue)
            reading = snapshot.queue(queue)
            reading.missing = entry is None
            if entry is None:
                continue
            self._read_entry(snapshot, queue, entry, now)
            snapshot.reserved_total = (snapshot.reserved_total or 0) + (reading.reserved or 0)
        present = frozenset(q for q in queues if q in by_name)
        if present != self._bounded_queues:  # forget only when the watched queues change
            self.head_bounds.forget_except(present)
            self._bounded_queues = present
        return snapshot

    def _read_waiting(self, empty_before: Mapping[str, float]) -> dict[str, dict[str, int]] | None:
        """The event tracker's per-level counts, once per scrape; None without events. A
        failing tracker costs the estimates only (the queues get their totals)."""
        source = self.waiting_levels
        if source is None:
            return None
        try:
            return source(empty_before)
        except Exception:  # noqa: BLE001 - an extra, never the inspection
            log.warning("%s: per-level counts from events unavailable", self.where, exc_info=True)
            return None

    def _read_entry(
        self, snapshot: BrokerSnapshot, queue: str, entry: dict[str, Any], now: float
    ) -> None:
        reading = snapshot.queue(queue)
        cache = self._fact_samples
        samples = None if cache is None else cache.get(queue)
        if samples is None:
            samples = quorum.queue_samples(queue, entry)
            if cache is not None:
                cache[queue] = samples
        snapshot.extra.extend(samples)
        reading.reserved = _as_int(entry.get("messages_unacknowledged"))
        reading.consumers = _as_int(entry.get("consumers"))
        utilisation = _as_float(entry.get("consumer_utilisation"))
        if utilisation is None:
            utilisation = _as_float(entry.get("consumer_capacity"))
        reading.consumer_utilisation = utilisation
        arguments = entry.get("arguments")
        if isinstance(arguments, dict):
            reading.max_priority = _max_priority(arguments.get("x-max-priority"))
        head = _as_float(entry.get("head_message_timestamp"))
        head_age = max(0.0, now - head) if head is not None else None
        # Quorum and stream queues never report head_message_timestamp: its absence says
        # nothing about the producers' stamp there, so no unstamped series at all.
        head_known = entry.get("type") not in HEADLESS_QUEUE_TYPES

        levels = queue_levels(entry)
        if levels is None:
            # No per-level counts (RabbitMQ 3.12.7+ classic queues, or no priorities): the
            # levels are still known from x-max-priority, so the most/least urgent ones stay
            # selectable for the per-priority waits that events report.
            if reading.max_priority is not None and reading.max_priority > 0:
                levels_most_urgent_first = [str(p) for p in range(reading.max_priority, -1, -1)]
                snapshot.declare_levels(queue, levels_most_urgent_first)
            ready = _as_int(entry.get("messages_ready"))
            if ready is None:
                # Stats not in yet (queue just declared, or the node is busy): the inspector
                # reads it by AMQP.
                self.stats_pending.append(queue)
                return
            # A non-empty queue's head is the next message: stamped or not, as its timestamp says.
            unstamped = (head is None) if ready > 0 and head_known else None
            age = self.head_bounds.observe((queue, None), ready, head, head_age, now)
            prioritised = reading.max_priority is not None and reading.max_priority > 0
            if prioritised and entry.get("type", "classic") == "classic":
                if self._waiting is not None:
                    self._estimate_levels(snapshot, queue, ready, age, unstamped)
                    return
                snapshot.extra.append(_levels_source(queue, cat.LEVELS_TOTAL_ONLY))
            snapshot.levels.append(LevelReading(queue, None, ready, age, unstamped))
            if head_age is not None and reading.max_priority:
                # The head of the most urgent non-empty level, not the oldest message: say so.
                snapshot.extra.append(ExtraSample(cat.QUEUE_OLDEST_AGE_LOWER_BOUND, (queue,), 1.0))
            return
        counts, most_urgent_first = levels
        snapshot.extra.append(_levels_source(queue, cat.LEVELS_FROM_BROKER))
        # head_message_timestamp is the head of the next message to be delivered: the head
        # of the most urgent non-empty level (when its head message is stamped).
        by_level = dict(counts)
        head_level = next((p for p in most_urgent_first if by_level[p] > 0), None)
        for priority, count in counts:
            at_head = priority == head_level
            age = self.head_bounds.observe(
                (queue, priority), count, head if at_head else None, head_age if at_head else None,
                now,
            )  # fmt: skip
            # Only the head level's message is inspected (head_message_timestamp is its stamp).
            unstamped = (head is None) if at_head and head_known else None
            snapshot.levels.append(LevelReading(queue, priority, count, age, unstamped))
        returned = _as_int(entry.get("messages_ready_returned"))
        if returned is not None:
            # Quorum queues (4.0+) count requeued messages in neither high nor normal and serve
            # them first; a level of their own, never declared, so urgency ignores it.
            snapshot.levels.append(LevelReading(queue, quorum.RETURNED_LEVEL, returned))
        snapshot.declare_levels(queue, most_urgent_first)

    def _estimate_levels(
        self,
        snapshot: BrokerSnapshot,
        queue: str,
        ready: int,
        head_age: float | None,
        unstamped: bool | None,
    ) -> None:
        """A classic priority queue whose broker gives only the total: its levels from the
        events (level_estimate.py). head_message_timestamp is the head of the most urgent
        non-empty level: on that level when every message's level is known (as RabbitMQ up to
        3.12.6 gives it), else on ``unknown``, flagged a lower bound (its level is not known)."""
        max_priority = snapshot.queue(queue).max_priority or 0
        assert self._waiting is not None
        estimate = reconcile(ready, max_priority, self._waiting.get(queue, {}))
        # The head is on the most urgent non-empty level when every message's level is known
        # (counts taken off to match the broker's total included: the statistics lag the
        # events); with an unknown part it may be there: unknown, flagged a lower bound.
        head_level = estimate.head_level() if estimate.unknown == 0 else UNKNOWN_LEVEL
        if ready == 0:
            head_level = None
        for level, count in (*estimate.levels, (UNKNOWN_LEVEL, estimate.unknown)):
            at_head = level == head_level
            snapshot.levels.append(
                LevelReading(
                    queue,
                    level,
                    count,
                    head_age if at_head else None,
                    unstamped if at_head else None,
                )
            )
        if head_age is not None and head_level == UNKNOWN_LEVEL:
            snapshot.extra.append(ExtraSample(cat.QUEUE_OLDEST_AGE_LOWER_BOUND, (queue,), 1.0))
        snapshot.extra.append(_levels_source(queue, cat.LEVELS_FROM_EVENTS))

    def close(self) -> None:
        self._session.close()
