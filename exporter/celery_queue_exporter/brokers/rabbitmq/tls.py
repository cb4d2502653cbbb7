"""TLS towards RabbitMQ from the broker's ``ssl:`` settings (or Celery's broker_use_ssl): one
SSL context for AMQP (pika) and the matching arguments for the management API (requests), so
both paths trust the same CA and present the same client certificate."""

from __future__ import annotations

import ssl
from typing import Any

from ...config.model import BrokerTLS

VERIFY_MODES = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}


def amqp_context(tls: BrokerTLS) -> ssl.SSLContext:
    """The system's CAs unless ``ca_file``; host name checked when verification is required."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    context.check_hostname = tls.verify == "required"
    context.verify_mode = VERIFY_MODES[tls.verify]
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def http_arguments(tls: BrokerTLS) -> dict[str, Any]:
    """``verify`` and ``cert`` for requests (which always checks the host name when it
    verifies)."""
    arguments: dict[str, Any] = {"verify": tls.ca_file or True}
    if tls.verify == "none":
        arguments["verify"] = False
    if tls.cert_file:
        arguments["cert"] = (tls.cert_file, tls.key_file) if tls.key_file else tls.cert_file
    return arguments
