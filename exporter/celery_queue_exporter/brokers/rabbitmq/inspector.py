"""Read-only inspection of a RabbitMQ broker: the management HTTP API, else AMQP.

Two ways in, chosen by ``BrokerConfig.management`` (auto | always | never):

* The management HTTP API (default ``http://<amqp host>:15672``, ``https://<host>:15671`` for
  ``amqps://``, same credentials): ONE ``GET /api/queues/{vhost}?columns=...`` per scrape for
  all queues of the vhost. It gives ready and unacknowledged messages, consumers, consumer
  utilisation, ``x-max-priority``, per-priority ready counts where the broker reports them
  (classic priority queues up to 3.12.6: ``backing_queue_status.priority_lengths``; quorum
  queues on 4.x: ``messages_ready_high``/``messages_ready_normal`` or
  ``messages_by_priority``) and ``head_message_timestamp``.
* AMQP (pika): one passive ``queue.declare`` per queue, which gives the ready count (all
  priorities together) and the consumer count, and never creates a queue. A missing queue
  closes the channel with 404: a new channel is opened and the queue is reported missing.

In ``auto`` mode the API is tried first on every scrape (with at most half the time budget) and
AMQP is the fallback; ``celery_rabbitmq_management_api_up`` says which one answered. Nothing
is ever written: no queue is declared (other than passively), bound, purged or consumed from.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import pika.exceptions
import requests

from ... import catalogue as cat
from ...config.urls import bracket, redact_url
from ...snapshot import BrokerSnapshot, ExtraSample, LevelReading, select_queues
from ..base import Inspector
from ..celery_layout import is_internal_queue
from ..peer_deadline import Deadline
from . import quorum
from .delayed import delayed_level, scheduled_samples
from .http import deadline_session
from .tls import http_session
from .url import connection_parameters, default_management_url, parse_amqp_url

log = logging.getLogger(__name__)

#: Columns asked of /api/queues/{vhost}; the broker leaves out those it does not know.
MANAGEMENT_COLUMNS = (
    "name",
    "type",
    "state",
    "arguments",
    "exclusive",
    "auto_delete",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "consumer_utilisation",
    "consumer_capacity",
    "head_message_timestamp",
    "backing_queue_status.priority_lengths",
    "messages_ready_high",
    "messages_ready_normal",
    "messages_by_priority",
    # RabbitMQ 4 (issue 23): returned messages, redeliveries, the delivery limit and its DLX.
    "messages_ready_returned",
    "message_stats.redeliver",
    "delivery_limit",
    "effective_policy_definition",
)

#: RabbitMQ refuses an x-max-priority above 255 (rabbit_priority_queue's limit).
MAX_PRIORITY_CAP = 255
#: Quorum queues on RabbitMQ 4.0-4.2 have two priority buckets; 'high' is served first.
QUORUM_LEVELS_MOST_URGENT_FIRST = ("high", "normal")
#: Queue types whose management entry never carries head_message_timestamp.
HEADLESS_QUEUE_TYPES = frozenset({"quorum", "stream"})


class RabbitMQInspectionError(RuntimeError):
    """An inspection failure with a message fit for logs (names the broker, no password)."""


class _DeadlineExceeded(Exception):
    """Raised from a pika timer when an AMQP call runs past the inspection's deadline."""


def _split_management_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """The management URL without credentials, and the credentials it carried (if any)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url.rstrip("/"), None
    host = bracket(parts.hostname or "")
    netloc = f"{host}:{parts.port}" if parts.port else host
    bare = urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")
    return bare, (unquote(parts.username), unquote(parts.password or ""))


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a double, from a faulty API
        return None
    return number if math.isfinite(number) else None


def _label_text(value: Any) -> bool:
    """A string a label can carry: a lone surrogate (JSON can write "\\ud800") would make
    every scrape fail to encode."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _max_priority(value: Any) -> int | None:
    """x-max-priority as RabbitMQ can hold it (0..255); anything else from a faulty API is
    unknown, never a loop over millions of levels on every scrape."""
    number = _as_int(value)
    return number if number is not None and 0 <= number <= MAX_PRIORITY_CAP else None


def _numbered_levels(raw: Any) -> dict[int, int] | None:
    """Per-priority counts from ``{"0": 4, "1": 0, ...}`` or ``[4, 0, ...]`` (index = level)."""
    if isinstance(raw, dict) and raw:
        levels: dict[int, int] = {}
        for key, value in raw.items():
            try:
                level = int(str(key))
            except ValueError:
                return None
            count = _as_int(value)
            if count is None or level < 0:
                return None
            levels[level] = count
        return levels
    if isinstance(raw, list) and raw and all(_as_int(v) is not None for v in raw):
        return {level: int(count) for level, count in enumerate(raw)}
    return None


def queue_levels(entry: dict[str, Any]) -> tuple[list[tuple[str, int]], list[str]] | None:
    """The per-priority ready counts of one queue from a management API entry, and the levels
    most urgent first; None when the broker does not report them for this queue."""
    backing = entry.get("backing_queue_status")
    numbered = None
    if isinstance(backing, dict):
        numbered = _numbered_levels(backing.get("priority_lengths"))
    if numbered is None:
        numbered = _numbered_levels(entry.get("messages_by_priority"))
    if numbered is not None:
        ordered = sorted(numbered)
        return (
            [(str(level), numbered[level]) for level in ordered],
            [str(level) for level in reversed(ordered)],  # RabbitMQ serves the highest first
        )
    high = _as_int(entry.get("messages_ready_high"))
    normal = _as_int(entry.get("messages_ready_normal"))
    if high is not None and normal is not None:
        return [("high", high), ("normal", normal)], list(QUORUM_LEVELS_MOST_URGENT_FIRST)
    return None


class RabbitMQInspector(Inspector):
    """Inspects one RabbitMQ vhost."""

    def setup(self) -> None:
        _quiet_pika()
        self.target = parse_amqp_url(self.config.connect_url())
        mgmt_url, mgmt_auth = _split_management_url(
            self.config.management_url or default_management_url(self.target)
        )
        self.management_url = mgmt_url
        self._auth = mgmt_auth or (self.target.user, self.target.password)
        # The broker's CA and client certificate; connections report their sockets to the
        # inspection's Deadline.
        self._session = deadline_session(http_session(self.config.tls))
        self._session.headers["User-Agent"] = "celery-queue-exporter"
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._discovered: list[str] = []
        self._queues_over_limit = 0
        self._management_state: bool | None = None
        self._management_problem: str | None = None
        self._delayed_prefix: str = getattr(self.config, "delayed_delivery_prefix", None) or ""
        #: Listed queues whose statistics the API does not have yet (a quorum queue's first
        #: seconds): read by a passive queue.declare instead, so their depth has no gap.
        self._stats_pending: list[str] = []

    # --- naming -----------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """How errors name the broker: its label and its URL without credentials."""
        return f"RabbitMQ broker {self.config.name} ({self.config.safe_url})"

    def _queues(self, discovered: list[str] | None) -> list[str]:
        cfg = self.config
        queues, self._queues_over_limit = select_queues(cfg, discovered or [])
        # Celery's native delayed delivery queues hold scheduled messages: never work queues.
        return [q for q in queues if delayed_level(q, self._delayed_prefix) is None]

    # --- inspection -------------------------------------------------------------------------

    def inspect(self) -> BrokerSnapshot:
        """One scrape of the vhost. Raises RabbitMQInspectionError when the broker is out of
        reach (or refuses the credentials) by every allowed way."""
        started = time.monotonic()
        # A little under the collector's timeout, so our own error wins over its "timed out".
        deadline = started + 0.9 * self.timeout_seconds
        mode = self.config.management
        problem: str | None = None
        if mode != "never":
            # In auto mode, keep half the budget for the AMQP fallback.
            budget = deadline if mode == "always" else started + 0.45 * self.timeout_seconds
            try:
                snapshot = self._inspect_management(budget)
            except RabbitMQInspectionError as exc:
                if mode == "always":
                    raise
                problem = str(exc)
            else:
                self._note_management(True, None)
                return snapshot
        snapshot = self._inspect_amqp(deadline)
        snapshot.management_api_up = False
        self._note_management(False, problem)
        return snapshot

    def _note_management(self, up: bool, problem: str | None) -> None:
        """Log when the API goes away or comes back, not on every scrape."""
        if self.config.management == "never":
            return
        if not up and problem and problem != self._management_problem:
            log.warning("%s; using AMQP (no per-priority or unacknowledged counts)", problem)
        elif up and self._management_state is False:
            log.info("%s: management API answers again", self.where)
        self._management_state = up
        self._management_problem = None if up else problem

    # --- management API ---------------------------------------------------------------------

    def _inspect_management(self, deadline: float) -> BrokerSnapshot:
        url = f"{self.management_url}/api/queues/{quote(self.target.vhost, safe='')}"
        remaining = max(0.05, deadline - time.monotonic())
        api = redact_url(self.management_url)
        # requests' timeouts are per read: the Deadline bounds the whole request (a server
        # that sends one byte every half second would otherwise hold us for hours).
        try:
            with Deadline(remaining) as whole_call:
                reply = self._session.get(
                    url,
                    params={"columns": ",".join(MANAGEMENT_COLUMNS)},
                    auth=self._auth,
                    timeout=(remaining, remaining),
                )
        except requests.RequestException as exc:
            if whole_call.expired or isinstance(exc, requests.Timeout):
                raise RabbitMQInspectionError(
                    f"{self.where}: management API {api} did not answer within {remaining:.1f}s"
                ) from None
            reason = type(exc).__name__
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} unreachable ({reason})"
            ) from None
        finally:
            self._session.close()  # a new connection (and socket to watch) for every call
        if reply.status_code == 401:
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} refused the credentials of user "
                f"{self._auth[0]!r} (401: wrong password, or the user lacks the "
                "'monitoring' or 'management' tag)"
            )
        if reply.status_code == 404:
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} knows no vhost {self.target.vhost!r} (404)"
            )
        if reply.status_code != 200:
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} answered HTTP {reply.status_code}"
            )
        try:
            entries = reply.json()
        except ValueError:
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} did not answer JSON"
            ) from None
        if not isinstance(entries, list):
            raise RabbitMQInspectionError(
                f"{self.where}: management API {api} answered an unexpected document"
            )
        snapshot = self._snapshot_from_entries(entries)
        # Not in "always" mode: the user allowed the API only, never AMQP.
        if self._stats_pending and self.config.management == "auto":
            self._read_pending(snapshot, deadline)
        return snapshot

    def _read_pending(self, snapshot: BrokerSnapshot, deadline: float) -> None:
        """Depth and consumers of listed queues the API has no statistics for yet, by a
        passive queue.declare; on any failure they stay without a depth this scrape."""
        try:
            channel = self._open_channel(deadline)
            for queue in self._stats_pending:
                channel = self._declare_passive(snapshot, queue, channel, deadline)
        except Exception as exc:  # noqa: BLE001 - a best-effort bridge over the API's gap
            log.debug("%s: passive declare of new queues failed: %s", self.where, exc)
            self._drop_connection()

    def _snapshot_from_entries(self, entries: list[Any]) -> BrokerSnapshot:
        now = self.clock()
        by_name = {
            str(entry["name"]): entry
            for entry in entries
            if isinstance(entry, dict) and _label_text(entry.get("name"))
        }
        # Exclusive and auto-delete queues come and go with a connection (Celery's rpc result
        # queues, reply queues): watching them would churn series. Listed queues still count.
        self._stats_pending = []
        snapshot_extra = scheduled_samples(by_name, self._delayed_prefix)
        self._discovered = sorted(
            name
            for name, entry in by_name.items()
            if not is_internal_queue(name)
            and delayed_level(name, self._delayed_prefix) is None
            and not entry.get("exclusive")
            and not entry.get("auto_delete")
        )
        queues = self._queues(self._discovered)
        snapshot = BrokerSnapshot(
            management_api_up=True, reserved_total=0, queues_over_limit=self._queues_over_limit
        )
        snapshot.extra.extend(snapshot_extra)
        for queue in queues:
            entry = by_name.get(queue)
            reading = snapshot.queue(queue)
            reading.missing = entry is None
            if entry is None:
                continue
            self._read_entry(snapshot, queue, entry, now)
            snapshot.reserved_total = (snapshot.reserved_total or 0) + (reading.reserved or 0)
        return snapshot

    def _read_entry(
        self, snapshot: BrokerSnapshot, queue: str, entry: dict[str, Any], now: float
    ) -> None:
        reading = snapshot.queue(queue)
        snapshot.extra.extend(quorum.queue_samples(queue, entry))
        reading.reserved = _as_int(entry.get("messages_unacknowledged"))
        reading.consumers = _as_int(entry.get("consumers"))
        utilisation = _as_float(entry.get("consumer_utilisation"))
        if utilisation is None:
            utilisation = _as_float(entry.get("consumer_capacity"))
        reading.consumer_utilisation = utilisation
        arguments = entry.get("arguments")
        if isinstance(arguments, dict):
            reading.max_priority = _max_priority(arguments.get("x-max-priority"))
        head = _as_float(entry.get("head_message_timestamp"))
        head_age = max(0.0, now - head) if head is not None else None
        # Quorum and stream queues never report head_message_timestamp: its absence says
        # nothing about the producers' stamp there, so no unstamped series at all.
        head_known = entry.get("type") not in HEADLESS_QUEUE_TYPES

        levels = queue_levels(entry)
        if levels is None:
            # No per-level counts (RabbitMQ 3.12.7+ classic queues, or no priorities): the
            # levels are still known from x-max-priority, so the most/least urgent ones stay
            # selectable for the per-priority waits that events report.
            if reading.max_priority is not None and reading.max_priority > 0:
                levels_most_urgent_first = [str(p) for p in range(reading.max_priority, -1, -1)]
                snapshot.declare_levels(queue, levels_most_urgent_first)
            ready = _as_int(entry.get("messages_ready"))
            if ready is None:
                # Stats not in yet (queue just declared, or the node is busy): read it by AMQP.
                self._stats_pending.append(queue)
                return
            # A non-empty queue's head is the next message: stamped or not, as its timestamp says.
            unstamped = (head is None) if ready > 0 and head_known else None
            snapshot.levels.append(LevelReading(queue, None, ready, head_age, unstamped))
            if head_age is not None and reading.max_priority:
                # The head of the most urgent non-empty level, not the oldest message: say so.
                snapshot.extra.append(ExtraSample(cat.QUEUE_OLDEST_AGE_LOWER_BOUND, (queue,), 1.0))
            return
        counts, most_urgent_first = levels
        # head_message_timestamp is the head of the next message to be delivered: the head
        # of the most urgent non-empty level (when its head message is stamped).
        by_level = dict(counts)
        head_level = next((p for p in most_urgent_first if by_level[p] > 0), None)
        for priority, count in counts:
            at_head = priority == head_level
            age = head_age if at_head else None
            # Only the head level's message is inspected (head_message_timestamp is its stamp).
            unstamped = (head is None) if at_head and head_known else None
            snapshot.levels.append(LevelReading(queue, priority, count, age, unstamped))
        returned = _as_int(entry.get("messages_ready_returned"))
        if returned is not None:
            # Quorum queues (4.0+) count requeued messages in neither high nor normal and serve
            # them first; a level of their own, never declared, so urgency ignores it.
            snapshot.levels.append(LevelReading(queue, quorum.RETURNED_LEVEL, returned))
        snapshot.declare_levels(queue, most_urgent_first)

    # --- AMQP -------------------------------------------------------------------------------

    def _inspect_amqp(self, deadline: float) -> BrokerSnapshot:
        # Without the API there is no listing: configured queues plus those discovered while
        # the API last answered.
        queues = self._queues(self._discovered)
        snapshot = BrokerSnapshot(queues_over_limit=self._queues_over_limit)
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

    def _declare_passive(
        self, snapshot: BrokerSnapshot, queue: str, channel: Any, deadline: float
    ) -> Any:
        """Passive queue.declare: ready count and consumers; a 404 means missing."""
        reading = snapshot.queue(queue)
        try:
            with self._bounded(deadline):
                frame = channel.queue_declare(queue=queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            reading.missing = True
            return self._open_channel(deadline)  # the 404 closed the channel
        reading.missing = False
        reading.consumers = int(frame.method.consumer_count)
        snapshot.levels.append(LevelReading(queue, None, int(frame.method.message_count)))
        return channel

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
        def __init__(self, inspector: RabbitMQInspector, deadline: float) -> None:
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

    def _bounded(self, deadline: float) -> RabbitMQInspector._Bound:
        return RabbitMQInspector._Bound(self, deadline)

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
        self._session.close()


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
