"""Redis, as kombu's Redis transport lays out queues, priorities and events."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import SplitResult

from ...config.errors import ConfigError
from ..base import Transport
from .options import OPTIONS
from .priority import priority_levels

if TYPE_CHECKING:
    from ...config.model import BrokerConfig
    from ...events.tracker import EventTracker
    from ..base import EventConsumer, Inspector


def _inspector(broker: BrokerConfig, timeout_seconds: float) -> Inspector:
    from .inspector import RedisInspector  # redis-py is imported only when a broker needs it

    return RedisInspector(broker, timeout_seconds=timeout_seconds)


def _event_consumer(broker: BrokerConfig, tracker: EventTracker) -> EventConsumer:
    from .events import RedisEventConsumer

    return RedisEventConsumer(broker, tracker)


def _check_url(where: str, parts: SplitResult) -> None:
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ConfigError(f"{where}: Redis database must be a number, got {db!r}")


def _check_broker(where: str, broker: BrokerConfig) -> None:
    if not broker.queues and not broker.discover_queues:
        raise ConfigError(f"{where}: no queues listed and discovery is off: nothing to watch")


TRANSPORT = Transport(
    name="redis",
    schemes=frozenset({"redis", "rediss"}),
    default_path="0",
    inspector=_inspector,
    event_consumer=_event_consumer,
    priority_levels=priority_levels,
    options=OPTIONS,
    check_url=_check_url,
    check_broker=_check_broker,
)
