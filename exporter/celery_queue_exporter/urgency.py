"""Which priority level of a queue is the most urgent, and which the least, as used.

A queue's declared levels are not the levels teams use: RabbitMQ queues are declared with
``x-max-priority: 10`` and published at 0..9, so marking the declared extreme (10) as the most
urgent level points every "most urgent level waits too long" alert at a level nobody uses.

The resolver remembers, per watched queue of one broker, the levels that have carried messages
since the exporter started: a depth above 0 at an inspection, or a task a worker received at that
level (the event tracker's ``levels_last_seen()``). The most urgent level is the most urgent one
seen (none seen: the declared most urgent level); the least urgent is the least urgent level seen
that is strictly less urgent than the most urgent one, else the declared least urgent level. So a
queue used at one level only marks that level most urgent and the declared extreme least urgent:
the most-urgent alert (``unless ... urgency="least"``) still watches it. A queue with a single
declared level marks it both. A per-queue override in the broker's configuration
(``priority_levels``) wins.

A level not seen for ``urgency_memory_seconds`` is forgotten: one stray message at a level
nobody uses (a producer sending priority 255) marks it only that long, not until a restart.
What was seen is held in memory only: after a restart it is learnt again (until then the
declared extremes are marked). Memory is bounded: only declared levels of watched queues are
kept, and queues no longer watched are forgotten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .catalogue import URGENCY_LEAST, URGENCY_MOST
from .snapshot import BrokerSnapshot, UrgencyReading

if TYPE_CHECKING:
    from .config.model import BrokerConfig

log = logging.getLogger(__name__)

#: Distinct declared layouts whose ranks are cached (RabbitMQ allows x-max-priority 1..255).
MAX_LAYOUTS = 512

#: (priority, x-max-priority) -> the level label the broker files it under.
LevelOf = Callable[[Any, Any], str]
#: Queue label -> level labels in use (EventTracker.levels_in_use), or level label -> when it
#: was last seen, Unix time (EventTracker.levels_last_seen); plain labels count as seen now.
LevelsInUse = Mapping[str, Iterable[str] | Mapping[str, float]]
#: Default of urgency_memory_seconds: a level not seen for a day is forgotten.
DEFAULT_MEMORY_SECONDS = 86400.0
#: What returns them (EventTracker.levels_last_seen, or a test's callable).
LevelsSource = Callable[[], LevelsInUse]


def _as_label(level: Any, max_priority: Any) -> str:
    return str(level)


class UrgencyResolver:
    """Most and least urgent level per queue of one broker; not thread-safe (the collector
    calls it from the broker's inspection thread only)."""

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, int]] | None = None,
        level_of: LevelOf = _as_label,
        broker: str = "",
        memory_seconds: float = DEFAULT_MEMORY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: queue -> {"most": N, "least": M} from the configuration.
        self.overrides = {queue: dict(sides) for queue, sides in (overrides or {}).items()}
        self.level_of = level_of
        self.broker = broker
        #: A level not seen for this long is forgotten.
        self.memory_seconds = memory_seconds
        self.clock = clock
        #: queue -> level that carried messages -> when last seen (only declared ones are kept).
        self._seen: dict[str, dict[str, float]] = {}
        #: Bumped whenever a level is learnt or forgotten (the cached marks depend on it).
        self._version = 0
        #: Overrides already reported as not matching a declared level (logged once).
        self._warned: set[tuple[str, str, str]] = set()
        #: Declared layout -> level -> rank (see _rank).
        self._ranks: dict[tuple[str, ...], dict[str, int]] = {}
        #: queue -> (what its marks depend on, the marks): most scrapes change nothing.
        self._marks: dict[str, tuple[tuple[Any, ...], list[UrgencyReading]]] = {}

    def seen(self, queue: str) -> frozenset[str]:
        return frozenset(self._seen.get(queue, ()))

    def _rank(self, declared: list[str]) -> dict[str, int]:
        """Level -> rank for a declared layout; cached (a broker has few distinct layouts:
        Redis one, RabbitMQ one per x-max-priority in use), the cache bounded all the same."""
        key = tuple(declared)
        rank = self._ranks.get(key)
        if rank is None:
            if len(self._ranks) >= MAX_LAYOUTS:
                self._ranks.clear()
            rank = self._ranks[key] = {level: i for i, level in enumerate(declared)}
        return rank

    def observe(
        self,
        queue: str,
        levels: Iterable[str] | Mapping[str, float],
        declared: list[str],
        now: float | None = None,
    ) -> None:
        """Record levels of ``queue`` that carried messages, seen at ``now`` (default: the
        clock) or, for a mapping, at the time it gives per level (those not declared are
        ignored: they cannot be marked, and would let a faulty source grow the state)."""
        rank = self._rank(declared)
        if now is None:
            now = self.clock()
        times = levels if isinstance(levels, Mapping) else dict.fromkeys(levels, now)
        for level, at in times.items():
            if level in rank:
                self._see(queue, level, at)

    def _see(self, queue: str, level: str, at: float) -> None:
        levels = self._seen.get(queue)
        if levels is None:
            levels = self._seen[queue] = {}
        last = levels.get(level)
        if last is None:
            self._version += 1
        if last is None or at > last:
            levels[level] = at

    def expire(self, now: float | None = None) -> None:
        """Forget levels not seen for memory_seconds."""
        if now is None:
            now = self.clock()
        horizon = now - self.memory_seconds
        for queue in list(self._seen):
            levels = self._seen[queue]
            old = [level for level, at in levels.items() if at < horizon]
            if old:
                self._version += 1
                for level in old:
                    del levels[level]
                if not levels:
                    del self._seen[queue]

    def forget_except(self, queues: Iterable[str]) -> None:
        """Drop queues no longer watched."""
        keep = queues if isinstance(queues, set | dict) else set(queues)
        for queue in [queue for queue in self._seen if queue not in keep]:
            del self._seen[queue]
        for queue in [queue for queue in self._marks if queue not in keep]:
            del self._marks[queue]

    def readings(
        self, queue: str, declared: list[str], max_priority: Any = None
    ) -> list[UrgencyReading]:
        """The most and the least urgent level of ``queue`` (declared: most urgent first).
        A single level is both, so it gets two series and either selector finds it."""
        if not declared:
            return []
        seen = self._seen.get(queue)
        # The version moves whenever a level is learnt or forgotten.
        key = (tuple(declared), max_priority, self._version)
        cached = self._marks.get(queue)
        if cached is not None and cached[0] == key:
            return cached[1]
        marks = self._marks_of(queue, declared, seen, max_priority)
        self._marks[queue] = (key, marks)
        return marks

    def _marks_of(
        self, queue: str, declared: list[str], seen: Iterable[str] | None, max_priority: Any
    ) -> list[UrgencyReading]:
        rank = self._rank(declared)
        override = self.overrides.get(queue)
        if not seen and not override:  # the common case of an idle queue: declared extremes
            last = len(declared) - 1
            return [
                UrgencyReading(queue, declared[0], 0, URGENCY_MOST),
                UrgencyReading(queue, declared[last], last, URGENCY_LEAST),
            ]
        used = [level for level in seen or () if level in rank]
        most = min(used, key=rank.__getitem__) if used else declared[0]
        # The least urgent level strictly less urgent than the most urgent one: a queue used
        # at one level marks the declared least urgent level, so "most unless least" keeps it.
        lower = [level for level in used if rank[level] > rank[most]]
        least = max(lower, key=rank.__getitem__) if lower else declared[-1]
        if override:
            most = self._override(queue, URGENCY_MOST, override, rank, max_priority) or most
            least = self._override(queue, URGENCY_LEAST, override, rank, max_priority) or least
        return [
            UrgencyReading(queue, most, rank[most], URGENCY_MOST),
            UrgencyReading(queue, least, rank[least], URGENCY_LEAST),
        ]

    def _override(
        self,
        queue: str,
        side: str,
        override: Mapping[str, int],
        rank: Mapping[str, int],
        max_priority: Any,
    ) -> str | None:
        if side not in override:
            return None
        label = self.level_of(override[side], max_priority)
        if label in rank:
            return label
        key = (queue, side, label)
        if key not in self._warned:
            self._warned.add(key)
            log.warning(
                "broker %s: priority_levels.%s.%s = %s is not a level of the queue (%s); ignored",
                self.broker,
                queue,
                side,
                override[side],
                ", ".join(rank),
            )
        return None

    def resolve(self, snapshot: BrokerSnapshot, in_use: LevelsInUse | None = None) -> None:
        """Learn from one inspection (and the event tracker's levels in use), then set the
        snapshot's urgency readings from its declared levels."""
        declared = snapshot.declared_levels
        now = self.clock()
        ranks: dict[str, dict[str, int]] = {}
        # 20,000 levels at 2,000 queues x 10, few of them non-empty: filter first.
        non_empty = [level for level in snapshot.levels if level.messages > 0]
        for level in non_empty:
            if level.priority is None:
                continue
            queue = level.queue
            rank = ranks.get(queue)
            if rank is None:
                if queue not in declared:
                    continue
                rank = ranks[queue] = self._rank(declared[queue])
            if level.priority in rank:
                self._see(queue, level.priority, now)
        for queue, levels in (in_use or {}).items():
            if queue in declared:
                self.observe(queue, levels, declared[queue], now)
        self.expire(now)
        self.forget_except(snapshot.queues)
        # Readings an inspector set without declaring levels (a plugin transport) are kept.
        urgency = [u for u in snapshot.urgency if u.queue not in declared]
        for queue, levels in declared.items():
            reading = snapshot.queues.get(queue)
            max_priority = reading.max_priority if reading is not None else None
            urgency.extend(self.readings(queue, levels, max_priority))
        snapshot.urgency = urgency


def resolver_for(
    broker: BrokerConfig, memory_seconds: float = DEFAULT_MEMORY_SECONDS
) -> UrgencyResolver:
    """The resolver of one configured broker: its priority_levels override, read as its
    transport files a priority (RabbitMQ caps it at the queue's x-max-priority)."""
    level_of = broker.transport.priority_levels(broker)
    return UrgencyResolver(broker.priority_levels, level_of, broker.name, memory_seconds)


def levels_source(tracker: object) -> LevelsSource | None:
    """The tracker's ``levels_last_seen`` (when each level was last received at, so levels
    expire), else its ``levels_in_use`` (trackers before issue 13 have neither)."""
    for name in ("levels_last_seen", "levels_in_use"):
        source = getattr(tracker, name, None)
        if callable(source):
            return source
    return None
