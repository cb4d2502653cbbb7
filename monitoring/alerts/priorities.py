"""Alerts on priority levels: starvation, ineffective priorities (alerts/tests/priorities.yaml)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat
from celery_queue_exporter.catalogue import URGENCY_LEAST, URGENCY_MOST

from ..promql import dur, increase_counted, num, pct, regex_of, template_query
from ..schema import Duration, Number, Ratio, format_duration
from .base import WHERE, Body, Settings, alert

#: Tasks received per priority level (the install(app) worker hook's task-info event).
RECEIVED_BY_PRIORITY = "celery_task_received_by_priority_total"
UNSTAMPED = "celery_queue_oldest_message_unstamped"


@alert(
    "CeleryPriorityStarvation",
    summary="The least urgent level of a Celery queue is starved by more urgent ones.",
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
    started = increase_counted(e.metric(cat.TASK_STARTED.name), span)
    # Two ways to see that the least urgent level's next message has waited past the limit:
    # its age (Redis; RabbitMQ only reports the age of the most urgent non-empty level), or
    # (RabbitMQ) messages waiting at that level for the whole limit while none of its tasks
    # started - per-level starts need install(app), so that branch requires priority-labelled
    # waits for the queue. Its value is the limit: the wait is at least that. On Redis an empty
    # level other than the first sends no depth (issue 25), so min_over_time sees only the
    # scrapes where the level held messages; a level that emptied in between was served, which
    # counts a wait at that level (the `unless` below), so it does not fire.
    return Body(
        "(\n"
        f"  {e.metric(cat.QUEUE_OLDEST_MESSAGE_AGE.name)} > {seconds}\n"
        f"  unless on (broker, queue, priority) {e.metric(UNSTAMPED)} == 1\n"
        f"  and on (broker, queue, priority) {least}\n"
        f"  unless on (broker, queue, priority) {most}\n"
        "  or\n"
        f"  (min_over_time({messages}[{limit}]) > 0) * 0 + {seconds}\n"
        f"  and on (broker, queue, priority) ({messages} offset {limit}) > 0\n"
        f"  and on (broker, queue, priority) {least}\n"
        f"  unless on (broker, queue, priority) {most}\n"
        f"  unless on (broker, queue, priority) ({increase_counted(wait_count, limit)} > 0)\n"
        f'  and on (broker, queue) count by (broker, queue) ({wait_count[:-1]}, priority!=""}})\n'
        ")\n"
        "and on (broker, queue) (\n"
        f"  sum by (broker, queue) ({started}) > 0\n"
        "  or\n"
        f"  sum by (broker, queue) ({increase_counted(wait_count, span)}) > 0\n"
        ")",
        "The next message at priority {{ $labels.priority }}, the least urgent level in use "
        f"of {WHERE} (the level the broker serves last), has been waiting at least "
        f"{{{{ $value | humanizeDuration }}}} (limit {limit}), while workers kept starting "
        f"this queue's tasks during the last {span}: they serve the more urgent levels and "
        "skip this one.",
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


@alert(
    "CeleryUrgentTaskAtWrongPriority",
    summary="An urgent Celery task is published at a level other than its queue's most urgent.",
    window=Duration(),
)
def urgent_task_at_wrong_priority(s: Settings) -> Body:
    # urgent_tasks (monitoring/config.yaml) must be published at their queue's most urgent
    # level. The classic mistake: producers moved from Redis (0 served first) to RabbitMQ (the
    # highest number served first) still send urgent work at 0. The most urgent level is the
    # one in use (celery_queue_priority_urgency_rank); queues whose level is unknown are left
    # out. An empty urgent_tasks matches no task.
    e = s.e
    span = dur(s["window"])
    urgent = regex_of(s.config["urgent_tasks"])
    received = e.metric(RECEIVED_BY_PRIORITY)[:-1] + f', task=~"{urgent}"}}'
    most = e.urgency(URGENCY_MOST)
    # Numbered levels only: RabbitMQ quorum queues have two named levels (high/normal) that a
    # message's number cannot be compared with.
    numeric_most = most[:-1] + ', priority=~"[0-9]+"}'
    most_level = template_query(
        e.metric(cat.QUEUE_PRIORITY_URGENCY.name, broker="%s", queue="%s", urgency=URGENCY_MOST),
        "$labels.broker",
        "$labels.queue",
    )
    # increase() counts nothing for a series that first appears at 1 (the first wrong run after
    # an exporter start, or ever): increase_counted counts such a new series at its value, and
    # each run once whatever the number of exporter replicas.
    by = "job, broker, queue, task, priority"
    return Body(
        f"sum by ({by}) (\n{increase_counted(received, span)}\n) > 0\n"
        f"unless on (broker, queue, priority) {most}\n"
        f"and on (broker, queue) {numeric_most}",
        "Urgent task {{ $labels.task }} was received {{ $value | humanize }} times in the "
        f"last {span} at priority {{{{ $labels.priority }}}} of {WHERE}, whose most urgent "
        f"level is priority {{{{ with {most_level} }}}}{{{{ (. | first).Labels.priority }}}}"
        "{{ end }}: the broker serves those runs after more urgent work. RabbitMQ serves the "
        "highest number first, Redis 0: producers moved from one to the other often keep the "
        "old level.",
    )


@alert(
    "CeleryTaskStarved",
    summary="A Celery task is sent but workers do not receive it while they serve other tasks.",
    messages=Number(),
    window=Duration(),
    served_ratio=Ratio(),
)
def task_starved(s: Settings) -> Body:
    # Sent minus received (not minus started): countdown/ETA tasks are received at once and
    # held by the worker, so they never count. Starved, not merely queued: the share of this
    # task's runs that workers received is under `served_ratio` of the share for the queue's
    # other tasks, and workers received at least `messages` of those. A FIFO backlog that grows
    # for every task alike (the same share received for all) is CeleryQueueBacklogHigh's
    # business, not starvation; so is a big backlog next to a handful of other runs (their
    # share says nothing); a queue nothing serves is CeleryQueueNoConsumers'.
    e = s.e
    span = dur(s["window"])
    by = "job, broker, queue, task"
    sent_total = increase_counted(e.metric(cat.TASK_SENT.name), span)
    received_total = increase_counted(e.metric(cat.TASK_RECEIVED.name), span)
    sent = f"sum by ({by}) ({sent_total})"
    received = f"(sum by ({by}) ({received_total}) or {sent} * 0)"
    others_received = (
        f"sum by (job, broker, queue) ({received_total})\n"
        f"    - on (job, broker, queue) group_right () {received}"
    )
    queue_share = (
        "(\n"
        f"    {others_received}\n"
        "  )\n"
        "  /\n"
        "  (\n"
        f"    sum by (job, broker, queue) ({sent_total})\n"
        f"    - on (job, broker, queue) group_right () {sent}\n"
        "  )"
    )
    # Starvation needs priorities: at least two levels of the queue carried messages (depths)
    # or tasks (install(app)'s per-level counts) within the most-urgent alert's
    # priority_usage_window. On a queue of one level, runs sent now wait behind an older
    # backlog however it drains: that is FIFO, not starvation.
    usage = dur(s.of("CeleryQueueMostUrgentWaitingTooLong", "priority_usage_window"))
    # Levels only: not the series without priority, nor the messages whose level the events
    # do not tell (RabbitMQ 4 classic priority queues' priority="unknown").
    messages_by_level = (
        e.metric(cat.QUEUE_MESSAGES.name)[:-1] + f', priority!~"|{cat.UNKNOWN_LEVEL}"}}'
    )
    levels_in_use = (
        "count by (broker, queue) (\n"
        f"  max by (broker, queue, priority) (max_over_time({messages_by_level}[{usage}])) > 0\n"
        "  or\n"
        f"  max by (broker, queue, priority) (increase({e.metric(RECEIVED_BY_PRIORITY)}[{usage}]))"
        " > 0\n"
        ")"
    )
    levels = template_query(
        f"max by (priority) ({e.metric(RECEIVED_BY_PRIORITY, broker='%s', queue='%s', task='%s')})",
        "$labels.broker",
        "$labels.queue",
        "$labels.task",
    )
    least = template_query(
        e.metric(
            cat.QUEUE_PRIORITY_URGENCY.name,
            broker="%s",
            queue="%s",
            priority="%s",
            urgency=URGENCY_LEAST,
        ),
        "$labels.broker",
        "$labels.queue",
        "$level.Labels.priority",
    )
    return Body(
        f"({sent} - {received}) > {num(s['messages'])}\n"
        f"and on ({by}) (\n"
        f"  {received} / {sent}\n"
        f"  < {num(s['served_ratio'])} * {queue_share}\n"
        ")\n"
        f"and on ({by}) (\n"
        f"  {others_received}\n"
        f") >= {num(s['messages'])}\n"
        f"and on (broker, queue) {levels_in_use} > 1",
        "{{ $value | humanize }} runs of task {{ $labels.task }} sent to "
        f"{WHERE} in the last {span} were not received by any worker, while workers kept "
        "receiving this queue's other tasks: the broker hands out other work first. "
        f"{{{{ with {levels} }}}}Its runs were received at "
        '{{ range $i, $level := . | sortByLabel "priority" }}{{ if $i }}, {{ end }}'
        f"priority {{{{ $level.Labels.priority }}}}{{{{ with {least} }}}}, the least urgent "
        "level in use, which the broker serves last{{ end }}{{ end }}."
        "{{ else }}The level it is published at is unknown: that needs install(app) on the "
        "workers.{{ end }}",
    )
