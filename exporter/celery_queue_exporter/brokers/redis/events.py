"""Celery events from Redis: PSUBSCRIBE to the event channels, nothing else.

kombu's Redis transport publishes every event (fanout exchange ``celeryev``) with PUBLISH on
``{global_keyprefix}/{db}.celeryev/{routing_key}`` (``fanout_prefix`` and ``fanout_patterns``
are on by default; see kombu/transport/redis.py ``_get_publish_topic``). Subscribing to that
pattern directly leaves nothing behind on the broker: no binding set, no queue, no key (unlike
``celery.events.Receiver.capture()``, which registers a binding).

Keeping up: Redis drops a subscriber whose unread output exceeds ``client-output-buffer-limit
pubsub`` (32 MB by default). The consumer reads in its own thread with large socket reads,
parses the RESP replies with hiredis' reader (C; redis-py's per-message handling costs several
times more, a hand-written Python parser about 7 times more), decodes with orjson (decode.py),
then hands a whole read's events to the tracker under one lock. When the subscription is lost anyway
it reconnects at once and counts the interruption: reason ``overflow`` when the same Redis
server (same run_id) dropped us, ``disconnected`` when it restarted or could not be reached.
On Redis >= 7.2 the ``client_output_buffer_limit_disconnections`` statistic confirms overflow.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import hiredis
import redis

from ...config.model import BrokerConfig
from ...events.consumer import EventConsumerThread
from ...events.decode import MalformedEvent, decode_redis_payload
from ...events.tracker import EventTracker
from .connection import redis_client
from .keys import escape_glob, event_channel

READ_SIZE = 1 << 20
#: hiredis compacts its buffer (memmove of everything unread) after each reply once 1 KiB of it
#: is consumed: fed a whole 1 MiB read at once it spends ~10x longer per message than when fed
#: in slices of this size.
FEED_SIZE = 16 << 10
OVERFLOW_STAT = "client_output_buffer_limit_disconnections"


def event_patterns(broker: BrokerConfig) -> list[str]:
    """PSUBSCRIBE patterns of the event channels (with and without fanout_patterns)."""
    base = escape_glob(event_channel(broker.url, broker.options.global_keyprefix))
    return [base, base + "/*"]


class RespError(Exception):
    """The server answered the subscribed connection with an error."""


class RedisEventConsumer(EventConsumerThread):
    """One thread subscribed to one Redis broker's Celery events."""

    def __init__(
        self,
        broker: BrokerConfig,
        tracker: EventTracker,
        *,
        connect_timeout: float = 10.0,
        idle_ping_seconds: float = 10.0,
    ) -> None:
        super().__init__(broker, tracker)
        self.connect_timeout = connect_timeout
        self.idle_ping_seconds = idle_ping_seconds
        self.patterns = event_patterns(broker)
        self._sock: socket.socket | None = None
        self._conn: Any = None
        self._redis: redis.Redis | None = None  # owns the connection pool of _conn
        self._server: tuple[str, int | None] | None = None  # (run_id, overflow stat)

    def _consume(self) -> None:
        self._connect()
        self._read_loop()

    def _interrupt(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _client(self) -> redis.Redis:
        return redis_client(
            self.broker,
            protocol=2,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.connect_timeout,
            socket_keepalive=True,
            client_name="celery-queue-exporter-events",
        )

    def _server_state(self, client: redis.Redis) -> tuple[str, int | None]:
        """The server's run_id and overflow count, to tell overflow from a restart; ('', None)
        when an ACL forbids INFO: events still flow, interruptions count as 'disconnected'."""
        try:
            server = client.info("server")
            stats = client.info("stats")
        except redis.exceptions.NoPermissionError:
            return "", None
        stat = stats.get(OVERFLOW_STAT)
        return str(server.get("run_id", "")), int(stat) if stat is not None else None

    def _refusal(self, exc: BaseException) -> str | None:
        """A Redis ACL refusing the event subscription (NOPERM) or the credentials, for one
        clear log line instead of a quiet celery_event_consumer_up 0."""
        text = str(exc)
        if isinstance(exc, redis.exceptions.AuthenticationError) or text.startswith(
            ("WRONGPASS", "NOAUTH")
        ):
            return "Redis refused the exporter's credentials (WRONGPASS/NOAUTH)"
        if isinstance(exc, redis.exceptions.NoPermissionError) or text.startswith("NOPERM"):
            return (
                f"the Redis ACL refuses the event subscription ({text.strip()}): --events "
                "needs +psubscribe +punsubscribe and access to the event channels (&* or "
                "&*celeryev*) for the exporter's user (see README.md#permissions)"
            )
        return None

    def _interruption_reason(self) -> str:
        """Was the subscriber dropped by a live server (overflow) or did the server go away?"""
        before = self._server
        if before is None or not before[0]:
            return "disconnected"
        try:
            client = self._client()
            try:
                after = self._server_state(client)
            finally:
                client.close()
        except Exception:  # server unreachable: it restarted or the network is down
            return "disconnected"
        if after[0] != before[0]:
            return "disconnected"
        if before[1] is not None and after[1] is not None:
            return "overflow" if after[1] > before[1] else "disconnected"
        return "overflow"

    def _connect(self) -> None:
        client = self._redis = self._client()
        self._server = self._server_state(client)
        pool = client.connection_pool
        conn = pool.get_connection()
        self._conn = conn
        conn.send_command("PSUBSCRIBE", *self.patterns)
        sock = conn._sock
        sock.settimeout(1.0)
        self._sock = sock

    def _disconnect(self) -> None:
        conn, self._conn, self._sock = self._conn, None, None
        client, self._redis = self._redis, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        reader = hiredis.Reader()
        feed, gets = reader.feed, reader.gets
        buf = bytearray(READ_SIZE)
        tracker = self.tracker
        decode = decode_redis_payload
        last_data = time.monotonic()
        ping_sent: float | None = None
        pending = len(self.patterns)
        while not self.stopping:
            try:
                size = sock.recv_into(buf)
            except TimeoutError:
                idle = time.monotonic() - last_data
                if ping_sent is not None and time.monotonic() - ping_sent > self.idle_ping_seconds:
                    raise ConnectionError("no answer to PING") from None
                if ping_sent is None and idle > self.idle_ping_seconds:
                    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                    ping_sent = time.monotonic()
                continue
            if not size:
                raise ConnectionError("connection closed by the server")
            last_data = time.monotonic()
            events: list[Any] = []
            malformed = 0
            for offset in range(0, size, FEED_SIZE):
                feed(buf, offset, min(FEED_SIZE, size - offset))
                while (reply := gets()) is not False:
                    if type(reply) is not list or not reply:
                        if isinstance(reply, hiredis.ReplyError):
                            raise RespError(str(reply))
                        continue  # +OK and the like
                    kind = reply[0]
                    if kind == b"pmessage" and len(reply) == 4:
                        try:
                            events.extend(decode(reply[3]))
                        except MalformedEvent:
                            malformed += 1
                    elif kind == b"psubscribe":
                        pending -= 1
                        if pending == 0:
                            self._subscribed()
                    elif kind == b"pong":
                        ping_sent = None
            if events or malformed:
                tracker.handle(events, malformed)
