"""RabbitMQ: the management HTTP API (per-priority counts where the broker gives them) with
AMQP as the fallback, and Celery events from the ``celeryev`` topic exchange."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...config.errors import ConfigError
from ..base import Transport
from ..ssl_files import check_ssl_files
from .options import OPTIONS, RabbitMQOptions
from .priority import priority_levels

if TYPE_CHECKING:
    from ...config.model import BrokerConfig
    from ...events.tracker import EventTracker
    from ..base import EventConsumer, Inspector


def _inspector(broker: BrokerConfig[RabbitMQOptions], timeout_seconds: float) -> Inspector:
    from .inspector import RabbitMQInspector  # pika and requests only when a broker needs them

    return RabbitMQInspector(broker, timeout_seconds=timeout_seconds)


def _event_consumer(broker: BrokerConfig[RabbitMQOptions], tracker: EventTracker) -> EventConsumer:
    from .events import RabbitMQEventConsumer

    return RabbitMQEventConsumer(broker, tracker)


def _check_broker(where: str, broker: BrokerConfig) -> None:
    """TLS settings need a TLS connection to apply to (amqps:// or an https management API);
    a priority_levels override must not mark a less urgent level as the most urgent."""
    management_url = broker.options.management_url or ""
    tls_url = broker.url.scheme == "amqps" or management_url.startswith("https://")
    for queue, sides in broker.priority_levels.items():
        if "most" in sides and "least" in sides and sides["most"] < sides["least"]:
            raise ConfigError(
                f"{where}.priority_levels.{queue}.most: {sides['most']} is less urgent than "
                f"least ({sides['least']}): RabbitMQ serves the highest priority first"
            )
    check_ssl_files(where, broker)
    if broker.tls.configured and not tls_url:
        raise ConfigError(
            f"{where}.ssl: the broker is reached without TLS; use amqps:// (and https:// for "
            "management_url)"
        )


TRANSPORT = Transport(
    name="rabbitmq",
    schemes=frozenset({"amqp", "amqps", "pyamqp"}),
    default_path="/",
    inspector=_inspector,
    event_consumer=_event_consumer,
    priority_levels=priority_levels,
    options=OPTIONS,
    options_type=RabbitMQOptions,
    check_broker=_check_broker,
)
