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
import uuid
from typing import Any

import pika

from ...config.model import BrokerConfig
from ...events.consumer import EventConsumerThread
from ...events.decode import MalformedEvent, decode_json_body
from ...events.tracker import EventTracker
from ..celery_layout import EVENT_EXCHANGE
from .url import broker_target, connection_parameters

log = logging.getLogger(__name__)

QUEUE_PREFIX = f"{EVENT_EXCHANGE}.celery-queue-exporter."
#: Events kept for a slow exporter before RabbitMQ drops the oldest.
MAX_QUEUED_EVENTS = 100_000
CONNECT_TIMEOUT = 10.0


class RabbitMQEventConsumer(EventConsumerThread):
    """One thread consuming one RabbitMQ broker's Celery events."""

    def __init__(self, broker: BrokerConfig, tracker: EventTracker) -> None:
        super().__init__(broker, tracker)
        self.queue_name = (
            f"{QUEUE_PREFIX}{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        )
        self._connection: pika.BlockingConnection | None = None

    def _consume(self) -> None:
        parameters = connection_parameters(
            broker_target(self.broker),
            "celery-queue-exporter events",
            CONNECT_TIMEOUT,
            self.broker.tls,
            heartbeat=30,
            blocked_connection_timeout=CONNECT_TIMEOUT,
        )
        connection = self._connection = pika.BlockingConnection(parameters)
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
        self._subscribed()
        while not self.stopping:
            connection.process_data_events(time_limit=0.5)

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            try:
                connection.close()  # the broker deletes the exclusive queue
            except Exception:
                log.debug("closing the event connection failed", exc_info=True)

    def _on_message(self, _channel: Any, _method: Any, properties: Any, body: bytes) -> None:
        try:
            events = decode_json_body(body, getattr(properties, "content_type", None))
        except MalformedEvent:
            self.tracker.count_malformed()
            return
        self.tracker.handle(events)
