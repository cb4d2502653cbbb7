"""The AMQP way into a RabbitMQ broker (pika): one passive ``queue.declare`` per queue, which
gives the ready count (all priorities together) and the consumer count, and never creates a
queue. A missing queue closes the channel with 404: a new channel is opened and the queue is
reported missing. Every call is bounded by the inspection's deadline (a timer on pika's own
I/O loop).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pika
import pika.exceptions

from ...config.model import BrokerConfig
from ...snapshot import BrokerSnapshot, LevelReading, select_queues
from .delayed import scheduled_sample, work_queues
from .errors import RabbitMQInspectionError, broker_where
from .options import RabbitMQOptions
from .url import AmqpTarget, connection_parameters

log = logging.getLogger("celery_queue_exporter.brokers.rabbitmq.inspector")


class _DeadlineExceeded(Exception):
    """Raised from a pika timer when an AMQP call runs past the inspection's deadline."""


class AmqpReader:
    """Reads queues by passive declares over one kept AMQP connection."""

    def __init__(
        self, config: BrokerConfig[RabbitMQOptions], target: AmqpTarget, timeout_seconds: float
    ) -> None:
        _quiet_pika()
        self.config = config
        self.where = broker_where(config)
        self.target = target
        self.timeout_seconds = timeout_seconds
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None

    def read(self, deadline: float, discovered: list[str]) -> BrokerSnapshot:
        """The configured queues plus ``discovered`` (AMQP has no listing: those the API
        listed when it last answered)."""
        queues, over_limit = select_queues(self.config, discovered)
        queues = work_queues(queues, self.config.options.delayed_delivery_prefix)
        snapshot = BrokerSnapshot(queues_over_limit=over_limit)
        try:
            channel = self._open_channel(deadline)
            for queue in queues:
                channel = self._declare_passive(snapshot, queue, channel, deadline)
        except _DeadlineExceeded:
            self._drop_connection()
            raise RabbitMQInspectionError(
                f"{self.where}: AMQP did not answer within {self.timeout_seconds:g}s"
            ) from None
        except pika.exceptions.ProbableAuthenticationError:
            self._drop_connection()
            raise RabbitMQInspectionError(
                f"{self.where}: login refused for user {self.target.user!r} "
                "(wrong user name or password)"
            ) from None
        except pika.exceptions.ProbableAccessDeniedError:
            self._drop_connection()
            raise RabbitMQInspectionError(
                f"{self.where}: user {self.target.user!r} may not access vhost "
                f"{self.target.vhost!r} (or it does not exist)"
            ) from None
        except Exception as exc:  # pika's connection workflow raises its own exception types
            self._drop_connection()
            raise RabbitMQInspectionError(
                f"{self.where}: AMQP failed ({_amqp_reason(exc)})"
            ) from None
        return snapshot

    def read_into(self, snapshot: BrokerSnapshot, queues: list[str], deadline: float) -> None:
        """Depth and consumers of ``queues`` into ``snapshot`` (queues the management API
        listed without statistics yet); best effort: on any failure they stay without a
        depth this scrape."""
        try:
            channel = self._open_channel(deadline)
            for queue in queues:
                channel = self._declare_passive(snapshot, queue, channel, deadline)
        except Exception as exc:  # noqa: BLE001 - a bridge over the API's gap, never an error
            log.debug("%s: passive declare of new queues failed: %s", self.where, exc)
            self._drop_connection()

    def read_scheduled_into(
        self, snapshot: BrokerSnapshot, queues: list[str], prefix: str, deadline: float
    ) -> None:
        """celery_scheduled_messages of delay ``queues`` the API listed without statistics
        yet, by passive declare (ready messages only: the API adds those held unacked while
        they are dead-lettered); best effort, like read_into."""
        try:
            channel = self._open_channel(deadline)
            for queue in queues:
                frame, channel = self._passive(queue, channel, deadline)
                if frame is None:
                    continue  # gone meanwhile: no band
                sample = scheduled_sample(queue, int(frame.method.message_count), prefix)
                if sample is not None:
                    snapshot.extra.append(sample)
        except Exception as exc:  # noqa: BLE001 - a bridge over the API's gap, never an error
            log.debug("%s: passive declare of new delay queues failed: %s", self.where, exc)
            self._drop_connection()

    def _declare_passive(
        self, snapshot: BrokerSnapshot, queue: str, channel: Any, deadline: float
    ) -> Any:
        """Passive queue.declare: ready count and consumers; a 404 means missing."""
        reading = snapshot.queue(queue)
        frame, channel = self._passive(queue, channel, deadline)
        reading.missing = frame is None
        if frame is not None:
            reading.consumers = int(frame.method.consumer_count)
            snapshot.levels.append(LevelReading(queue, None, int(frame.method.message_count)))
        return channel

    def _passive(self, queue: str, channel: Any, deadline: float) -> tuple[Any | None, Any]:
        """(the queue.declare-ok frame, the channel to go on with); no frame for a missing
        queue (404), whose reply closed the channel: a new one is opened."""
        try:
            with self._bounded(deadline):
                return channel.queue_declare(queue=queue, passive=True), channel
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            return None, self._open_channel(deadline)

    def _open_channel(self, deadline: float) -> Any:
        """The open channel, reconnecting if the connection was lost since the last scrape."""
        connection = self._connection
        if connection is not None and connection.is_open:
            try:
                with self._bounded(deadline):
                    connection.process_data_events(time_limit=0)  # heartbeats, close frames
            except pika.exceptions.AMQPError:
                self._drop_connection()
        if self._connection is None or not self._connection.is_open:
            self._connection = self._connect(deadline)
            self._channel = None
        if self._channel is None or not self._channel.is_open:
            with self._bounded(deadline):
                self._channel = self._connection.channel()
        return self._channel

    def _connect(self, deadline: float) -> pika.BlockingConnection:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlineExceeded
        parameters = connection_parameters(
            self.target,
            f"celery-queue-exporter {self.config.name}",
            remaining,
            self.config.tls,
            stack_timeout=remaining,
            retry_delay=0,
        )
        try:
            return pika.BlockingConnection(parameters)
        except Exception as exc:
            # pika raises its connection workflow's own exception types (not AMQPError
            # subclasses) or wraps the real cause (auth, vhost, refused) in one.
            cause = _connection_cause(exc)
            if isinstance(
                cause,
                pika.exceptions.ProbableAuthenticationError
                | pika.exceptions.ProbableAccessDeniedError,
            ):
                raise cause from None
            timed_out = isinstance(cause, TimeoutError) or "Timeout" in type(cause).__name__
            if timed_out or time.monotonic() >= deadline - 0.1:
                raise _DeadlineExceeded from None
            raise cause from None

    class _Bound:
        def __init__(self, inspector: AmqpReader, deadline: float) -> None:
            self.inspector = inspector
            self.deadline = deadline
            self.timer: Any = None

        def __enter__(self) -> None:
            connection = self.inspector._connection
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise _DeadlineExceeded
            if connection is not None and connection.is_open:
                # A timer on pika's own I/O loop: it fires inside the blocking wait and its
                # exception ends the call, so a stalled broker cannot hold us past the deadline.
                self.timer = connection._impl.ioloop.call_later(remaining, _raise_deadline)

        def __exit__(self, *exc: object) -> None:
            connection = self.inspector._connection
            if self.timer is not None and connection is not None:
                try:
                    connection._impl.ioloop.remove_timeout(self.timer)
                except Exception:  # the connection may be gone; the timer with it
                    log.debug("removing a pika timer failed", exc_info=True)

    def _bounded(self, deadline: float) -> AmqpReader._Bound:
        return AmqpReader._Bound(self, deadline)

    def _drop_connection(self) -> None:
        """Forget the connection; close its socket without waiting for the broker."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is None:
            return
        try:
            transport = getattr(connection._impl, "_transport", None)
            if transport is not None:
                transport.abort()
        except Exception:  # already closed
            log.debug("aborting the AMQP connection failed", exc_info=True)

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # closing a dead connection may fail; nothing to do about it
                log.debug("closing the AMQP connection failed", exc_info=True)


def _quiet_pika() -> None:
    """pika logs every connection step at INFO and every failed login with a traceback at
    ERROR, on every scrape; the inspector reports failures itself (one line per scrape, via
    the collector). Keep pika's own logs for DEBUG runs, unless the user set pika's level."""
    pika_log = logging.getLogger("pika")
    if pika_log.level == logging.NOTSET:
        pika_log.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.CRITICAL)


def _raise_deadline() -> None:
    raise _DeadlineExceeded


def _connection_cause(exc: pika.exceptions.AMQPConnectionError) -> BaseException:
    """The innermost meaningful error of pika's connection workflow failure."""
    seen: BaseException = exc
    for _ in range(5):
        inner = None
        if seen.args and isinstance(seen.args[0], BaseException):
            inner = seen.args[0]
        exceptions = getattr(seen, "exceptions", None)
        if inner is None and exceptions:
            inner = exceptions[-1]
        if inner is None:
            break
        seen = inner
        if isinstance(
            seen,
            pika.exceptions.ProbableAuthenticationError | pika.exceptions.ProbableAccessDeniedError,
        ):
            break
    return seen if isinstance(seen, Exception) else exc


def _amqp_reason(exc: BaseException) -> str:
    """A short reason without URLs or credentials (pika's messages hold neither)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker):
        return f"connection closed by the broker: {exc.reply_code} {exc.reply_text}"
    if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
        return f"channel closed by the broker: {exc.reply_code} {exc.reply_text}"
    if isinstance(exc, pika.exceptions.StreamLostError):
        return "connection lost"
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:300]
