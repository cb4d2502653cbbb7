"""Read-only inspection of a Redis broker as kombu's Redis transport lays it out.

kombu emulates priorities with one list per priority step: the bare queue name for step 0 and
``queue + sep + step`` for the others, every key behind ``global_keyprefix``. Workers pop step 0
first, so on Redis 0 is the most urgent level. Producers LPUSH and consumers RPOP, so the next
message to be consumed is ``LINDEX key -1``.

Per scrape, one round trip reads everything but the reserved-work sample: a read-only Lua
script (EVAL_RO, Redis 7+) returns the depth of every queue x step and the head message of each
non-empty level, pipelined with the reserved-work totals. Doing the per-key loop inside Redis
costs less than even a bare pipelined LLEN from Python (docs/performance.md). Where EVAL_RO is
unavailable (Redis < 7, or an ACL without scripting) the same reads go out as two pipelines
(LLEN for every key, then LINDEX for the non-empty ones). The first pipeline also carries
the server's health reads (health.py: INFO sections and CONFIG GET save). A second round trip
samples the unacked hash when it is not empty. Queues whose binding vanished stay watched a
while (known.py). Only read commands are sent (EVAL_RO cannot run a write,
Redis refuses it); tests check this against Redis' own command statistics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, compress, repeat
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...catalogue import UNKNOWN_QUEUE
from ...headtracker import HeadTracker
from ...instrumentation import (
    ATTEMPT_AT_HEADER,
    ENQUEUED_AT_HEADER,
    enqueued_at,
    producer_of,
    published_at,
)
from ...snapshot import (
    BrokerSnapshot,
    LevelReading,
    QueueReading,
    UrgencyReading,
    select_queues,
    urgency_readings,
)
from ..base import Inspector
from ..celery_layout import is_internal_queue
from ..peer_deadline import Deadline, note_socket
from .connection import follow_master, redis_client
from .health import HealthReader
from .keys import BINDING_PREFIX, escape_glob
from .known import KnownQueues

log = logging.getLogger(__name__)

#: Depth of every key, and the next message to be consumed of every non-empty key. A key of
#: another type (WRONGTYPE) reads as depth -1: it costs that one level, not the whole script.
LEVELS_SCRIPT = """
local depths, heads = {}, {}
for i, key in ipairs(KEYS) do
  local n = redis.pcall('LLEN', key)
  if type(n) ~= 'number' then
    n = -1
  elseif n > 0 then
    heads[#heads + 1] = redis.call('LINDEX', key, -1)
  end
  depths[i] = n
end
return {depths, heads}
"""
#: Depth the script and the pipeline report for a key they cannot read.
UNREADABLE = -1


class RedisInspector(Inspector):
    """Inspects one Redis broker."""

    def setup(self) -> None:
        #: The client's connections, so a Deadline can shut their sockets down.
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self.client = redis_client(
            self.config,
            socket_timeout=self.timeout_seconds,
            socket_connect_timeout=self.timeout_seconds,
            client_name="celery-queue-exporter",
            redis_connect_func=self._connected,
            # One immediate retry (a pooled connection the server closed while idle); more,
            # with redis-py's backoff, would outlast the scrape.
            retry=Retry(NoBackoff(), 1),
        )
        self.heads = HeadTracker()
        #: Host -> its clock offset (host - exporter), the event tracker's estimate; set by
        #: the CLI when events are consumed (QueueCollector.use_clock_offsets).
        self.clock_offset: Callable[[str | None], float | None] | None = None
        self._bindings: dict[tuple[str, str], str] = {}
        self._discovered: list[str] = []
        self._discovered_at: float | None = None
        #: Discovered queues left out by max_queues in the last scrape.
        self.queues_over_limit = 0
        #: What the last warning about unreadable keys said (to log changes only).
        self._unreadable_state: tuple[int, tuple[str, ...]] = (0, ())
        #: Read levels with EVAL_RO; switched off for good when the server refuses it.
        self.use_script = True
        #: Every connection sends a _Packed command as it is (set by _connected): the levels
        #: script with its keys is then packed once per layout, not per scrape.
        self._pass_through = False
        #: The connections' own packer, which packs that command once.
        self._packer: Any = None
        #: The layout the levels script was last packed for, and that command.
        self._packed_script: tuple[_Layout, _Packed] | None = None
        #: Server health (memory, evictions, flushes, restarts) read in the same round trip.
        self.health = HealthReader(self.config.name)
        #: Queues seen bound, kept watched a while after their binding vanishes.
        self.known = KnownQueues(self.config.options.unbound_queue_retention_seconds)
        #: The watched queues the key lists below were built for (rebuilt when they change,
        #: that is after a discovery, not every scrape).
        self._layout_for: list[str] | None = None
        self._layout: _Layout | None = None
        #: Raw head message -> what decoding it said, for the heads of the last scrape: a head
        #: that did not change is not decoded again.
        self._decoded: dict[bytes, _Head] = {}
        #: Per level (index into the layout): the reading of the last scrape, handed over again
        #: while the level is empty and its depth unchanged (the collector then reuses its
        #: rendered lines).
        self._readings: list[LevelReading | None] = []
        #: Depths of the last scrape when every level was readable, and the levels that had a
        #: head then: what the steady-state path of _read_levels compares against.
        self._prev_depths: list[int] | None = None
        self._prev_heads: list[int] = []

    # --- keys -------------------------------------------------------------------------------

    def level_key(self, queue: str, step: int) -> bytes:
        """The Redis key of one priority step of a queue, as kombu names it. In bytes: a queue
        name read from a binding set that is not UTF-8 is held with surrogate escapes and must
        name the same key again, byte for byte."""
        name = queue if step == 0 else f"{queue}{self.config.options.sep}{step}"
        return (self.config.options.global_keyprefix + name).encode("utf-8", "surrogateescape")

    def watched_queues(self) -> list[str]:
        """Configured queues plus, when discovery is on, those found in binding sets."""
        self._refresh_bindings()
        cfg = self.config
        self.known.expire(self.clock())
        discovered = sorted(set(self._discovered).union(self.known.retained()))
        queues, self.queues_over_limit = select_queues(cfg, discovered)
        return queues

    def _refresh_bindings(self) -> None:
        """Re-read kombu's binding sets at most every discovery_interval_seconds; the map of
        (exchange, routing key) to queue also attributes reserved messages to queues."""
        now = self.clock()
        interval = self.config.options.discovery_interval_seconds
        if self._discovered_at is not None and now - self._discovered_at < interval:
            return
        prefix = self.config.options.global_keyprefix + BINDING_PREFIX
        raw_keys = list(self.client.scan_iter(match=escape_glob(prefix) + "*", count=1000))
        keys = [_text(key) for key in raw_keys]
        bindings: dict[tuple[str, str], str] = {}
        discovered: list[str] = []
        if keys:
            with self.client.pipeline(transaction=False) as pipe:
                for raw_key in raw_keys:
                    pipe.smembers(raw_key)
                members_per_key = pipe.execute(raise_on_error=False)
            for key, members in zip(keys, members_per_key, strict=True):
                exchange = key[len(prefix) :]
                if isinstance(members, Exception):
                    continue  # a key of another type under the prefix: not kombu's
                for member in members:
                    text = _text(member)
                    parts = text.split(self.config.options.sep)
                    if len(parts) != 3:
                        continue
                    routing_key, _pattern, queue = parts
                    if is_internal_queue(queue, exchange):
                        continue
                    bindings[(exchange, routing_key)] = _label(queue)
                    if queue not in discovered:
                        discovered.append(queue)
        self._bindings = bindings
        self._discovered = sorted(discovered)
        self._discovered_at = now
        self.known.bindings_read(discovered, now)

    def queue_for(self, exchange: str, routing_key: str, known: set[str]) -> str:
        """The queue a reserved message came from, from its exchange and routing key."""
        queue = self._bindings.get((exchange, routing_key))
        if queue:
            return queue
        if routing_key in known:
            return routing_key  # the default exchange routes by queue name
        return UNKNOWN_QUEUE

    # --- inspection -------------------------------------------------------------------------

    def _connected(self, connection: Any) -> None:
        """redis-py's hook for a new connection, before AUTH and SELECT: from here on the
        inspection's Deadline covers its socket."""
        self._connections.add(connection)
        note_socket(connection._sock)  # a reconnect after the deadline is shut down at once
        packer = getattr(connection, "_command_packer", None)
        if isinstance(packer, _PassThrough):
            pass
        elif callable(getattr(packer, "pack", None)):
            connection._command_packer = _PassThrough(packer)
            self._packer = packer
            self._pass_through = True
        else:  # a redis-py without that hook: pack the script's keys every scrape
            self._pass_through = False
        connection.on_connect()

    def _sockets(self) -> list[Any]:
        return [getattr(connection, "_sock", None) for connection in list(self._connections)]

    def inspect(self) -> BrokerSnapshot:
        """Read depths, head ages and reserved work. Raises redis errors when Redis is down.
        Bounded as a whole, a little under the collector's timeout so our error wins over its
        "timed out": socket_timeout alone bounds each read, not a reply that trickles in."""
        with Deadline(0.9 * self.timeout_seconds, self._sockets) as deadline:
            try:
                return self._inspect()
            except redis.RedisError:
                if deadline.expired:
                    raise redis.TimeoutError(
                        f"Redis did not answer within {0.9 * self.timeout_seconds:.1f}s"
                    ) from None
                raise

    def layout(self, queues: list[str]) -> _Layout:
        """Keys, labels and level names for ``queues``, built once per change of the list."""
        if self._layout is None or self._layout_for != queues:
            steps = self.config.options.priority_steps
            declared = [str(s) for s in steps]
            keys = [(q, step, self.level_key(q, step)) for q in queues for step in steps]
            self._layout = _Layout(
                keys=keys,
                level_keys=[key for _, _, key in keys],
                labels=[_label(q) for q, _, _ in keys],
                levels=[str(step) for _, step, _ in keys],
                # Each queue's first step (its own key) always exports its depth, 0 included.
                zero_absent=[step != steps[0] for _, step, _ in keys],
                queue_labels=[_label(q) for q in queues],
                declared=declared,
                urgency=[urgency_readings(_label(q), declared) for q in queues],
            )
            self._layout_for = list(queues)
            self._readings = [None] * len(keys)
            self._prev_depths = None
        return self._layout

    def _inspect(self) -> BrokerSnapshot:
        cfg = self.config
        follow_master(self.client)  # Sentinel: after a failover, read the new master
        queues = self.watched_queues()
        layout = self.layout(queues)
        keys = layout.keys
        unacked = cfg.options.global_keyprefix + cfg.options.unacked_key
        unacked_index = cfg.options.global_keyprefix + cfg.options.unacked_index_key
        now = self.clock()

        level_keys = layout.level_keys
        with self.client.pipeline(transaction=False) as pipe:
            if self.use_script and self._pass_through:
                pipe.execute_command("EVAL_RO", self._script_command(layout))
            elif self.use_script:
                pipe.eval_ro(LEVELS_SCRIPT, len(level_keys), *level_keys)
            else:
                for key in level_keys:
                    pipe.llen(key)
            pipe.hlen(unacked)
            pipe.zrange(unacked_index, 0, 0, withscores=True)
            pipe.zcount(unacked_index, "-inf", now - cfg.options.visibility_timeout)
            self.health.queue(pipe)
            replies = pipe.execute(raise_on_error=False)
        health_replies = replies[-HealthReader.REPLIES :]
        replies = replies[: -HealthReader.REPLIES]
        if self.use_script and _script_unavailable(replies[0]):
            log.info(
                "broker %s: EVAL_RO unavailable (%s); reading with pipelines", cfg.name, replies[0]
            )
            self.use_script = False
            return self._inspect()
        if self.use_script:
            if isinstance(replies[0], Exception):
                raise replies[0]
            depths, heads = replies[0]
            totals = replies[1:]
        else:
            # One reply per key: a key of another type answers WRONGTYPE for itself alone.
            depths = [_depth(reply) for reply in replies[: len(keys)]]
            heads, totals = None, replies[len(keys) :]
        # The unacked hash and its index: a key of another type costs the reserved readings.
        reserved_total, oldest, overdue = (_readable(reply) for reply in totals)
        unreadable_levels = depths.count(UNREADABLE)
        unreadable_keys = unreadable_levels + _unreadable_count(reserved_total, (oldest, overdue))

        snapshot = BrokerSnapshot(
            queues_over_limit=self.queues_over_limit,
            reserved_total=None if reserved_total is None else int(reserved_total),
            reserved_overdue=None if overdue is None else int(overdue),
            visibility_timeout_seconds=cfg.options.visibility_timeout,
            reserved_oldest_age_seconds=_oldest_age(oldest, now),
            unreadable_keys=unreadable_keys,
            redis_health=self.health.parse(*health_replies),
        )

        # Indices of the non-zero depths, found at C speed; then the unreadable ones (-1) out.
        non_empty = list(compress(range(len(depths)), depths))
        if unreadable_levels:
            non_empty = [i for i in non_empty if depths[i] != UNREADABLE]
        sample_size = min(int(reserved_total or 0), cfg.options.reserved_sample_size)
        sample: list[Any] = []
        if heads is None or sample_size:
            with self.client.pipeline(transaction=False) as pipe:
                if heads is None:
                    for i in non_empty:
                        pipe.lindex(level_keys[i], -1)
                if sample_size:
                    pipe.hrandfield(unacked, sample_size, withvalues=True)
                replies = pipe.execute(raise_on_error=False)
            if heads is None:
                # A key that changed type between the two round trips: no head, no age.
                heads = [_readable(reply) for reply in replies[: len(non_empty)]]
            sample = (_readable(replies[-1]) or []) if sample_size else []

        self._read_levels(snapshot, layout, depths, dict(zip(non_empty, heads, strict=True)), now)
        # Only the non-empty levels: a queue absent from the counter held nothing.
        queue_depths: Counter[str] = Counter()
        for i in non_empty:
            queue_depths[keys[i][0]] += int(depths[i])
        self.known.depths_read(queue_depths, now)
        self._log_unreadable(snapshot, unreadable_keys)

        # Per queue, without a method call per queue (5,000 queues): the declared levels (the
        # same list for every queue, kept as given) and their marks, built once per layout.
        if layout.declared:
            snapshot.declared_levels.update(zip(layout.queue_labels, repeat(layout.declared)))
            snapshot.urgency.extend(chain.from_iterable(layout.urgency))
        reserved = 0 if reserved_total is not None else None
        unbound, by_label = self.known.unbound, snapshot.queues
        for queue, label in zip(queues, layout.queue_labels, strict=True):
            reading = by_label.get(label)
            if reading is None:  # the usual case; an unreadable key made its queue's already
                by_label[label] = QueueReading(
                    label, reserved=reserved, unreadable=False, unbound=unbound(queue)
                )
            else:
                reading.reserved = reserved
                reading.unreadable = bool(reading.unreadable)
                reading.unbound = unbound(queue)
        if reserved_total is not None:
            known = set(layout.queue_labels)
            self._attribute_reserved(snapshot, sample, int(reserved_total), known)
        return snapshot

    def _script_command(self, layout: _Layout) -> _Packed:
        """EVAL_RO of the levels script with every key of ``layout``, packed once: the same
        bytes every scrape, which redis-py took 20-30 ms to pack at 50,000 keys."""
        packed = self._packed_script
        if packed is None or packed[0] is not layout:
            keys = layout.level_keys
            chunks = self._packer.pack("EVAL_RO", LEVELS_SCRIPT, len(keys), *keys)
            packed = self._packed_script = (layout, _Packed(b"".join(map(bytes, chunks))))
        return packed[1]

    def _read_levels(
        self,
        snapshot: BrokerSnapshot,
        layout: _Layout,
        depths: list[int],
        head_by_index: dict[int, Any],
        now: float,
    ) -> None:
        """One LevelReading per readable level. An empty level whose depth did not change gets
        last scrape's reading again (most levels, at 1,000 queues x 10); a head is decoded only
        when its bytes changed."""
        readings = self._readings
        labels, names, zero_absent = layout.labels, layout.levels, layout.zero_absent
        seen_keys: set[bytes] = set()

        def read(i: int, depth: int) -> LevelReading:
            raw = head_by_index.get(i)
            if raw is None:
                reading = readings[i]
                if reading is None or reading.messages != depth or reading.unstamped is not None:
                    # No head: no age (absent, not 0: an empty level has no next message).
                    reading = readings[i] = LevelReading(
                        labels[i], names[i], int(depth), None, None, zero_absent[i]
                    )
                return reading
            key = layout.level_keys[i]
            seen_keys.add(key)
            age, unstamped = self._head_age(snapshot, key, raw, now)
            reading = readings[i] = LevelReading(
                labels[i], names[i], int(depth), age, unstamped, zero_absent[i]
            )
            return reading

        prev, self._prev_depths = self._prev_depths, None
        if prev is not None and len(prev) == len(depths) and UNREADABLE not in depths:
            # Steady state: only levels whose depth changed, or that have (or had) a head, are
            # looked at; every other reading is last scrape's, copied at C speed.
            touch = set(head_by_index)
            touch.update(self._prev_heads)
            if depths != prev:
                touch.update(i for i, (a, b) in enumerate(zip(depths, prev, strict=True)) if a != b)
            for i in touch:
                read(i, depths[i])
            snapshot.levels.extend(readings)  # type: ignore[arg-type] - none is None here
            self._prev_depths = depths
        else:
            levels = snapshot.levels
            for i, depth in enumerate(depths):
                if depth == UNREADABLE:
                    snapshot.queue(labels[i]).unreadable = True
                    readings[i] = None
                    continue
                levels.append(read(i, depth))
            if UNREADABLE not in depths:
                self._prev_depths = depths
        self._prev_heads = list(head_by_index)
        self.heads.forget_except(seen_keys)
        # Keep the decoded heads of this scrape only: bounded by the watched levels.
        self._decoded = {
            raw: self._decoded[raw] for raw in head_by_index.values() if raw in self._decoded
        }

    def _log_unreadable(self, snapshot: BrokerSnapshot, count: int) -> None:
        """One line when the set of unreadable keys changes, not one per scrape."""
        queues = sorted(q.queue for q in snapshot.queues.values() if q.unreadable)
        state = (count, tuple(queues))
        if count and state != self._unreadable_state:
            log.warning(
                "broker %s: %d key(s) of another type than kombu writes, skipped (queues: %s)",
                self.config.name,
                count,
                ", ".join(queues) or "none; the unacked hash or its index",
            )
        self._unreadable_state = state

    def _head_age(
        self, snapshot: BrokerSnapshot, key: bytes, raw: bytes, now: float
    ) -> tuple[float, bool]:
        """Exact age from the enqueue stamp, else a lower bound from head tracking; and
        whether the head lacks the stamp (the age is then that lower bound). A message that is
        not JSON, or a stamp that is not a number ("NaN", "abc"), counts as malformed (once
        per scrape that sees it, as before the decoding was cached)."""
        head = self._decoded.get(raw)
        if head is None:
            head = self._decoded[raw] = _decode_head(raw)
        snapshot.malformed_messages += head.malformed
        if head.stamp is None:
            return self.heads.observe(key, head.identity, now), True
        offset = self._offset_of(head.producer)
        if offset is not None:  # the stamp on the exporter's clock (events/clock.py)
            return max(0.0, now - (head.stamp - offset)), False
        age = now - head.stamp
        if age < 0:
            # A stamp in the future: a producer ahead whose offset is unknown. Not 0 (that
            # would hide a backlog): the lower bound of head tracking, on our own clock.
            return self.heads.observe(key, head.identity, now), False
        return age, False

    def _offset_of(self, host: str | None) -> float | None:
        """The producer's clock offset from the event tracker, None when unknown (or when the
        tracker fails: the uncorrected age is still exported)."""
        source = self.clock_offset
        if source is None or host is None:
            return None
        try:
            return source(host)
        except Exception:  # noqa: BLE001 - an estimate is an extra, never a must
            log.warning("broker %s: clock offsets unavailable", self.config.name, exc_info=True)
            return None

    def _attribute_reserved(
        self, snapshot: BrokerSnapshot, sample: list[Any], total: int, known: set[str]
    ) -> None:
        """Split the unacked hash over queues from a sample; scaled up when the sample is
        smaller than the hash (the total itself is always exact)."""
        if not sample or not total:
            return
        values = sample[1::2]  # HRANDFIELD WITHVALUES: field, value, field, value, ...
        counts: Counter[str] = Counter()
        for value in values:
            entry = _parse_json(value)
            if not isinstance(entry, list) or len(entry) != 3:
                snapshot.malformed_messages += 1
                counts[UNKNOWN_QUEUE] += 1
                continue
            _message, exchange, routing_key = entry
            counts[self.queue_for(_name(exchange), _name(routing_key), known)] += 1
        scale = total / len(values)
        for queue, count in counts.items():
            snapshot.queue(queue).reserved = round(count * scale)

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class _Layout:
    """What the watched queues name in Redis, built once per change of the watched list."""

    #: (queue, step, key) per level, queue-major.
    keys: list[tuple[str, int, bytes]]
    level_keys: list[bytes]
    #: Per level: its queue's label value and its priority label.
    labels: list[str]
    levels: list[str]
    queue_labels: list[str]
    #: The steps as level labels, most urgent first.
    declared: list[str]
    #: Per queue: its declared extremes (until the resolver marks the levels in use).
    urgency: list[list[UrgencyReading]]
    #: Per level: an empty level exports no depth (every level but its queue's first).
    zero_absent: list[bool]


class _Packed:
    """A command already in the Redis protocol, sent as it is by _PassThrough."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _PassThrough:
    """A connection's command packer (redis-py's ``command_packer``) that sends a _Packed
    command's bytes as they are and packs every other command with the connection's own."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def pack(self, *args: Any) -> list[bytes]:
        if len(args) == 2 and type(args[1]) is _Packed:
            return [args[1].data]
        return self.inner.pack(*args)


@dataclass(frozen=True)
class _Head:
    """What one head message says: its publish stamp, else what identifies it (for head
    tracking), and how many malformed things it holds (0, 1 or 2)."""

    stamp: float | None
    identity: str
    malformed: int
    #: Host that took the stamp (install(app)'s PRODUCER_HEADER), None when not stamped.
    producer: str | None = None


def _decode_head(raw: bytes) -> _Head:
    message = _parse_json(raw)
    if not isinstance(message, dict):
        return _Head(None, hashlib.sha1(raw).hexdigest(), 1)
    headers = message.get("headers")
    headers = headers if isinstance(headers, dict) else None
    malformed = 0
    if headers is not None and any(
        headers.get(header) is not None and enqueued_at(headers, header) is None
        for header in (ENQUEUED_AT_HEADER, ATTEMPT_AT_HEADER)
    ):
        malformed = 1  # a stamp that is there but not a number
    stamp = published_at(headers)
    identity = _message_identity(message, raw)
    if stamp is not None:
        return _Head(stamp, identity, malformed, producer_of(headers))
    return _Head(None, identity, malformed)


def _script_unavailable(reply: Any) -> bool:
    """EVAL_RO missing (Redis < 7) or forbidden (ACL, disabled scripting)."""
    if not isinstance(reply, redis.ResponseError):
        return False
    text = str(reply).lower()
    return "unknown command" in text or "noperm" in text or "no permissions" in text


def _parse_json(raw: bytes | str) -> Any:
    """The decoded message, or None: a deeply nested document (RecursionError) is as malformed
    as one that is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return None


def _text(name: bytes | str) -> str:
    """A key or member name as text; bytes that are not UTF-8 kept as surrogate escapes, so
    ``level_key`` gives back the same bytes (never a replacement character: a wrong key)."""
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name


def _label(queue: str) -> str:
    """The label value of a queue: a name that is not UTF-8 shows its bytes escaped (\\xff),
    since a label must be valid UTF-8."""
    try:
        queue.encode("utf-8")
    except UnicodeEncodeError:
        raw = queue.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")
    return queue


def _name(value: Any) -> str:
    """An exchange or routing key from a reservation entry; kombu writes strings (str() of a
    deeply nested value could exhaust the stack)."""
    return value if isinstance(value, str) else ""


def _readable(reply: Any) -> Any:
    """A pipeline reply, or None when the key was of another type (or unreadable)."""
    return None if isinstance(reply, redis.ResponseError) else _raise_other(reply)


def _raise_other(reply: Any) -> Any:
    """Connection failures and the like end the inspection: the broker is down, not a key."""
    if isinstance(reply, Exception):
        raise reply
    return reply


def _depth(reply: Any) -> int:
    value = _readable(reply)
    return UNREADABLE if value is None else int(value)


def _unreadable_count(reserved_total: Any, index_replies: tuple[Any, Any]) -> int:
    """Unreadable keys among the unacked hash and its index (both index reads: one key)."""
    return (reserved_total is None) + any(reply is None for reply in index_replies)


def _oldest_age(oldest: Any, now: float) -> float | None:
    if oldest is None:
        return None
    return max(0.0, now - oldest[0][1]) if oldest else 0.0


def _message_identity(message: dict[str, Any], raw: bytes) -> str:
    """What tells two messages apart: the task id, or kombu's delivery tag, or the bytes."""
    headers = message.get("headers")
    if isinstance(headers, dict) and headers.get("id"):
        return str(headers["id"])
    properties = message.get("properties")
    if isinstance(properties, dict) and properties.get("delivery_tag"):
        return str(properties["delivery_tag"])
    return hashlib.sha1(raw).hexdigest()
