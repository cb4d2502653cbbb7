"""The Redis server's own health as it bears on Celery's messages: memory against maxmemory and
the eviction policy, evicted keys, writes refused for memory, flushes, restarts, persistence.

Read-only and cheap: ``INFO server memory stats persistence errorstats commandstats`` and
``CONFIG GET save`` ride in the inspection's first pipeline (no extra round trip; cost in
docs/performance.md). ``CONFIG GET save`` is the only way to tell whether RDB snapshots are on
(INFO does not say); a server that refuses it (an ACL without @admin, a renamed CONFIG on a
managed Redis) leaves persistence known only when AOF is on. Redis < 7 takes one INFO section
at a time: the first refusal switches to ``INFO all`` for good.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from ...snapshot import RedisHealth

log = logging.getLogger(__name__)

#: INFO sections read per scrape (Redis 7+ takes several in one call).
SECTIONS = ("server", "memory", "stats", "persistence", "errorstats", "commandstats")
#: Commands that drop every key of a database (or all of them), counted by the server.
FLUSH_COMMANDS = ("flushall", "flushdb")


class HealthReader:
    """Adds the health reads to a pipeline and parses their replies; remembers what the
    server refuses so it is asked differently (or not at all) afterwards."""

    #: Replies :meth:`queue` adds to a pipeline.
    REPLIES = 2

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.multi_section = True
        self.config_allowed = True
        self._logged: set[str] = set()

    def queue(self, pipe: Any) -> None:
        """Append the reads to ``pipe`` (always :attr:`REPLIES` commands)."""
        if self.multi_section:
            pipe.info(*SECTIONS)
        else:
            pipe.info("all")
        if self.config_allowed:
            pipe.config_get("save")
        else:
            pipe.echo("")  # keeps the reply count fixed; costs nothing

    def parse(self, info_reply: Any, save_reply: Any) -> RedisHealth | None:
        """The health from the two replies; None when INFO itself failed (logged once)."""
        if isinstance(save_reply, redis.ResponseError):
            self.config_allowed = False
            self._once("config", "CONFIG GET save refused (%s): RDB unknown", save_reply)
            save_reply = None
        if isinstance(info_reply, redis.ResponseError):
            if self.multi_section:
                self.multi_section = False  # Redis < 7: one section per call; next scrape
            self._once("info", "INFO refused (%s): no broker health metrics", info_reply)
            return None
        if isinstance(info_reply, Exception):
            raise info_reply  # the connection failed: the broker is down, not its INFO
        if not isinstance(info_reply, dict):
            return None
        save = None if save_reply is None or isinstance(save_reply, Exception) else save_reply
        return parse_health(info_reply, save)

    def _once(self, what: str, message: str, detail: object) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.warning("broker %s: " + message, self.broker, detail)


def parse_health(info: dict[str, Any], config_save: dict[str, Any] | None) -> RedisHealth:
    """A RedisHealth from redis-py's parsed INFO and ``CONFIG GET save`` (None: unknown).
    A field missing or of the wrong type is left unknown, never guessed."""
    health = RedisHealth(
        used_memory_bytes=_int(info.get("used_memory")),
        maxmemory_bytes=_int(info.get("maxmemory")),
        maxmemory_policy=_text(info.get("maxmemory_policy")),
        evicted_keys=_int(info.get("evicted_keys")),
        uptime_seconds=_int(info.get("uptime_in_seconds")),
        run_id=None if info.get("run_id") is None else str(info.get("run_id")),
    )
    # errorstats exists from Redis 6.2; total_error_replies tells that it was returned.
    if "total_error_replies" in info or any(key.startswith("errorstat_") for key in info):
        oom = info.get("errorstat_OOM")
        health.oom_rejections = _int(oom.get("count")) if isinstance(oom, dict) else 0
    if any(key.startswith("cmdstat_") for key in info) or "total_commands_processed" in info:
        for command in FLUSH_COMMANDS:
            stats = info.get(f"cmdstat_{command}")
            calls = _int(stats.get("calls")) if isinstance(stats, dict) else 0
            if calls is not None:
                health.flushes[command] = calls
    aof = _int(info.get("aof_enabled"))
    rdb = None
    if isinstance(config_save, dict) and "save" in config_save:
        rdb = bool(str(config_save["save"]).strip())
    if aof == 1 or rdb:
        health.persistence = True
    elif aof == 0 and rdb is False:
        health.persistence = False
    return health


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str | bytes):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return None
