"""The "Broker pressure" row of Celery / Queues: how close each broker is to losing or refusing
tasks (Redis memory, evictions, refused writes, flushes, restarts and persistence; RabbitMQ
alarms, partitions, nodes and limits) and the queues whose binding vanished (issue 22)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from .panels import (
    UNIT_BOOL,
    UNIT_BYTES,
    UNIT_COUNT,
    UNIT_RATIO,
    UNIT_SECONDS,
    Column,
    Q,
    Row,
    above,
    below,
    line,
    row,
    table,
    timeseries,
)
from .promql import m, selector
from .settings import Settings


def broker_pressure(s: Settings) -> Row:
    """Two lines: Redis (memory, losses, settings), then binding loss and RabbitMQ nodes."""
    sb = selector(s)
    sq = selector(s, queue=True)

    def added(spec: cat.MetricSpec, by: str = "broker") -> str:
        return f"sum by ({by}) (increase({m(spec, sb)}[$__rate_interval]))"

    memory = timeseries(
        s,
        "Redis memory and maxmemory",
        "celery_redis_memory_used_bytes against celery_redis_memory_max_bytes (0: no limit). "
        "Near maxmemory Redis evicts keys (allkeys-* policies: Celery's messages among them) "
        "or refuses writes (noeviction: producers fail). Normal: used well under maxmemory.",
        [
            Q(m(cat.REDIS_MEMORY_USED, sb), "{{broker}} used"),
            Q(m(cat.REDIS_MEMORY_MAX, sb), "{{broker}} maxmemory"),
        ],
        unit=UNIT_BYTES,
        runbooks=["CeleryRedisEvictionPolicyRisky", "CeleryRedisOutOfMemory"],
    )
    losses = timeseries(
        s,
        "Redis evictions, refused writes and flushes",
        "Per interval: keys Redis evicted for maxmemory (celery_redis_evicted_keys_total), "
        "commands it refused with OOM (celery_redis_oom_rejected_commands_total), FLUSHALL / "
        "FLUSHDB calls (celery_redis_flush_commands_total). Normal: 0; any evicted key or "
        "flush may have taken Celery's messages.",
        [
            Q(added(cat.REDIS_EVICTED_KEYS), "{{broker}} evicted keys"),
            Q(added(cat.REDIS_OOM_REJECTIONS), "{{broker}} OOM refusals"),
            Q(added(cat.REDIS_FLUSHES, "broker, command"), "{{broker}} {{command}}"),
        ],
        unit=UNIT_COUNT,
        thresholds=above(0.5),
        runbooks=["CeleryRedisKeysEvicted", "CeleryRedisOutOfMemory", "CeleryRedisMessagesLost"],
    )
    settings = table(
        s,
        "Redis brokers now",
        "Per Redis broker: uptime (a restart starts again from 0: with persistence off it "
        "came back empty, CeleryRedisMessagesLost; with persistence on it is only shown "
        "here), persistence (1: AOF or RDB save points; 0: a restart empties it), maxmemory "
        "(0: none) and the share used. Normal: persistence 1, used well under maxmemory.",
        [
            Column("Uptime", m(cat.REDIS_UPTIME, sb), UNIT_SECONDS),
            Column("Persistence", m(cat.REDIS_PERSISTENCE, sb), UNIT_BOOL, below(1)),
            Column("maxmemory", m(cat.REDIS_MEMORY_MAX, sb), UNIT_BYTES),
            Column(
                "Used of maxmemory",
                f"{m(cat.REDIS_MEMORY_USED, sb)} / ({m(cat.REDIS_MEMORY_MAX, sb)} > 0)",
                UNIT_RATIO,
                above(0.9),
            ),
        ],
        keys=["broker"],
        runbooks=["CeleryRedisMessagesLost"],
    )
    unbound = timeseries(
        s,
        "Queues whose binding vanished (Redis)",
        "celery_queue_unbound: 1 for a queue whose kombu binding disappeared (evicted or "
        "flushed) after the exporter saw it; it stays watched while it holds messages and "
        "for unbound_queue_retention_seconds after, but new producers cannot route to it "
        "until a worker declares it again. Normal: 0 everywhere.",
        [Q(m(cat.QUEUE_UNBOUND, sq), "{{broker}} / {{queue}}")],
        unit=UNIT_BOOL,
        thresholds=above(0.5),
        step=True,
        max_value=1,
        runbooks=["CeleryRedisKeysEvicted", "CeleryRedisMessagesLost"],
    )
    alarms = timeseries(
        s,
        "RabbitMQ alarms, partitions and nodes down",
        "Per node (/api/nodes): memory and disk alarms (1 blocks every publisher of the "
        "cluster), partitioned nodes it cannot reach, and 1 for a node not running. "
        "Normal: all 0.",
        [
            Q(m(cat.RABBITMQ_NODE_MEMORY_ALARM, sb), "{{node}} memory alarm"),
            Q(m(cat.RABBITMQ_NODE_DISK_ALARM, sb), "{{node}} disk alarm"),
            Q(m(cat.RABBITMQ_NODE_PARTITIONS, sb), "{{node}} partitioned from"),
            Q(f"1 - {m(cat.RABBITMQ_NODE_RUNNING, sb)}", "{{node}} down"),
        ],
        unit=UNIT_COUNT,
        thresholds=above(0.5),
        step=True,
        runbooks=[
            "CeleryRabbitMQResourceAlarm",
            "CeleryRabbitMQPartitioned",
            "CeleryRabbitMQNodeDown",
        ],
    )
    ratio = s.threshold("CeleryRabbitMQNodeNearLimit", "ratio")
    limits = timeseries(
        s,
        "RabbitMQ memory, file descriptors and sockets used",
        "Per node: memory against the high watermark (at 100% the memory alarm blocks "
        "publishers), file descriptors and sockets against their limits (at 100% new "
        "connections are refused). Normal: well under the dashed line.",
        [
            Q(
                f"{m(cat.RABBITMQ_NODE_MEMORY_USED, sb)} / {m(cat.RABBITMQ_NODE_MEMORY_LIMIT, sb)}",
                "{{node}} memory",
            ),
            Q(
                f"{m(cat.RABBITMQ_NODE_FD_USED, sb)} / {m(cat.RABBITMQ_NODE_FD_LIMIT, sb)}",
                "{{node}} file descriptors",
            ),
            Q(
                f"{m(cat.RABBITMQ_NODE_SOCKETS_USED, sb)} / "
                f"{m(cat.RABBITMQ_NODE_SOCKETS_LIMIT, sb)}",
                "{{node}} sockets",
            ),
        ],
        unit=UNIT_RATIO,
        thresholds=above(ratio),
        runbooks=["CeleryRabbitMQNodeNearLimit", "CeleryRabbitMQResourceAlarm"],
    )
    return row(
        "Broker pressure",
        line(8, (memory, 8), (losses, 8), (settings, 8)),
        line(8, (unbound, 8), (alarms, 8), (limits, 8)),
    )
