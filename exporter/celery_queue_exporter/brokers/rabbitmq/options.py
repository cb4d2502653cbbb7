"""RabbitMQ broker options: where the management API is and whether to use it."""

from __future__ import annotations

from ...config import values
from ...config.options import Option

OPTIONS = (
    Option(
        "management_url",
        values.HTTP_URL,
        None,
        "management API URL; credentials in it replace the broker's (default "
        "http://<host>:15672, https://<host>:15671 for amqps://)",
        "--management-url",
        "MANAGEMENT_URL",
    ),
    Option(
        "management",
        values.choice("auto", "always", "never"),
        "auto",
        "use the management API when it answers, else AMQP (auto), only the API (always), or "
        "AMQP only (never: no per-priority or unacknowledged counts)",
        "--management-api",
        "MANAGEMENT_API",
    ),
    Option(
        "delayed_delivery_prefix",
        values.TEXT,
        "",
        "the prefix of Celery's native delayed delivery queues ({prefix}_celery_delayed_N, "
        "kombu >= 5.7); they are exported as scheduled messages, never as work queues "
        "(default: none, celery_delayed_0..27)",
        "--delayed-delivery-prefix",
        "DELAYED_DELIVERY_PREFIX",
    ),
)
