"""Per-level depth of a classic priority queue whose broker reports only the total (RabbitMQ
3.12.7+ and 4.x), from Celery events, reconciled with the broker's exact total. Pure: no I/O.

The event tracker counts, per queue and level, the tasks seen published (task-sent with the
priority install(app) adds) and not yet seen received by a worker (task-received or
install(app)'s task-info): ``EventTracker.waiting_levels()``. Those messages are in the queue,
at those levels, unless something the events do not show took them out (a worker without task
events, an event stream interrupted). The broker's ``messages_ready`` is exact. So:

* the counted messages are placed at their levels (levels above x-max-priority at x-max-priority,
  where RabbitMQ serves them); every declared level is reported, 0 included, as RabbitMQ up to
  3.12.6 did;
* when they are fewer than the total, the rest (published before the exporter started, by a
  producer without install(app) or without task-sent, requeued after a worker received them)
  is the level ``unknown``; 0 when the levels account for every waiting message: then the
  levels are exact;
* when they are more (a receipt the events did not show, or the management API's statistics,
  up to 5 s old, behind the events while messages flow), the excess is taken off the most
  urgent levels first: RabbitMQ serves those first, so messages consumed unseen most likely
  came from there. No level is ever negative, and the levels always add up to the total.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...catalogue import UNKNOWN_LEVEL

__all__ = ["UNKNOWN_LEVEL", "LevelEstimate", "reconcile"]


@dataclass(frozen=True)
class LevelEstimate:
    """One queue's depth per level, from events, adding up to the broker's total."""

    #: (level label, messages), least urgent first: "0" .. str(max_priority).
    levels: list[tuple[str, int]]
    #: Messages waiting whose level is not known (the level ``unknown``).
    unknown: int
    #: Counted messages taken off because the events counted more than the broker holds.
    trimmed: int

    @property
    def exact(self) -> bool:
        """Every waiting message's level is known, and no count was taken off."""
        return self.unknown == 0 and self.trimmed == 0

    def head_level(self) -> str | None:
        """The most urgent non-empty level (RabbitMQ serves the highest first): the level of
        head_message_timestamp's message when the estimate is exact; None when empty."""
        return next((level for level, count in reversed(self.levels) if count > 0), None)


def reconcile(total: int, max_priority: int, waiting: Mapping[str, int]) -> LevelEstimate:
    """The per-level depth of a queue declared with ``max_priority`` (> 0) holding ``total``
    ready messages (the broker's figure), from ``waiting``: {level label: messages seen
    published at that level and not yet seen received}. Labels that are not levels, and
    counts that are not positive, are ignored."""
    counts = [0] * (max_priority + 1)
    for label, count in waiting.items():
        level = label.isascii() and label.isdigit()
        if not level or not isinstance(count, int) or count <= 0:
            continue
        counts[min(int(label), max_priority)] += count
    total = max(0, total)
    excess = sum(counts) - total
    trimmed = max(0, excess)
    level = max_priority
    while excess > 0:  # most urgent first
        taken = min(excess, counts[level])
        counts[level] -= taken
        excess -= taken
        level -= 1
    return LevelEstimate(
        levels=[(str(level), count) for level, count in enumerate(counts)],
        unknown=max(0, total - sum(counts)),
        trimmed=trimmed,
    )
