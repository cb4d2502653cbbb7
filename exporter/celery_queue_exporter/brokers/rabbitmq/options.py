"""RabbitMQ broker options: where the management API is and whether to use it."""

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

OPTIONS = (MANAGEMENT_URL, MANAGEMENT)


@dataclass(frozen=True)
class RabbitMQOptions:
    """A RabbitMQ broker's options, typed; one field per declaration above."""

    #: The management API's URL (credentials in it replace the broker's); None: the default.
    #: May carry credentials (user:password@): kept out of repr().
    management_url: str | None = field(default=MANAGEMENT_URL.default, repr=False)
    #: auto | always | never
    management: str = MANAGEMENT.default
