"""Metric families for broker pressure (issue 22): Redis memory, evictions, refused writes,
flushes, restarts and persistence; RabbitMQ nodes' alarms, partitions and limits; queues whose
binding vanished. Kept out of collector.py: the collector hands each broker's snapshot here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import InfoMetricFamily, Metric

from . import catalogue as cat
from .families import add_known, counter, flag, gauge
from .linefamily import Lines, Prefixes, QueueColumn
from .snapshot import BrokerSnapshot


def pressure_families(
    readings: Iterable[tuple[str, BrokerSnapshot]],
    unbound_columns: dict[str, QueueColumn] | None = None,
) -> Iterator[Metric]:
    """The pressure families of every broker that answered (name, snapshot).
    ``unbound_columns``: the collector's celery_queue_unbound lines per broker, kept across
    scrapes (one line per watched queue: rendered as a column, not as Sample objects)."""
    columns = {} if unbound_columns is None else unbound_columns
    name = cat.QUEUE_UNBOUND.family_name
    unbound = Lines(Prefixes(name, cat.QUEUE_UNBOUND.labels), cat.QUEUE_UNBOUND)
    used, limit = gauge(cat.REDIS_MEMORY_USED), gauge(cat.REDIS_MEMORY_MAX)
    policy = InfoMetricFamily(
        cat.REDIS_MAXMEMORY_POLICY.family_name, cat.REDIS_MAXMEMORY_POLICY.help, labels=["broker"]
    )
    evicted, oom = counter(cat.REDIS_EVICTED_KEYS), counter(cat.REDIS_OOM_REJECTIONS)
    flushes = counter(cat.REDIS_FLUSHES)
    uptime, persistence = gauge(cat.REDIS_UPTIME), gauge(cat.REDIS_PERSISTENCE)
    running, mem_alarm = gauge(cat.RABBITMQ_NODE_RUNNING), gauge(cat.RABBITMQ_NODE_MEMORY_ALARM)
    disk_alarm = gauge(cat.RABBITMQ_NODE_DISK_ALARM)
    partitions = gauge(cat.RABBITMQ_NODE_PARTITIONS)
    node_used = gauge(cat.RABBITMQ_NODE_MEMORY_USED)
    node_limit = gauge(cat.RABBITMQ_NODE_MEMORY_LIMIT)
    fd_used, fd_limit = gauge(cat.RABBITMQ_NODE_FD_USED), gauge(cat.RABBITMQ_NODE_FD_LIMIT)
    sockets_used = gauge(cat.RABBITMQ_NODE_SOCKETS_USED)
    sockets_limit = gauge(cat.RABBITMQ_NODE_SOCKETS_LIMIT)

    for broker, snap in readings:
        queues = list(snap.queues.values())
        values = [queue.unbound for queue in queues]
        if values.count(None) != len(values):
            column = columns.get(broker)
            if column is None:
                column = columns[broker] = QueueColumn(name, broker)
            unbound.add_column(column, [queue.queue for queue in queues], values)
        health = snap.redis_health
        if health is not None:
            add_known(
                [broker],
                (used, health.used_memory_bytes),
                (limit, health.maxmemory_bytes),
                (evicted, health.evicted_keys),
                (oom, health.oom_rejections),
                (uptime, health.uptime_seconds),
                (persistence, flag(health.persistence)),
            )
            if health.maxmemory_policy is not None:
                policy.add_metric([broker], {"policy": health.maxmemory_policy})
            for command, calls in sorted(health.flushes.items()):
                flushes.add_metric([broker, command], calls)
        for node in snap.rabbitmq_nodes or ():
            add_known(
                [broker, node.node],
                (running, flag(node.running)),
                (mem_alarm, flag(node.memory_alarm)),
                (disk_alarm, flag(node.disk_alarm)),
                (partitions, node.partitions),
                (node_used, node.memory_used_bytes),
                (node_limit, node.memory_limit_bytes),
                (fd_used, node.fd_used),
                (fd_limit, node.fd_limit),
                (sockets_used, node.sockets_used),
                (sockets_limit, node.sockets_limit),
            )
    if unbound.lines:
        yield unbound.family()
    for family in (
        used, limit, policy, evicted, oom, flushes, uptime, persistence, running,
        mem_alarm, disk_alarm, partitions, node_used, node_limit, fd_used, fd_limit,
        sockets_used, sockets_limit,
    ):  # fmt: skip
        if family.samples:
            yield family
