"""TLS towards RabbitMQ from the broker's ``ssl:`` settings (or Celery's broker_use_ssl): one
SSL context for AMQP (pika) and the matching arguments for the management API (requests), so
both paths trust the same CA and present the same client certificate."""

from __future__ import annotations

import ssl
from typing import Any

import requests

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


class _BrokerSession(requests.Session):
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's ``verify``; a CA
    configured for this broker (or verify: none) must win over the environment."""

    pinned_verify: bool | str | None = None

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings = super().merge_environment_settings(*args, **kwargs)
        if self.pinned_verify is not None:
            settings["verify"] = self.pinned_verify
        return settings


def http_session(tls: BrokerTLS) -> requests.Session:
    """A requests session checking the management API against the broker's CA (with the
    host name, as requests always does when it verifies) and presenting its client
    certificate."""
    session = _BrokerSession()
    if tls.verify == "none":
        session.verify = session.pinned_verify = False
    elif tls.ca_file:
        session.verify = session.pinned_verify = tls.ca_file
    if tls.cert_file:
        session.cert = (tls.cert_file, tls.key_file) if tls.key_file else tls.cert_file
    return session
