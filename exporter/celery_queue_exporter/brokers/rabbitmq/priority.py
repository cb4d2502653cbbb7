"""Priority on RabbitMQ: a message waits at its priority capped at the queue's x-max-priority,
and the highest level is served first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...config.model import BrokerConfig
    from ..base import PriorityLevel


def rabbitmq_priority_level(priority: Any, max_priority: Any) -> str:
    """The level RabbitMQ serves a message at: its priority capped at x-max-priority."""
    try:
        value = int(priority)
    except (TypeError, ValueError):
        value = 0
    value = max(0, min(255, value))
    if isinstance(max_priority, int) and not isinstance(max_priority, bool) and max_priority > 0:
        value = min(value, max_priority)
    return str(value)


def priority_levels(broker: BrokerConfig) -> PriorityLevel:
    """The same for every RabbitMQ broker: the queue's own x-max-priority decides."""
    del broker
    return rabbitmq_priority_level
