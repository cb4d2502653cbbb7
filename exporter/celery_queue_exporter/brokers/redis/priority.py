"""Priority on Redis: kombu files a message under the step at or below its priority, and
workers pop step 0 first (on Redis 0 is the most urgent)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...config.model import BrokerConfig
    from ..base import PriorityLevel
    from .options import RedisOptions


def redis_priority_level(priority: Any, steps: Sequence[int]) -> str:
    """The kombu Redis step a message of this priority was stored under (see broker-facts)."""
    try:
        value = int(priority)
    except (TypeError, ValueError):
        value = 0
    value = max(0, min(9, value))
    return str(steps[max(0, bisect_right(steps, value) - 1)])


def step_levels(steps: Sequence[int] = (0, 3, 6, 9)) -> PriorityLevel:
    """The level function for these steps (x-max-priority means nothing on Redis)."""
    frozen = tuple(steps)
    return lambda priority, _max_priority: redis_priority_level(priority, frozen)


def priority_levels(broker: BrokerConfig[RedisOptions]) -> PriorityLevel:
    return step_levels(broker.options.priority_steps)
