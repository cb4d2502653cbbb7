"""Which priority level of a queue is the most urgent, and which the least, as used.

A queue's declared levels are not the levels teams use: RabbitMQ queues are declared with
``x-max-priority: 10`` and published at 0..9, so marking the declared extreme (10) as the most
urgent level points every "most urgent level waits too long" alert at a level nobody uses.

The resolver remembers, per watched queue of one broker, the levels that have carried messages
since the exporter started: a depth above 0 at an inspection, or a task a worker received at that
level (the event tracker's ``levels_in_use()``). The most urgent level is the most urgent one
seen, the least urgent the least urgent one seen; a side with nothing seen falls back to the
declared extreme. A per-queue override in the broker's configuration (``priority_levels``) wins.

What was seen is held in memory only: after a restart it is learnt again (until then the
declared extremes are marked). Memory is bounded: only declared levels of watched queues are
kept, and queues no longer watched are forgotten.
"""

from __future__ import annotations

import logging
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
#: Queue label -> level labels in use (EventTracker.levels_in_use).
LevelsInUse = Mapping[str, Iterable[str]]
#: What returns them (EventTracker.levels_in_use, or a test's callable).
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
    ) -> None:
        #: queue -> {"most": N, "least": M} from the configuration.
        self.overrides = {queue: dict(sides) for queue, sides in (overrides or {}).items()}
        self.level_of = level_of
        self.broker = broker
        #: queue -> levels that carried messages (only declared ones are kept).
        self._seen: dict[str, set[str]] = {}
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

    def observe(self, queue: str, levels: Iterable[str], declared: list[str]) -> None:
        """Record levels of ``queue`` that carried messages (those not declared are ignored:
        they cannot be marked, and would let a faulty source grow the state)."""
        rank = self._rank(declared)
        new = {level for level in levels if level in rank}
        if new:
            self._seen.setdefault(queue, set()).update(new)

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
        # What was seen only grows, so its size tells whether it changed.
        key = (tuple(declared), max_priority, len(seen) if seen else 0)
        cached = self._marks.get(queue)
        if cached is not None and cached[0] == key:
            return cached[1]
        marks = self._marks_of(queue, declared, seen, max_priority)
        self._marks[queue] = (key, marks)
        return marks

    def _marks_of(
        self, queue: str, declared: list[str], seen: set[str] | None, max_priority: Any
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
        least = max(used, key=rank.__getitem__) if used else declared[-1]
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
        seen = self._seen
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
                levels = seen.get(queue)
                if levels is None:
                    levels = seen[queue] = set()
                levels.add(level.priority)
        for queue, levels in (in_use or {}).items():
            if queue in declared:
                self.observe(queue, levels, declared[queue])
        self.forget_except(snapshot.queues)
        # Readings an inspector set without declaring levels (a plugin transport) are kept.
        urgency = [u for u in snapshot.urgency if u.queue not in declared]
        for queue, levels in declared.items():
            reading = snapshot.queues.get(queue)
            max_priority = reading.max_priority if reading is not None else None
            urgency.extend(self.readings(queue, levels, max_priority))
        snapshot.urgency = urgency


def resolver_for(broker: BrokerConfig) -> UrgencyResolver:
    """The resolver of one configured broker: its priority_levels override, read as its
    transport files a priority (RabbitMQ caps it at the queue's x-max-priority)."""
    from .brokers import transport_of

    overrides = getattr(broker, "priority_levels", None) or {}
    try:
        level_of = transport_of(broker).priority_levels(broker)
    except Exception:  # noqa: BLE001 - a test's bare config: labels as written
        level_of = _as_label
    return UrgencyResolver(overrides, level_of, broker.name)


def levels_source(tracker: object) -> LevelsSource | None:
    """The tracker's ``levels_in_use`` when it has one (trackers before issue 13 do not)."""
    source = getattr(tracker, "levels_in_use", None)
    return source if callable(source) else None
