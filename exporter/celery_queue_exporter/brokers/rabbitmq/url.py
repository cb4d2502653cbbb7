"""AMQP broker URLs as kombu reads them, and the pika connection parameters they mean; the
inspector and the event consumer connect through here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pika

from ...config.model import BrokerTLS
from ...config.urls import BrokerURL, bracket
from .tls import amqp_context

if TYPE_CHECKING:
    from ...config.model import BrokerConfig
    from .options import RabbitMQOptions

DEFAULT_AMQP_PORT = 5672
DEFAULT_AMQPS_PORT = 5671
DEFAULT_MANAGEMENT_PORT = 15672
DEFAULT_MANAGEMENT_TLS_PORT = 15671


@dataclass(frozen=True)
class AmqpTarget:
    """Where and how to connect, from the broker URL (kombu's URL conventions)."""

    tls: bool
    host: str
    port: int
    user: str
    password: str = ""
    vhost: str = "/"

    def __repr__(self) -> str:  # never show the password
        return f"AmqpTarget(host={self.host!r}, port={self.port}, vhost={self.vhost!r})"


def amqp_target(url: BrokerURL, password: str | None = None) -> AmqpTarget:
    """Where to connect for an ``amqp://user:pass@host:5672/vhost`` URL (also ``amqps://``,
    ``pyamqp://``) as kombu reads it; ``password`` (given apart from the URL) replaces the
    URL's. The vhost is ``BrokerURL.vhost``; user and password default to guest (a password
    given apart with no user in the URL logs in as the empty user, as kombu would)."""
    first = url.first
    scheme = first.scheme.lower()
    tls = scheme == "amqps" or scheme.endswith("+ssl")
    if password is not None:
        user, secret = first.username or "", password
    else:
        user = first.username if first.username is not None else "guest"
        secret = first.password if first.password is not None else "guest"
    return AmqpTarget(
        tls=tls,
        host=first.host or "localhost",
        port=first.port or (DEFAULT_AMQPS_PORT if tls else DEFAULT_AMQP_PORT),
        user=user,
        password=secret,
        vhost=url.vhost,
    )


def broker_target(broker: BrokerConfig[RabbitMQOptions]) -> AmqpTarget:
    """The broker's AMQP target, its password given apart (if any) put in."""
    return amqp_target(broker.url, broker.password)


def parse_amqp_url(url: str) -> AmqpTarget:
    """``amqp_target`` of a URL text (for callers that hold no BrokerConfig)."""
    return amqp_target(BrokerURL.parse(url))


def default_management_url(target: AmqpTarget) -> str:
    """``http://<host>:15672``, or ``https://<host>:15671`` for an ``amqps://`` broker."""
    if target.tls:
        return f"https://{bracket(target.host)}:{DEFAULT_MANAGEMENT_TLS_PORT}"
    return f"http://{bracket(target.host)}:{DEFAULT_MANAGEMENT_PORT}"


def connection_parameters(
    target: AmqpTarget,
    connection_name: str,
    timeout: float,
    tls: BrokerTLS | None = None,
    **extra: Any,
) -> pika.ConnectionParameters:
    """pika parameters for ``target``: TLS checked against the broker's ``tls:`` CA (default:
    the system's CAs, honouring SSL_CERT_FILE / SSL_CERT_DIR) and the host name (or
    ``server_name``), one attempt, ``timeout`` per socket step."""
    ssl_options = None
    if target.tls:
        tls = tls or BrokerTLS()
        server_name = tls.server_name or target.host
        ssl_options = pika.SSLOptions(amqp_context(tls), server_hostname=server_name)
    return pika.ConnectionParameters(
        host=target.host,
        port=target.port,
        virtual_host=target.vhost,
        credentials=pika.PlainCredentials(target.user, target.password),
        ssl_options=ssl_options,
        socket_timeout=timeout,
        connection_attempts=1,
        client_properties={"connection_name": connection_name},
        **extra,
    )
