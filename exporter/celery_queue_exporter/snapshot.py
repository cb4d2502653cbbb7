"""What one inspection of one broker found, in broker-neutral terms.

Inspectors (one per broker kind) fill a BrokerSnapshot; the collector turns snapshots into
metric families. Keeping this shape neutral is what lets Redis and RabbitMQ share metric names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .catalogue import URGENCY_LEAST, URGENCY_MOST

if TYPE_CHECKING:
    from .catalogue import MetricSpec
    from .config.model import BrokerConfig


@dataclass
class LevelReading:
    """Messages waiting at one priority level of a queue (priority None: broker can't tell)."""

    queue: str
    priority: str | None
    messages: int
    oldest_age_seconds: float | None = None
    #: The inspected head message carries no install(app) publish stamp (True), carries one
    #: (False); None: no head inspected at this level (empty, or the broker does not say).
    unstamped: bool | None = None
    #: While empty, the level exports no depth series: absent means 0 (Redis: every level of
    #: a queue but its first, so that 1,000 queues x 10 levels do not send 9,000 zeros; the
    #: first keeps each watched queue present with its 0). False: 0 is exported.
    zero_absent: bool = False


@dataclass
class QueueReading:
    """Per-queue facts that are not per level; None means the broker does not say."""

    queue: str
    reserved: int | None = None
    consumers: int | None = None
    consumer_utilisation: float | None = None
    max_priority: int | None = None
    missing: bool | None = None
    #: A key of the queue could not be read (another type than the broker's client writes).
    unreadable: bool | None = None
    #: Redis: the queue's binding vanished after the exporter saw it (kept watched meanwhile).
    unbound: bool | None = None


@dataclass
class UrgencyReading:
    """How urgent a priority level is within its queue: rank 0 is served first."""

    queue: str
    priority: str
    rank: int
    urgency: str


@dataclass(frozen=True)
class ExtraSample:
    """One sample of a broker-specific family (RabbitMQ 4 facts, issue 23): the collector adds
    it to ``spec``'s family, with the broker label first and then ``labels`` (the spec's other
    labels, in order)."""

    spec: MetricSpec
    labels: tuple[str, ...]
    value: float


# --- broker pressure (issue 22): what the broker says about itself ----------------------------


@dataclass
class RedisHealth:
    """A Redis server's health (brokers/redis/health.py); None where it did not say."""

    used_memory_bytes: int | None = None
    #: 0: no limit.
    maxmemory_bytes: int | None = None
    maxmemory_policy: str | None = None
    evicted_keys: int | None = None
    #: Commands refused with OOM (errorstat_OOM); 0 when errorstats has no OOM line.
    oom_rejections: int | None = None
    #: Command -> calls since the server started (0 when never called).
    flushes: dict[str, int] = field(default_factory=dict)
    uptime_seconds: int | None = None
    run_id: str | None = None
    #: AOF on, or RDB save points configured; None: unknown (CONFIG GET refused, AOF off).
    persistence: bool | None = None


@dataclass
class NodeReading:
    """One RabbitMQ node as /api/nodes reports it (brokers/rabbitmq/nodes.py); None where
    it does not say."""

    node: str
    running: bool | None = None
    memory_alarm: bool | None = None
    disk_alarm: bool | None = None
    #: Nodes this node cannot reach (a network partition).
    partitions: int | None = None
    memory_used_bytes: int | None = None
    memory_limit_bytes: int | None = None
    fd_used: int | None = None
    fd_limit: int | None = None
    sockets_used: int | None = None
    sockets_limit: int | None = None


@dataclass
class BrokerSnapshot:
    """Everything one inspection of a broker produced."""

    levels: list[LevelReading] = field(default_factory=list)
    queues: dict[str, QueueReading] = field(default_factory=dict)
    urgency: list[UrgencyReading] = field(default_factory=list)
    #: Queue -> its declared priority levels, most urgent first (what urgency.py picks from).
    declared_levels: dict[str, list[str]] = field(default_factory=dict)
    reserved_total: int | None = None
    reserved_oldest_age_seconds: float | None = None
    reserved_overdue: int | None = None
    visibility_timeout_seconds: float | None = None
    management_api_up: bool | None = None
    malformed_messages: int = 0
    #: Discovered queues not watched because of the broker's max_queues.
    queues_over_limit: int | None = None
    #: Keys the inspection could not read (another type than expected); None: not applicable.
    unreadable_keys: int | None = None
    #: Redis: the server's memory, evictions, flushes, restarts and persistence.
    redis_health: RedisHealth | None = None
    #: RabbitMQ: the cluster's nodes from the management API (None: not read).
    rabbitmq_nodes: list[NodeReading] | None = None
    #: Broker-specific samples beyond the shared shape (see ExtraSample).
    extra: list[ExtraSample] = field(default_factory=list)

    def queue(self, name: str) -> QueueReading:
        """The QueueReading for ``name``, created on first use."""
        reading = self.queues.get(name)
        if reading is None:
            reading = self.queues[name] = QueueReading(queue=name)
        return reading

    def declare_levels(
        self,
        queue: str,
        levels_most_urgent_first: list[str],
        readings: list[UrgencyReading] | None = None,
    ) -> None:
        """The levels ``queue`` is declared with, most urgent first; marks the declared extremes
        until the collector's UrgencyResolver replaces them with the levels in use.
        ``readings``: those marks built once by the caller (then the list of levels is kept
        as given, not copied: an inspector that reuses both per scrape must not change them)."""
        if not levels_most_urgent_first:
            return
        if readings is None:
            self.declared_levels[queue] = list(levels_most_urgent_first)
            self.urgency.extend(urgency_readings(queue, levels_most_urgent_first))
        else:
            self.declared_levels[queue] = levels_most_urgent_first
            self.urgency.extend(readings)


def urgency_readings(queue: str, levels_most_urgent_first: list[str]) -> list[UrgencyReading]:
    """The most and the least urgent level of a queue (levels in between are not exported:
    nothing selects them, and at 1,000 queues x 10 levels they would be 8,000 idle series).
    A single level is both, so it gets two series and either PromQL selector finds it."""
    if not levels_most_urgent_first:
        return []
    last = len(levels_most_urgent_first) - 1
    return [
        UrgencyReading(queue, levels_most_urgent_first[0], 0, URGENCY_MOST),
        UrgencyReading(queue, levels_most_urgent_first[last], last, URGENCY_LEAST),
    ]


def matching(
    names: list[str], include: Sequence[re.Pattern[str]], exclude: Sequence[re.Pattern[str]]
) -> list[str]:
    """Names whose whole text matches an include pattern (any, when there are none) and no
    exclude pattern."""
    return [
        name
        for name in names
        if (not include or any(p.fullmatch(name) for p in include))
        and not any(p.fullmatch(name) for p in exclude)
    ]


def select_queues(broker: BrokerConfig, discovered: list[str]) -> tuple[list[str], int]:
    """Queues to watch: every queue the broker lists, then discovered ones that pass its
    include/exclude patterns, up to its ``max_queues`` in all. Returns them and how many
    discovered queues the cap left out (those filtered out by a pattern are not counted: they
    were not wanted)."""
    queues = list(dict.fromkeys(broker.queues))
    if not broker.discover_queues:
        return queues, 0
    candidates = [queue for queue in discovered if queue not in queues]
    found = matching(candidates, broker.queue_include, broker.queue_exclude)
    room = max(0, broker.max_queues - len(queues))
    return queues + found[:room], max(0, len(found) - room)
