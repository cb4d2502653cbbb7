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
import re
import socket
import uuid
from typing import Any

import pika

from ...config.model import BrokerConfig
from ...events.consumer import EventConsumerThread
from ...events.decode import MalformedEvent, decode_json_body
from ...events.tracker import EventTracker
from ..celery_layout import EVENT_EXCHANGE
from .amqp import _quiet_pika
from .url import broker_target, connection_parameters

log = logging.getLogger(__name__)

QUEUE_PREFIX = f"{EVENT_EXCHANGE}.celery-queue-exporter."
#: Events kept for a slow exporter before RabbitMQ drops the oldest.
MAX_QUEUED_EVENTS = 100_000
CONNECT_TIMEOUT = 10.0
#: The permission regexes --events needs beyond the read-only monitoring user (checked on
#: RabbitMQ 3.10.8 by tests/test_hardening_permissions.py; docs/rabbitmq.md).
EVENT_QUEUE_PERMISSION = r"^celeryev\.celery-queue-exporter\..*"
PERMISSIONS_DOC = "docs/rabbitmq.md#permissions-for---events"
#: (AMQP method refused, resource kind) -> the permission RabbitMQ checks for it.
_CHECKED_PERMISSION = {
    ("queue.declare", "queue"): "configure",
    ("queue.bind", "queue"): "write",
    ("queue.bind", "exchange"): "read",
    ("basic.consume", "queue"): "read",
    ("exchange.declare", "exchange"): "read",
}
_REFUSED_RESOURCE = re.compile(r"access to (queue|exchange) '([^']*)'")


class RabbitMQEventConsumer(EventConsumerThread):
    """One thread consuming one RabbitMQ broker's Celery events."""

    def __init__(self, broker: BrokerConfig, tracker: EventTracker) -> None:
        super().__init__(broker, tracker)
        self.queue_name = (
            f"{QUEUE_PREFIX}{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        )
        self._connection: pika.BlockingConnection | None = None
        #: The AMQP method being sent, to name the permission a 403 is about.
        self._step = "connect"
        _quiet_pika()  # pika would log every refused retry itself; _refusal says it once

    def _consume(self) -> None:
        parameters = connection_parameters(
            broker_target(self.broker),
            "celery-queue-exporter events",
            CONNECT_TIMEOUT,
            self.broker.tls,
            heartbeat=30,
            blocked_connection_timeout=CONNECT_TIMEOUT,
        )
        self._step = "connect"
        connection = self._connection = pika.BlockingConnection(parameters)
        channel = connection.channel()
        self._step = "exchange.declare"
        channel.exchange_declare(EVENT_EXCHANGE, exchange_type="topic", passive=True)
        self._step = "queue.declare"
        channel.queue_declare(
            self.queue_name,
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": MAX_QUEUED_EVENTS},
        )
        self._step = "queue.bind"
        channel.queue_bind(self.queue_name, EVENT_EXCHANGE, routing_key="#")
        self._step = "basic.consume"
        channel.basic_consume(self.queue_name, self._on_message, auto_ack=True)
        self._step = "consume"
        self._subscribed()
        while not self.stopping:
            connection.process_data_events(time_limit=0.5)

    def _refusal(self, exc: BaseException) -> str | None:
        """The permission RabbitMQ refused (ACCESS_REFUSED on a method, or no access to the
        vhost at all), for one clear log line instead of a quiet celery_event_consumer_up 0."""
        target = broker_target(self.broker)
        who = f"user {target.user!r} in vhost {target.vhost!r}"
        needs = (
            f"--events needs configure and write on the exporter's own queues "
            f"'{EVENT_QUEUE_PERMISSION}' and read on the '{EVENT_EXCHANGE}' exchange and those "
            f"queues (see {PERMISSIONS_DOC})"
        )
        if isinstance(exc, pika.exceptions.ChannelClosedByBroker) and exc.reply_code == 403:
            found = _REFUSED_RESOURCE.search(exc.reply_text or "")
            kind, name = found.groups() if found else ("resource", "?")
            permission = _CHECKED_PERMISSION.get((self._step, kind), "the")
            return (
                f"RabbitMQ refused {permission} permission on {kind} {name!r} to {who} "
                f"({self._step}: 403 ACCESS_REFUSED): {needs}"
            )
        if isinstance(exc, pika.exceptions.ProbableAccessDeniedError) or (
            isinstance(exc, pika.exceptions.ConnectionClosedByBroker) and exc.reply_code == 530
        ):
            return f"RabbitMQ gives {who} no access to the vhost (no permissions set): {needs}"
        if isinstance(
            exc, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError
        ):
            return f"RabbitMQ refused the credentials of {who} (wrong password or unknown user)"
        return None

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
