"""RabbitMQ broker options: where the management API is, whether to use it, where the
rabbitmq_prometheus plugin is, and the prefix of Celery's native delayed delivery queues."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import values
from ...config.options import Option

MANAGEMENT_URL = Option(
    "management_url",
    values.HTTP_URL,
    None,
    "management API URL; credentials in it replace the broker's (default "
    "http://<host>:15672, https://<host>:15671 for amqps://)",
    "--management-url",
    "MANAGEMENT_URL",
)
MANAGEMENT = Option(
    "management",
    values.choice("auto", "always", "never"),
    "auto",
    "use the management API when it answers, else AMQP (auto), only the API (always), or "
    "AMQP only (never: no per-priority or unacknowledged counts)",
    "--management-api",
    "MANAGEMENT_API",
)

PROMETHEUS_URL = Option(
    "prometheus_url",
    values.HTTP_URL,
    None,
    "URL of the broker's rabbitmq_prometheus plugin (e.g. http://<host>:15692); when set and "
    "answering, ready, unacknowledged and consumer counts come from its /metrics/detailed and "
    "/api/queues is read only when it alone has what is needed (per-priority counts, quorum "
    "queues) or its queue facts are over a minute old, and /api/nodes (node health) at most "
    "every 15 s; the management API stays the fallback "
    "(default: none, the management API every scrape)",
    "--prometheus-url",
    "PROMETHEUS_URL",
)

DELAYED_DELIVERY_PREFIX = Option(
    "delayed_delivery_prefix",
    values.TEXT,
    "",
    "the prefix of Celery's native delayed delivery queues ({prefix}_celery_delayed_N, "
    "kombu >= 5.7); they are exported as scheduled messages, never as work queues "
    "(default: none, celery_delayed_0..27)",
    "--delayed-delivery-prefix",
    "DELAYED_DELIVERY_PREFIX",
)

OPTIONS = (MANAGEMENT_URL, MANAGEMENT, PROMETHEUS_URL, DELAYED_DELIVERY_PREFIX)


@dataclass(frozen=True)
class RabbitMQOptions:
    """A RabbitMQ broker's options, typed; one field per declaration above."""

    #: The management API's URL (credentials in it replace the broker's); None: the default.
    #: May carry credentials (user:password@): kept out of repr().
    management_url: str | None = field(default=MANAGEMENT_URL.default, repr=False)
    #: auto | always | never
    management: str = MANAGEMENT.default
    #: The rabbitmq_prometheus plugin's URL (prometheus_plugin.py); None: not used. May carry
    #: credentials (user:password@): kept out of repr().
    prometheus_url: str | None = field(default=PROMETHEUS_URL.default, repr=False)
    #: kombu's prefix of the delayed delivery queues ("": none, celery_delayed_0..27).
    delayed_delivery_prefix: str = DELAYED_DELIVERY_PREFIX.default
