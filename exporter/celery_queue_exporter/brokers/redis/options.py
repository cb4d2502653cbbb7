"""Redis broker options: kombu's transport options that shape keys, and the reserved-work and
discovery settings. Declared once here; config, --help and docs read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...config import values
from ...config.errors import ConfigError
from ...config.options import Option

#: kombu's defaults (kombu/transport/redis.py).
DEFAULT_PRIORITY_STEPS = [0, 3, 6, 9]
DEFAULT_SEP = "\x06\x16"
DEFAULT_VISIBILITY_TIMEOUT = 3600.0


def parse_priority_steps(where: str, value: Any) -> list[int]:
    """kombu's priority_steps: ascending distinct integers within 0..9 (kombu clamps to 0..9)."""
    steps = values.ascending(where, value, lambda w, i: values.as_int(w, i, 0, 9), "integers")
    if steps[0] != 0:
        raise ConfigError(
            f"{where}: must start at 0 (kombu floors priorities to a step), got {steps}"
        )
    return steps


PRIORITY_STEPS = values.Kind("ascending integers 0..9 starting at 0 (a,b,c)", parse_priority_steps)

#: Every transport option kombu's Redis and Sentinel transports read (kombu 5.7:
#: SentinelChannel.from_transport_options, Transport, Connection), less the declared ones
#: below; tests/test_production_config.py checks the list against the installed kombu. An
#: option outside both is refused as a typo: kombu would ignore it too.
KOMBU_OPTIONS = frozenset({
    "body_encoding", "deadletter_queue", "ack_emulation", "unacked_mutex_key",
    "unacked_mutex_expire", "unacked_restore_limit", "unacked_restore_interval",
    "unacked_restore_throttle", "fanout_prefix", "fanout_patterns", "socket_timeout",
    "socket_connect_timeout", "socket_keepalive", "socket_keepalive_options",
    "queue_order_strategy", "max_connections", "retry_on_timeout", "client_name",
    "min_other_sentinels", "sentinel_fanout_compat", "reauth_check_interval",
    "polling_interval", "max_retries", "interval_start", "interval_step", "interval_max",
    "connect_retries_timeout",
})  # fmt: skip

PRIORITY_STEPS_OPTION = Option(
    "transport_options.priority_steps",
    PRIORITY_STEPS,
    DEFAULT_PRIORITY_STEPS,
    "priority steps: one list per step (kombu's default 0,3,6,9)",
    "--priority-steps",
    "PRIORITY_STEPS",
)
SEP = Option(
    "transport_options.sep",
    values.NON_EMPTY_STRING,
    DEFAULT_SEP,
    "separator between queue name and step in the key (kombu's default \\x06\\x16)",
    "--sep",
    "SEP",
)
GLOBAL_KEYPREFIX = Option(
    "transport_options.global_keyprefix",
    values.STRING,
    "",
    "kombu's global_keyprefix: prepended to every key",
    "--global-keyprefix",
    "GLOBAL_KEYPREFIX",
)
VISIBILITY_TIMEOUT = Option(
    "transport_options.visibility_timeout",
    values.number(0),
    DEFAULT_VISIBILITY_TIMEOUT,
    "seconds after which Redis delivers an unacknowledged message again",
    "--visibility-timeout",
    "VISIBILITY_TIMEOUT",
)
UNACKED_KEY = Option(
    "transport_options.unacked_key",
    values.STRING,
    "unacked",
    "hash of reserved (unacknowledged) messages",
)
UNACKED_INDEX_KEY = Option(
    "transport_options.unacked_index_key",
    values.STRING,
    "unacked_index",
    "sorted set of reservation times",
)
MASTER_NAME = Option(
    "transport_options.master_name",
    values.TEXT,
    None,
    "Sentinel: the monitored master's name (required with sentinel:// URLs)",
)
SENTINEL_KWARGS = Option(
    "transport_options.sentinel_kwargs",
    values.MAPPING,
    {},
    "Sentinel: redis-py arguments for the sentinel connections (password, ssl, ...)",
)
HEALTH_CHECK_INTERVAL = Option(
    "transport_options.health_check_interval",
    values.integer(0, 86400),
    0,
    "seconds idle before redis-py checks a connection with PING (0: never)",
)
RESERVED_SAMPLE_SIZE = Option(
    "reserved_sample_size",
    values.integer(1, 1_000_000),
    1000,
    "reserved messages sampled per scrape to split the total over queues",
)
DISCOVERY_INTERVAL = Option(
    "discovery_interval_seconds",
    values.number(-1),
    30.0,
    "how often kombu's binding sets are re-read to discover queues",
)
UNBOUND_QUEUE_RETENTION = Option(
    "unbound_queue_retention_seconds",
    values.number(0),
    3600.0,
    "a queue seen bound stays watched (flagged unbound) this long after its binding "
    "vanished and its lists were last non-empty (evicted or flushed bindings)",
)

OPTIONS = (
    PRIORITY_STEPS_OPTION,
    SEP,
    GLOBAL_KEYPREFIX,
    VISIBILITY_TIMEOUT,
    UNACKED_KEY,
    UNACKED_INDEX_KEY,
    MASTER_NAME,
    SENTINEL_KWARGS,
    HEALTH_CHECK_INTERVAL,
    RESERVED_SAMPLE_SIZE,
    DISCOVERY_INTERVAL,
    UNBOUND_QUEUE_RETENTION,
)


@dataclass(frozen=True)
class RedisOptions:
    """A Redis broker's options, typed; one field per declaration above (the Transport checks
    names and defaults when it is built)."""

    priority_steps: list[int] = field(default_factory=PRIORITY_STEPS_OPTION.default_value)
    sep: str = SEP.default
    global_keyprefix: str = GLOBAL_KEYPREFIX.default
    visibility_timeout: float = VISIBILITY_TIMEOUT.default
    unacked_key: str = UNACKED_KEY.default
    unacked_index_key: str = UNACKED_INDEX_KEY.default
    master_name: str | None = MASTER_NAME.default
    sentinel_kwargs: dict[str, Any] = field(default_factory=SENTINEL_KWARGS.default_value)
    health_check_interval: int = HEALTH_CHECK_INTERVAL.default
    reserved_sample_size: int = RESERVED_SAMPLE_SIZE.default
    discovery_interval_seconds: float = DISCOVERY_INTERVAL.default
    unbound_queue_retention_seconds: float = UNBOUND_QUEUE_RETENTION.default
