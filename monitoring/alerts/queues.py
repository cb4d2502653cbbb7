"""Alerts on queue backlogs, message ages and consumers (alerts/tests/queues.yaml)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat
from celery_queue_exporter.catalogue import URGENCY_LEAST, URGENCY_MOST

from ..promql import Exprs, dur, num, pct, regex_of, template_query
from ..schema import Duration, Number, QueueSeconds, Ratio, duration_seconds, format_duration
from .base import WHERE, WHERE_CAPITAL, Body, Settings, alert

AGE = cat.QUEUE_OLDEST_MESSAGE_AGE.name
#: 1 when a level's head message carries no install(app) publish stamp: its age is then only
#: head-tracking's lower bound (Redis) or unknown (RabbitMQ).
UNSTAMPED = "celery_queue_oldest_message_unstamped"
#: Live workers that did not announce their queues (no install(app) on them).
QUEUES_UNKNOWN = "celery_workers_queues_unknown"


def stamped(e: Exprs) -> str:
    """Age alerts never judge a lower bound: heads without the publish stamp are left out
    (CeleryInstrumentationMissing says so instead)."""
    return f"unless on (broker, queue, priority) {e.metric(UNSTAMPED)} == 1"


@alert(
    "CeleryQueueBacklogHigh",
    summary="A Celery queue has a large backlog.",
    messages=Number(),
)
def backlog_high(s: Settings) -> Body:
    limit = num(s["messages"])
    return Body(
        f"{s.names.queue_messages} > {limit}",
        f"{WHERE_CAPITAL} has had more than {limit} messages waiting (all "
        f"priority levels) for more than {s.for_text}: {{{{ $value | humanize }}}} now.",
    )


@alert(
    "CeleryQueueBacklogGrowing",
    summary="A Celery queue is filling up and will soon hold a large backlog.",
    horizon=Duration(),
    window=Duration(),
    growth_window=Duration(),
)
def backlog_growing(s: Settings) -> Body:
    # Fires below CeleryQueueBacklogHigh's limit only: above it, that alert speaks. The long
    # trend alone would keep it firing for a while after the backlog cleared: it also needs
    # messages waiting now and the depth still rising over the short growth_window, so it
    # resolves at the first evaluation that sees the queue empty or no longer growing.
    limit = num(s.of(backlog_high.name, "messages"))
    messages = s.names.queue_messages
    horizon = duration_seconds(s["horizon"])
    trend = dur(s["window"])
    growth = dur(s["growth_window"])
    return Body(
        f"predict_linear({messages}[{trend}], {horizon}) > {limit}\n"
        f"and {messages} <= {limit}\n"
        f"and {messages} > 0\n"
        f"and deriv({messages}[{growth}]) > 0",
        f"At the trend of the last {trend}, {WHERE} will hold {{{{ $value | humanize }}}} "
        f"messages in {format_duration(horizon)}, more than the {limit} of "
        "CeleryQueueBacklogHigh.",
    )


@alert(
    "CeleryQueueMostUrgentWaitingTooLong",
    summary="The most urgent Celery tasks do not start within their goal.",
    seconds=Number(),
    priority_usage_window=Duration(),
)
def most_urgent_waiting_too_long(s: Settings) -> Body:
    # Messages without a priority land on Redis' most urgent level: only queues that used
    # another level within priority_usage_window are held to the goal.
    e = s.e
    usage = dur(s["priority_usage_window"])
    return Body(
        f"{e.metric(AGE)} > {num(s['seconds'])}\n"
        f"{stamped(e)}\n"
        f"and on (broker, queue, priority) {e.urgency(URGENCY_MOST)}\n"
        f"unless on (broker, queue, priority) {e.urgency(URGENCY_LEAST)}\n"
        "and on (broker, queue) (\n"
        "  max by (broker, queue) (\n"
        f"    max_over_time({e.metric(cat.QUEUE_MESSAGES.name)}[{usage}])\n"
        f"    unless on (broker, queue, priority) {e.urgency(URGENCY_MOST)}\n"
        "  ) > 0\n"
        ")",
        "The next message at the most urgent level (priority {{ $labels.priority }}) of "
        f"{WHERE} has been waiting {{{{ $value | humanizeDuration }}}}, over the "
        f"{format_duration(int(s['seconds']))} goal, for more than {s.for_text}.",
    )


@alert(
    "CeleryQueueMessageWaitingTooLong",
    summary="Messages in a Celery queue have been waiting too long.",
    seconds=Number(),
)
def message_waiting_too_long(s: Settings) -> Body:
    return Body(
        f"{s.e.metric(AGE)} > {num(s['seconds'])}\n{stamped(s.e)}",
        "The next message at {{ if $labels.priority }}priority {{ $labels.priority }}"
        "{{ else }}an unknown priority level{{ end }} of "
        f"{WHERE} has been waiting {{{{ $value | humanizeDuration }}}}, over the limit of "
        f"{format_duration(int(s['seconds']))}, for more than {s.for_text}.",
    )


@alert(
    "CeleryQueueNoConsumers",
    summary="A Celery queue has waiting messages and nothing consuming them.",
)
def no_consumers(s: Settings) -> Body:
    e = s.e
    messages = s.names.queue_messages
    consumers = e.metric(cat.QUEUE_CONSUMERS.name)
    # RabbitMQ counts consumers; on any broker, the events say how many workers serve a queue,
    # but only when every live worker announced its queues (install(app)): otherwise
    # celery_queue_workers knows only the queues workers ran tasks from, and a live worker
    # starved on another queue would look like none.
    return Body(
        "(\n"
        f"  {messages} > 0\n"
        f"  and on (broker, queue) {consumers} == 0\n"
        ")\n"
        "or\n"
        "(\n"
        f"  {messages} > 0\n"
        f"  unless on (broker, queue) {consumers}\n"
        f"  unless on (broker, queue) {e.metric(cat.QUEUE_WORKERS.name)} > 0\n"
        f"  and on (broker) {e.metric(cat.EVENT_CONSUMER_UP.name)} == 1\n"
        f"  and on (broker) {e.metric(QUEUES_UNKNOWN)} == 0\n"
        ")",
        f"{WHERE_CAPITAL} has {{{{ $value | humanize }}}} messages waiting and "
        "no consumer (RabbitMQ) or no live worker (Celery events) for more than "
        f"{s.for_text}: nothing is processing them.",
    )


@alert(
    "CeleryReservedNearVisibilityTimeout",
    summary="Reserved Celery tasks approach the Redis visibility timeout and will run twice.",
    ratio=Ratio(),
)
def reserved_near_visibility_timeout(s: Settings) -> Body:
    e = s.e
    return Body(
        f"{e.metric(cat.BROKER_RESERVED_OLDEST_AGE.name)}\n"
        f"> {num(s['ratio'])} * {e.metric(cat.BROKER_VISIBILITY_TIMEOUT.name)}",
        "The oldest unacknowledged reservation on Redis broker {{ $labels.broker }} has been "
        "held for {{ $value | humanizeDuration }}, over "
        f"{pct(s['ratio'])} of the visibility_timeout: once it passes, Redis delivers the "
        "message again and the task runs a second time.",
    )


@alert(
    "CeleryReservationsOrphaned",
    summary="A Redis reservation outlived any live worker: its worker is gone.",
)
def reservations_orphaned(s: Settings) -> Body:
    # A live worker holds a reservation at most for the longest countdown/ETA, then (acks_late)
    # behind up to prefetch_multiplier runs of its process slot, then for its own run, each
    # within the hard time limit; older, the worker that took it crashed and Redis redelivers
    # it only at the visibility_timeout (an hour by default).
    e = s.e
    workload = s.config["workload"]
    countdown = int(workload["longest_countdown_seconds"])
    hard_limit = int(workload["hard_time_limit_seconds"])
    runs = int(workload["prefetch_multiplier"]) + 1
    limit = countdown + runs * hard_limit
    return Body(
        f"{e.metric(cat.BROKER_RESERVED_OLDEST_AGE.name)} > {limit}",
        "The oldest unacknowledged reservation on Redis broker {{ $labels.broker }} has been "
        "held for {{ $value | humanizeDuration }}, longer than a live worker can hold one "
        f"({format_duration(limit)}: longest countdown {format_duration(countdown)} + {runs} "
        f"runs of up to the hard time limit {format_duration(hard_limit)}, its own and those "
        "it was prefetched behind): the worker that took it is gone, and Redis delivers "
        "it again only once the visibility_timeout"
        + " ({{ with "
        + template_query(
            e.metric(cat.BROKER_VISIBILITY_TIMEOUT.name, broker="%s"), "$labels.broker"
        )
        + " }}{{ . | first | value | humanizeDuration }}{{ else }}unknown{{ end }}) has passed.",
    )


def quoted(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@alert(
    "CeleryQueueWaitObjectiveMissed",
    summary="A Celery queue misses its wait objective: its next message waits too long.",
    seconds=Number(minimum=1),
    queues=QueueSeconds(),
)
def wait_objective_missed(s: Settings) -> Body:
    # Every queue, whatever its number of priority levels, is held to an objective: the
    # `seconds` default or its entry in `queues`. It reads the head age (the oldest message of
    # any level, from its install(app) publish stamp), not a wait quantile: no events or window
    # are needed, it fires once the next message has waited past the objective (even when
    # nothing starts at all), and a burst that drains within the objective never has a head
    # that old, so it stays silent. Heads without the stamp (a lower bound) are left out, and
    # the exporter replicas of one job make one series per queue.
    e = s.e
    overrides: dict[str, float] = dict(s["queues"] or {})
    default = num(s["seconds"])

    def ages(matcher: str) -> str:
        selector = e.metric(AGE)[:-1] + f", {matcher}}}" if matcher else e.metric(AGE)
        return f"max by (job, broker, queue) (\n  {selector}\n  {stamped(e)}\n)"

    others = 'queue!~"' + regex_of(sorted(overrides)) + '"' if overrides else ""
    branches = [f"{ages(others)} > {default}"]
    for queue, seconds in sorted(overrides.items()):
        branches.append(f"{ages('queue=' + quoted(queue))} > {num(seconds)}")
    objective = "".join(
        f'{{{{ if eq $labels.queue "{queue}" }}}}{format_duration(int(seconds))}{{{{ else }}}}'
        for queue, seconds in sorted(overrides.items())
    )
    objective += format_duration(int(s["seconds"])) + "{{ end }}" * len(overrides)
    return Body(
        "\nor\n".join(branches),
        f"The next message of {WHERE} has been waiting {{{{ $value | humanizeDuration }}}}, "
        f"over the queue's wait objective of {objective}, for more than {s.for_text}: "
        "tasks published to it do not start in time.",
    )
