"""Bounds on a stamped head age from the exporter's own observations (issue 21: clock skew).

A head age read from a producer's stamp (``now - stamp``) is only as right as the producer's
clock. On Redis the stamp names its host and is corrected by that host's estimated offset
(events/clock.py); RabbitMQ's management API gives ``head_message_timestamp`` and nothing
else, so the host, and its offset, are unknown there. What the exporter has seen on its own
clock still bounds the age, whoever took the stamp:

* **upper bound**: a level seen *empty* at ``t0`` and non-empty now holds only messages that
  arrived after ``t0``, so the head waited at most ``now - t0`` (plus ``slack`` for readings
  that are older than the moment they are read: RabbitMQ's statistics lag by up to its
  ``collect_statistics_interval``, and its stamps are whole seconds);
* **lower bound**: a head stamp first seen at ``t1`` belongs to a message that was already
  waiting then, so it has waited at least ``now - t1``.

The exported age is the stamp's age clamped into ``[lower, upper]`` (an unknown bound does not
clamp). A producer 5 minutes behind (stamp age +300 s) then cannot page on a queue that drains
normally, and one 5 minutes ahead (stamp age 0) cannot hide a backlog the exporter watched grow.

A restart forgets everything (no state file): the bounds start unknown and the stamp's age is
used as it is until the exporter has seen the level empty or the head change. One entry per
watched level, forgotten with its queue, so memory is bounded by the configuration.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable

#: A level: (queue, level label or None).
LevelKey = tuple[str, Hashable]


class HeadBounds:
    """Per level key ``(queue, level)``: the last time it was seen empty and since when its head
    stamp has been the same. Not thread-safe: an inspector calls it from its scrape only."""

    def __init__(self, slack_seconds: float = 0.0) -> None:
        if slack_seconds < 0:
            raise ValueError("slack_seconds must be >= 0")
        self.slack_seconds = slack_seconds
        #: The last time each level was seen empty (on the exporter's clock).
        self._empty_at: dict[LevelKey, float] = {}
        #: Each non-empty level's head stamp as read (the producer's clock) and when it was
        #: first seen at the head.
        self._heads: dict[LevelKey, tuple[float, float]] = {}
        #: Ages moved by a bound since start (for tests and logs; not exported).
        self.clamped = 0

    def observe(
        self,
        key: LevelKey,
        messages: int | None,
        stamp: float | None,
        age: float | None,
        now: float,
    ) -> float | None:
        """Record one reading of a level (``messages`` waiting, None when unknown; its head
        ``stamp`` when the level reports one) and return ``age`` (the stamp's age) clamped by
        what was seen before. A level without an age keeps its memory unchanged, except that
        an empty one is noted as empty."""
        if messages is not None and messages <= 0:
            self._empty_at[key] = now
            if key in self._heads:
                del self._heads[key]  # a later head with the same stamp is another message
            return age
        if age is None or stamp is None or messages is None:
            return age
        head = self._heads.get(key)
        if head is None or head[0] != stamp:
            head = self._heads[key] = (stamp, now)
        bounded = max(age, now - head[1])
        empty_at = self._empty_at.get(key)
        if empty_at is not None:
            bounded = min(bounded, now - empty_at + self.slack_seconds)
        if bounded != age:
            self.clamped += 1
        return bounded

    def forget_except(self, queues: Collection[str]) -> None:
        """Drop the levels of queues no longer watched (or no longer listed by the broker)."""
        for memory in (self._empty_at, self._heads):
            for key in [k for k in memory if k[0] not in queues]:
                del memory[key]

    def __len__(self) -> int:
        """Levels remembered (each at most once, though it may be in both memories)."""
        return len(self._empty_at.keys() | self._heads.keys())
