"""Alerts on Celery workers, seen through the broker's events (alerts/tests/workers.yaml)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from ..promql import Exprs, dur, num, pct, rate_counted
from ..schema import Duration, Number, Ratio, format_duration
from .base import WHERE, WHERE_CAPITAL, Body, Settings, alert

#: The exporter's gauge for a worker that announced a graceful shutdown (worker-offline), within
#: events.worker_offline_grace_seconds; its celery_worker_up is 0 meanwhile.
WORKER_OFFLINE = "celery_worker_offline"


def not_offline(e: Exprs) -> str:
    """Leaves out workers that left on purpose (a deploy): only lost workers count as down."""
    return f"unless on (broker, worker) {e.metric(WORKER_OFFLINE)} == 1"


def stream_up(e: Exprs) -> str:
    """Worker alerts need a working event stream: when it is down (broker outage), every worker
    turns 0 after the heartbeat timeout, and CeleryBrokerDown already pages for that."""
    return f"on (instance, broker) {e.metric(cat.EVENT_CONSUMER_UP.name)} == 1"


@alert("CeleryWorkerDown", summary="A Celery worker was lost: it stopped sending heartbeats.")
def worker_down(s: Settings) -> Body:
    # Lost, not offline: a worker that announced its shutdown (worker-offline, a graceful
    # deploy) is celery_worker_offline 1 until the exporter drops it after the grace period.
    timeout = num(s.config["exporter"]["worker_heartbeat_timeout_seconds"])
    return Body(
        f"{s.e.metric(cat.WORKER_UP.name)} == 0\nand {stream_up(s.e)}\n{not_offline(s.e)}",
        "Worker {{ $labels.worker }} on broker {{ $labels.broker }} has sent no heartbeat "
        f"for {timeout}s without announcing a shutdown (it crashed, was killed or lost its "
        f"connection), and has not come back for {s.for_text}.",
    )


@alert(
    "CeleryQueueWorkersDropped",
    summary="The number of workers serving a Celery queue dropped.",
    ratio=Ratio(),
    window=Duration(),
)
def queue_workers_dropped(s: Settings) -> Body:
    e = s.e
    ratio = num(s["ratio"])
    span = dur(s["window"])
    workers = e.metric(cat.QUEUE_WORKERS.name)
    consumers = e.metric(cat.QUEUE_CONSUMERS.name)
    return Body(
        f"(\n  {workers} < {ratio} * max_over_time({workers}[{span}])\n  and {stream_up(e)}\n)\n"
        "or\n"
        "(\n"
        f"  {consumers} < {ratio} * max_over_time({consumers}[{span}])\n"
        f"  unless on (broker, queue) {workers}\n"
        ")",
        f"{WHERE_CAPITAL} is served by {{{{ $value }}}} live workers (RabbitMQ "
        f"consumers when events are off), under {pct(s['ratio'])} of its maximum "
        f"over the last {span}.",
    )


@alert("CeleryAllWorkersDown", summary="No Celery worker is alive on a broker that had workers.")
def all_workers_down(s: Settings) -> Body:
    # Only brokers with workers seen within the retention (lost ones are exported as 0, workers
    # that went offline gracefully do not count): a broker that never had workers, or whose
    # workers were all shut down on purpose, does not page.
    e = s.e
    up = e.metric(cat.WORKER_UP.name)
    retention = format_duration(int(s.config["exporter"]["worker_retention_seconds"]))
    return Body(
        f"{e.metric(cat.EVENT_CONSUMER_UP.name)} == 1\n"
        f"and on (broker) ({up} {not_offline(e)})\n"
        f"unless on (broker) {up} == 1",
        "The exporter (job {{ $labels.job }}) receives Celery events from broker "
        "{{ $labels.broker }}, which had workers within the last "
        f"{retention}, yet none of them has sent a heartbeat for more than "
        f"{s.for_text} and none announced a shutdown: no task on this broker is being "
        "processed.",
    )


@alert(
    "CeleryTaskPrefetchTimeHigh",
    summary="Celery tasks sit long in workers' prefetch buffers.",
    seconds=Number(),
    min_tasks_per_second=Number(),
    window=Duration(),
)
def prefetch_time_high(s: Settings) -> Body:
    e = s.e
    span = dur(s["window"])
    seconds = num(s["seconds"])
    by = "job, broker, queue"
    prefetch = cat.QUEUE_PREFETCH.name
    # p95 of the time from task-received to start (ETA holds excluded), all levels of the
    # queue together, gated by a minimum rate of starts so one slow run does not page.
    return Body(
        "histogram_quantile(0.95,\n"
        f"  sum by ({by}, le) ({rate_counted(e.metric(prefetch + '_bucket'), span)})\n"
        f") > {seconds}\n"
        f"and on ({by})\n"
        f"sum by ({by}) ({rate_counted(e.metric(prefetch + '_count'), span)}) "
        f">= {num(s['min_tasks_per_second'])}",
        f"The p95 time that tasks of {WHERE} spent prefetched in a worker, received but not "
        f"started, was {{{{ $value | humanizeDuration }}}} over the last {span} (limit "
        f"{seconds}s): workers reserve more than they run, so urgent tasks published meanwhile "
        "wait behind them.",
    )
