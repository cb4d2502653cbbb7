"""Redis, as kombu's Redis transport lays out queues, priorities and events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...config.errors import ConfigError
from ..base import Transport
from ..ssl_files import check_ssl_files
from .options import KOMBU_OPTIONS, OPTIONS, RedisOptions
from .priority import priority_levels

if TYPE_CHECKING:
    from ...config.model import BrokerConfig
    from ...config.urls import URLPart
    from ...events.tracker import EventTracker
    from ..base import EventConsumer, Inspector


def _inspector(broker: BrokerConfig[RedisOptions], timeout_seconds: float) -> Inspector:
    from .inspector import RedisInspector  # redis-py is imported only when a broker needs it

    return RedisInspector(broker, timeout_seconds=timeout_seconds)


def _event_consumer(broker: BrokerConfig[RedisOptions], tracker: EventTracker) -> EventConsumer:
    from .events import RedisEventConsumer

    return RedisEventConsumer(broker, tracker)


def _check_url(where: str, part: URLPart) -> None:
    db = part.path.lstrip("/")
    if db and not db.isdigit():
        raise ConfigError(f"{where}: Redis database must be a number, got {db!r}")


def _check_broker(where: str, broker: BrokerConfig[RedisOptions]) -> None:
    options = broker.options
    if not broker.queues and not broker.discover_queues:
        raise ConfigError(f"{where}: no queues listed and discovery is off: nothing to watch")
    scheme = broker.url.scheme
    if scheme == "sentinel" and not options.master_name:
        raise ConfigError(f"{where}.transport_options.master_name: required with sentinel:// URLs")
    if broker.tls.server_name:
        raise ConfigError(
            f"{where}.ssl.server_name: not supported for Redis (redis-py checks the URL's "
            "host); connect by the name the certificate carries"
        )
    for queue, sides in broker.priority_levels.items():
        for side, level in sides.items():
            if level not in options.priority_steps:
                raise ConfigError(
                    f"{where}.priority_levels.{queue}.{side}: {level} is not one of the "
                    f"priority_steps {options.priority_steps} (kombu has no list for it)"
                )
        if sides.get("most", 0) > sides.get("least", 9):
            raise ConfigError(
                f"{where}.priority_levels.{queue}.most: {sides['most']} is less urgent than "
                f"least ({sides['least']}): on Redis the lower step is served first"
            )
    check_ssl_files(where, broker)
    if broker.tls.configured and scheme == "redis":
        raise ConfigError(f"{where}.ssl: the URL is redis://; use rediss:// for TLS")


TRANSPORT = Transport(
    name="redis",
    schemes=frozenset({"redis", "rediss", "sentinel"}),
    list_schemes=frozenset({"sentinel"}),
    passed_options=KOMBU_OPTIONS,
    default_path="0",
    inspector=_inspector,
    event_consumer=_event_consumer,
    priority_levels=priority_levels,
    options=OPTIONS,
    options_type=RedisOptions,
    check_url=_check_url,
    check_broker=_check_broker,
)
