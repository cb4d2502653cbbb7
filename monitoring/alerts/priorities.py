"""Alerts on priority levels: starvation, ineffective priorities (alerts/tests/priorities.yaml)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat
from celery_queue_exporter.catalogue import URGENCY_LEAST, URGENCY_MOST

from ..promql import dur, num, pct
from ..schema import Duration, Number, format_duration
from .base import WHERE, Body, Settings, alert


@alert(
    "CeleryPriorityStarvation",
    summary="Low-priority Celery tasks are starved by more urgent ones.",
    seconds=Number(),
    window=Duration(),
)
def priority_starvation(s: Settings) -> Body:
    e = s.e
    span = dur(s["window"])
    seconds = num(s["seconds"])
    limit = format_duration(int(s["seconds"]))
    least = e.urgency(URGENCY_LEAST)
    most = e.urgency(URGENCY_MOST)
    messages = e.metric(cat.QUEUE_MESSAGES.name)
    wait_count = e.metric(cat.QUEUE_WAIT.name + "_count")
    # Two ways to see that the least urgent level's next message has waited past the limit:
    # its age (Redis; RabbitMQ only reports the age of the most urgent non-empty level), or
    # (RabbitMQ) messages waiting at that level for the whole limit while none of its tasks
    # started - per-level starts need install(app), so that branch requires priority-labelled
    # waits for the queue. Its value is the limit: the wait is at least that.
    return Body(
        "(\n"
        f"  {e.metric(cat.QUEUE_OLDEST_MESSAGE_AGE.name)} > {seconds}\n"
        f"  and on (broker, queue, priority) {least}\n"
        f"  unless on (broker, queue, priority) {most}\n"
        "  or\n"
        f"  (min_over_time({messages}[{limit}]) > 0) * 0 + {seconds}\n"
        f"  and on (broker, queue, priority) ({messages} offset {limit}) > 0\n"
        f"  and on (broker, queue, priority) {least}\n"
        f"  unless on (broker, queue, priority) {most}\n"
        f"  unless on (broker, queue, priority) (increase({wait_count}[{limit}]) > 0)\n"
        f'  and on (broker, queue) count by (broker, queue) ({wait_count[:-1]}, priority!=""}})\n'
        ")\n"
        "and on (broker, queue) (\n"
        f"  sum by (broker, queue) (increase({e.metric(cat.TASK_STARTED.name)}[{span}])) > 0\n"
        "  or\n"
        f"  sum by (broker, queue) (increase({wait_count}[{span}])) > 0\n"
        ")",
        "The next message at the least urgent level (priority {{ $labels.priority }}) of "
        f"{WHERE} has been waiting at least {{{{ $value | humanizeDuration }}}} (limit "
        f"{limit}), while workers kept starting this queue's tasks during the last {span}: "
        "they serve the more urgent levels and skip this one.",
    )


@alert(
    "CeleryPrioritiesIneffective",
    summary="Celery priorities do not shorten the waits of urgent tasks.",
)
def priorities_ineffective(s: Settings) -> Body:
    # The threshold is the platform goal (goals.min_priority_wait_reduction), shared with the
    # dashboards; the ratio itself is a recording rule (monitoring/recording.py).
    goal = s.config["goals"]["min_priority_wait_reduction"]
    return Body(
        f"{s.names.priority_wait_reduction} < {num(goal)}",
        f"Under backlog, the p95 wait at the most urgent level of {WHERE} is only "
        "{{ $value | humanizePercentage }} shorter than at the least urgent level "
        f"(goal: more than {pct(goal)}), over {s.names.window} windows for more than "
        f"{s.for_text}.",
    )
