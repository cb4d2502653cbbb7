"""Celery events from RabbitMQ: one exclusive, auto-delete queue bound to ``celeryev``.

Workers publish events to the topic exchange ``celeryev`` (routing keys ``task.multi``,
``worker.heartbeat``, ...). The exporter declares one queue named
``celeryev.celery-queue-exporter.<host>.<pid>.<random>``, **exclusive** (RabbitMQ deletes it
the moment the exporter's connection closes, also when the exporter is killed or its host
dies) and auto-delete, bound with ``#``. This queue is the exporter's one write to a RabbitMQ
broker. It is capped (``x-max-length``, oldest events dropped) so a stalled exporter cannot grow the
broker's memory.

The exchange is declared passively: the exporter never creates it. Until a worker has
declared it (any Celery worker with events on does), the consumer retries and reports
``celery_event_consumer_up 0``. After a broker restart it reconnects and declares its queue
again; every lost connection counts as ``celery_event_stream_interruptions_total
{reason="disconnected"}``.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions

from ..config import BrokerConfig
from .decode import MalformedEvent, decode_json_body
from .tracker import EventTracker

log = logging.getLogger(__name__)

EVENT_EXCHANGE = "celeryev"
QUEUE_PREFIX = "celeryev.celery-queue-exporter."
#: Events kept for a slow exporter before RabbitMQ drops the oldest.
MAX_QUEUED_EVENTS = 100_000
RECONNECT_DELAYS = (0.0, 0.5, 1.0, 2.0, 5.0)


def connection_parameters(broker: BrokerConfig, timeout: float = 10.0) -> pika.ConnectionParameters:
    """pika parameters from a kombu-style URL (``amqp://user:pass@host:5672//`` = vhost ``/``)."""
    parts = urlsplit(broker.connect_url())
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    tls = parts.scheme == "amqps"
    options: dict[str, Any] = {}
    if tls:
        context = ssl.create_default_context()
        options["ssl_options"] = pika.SSLOptions(context, parts.hostname)
    return pika.ConnectionParameters(
        host=parts.hostname or "localhost",
        port=parts.port or (5671 if tls else 5672),
        virtual_host=vhost,
        credentials=pika.PlainCredentials(
            unquote(parts.username or "guest"), unquote(parts.password or "guest")
        ),
        heartbeat=30,
        blocked_connection_timeout=timeout,
        socket_timeout=timeout,
        connection_attempts=1,
        client_properties={"connection_name": "celery-queue-exporter events"},
        **options,
    )


class RabbitMQEventConsumer:
    """One thread consuming one RabbitMQ broker's Celery events."""

    def __init__(self, broker: BrokerConfig, tracker: EventTracker) -> None:
        self.broker = broker
        self.tracker = tracker
        self.queue_name = (
            f"{QUEUE_PREFIX}{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.subscribed = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"events-{self.broker.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            connection = None
            try:
                connection = pika.BlockingConnection(connection_parameters(self.broker))
                channel = connection.channel()
                channel.exchange_declare(EVENT_EXCHANGE, exchange_type="topic", passive=True)
                channel.queue_declare(
                    self.queue_name,
                    exclusive=True,
                    auto_delete=True,
                    arguments={"x-max-length": MAX_QUEUED_EVENTS},
                )
                channel.queue_bind(self.queue_name, EVENT_EXCHANGE, routing_key="#")
                channel.basic_consume(self.queue_name, self._on_message, auto_ack=True)
                self.tracker.set_consumer_up(True)
                self.subscribed.set()
                attempt = 0
                while not self._stop.is_set():
                    connection.process_data_events(time_limit=0.5)
            except Exception as exc:  # any failure: count, reconnect, never die
                was_up = self.subscribed.is_set()
                self.tracker.set_consumer_up(False)
                self.subscribed.clear()
                if self._stop.is_set():
                    break
                if was_up:
                    self.tracker.count_interruption("disconnected")
                    log.warning(
                        "events from %s interrupted: %s: %s; reconnecting",
                        self.broker.name,
                        type(exc).__name__,
                        exc,
                    )
                    attempt = 0
                else:
                    log.debug("events from %s: cannot subscribe: %r", self.broker.name, exc)
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                if delay:
                    self._stop.wait(delay)
            finally:
                if connection is not None and connection.is_open:
                    try:
                        connection.close()  # the broker deletes the exclusive queue
                    except Exception:
                        log.debug("closing the event connection failed", exc_info=True)
        self.tracker.set_consumer_up(False)
        self.subscribed.clear()

    def _on_message(self, _channel: Any, _method: Any, properties: Any, body: bytes) -> None:
        try:
            events = decode_json_body(body, getattr(properties, "content_type", None))
        except MalformedEvent:
            self.tracker.count_malformed()
            return
        self.tracker.handle(events)
