"""The shared RabbitMQ, as tests and benchmarks use it: check it answers, and delete exactly
the queues and exchanges they created (never anything else on a broker others use)."""

from __future__ import annotations

import contextlib
import os

import pika

from celery_queue_exporter.config import redact_url


def pika_url(url: str) -> str:
    """A kombu AMQP URL as pika wants it: kombu writes the default vhost as "//" ("/" + "/"),
    pika wants it %2F-encoded."""
    if url.endswith("//"):
        return url[:-1] + "%2F"
    return url


def rabbitmq_available(url: str) -> bool:
    """Whether an AMQP connection to ``url`` opens."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(pika_url(url)))
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False
    connection.close()
    return True


def delete_rabbitmq_objects(url: str, queues: list[str], exchanges: list[str]) -> list[str]:
    """Delete the caller's own queues and exchanges (names it generated).

    Goes on after a failure (a channel per deletion: an error closes the channel) and returns
    the errors, with the URL's password redacted, so a clean-up never hides the real result.
    """
    try:
        connection = pika.BlockingConnection(pika.URLParameters(pika_url(url)))
    except Exception as exc:  # noqa: BLE001
        return [f"cannot connect to {redact_url(url)} for clean-up: {type(exc).__name__}"]
    errors: list[str] = []
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = connection.channel()
                try:
                    if kind == "queue":
                        channel.queue_delete(queue=name)
                    else:
                        channel.exchange_delete(exchange=name)
                except Exception as exc:  # noqa: BLE001 - report, go on with the rest
                    errors.append(f"delete {kind} {name}: {type(exc).__name__}")
                with contextlib.suppress(Exception):
                    channel.close()
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    return errors


#: The machine's RabbitMQ, as tests reach it (CQE_TEST_RABBITMQ_URL names another).
RABBITMQ_URL = os.environ.get("CQE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")

#: The machine's RabbitMQ management API and the account tests use on it.
MANAGEMENT_API = "http://127.0.0.1:15672/api"
GUEST = ("guest", "guest")


def create_vhost(name: str, api: str = MANAGEMENT_API) -> str:
    """Create vhost ``name`` usable by guest on the node whose management API is ``api`` (the
    shared RabbitMQ's by default; testsupport.brokers passes each generation's); returns the
    name."""
    import requests  # a test dependency; the rest of this module needs only pika

    requests.put(f"{api}/vhosts/{name}", auth=GUEST, timeout=10).raise_for_status()
    requests.put(
        f"{api}/permissions/{name}/guest",
        json={"configure": ".*", "write": ".*", "read": ".*"},
        auth=GUEST,
        timeout=10,
    ).raise_for_status()
    return name


def delete_vhost(name: str, api: str = MANAGEMENT_API) -> None:
    """Delete vhost ``name`` with everything in it (30 s: a vhost holding quorum queues takes
    seconds to go on RabbitMQ 4)."""
    import requests

    requests.delete(f"{api}/vhosts/{name}", auth=GUEST, timeout=30)


def create_user(
    name: str,
    password: str,
    vhost: str,
    *,
    tags: str = "monitoring",
    configure: str = "^$",
    write: str = "^$",
    read: str = ".*",
) -> str:
    """Create user ``name`` with ``tags`` and these permission regexes on ``vhost``."""
    import requests

    requests.put(
        f"{MANAGEMENT_API}/users/{name}",
        json={"password": password, "tags": tags},
        auth=GUEST,
        timeout=10,
    ).raise_for_status()
    requests.put(
        f"{MANAGEMENT_API}/permissions/{vhost}/{name}",
        json={"configure": configure, "write": write, "read": read},
        auth=GUEST,
        timeout=10,
    ).raise_for_status()
    return name


def delete_user(name: str) -> None:
    """Delete user ``name`` (its permissions go with it)."""
    import requests

    requests.delete(f"{MANAGEMENT_API}/users/{name}", auth=GUEST, timeout=10)
