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
(LLEN for every key, then LINDEX for the non-empty ones). A second round trip samples the
unacked hash when it is not empty. Only read commands are sent (EVAL_RO cannot run a write,
Redis refuses it); tests check this against Redis' own command statistics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from .catalogue import UNKNOWN_QUEUE
from .config import BrokerConfig
from .headtracker import HeadTracker
from .instrumentation import published_at
from .snapshot import BrokerSnapshot, LevelReading, select_queues, urgency_readings

log = logging.getLogger(__name__)

BINDING_PREFIX = "_kombu.binding."

#: Depth of every key, and the next message to be consumed of every non-empty key.
LEVELS_SCRIPT = """
local depths, heads = {}, {}
for i, key in ipairs(KEYS) do
  local n = redis.call('LLEN', key)
  depths[i] = n
  if n > 0 then heads[#heads + 1] = redis.call('LINDEX', key, -1) end
end
return {depths, heads}
"""
#: Exchanges whose bindings belong to Celery's own machinery, not to task queues.
IGNORED_EXCHANGES = ("celeryev",)


def is_internal_queue(exchange: str, queue: str) -> bool:
    """celeryev event receivers and pidbox (remote control) queues are not task queues."""
    return (
        exchange in IGNORED_EXCHANGES
        or exchange.endswith(".pidbox")
        or queue.endswith(".pidbox")
        or queue.startswith("celeryev.")
        or not queue
    )


class RedisInspector:
    """Inspects one Redis broker; not thread-safe (the collector serialises calls)."""

    transport = "redis"

    def __init__(
        self,
        config: BrokerConfig,
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
        client: redis.Redis | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.client = client or redis.Redis.from_url(
            config.connect_url(),
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            client_name="celery-queue-exporter",
        )
        self.heads = HeadTracker()
        self._bindings: dict[tuple[str, str], str] = {}
        self._discovered: list[str] = []
        self._discovered_at: float | None = None
        #: Discovered queues left out by max_queues in the last scrape.
        self.queues_over_limit = 0
        #: Read levels with EVAL_RO; switched off for good when the server refuses it.
        self.use_script = True

    # --- keys -------------------------------------------------------------------------------

    def level_key(self, queue: str, step: int) -> str:
        """The Redis key of one priority step of a queue, as kombu names it."""
        name = queue if step == 0 else f"{queue}{self.config.sep}{step}"
        return self.config.global_keyprefix + name

    def watched_queues(self) -> list[str]:
        """Configured queues plus, when discovery is on, those found in binding sets."""
        self._refresh_bindings()
        cfg = self.config
        queues, self.queues_over_limit = select_queues(
            cfg.queues, self._discovered, cfg.discover_queues, cfg.max_queues
        )
        return queues

    def _refresh_bindings(self) -> None:
        """Re-read kombu's binding sets at most every discovery_interval_seconds; the map of
        (exchange, routing key) to queue also attributes reserved messages to queues."""
        now = self.clock()
        interval = self.config.discovery_interval_seconds
        if self._discovered_at is not None and now - self._discovered_at < interval:
            return
        prefix = self.config.global_keyprefix + BINDING_PREFIX
        keys = [
            key.decode() if isinstance(key, bytes) else key
            for key in self.client.scan_iter(match=escape_glob(prefix) + "*", count=1000)
        ]
        bindings: dict[tuple[str, str], str] = {}
        discovered: list[str] = []
        if keys:
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.smembers(key)
                members_per_key = pipe.execute(raise_on_error=False)
            for key, members in zip(keys, members_per_key, strict=True):
                exchange = key[len(prefix) :]
                if isinstance(members, Exception):
                    continue  # a key of another type under the prefix: not kombu's
                for member in members:
                    text = member.decode("utf-8", "replace")
                    parts = text.split(self.config.sep)
                    if len(parts) != 3:
                        continue
                    routing_key, _pattern, queue = parts
                    if is_internal_queue(exchange, queue):
                        continue
                    bindings[(exchange, routing_key)] = queue
                    if queue not in discovered:
                        discovered.append(queue)
        self._bindings = bindings
        self._discovered = sorted(discovered)
        self._discovered_at = now

    def queue_for(self, exchange: str, routing_key: str, known: set[str]) -> str:
        """The queue a reserved message came from, from its exchange and routing key."""
        queue = self._bindings.get((exchange, routing_key))
        if queue:
            return queue
        if routing_key in known:
            return routing_key  # the default exchange routes by queue name
        return UNKNOWN_QUEUE

    # --- inspection -------------------------------------------------------------------------

    def inspect(self) -> BrokerSnapshot:
        """Read depths, head ages and reserved work. Raises redis errors when Redis is down."""
        cfg = self.config
        queues = self.watched_queues()
        steps = cfg.priority_steps
        keys = [(queue, step, self.level_key(queue, step)) for queue in queues for step in steps]
        unacked = cfg.global_keyprefix + cfg.unacked_key
        unacked_index = cfg.global_keyprefix + cfg.unacked_index_key
        now = self.clock()

        level_keys = [key for _, _, key in keys]
        with self.client.pipeline(transaction=False) as pipe:
            if self.use_script:
                pipe.eval_ro(LEVELS_SCRIPT, len(level_keys), *level_keys)
            else:
                for key in level_keys:
                    pipe.llen(key)
            pipe.hlen(unacked)
            pipe.zrange(unacked_index, 0, 0, withscores=True)
            pipe.zcount(unacked_index, "-inf", now - cfg.visibility_timeout)
            replies = pipe.execute(raise_on_error=False)
        if self.use_script and _script_unavailable(replies[0]):
            log.info(
                "broker %s: EVAL_RO unavailable (%s); reading with pipelines", cfg.name, replies[0]
            )
            self.use_script = False
            return self.inspect()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        if self.use_script:
            depths, heads = replies[0]
            totals = replies[1:]
        else:
            depths, heads, totals = replies[: len(keys)], None, replies[len(keys) :]
        reserved_total, oldest, overdue = totals

        snapshot = BrokerSnapshot(
            queues_over_limit=self.queues_over_limit,
            reserved_total=int(reserved_total),
            reserved_overdue=int(overdue),
            visibility_timeout_seconds=cfg.visibility_timeout,
            reserved_oldest_age_seconds=max(0.0, now - oldest[0][1]) if oldest else 0.0,
        )

        non_empty = [i for i, depth in enumerate(depths) if depth]
        sample_size = min(int(reserved_total), cfg.reserved_sample_size)
        sample: list[Any] = []
        if heads is None or sample_size:
            with self.client.pipeline(transaction=False) as pipe:
                if heads is None:
                    for i in non_empty:
                        pipe.lindex(level_keys[i], -1)
                if sample_size:
                    pipe.hrandfield(unacked, sample_size, withvalues=True)
                replies = pipe.execute()
            if heads is None:
                heads = replies[: len(non_empty)]
            sample = replies[-1] if sample_size else []

        head_by_index = dict(zip(non_empty, heads, strict=True))
        seen_keys: set[str] = set()
        for i, (queue, step, key) in enumerate(keys):
            age = 0.0
            raw = head_by_index.get(i)
            if raw is not None:
                seen_keys.add(key)
                age = self._head_age(snapshot, key, raw, now)
            snapshot.levels.append(LevelReading(queue, str(step), int(depths[i]), age))
        self.heads.forget_except(seen_keys)

        for queue in queues:
            snapshot.urgency.extend(urgency_readings(queue, [str(s) for s in steps]))
            snapshot.queue(queue).reserved = 0
        self._attribute_reserved(snapshot, sample, int(reserved_total), set(queues))
        return snapshot

    def _head_age(self, snapshot: BrokerSnapshot, key: str, raw: bytes, now: float) -> float:
        """Exact age from the enqueue stamp, else a lower bound from head tracking."""
        message = _parse_json(raw)
        if not isinstance(message, dict):
            snapshot.malformed_messages += 1
            return self.heads.observe(key, hashlib.sha1(raw).hexdigest(), now)
        headers = message.get("headers")
        stamp = published_at(headers if isinstance(headers, dict) else None)
        if stamp is not None:
            return max(0.0, now - stamp)
        return self.heads.observe(key, _message_identity(message, raw), now)

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
            counts[self.queue_for(str(exchange or ""), str(routing_key or ""), known)] += 1
        scale = total / len(values)
        for queue, count in counts.items():
            snapshot.queue(queue).reserved = round(count * scale)

    def close(self) -> None:
        self.client.close()


def _script_unavailable(reply: Any) -> bool:
    """EVAL_RO missing (Redis < 7) or forbidden (ACL, disabled scripting)."""
    if not isinstance(reply, redis.ResponseError):
        return False
    text = str(reply).lower()
    return "unknown command" in text or "noperm" in text or "no permissions" in text


def _parse_json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return None


def _message_identity(message: dict[str, Any], raw: bytes) -> str:
    """What tells two messages apart: the task id, or kombu's delivery tag, or the bytes."""
    headers = message.get("headers")
    if isinstance(headers, dict) and headers.get("id"):
        return str(headers["id"])
    properties = message.get("properties")
    if isinstance(properties, dict) and properties.get("delivery_tag"):
        return str(properties["delivery_tag"])
    return hashlib.sha1(raw).hexdigest()


def escape_glob(text: str) -> str:
    """Escape Redis glob characters so a prefix like 'app[1]:' matches literally."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
