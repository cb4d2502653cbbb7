"""Alerts on redeliveries and on messages a broker drops after its delivery limit (RabbitMQ 4
quorum queues; alerts/tests/redeliveries.yaml)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from ..promql import dur, num
from ..schema import Duration, Number
from .base import WHERE, WHERE_CAPITAL, Body, Settings, alert


@alert(
    "CeleryTaskRedeliveredRepeatedly",
    summary="Messages of a Celery queue are redelivered again and again (poison task or crash "
    "loop).",
    redeliveries=Number(minimum=1),
    window=Duration(),
)
def redelivered_repeatedly(s: Settings) -> Body:
    # A worker that dies holding a message (OOM, os._exit, segfault) with acks_late gets it
    # requeued and redelivered at once: the redelivery counter climbs by one per death. A
    # quorum queue drops the message after its delivery limit (20 on RabbitMQ 4) within
    # seconds, so this alert must not wait long: `for` is 1m by default and the window keeps it
    # firing for `window` after the last redelivery, long enough to be seen.
    e = s.e
    span = dur(s["window"])
    return Body(
        f"increase({e.metric(cat.QUEUE_REDELIVERED.name)}[{span}]) >= {num(s['redeliveries'])}",
        f"{WHERE_CAPITAL} redelivered {{{{ $value | humanize }}}} messages in the last {span} "
        "(requeued after a worker died holding them, or a reject/nack with requeue): a task "
        "that kills its worker, or workers in a crash loop. A quorum queue drops a message "
        "after its delivery limit (see celery_queue_delivery_limit).",
    )


@alert(
    "CeleryDeliveryLimitWithoutDeadLetter",
    summary="A RabbitMQ queue discards messages past its delivery limit, with no dead-letter "
    "exchange to keep them.",
)
def delivery_limit_drops(s: Settings) -> Body:
    # A risk, not an incident: RabbitMQ 4 quorum queues have delivery_limit 20 by default, and
    # without a dead-letter exchange the 21st delivery of a message (a task that crashed its
    # worker 20 times) silently drops it: no broker log line, no task-failed event.
    e = s.e
    limit = e.metric(cat.QUEUE_DELIVERY_LIMIT.name)
    dlx = e.metric(cat.QUEUE_DEAD_LETTER_CONFIGURED.name)
    return Body(
        f"{limit}\nand on (job, instance, broker, queue) {dlx} == 0",
        f"{WHERE_CAPITAL} drops a message after {{{{ $value | humanize }}}} deliveries and has "
        "no dead-letter exchange: a task whose worker dies that often is lost without a "
        f"trace. Give {WHERE} a dead-letter exchange (policy), or raise its limit.",
    )
