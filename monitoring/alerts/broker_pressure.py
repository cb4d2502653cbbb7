"""Alerts on the broker server itself, before tasks vanish or publishers hang (issue 22):
Redis memory, evictions, refused writes, flushes and restarts without persistence; RabbitMQ
resource alarms, partitions, nodes down, descriptors near their limits
(alerts/tests/broker_pressure.yaml).

Counters count since the Redis server started, so ``increase`` over the window sees what
happened while Prometheus watched; ``increase`` misses a series that first appears already
above 0, so each counter alert also counts a new series at its value, but only while the
server's uptime is under the window: then everything it counted happened within the window (a
broker restarted, or flushed and restarted, just now). A series that first appears on a server
up for longer (the exporter deployed or a broker added after the events, or an exporter back
from a long absence) counts only its growth: last month's evictions never page
(:func:`~monitoring.promql.increase_counted`).
"""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from ..promql import dur, increase_counted, pct
from ..schema import Duration, Ratio
from .base import Body, Settings, alert

#: Policies that evict keys without a TTL (Celery's lists, bindings, unacked hash).
EVICTING_POLICIES = "allkeys-.*"
BROKER = "Redis broker {{ $labels.broker }}"
NODE = "Node {{ $labels.node }} of RabbitMQ broker {{ $labels.broker }}"


def _counted(s: Settings, name: str, span: str, by: str = "") -> str:
    """What a broker counter added over ``span`` (> 0), a new series counting at its value,
    once per subject whatever the replicas (:func:`~monitoring.promql.increase_counted`)."""
    uptime = s.e.metric(cat.REDIS_UPTIME.name)
    counted = increase_counted(s.e.metric(name), span, started=uptime)
    if by:
        return f"sum without ({by}) (\n{counted}\n) > 0"
    return f"{counted} > 0"


@alert(
    "CeleryRedisEvictionPolicyRisky",
    summary="A Redis broker may evict Celery's messages when it fills up.",
)
def eviction_policy_risky(s: Settings) -> Body:
    e = s.e
    info = e.metric(cat.REDIS_MAXMEMORY_POLICY.name)
    policy = f'{info[:-1]}{", " if info[-2] != "{" else ""}policy=~"{EVICTING_POLICIES}"}}'
    return Body(
        f"({e.metric(cat.REDIS_MEMORY_MAX.name)} > 0)\n"
        f"* ignoring (policy) group_left (policy)\n{policy}",
        f"{BROKER} has maxmemory {{{{ $value | humanize1024 }}}}B and maxmemory-policy "
        "{{ $labels.policy }}: once full it evicts keys without a TTL, which are Celery's "
        "queue lists, bindings and reservations, so tasks vanish without any error. Use "
        "noeviction (producers get errors instead), raise maxmemory, or keep Celery on a "
        "Redis of its own.",
    )


@alert(
    "CeleryRedisKeysEvicted",
    summary="A Redis broker evicted keys: Celery messages may be lost.",
    window=Duration(),
)
def keys_evicted(s: Settings) -> Body:
    span = dur(s["window"])
    return Body(
        _counted(s, cat.REDIS_EVICTED_KEYS.name, span),
        f"{BROKER} evicted {{{{ $value | humanize }}}} key(s) in the last {span}: it reached "
        "maxmemory with an evicting policy. Celery's queue lists, bindings and reservations "
        "are keys like any other: messages among them are gone, and a queue whose binding was "
        "evicted no longer receives tasks from new producers.",
    )


@alert(
    "CeleryRedisOutOfMemory",
    summary="A Redis broker refuses writes for memory: Celery producers fail.",
    window=Duration(),
)
def out_of_memory(s: Settings) -> Body:
    span = dur(s["window"])
    return Body(
        _counted(s, cat.REDIS_OOM_REJECTIONS.name, span),
        f"{BROKER} refused {{{{ $value | humanize }}}} command(s) in the last {span} with "
        "OOM (used memory above maxmemory and nothing it may evict): producers' apply_async "
        "raises OutOfMemoryError, so those tasks were never queued, and workers may fail to "
        "acknowledge or requeue.",
    )


@alert(
    "CeleryRedisMessagesLost",
    summary="A Redis broker was flushed or restarted without persistence: messages are lost.",
    window=Duration(),
)
def messages_lost(s: Settings) -> Body:
    e = s.e
    span = dur(s["window"])
    flushed = _counted(s, cat.REDIS_FLUSHES.name, span, by="command")
    # A restart loses the data when persistence was off before it: off throughout the window
    # (switched off at the restart itself, the data was loaded first: never a false page).
    uptime = e.metric(cat.REDIS_UPTIME.name)
    persistence = e.metric(cat.REDIS_PERSISTENCE.name)
    return Body(
        f'label_replace(\n{flushed},\n"cause", "flush", "", "")\n'
        "or\n"
        f"label_replace(\n(resets({uptime}[{span}]) > 0)\n"
        f"and (max_over_time({persistence}[{span}]) == 0),\n"
        '"cause", "restart without persistence", "", "")',
        f"{BROKER}: {{{{ $labels.cause }}}} within the last {span}. Every message waiting "
        "or reserved in it is gone (a flush counts FLUSHALL/FLUSHDB of any database; a "
        "restart with AOF and RDB off starts empty), as are kombu's bindings: long-lived "
        "producers keep filling their queues, the exporter keeps watching them (flagged "
        "celery_queue_unbound), but Celery clients started from now on cannot route to them "
        "until a worker declares them again.",
    )


@alert(
    "CeleryRabbitMQResourceAlarm",
    summary="A RabbitMQ node raised a resource alarm: every publisher is blocked.",
)
def resource_alarm(s: Settings) -> Body:
    e = s.e
    memory = e.metric(cat.RABBITMQ_NODE_MEMORY_ALARM.name)
    disk = e.metric(cat.RABBITMQ_NODE_DISK_ALARM.name)
    return Body(
        f'label_replace({memory} == 1, "resource", "memory", "", "")\n'
        "or\n"
        f'label_replace({disk} == 1, "resource", "disk", "", "")',
        f"{NODE} has its {{{{ $labels.resource }}}} alarm set: RabbitMQ blocks every "
        "publishing connection of the whole cluster until it clears, so Celery's "
        "apply_async/delay hang (or time out) while workers still consume.",
    )


@alert(
    "CeleryRabbitMQPartitioned",
    summary="A RabbitMQ cluster is partitioned.",
)
def partitioned(s: Settings) -> Body:
    return Body(
        f"{s.e.metric(cat.RABBITMQ_NODE_PARTITIONS.name)} > 0",
        f"{NODE} cannot reach {{{{ $value }}}} other node(s) of its cluster (a network "
        "partition): queues may exist twice or be unreachable, and depending on "
        "cluster_partition_handling messages published on one side are lost when it heals.",
    )


@alert(
    "CeleryRabbitMQNodeDown",
    summary="A RabbitMQ cluster node is not running.",
)
def node_down(s: Settings) -> Body:
    return Body(
        f"{s.e.metric(cat.RABBITMQ_NODE_RUNNING.name)} == 0",
        f"{NODE} has not been running for more than {s.for_text}: queues whose leader (or "
        "only copy) lived on it are unavailable and clients connected to it reconnect "
        "elsewhere.",
    )


@alert(
    "CeleryRabbitMQNodeNearLimit",
    summary="A RabbitMQ node is close to its file descriptor or socket limit.",
    ratio=Ratio(),
)
def node_near_limit(s: Settings) -> Body:
    e = s.e
    ratio = s["ratio"]
    fd = f"{e.metric(cat.RABBITMQ_NODE_FD_USED.name)} / {e.metric(cat.RABBITMQ_NODE_FD_LIMIT.name)}"
    sockets = (
        f"{e.metric(cat.RABBITMQ_NODE_SOCKETS_USED.name)} / "
        f"{e.metric(cat.RABBITMQ_NODE_SOCKETS_LIMIT.name)}"
    )
    return Body(
        f'label_replace({fd} > {ratio}, "resource", "file descriptors", "", "")\n'
        "or\n"
        f'label_replace({sockets} > {ratio}, "resource", "sockets", "", "")',
        f"{NODE} uses {{{{ $value | humanizePercentage }}}} of its {{{{ $labels.resource }}}} "
        f"(over {pct(ratio)}): at the limit it refuses new connections, so restarted workers "
        "and new producers cannot connect.",
    )
