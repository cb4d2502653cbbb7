"""The queues dashboard's RabbitMQ 4 row (issue 23): redeliveries against the delivery limit,
and the countdown/ETA tasks Celery's native delayed delivery holds."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from .panels import UNIT_MESSAGES, UNIT_MSG_RATE, Q, Row, line, row, timeseries
from .promql import m, selector
from .settings import Settings


def redeliveries_and_scheduled(s: Settings) -> Row:
    """Crash loops (redeliveries, the limit that drops) and scheduled tasks per delay band."""
    sb = selector(s)
    sq = selector(s, queue=True)
    window = s.alert("CeleryTaskRedeliveredRepeatedly")["window"]
    redeliveries = timeseries(
        s,
        "Redeliveries per queue (RabbitMQ)",
        "Messages delivered again after a worker died holding them or a reject/nack with "
        f"requeue, per second over {window} (celery_queue_redelivered_total), and requeued "
        "messages waiting on quorum queues (celery_queue_messages, priority 'returned'). "
        "Normal: 0. A steady rate is a task that kills its worker or a crash loop "
        "(CeleryTaskRedeliveredRepeatedly); a quorum queue drops a message after its delivery "
        "limit (celery_queue_delivery_limit), silently without a dead-letter exchange "
        "(CeleryDeliveryLimitWithoutDeadLetter).",
        [
            Q(
                f"sum by (broker, queue) (rate({m(cat.QUEUE_REDELIVERED, sq)}[{window}]))",
                "{{broker}} / {{queue}} redelivered",
            ),
        ],
        unit=UNIT_MSG_RATE,
        runbooks=["CeleryTaskRedeliveredRepeatedly", "CeleryDeliveryLimitWithoutDeadLetter"],
    )
    scheduled = timeseries(
        s,
        "Scheduled tasks per delay band (RabbitMQ native delayed delivery)",
        "Countdown/ETA tasks Celery >= 5.5 holds in its celery_delayed_N quorum queues "
        "(celery_scheduled_messages), per band: the longest delay in seconds its queue holds. "
        "They have no consumer by design and are not work queues. Normal: tasks move down the "
        "bands and leave; a total that only rises means more is scheduled than comes due.",
        [Q(f"sum by (broker, band) ({m(cat.SCHEDULED_MESSAGES, sb)})", "{{broker}} <= {{band}}s")],
        unit=UNIT_MESSAGES,
        stacked=True,
    )
    return row(
        "RabbitMQ: redeliveries and scheduled tasks", line(8, (redeliveries, 12), (scheduled, 12))
    )
