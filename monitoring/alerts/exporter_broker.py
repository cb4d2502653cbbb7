"""Alerts on the exporter and the brokers it inspects (alerts/tests/exporter_broker.yaml)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from ..promql import template_query
from .base import Body, Settings, alert

#: Heads without the install(app) publish stamp, and live workers that did not announce their
#: queues: the two halves of a missing install(app).
UNSTAMPED = "celery_queue_oldest_message_unstamped"
QUEUES_UNKNOWN = "celery_workers_queues_unknown"


@alert("CeleryExporterDown", summary="The Celery queue exporter is down or missing.")
def exporter_down(s: Settings) -> Body:
    up = s.e.metric("up")
    return Body(
        f"{up} == 0\nor\nabsent({up})",
        "{{ if $labels.instance }}Prometheus has failed to scrape {{ $labels.instance }} "
        "(job {{ $labels.job }})"
        f"{{{{ else }}}}Prometheus has no scrape target matching {s.config['selector']}"
        f"{{{{ end }}}} for more than {s.for_text}: queue, worker and task metrics are "
        "not collected and the other Celery alerts cannot fire.",
    )


@alert("CeleryBrokerDown", summary="The exporter cannot inspect a Celery broker.")
def broker_down(s: Settings) -> Body:
    return Body(
        f"{s.e.metric(cat.BROKER_UP.name)} == 0",
        "The exporter {{ $labels.instance }} has failed to inspect broker "
        f"{{{{ $labels.broker }}}} for more than {s.for_text} (celery_broker_up is 0): "
        "the broker is down, unreachable, refuses the exporter's credentials, or answers "
        "slower than the scrape timeout. This broker's queue metrics are missing meanwhile.",
    )


@alert(
    "CeleryInstrumentationMissing",
    summary="Celery producers or workers run without install(app): some alerts are blind.",
)
def instrumentation_missing(s: Settings) -> Body:
    # One alert per broker, whichever side lacks install(app): the age alerts never judge a
    # lower bound and CeleryQueueNoConsumers' events branch stays silent instead of paging.
    e = s.e
    heads = template_query(f"count({e.metric(UNSTAMPED, broker='%s')} == 1)", "$labels.broker")
    workers = template_query(f"max({e.metric(QUEUES_UNKNOWN, broker='%s')} > 0)", "$labels.broker")
    return Body(
        f"max by (job, broker) ({e.metric(UNSTAMPED)} == 1)\n"
        "or\n"
        f"max by (job, broker) ({e.metric(QUEUES_UNKNOWN)} > 0)",
        "On broker {{ $labels.broker }}:"
        f"{{{{ with {heads} }}}} {{{{ . | first | value }}}} queue level(s) have a head "
        "message without the install(app) publish stamp (producers lack install(app)): their "
        "age is a lower bound (Redis) or unknown (RabbitMQ), so "
        "CeleryQueueMostUrgentWaitingTooLong, CeleryQueueMessageWaitingTooLong and "
        "CeleryPriorityStarvation stay silent for them.{{ end }}"
        f"{{{{ with {workers} }}}} {{{{ . | first | value }}}} live worker(s) did not "
        "announce the queues they consume (workers lack install(app)): CeleryQueueNoConsumers "
        "stays silent on this broker where RabbitMQ does not count consumers, and the "
        "priority of received tasks (CeleryUrgentTaskAtWrongPriority) is unknown.{{ end }}",
    )


@alert(
    "CeleryEventSeriesDropped",
    summary="Task metrics past the exporter's series budget are folded into '(other)'.",
)
def event_series_dropped(s: Settings) -> Body:
    # increase() over the for: window: a one-off burst of odd names stops paging by itself.
    dropped = s.e.metric(cat.EVENT_SERIES_DROPPED.name)
    return Body(
        f"sum by (job, instance, broker, metric) (increase({dropped}[{s.for_text}])) > 0",
        "The exporter {{ $labels.instance }} counted {{ $value | humanize }} observations of "
        "{{ $labels.metric }} from broker {{ $labels.broker }} under its '(other)' labels in "
        f"the last {s.for_text}: their own series would exceed the series budget "
        "(events.max_series_per_family, events.max_event_samples). Per-task or per-queue "
        "readings of that metric are incomplete; a publisher may be sending dynamic or "
        "hostile task, queue or exception names.",
    )
