"""RabbitMQ: the management HTTP API (per-priority counts where the broker gives them) with
AMQP as the fallback, and Celery events from the ``celeryev`` topic exchange."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import Transport
from .options import OPTIONS
from .priority import priority_levels

if TYPE_CHECKING:
    from ...config.model import BrokerConfig
    from ...events.tracker import EventTracker
    from ..base import EventConsumer, Inspector


def _inspector(broker: BrokerConfig, timeout_seconds: float) -> Inspector:
    from .inspector import RabbitMQInspector  # pika and requests only when a broker needs them

    return RabbitMQInspector(broker, timeout_seconds=timeout_seconds)


def _event_consumer(broker: BrokerConfig, tracker: EventTracker) -> EventConsumer:
    from .events import RabbitMQEventConsumer

    return RabbitMQEventConsumer(broker, tracker)


TRANSPORT = Transport(
    name="rabbitmq",
    schemes=frozenset({"amqp", "amqps", "pyamqp"}),
    default_path="/",
    inspector=_inspector,
    event_consumer=_event_consumer,
    priority_levels=priority_levels,
    options=OPTIONS,
)
