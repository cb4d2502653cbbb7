"""Celery / Priorities: do priorities work, per level and per broker?

The platform goal (monitoring/config.yaml ``goals``): the most urgent level waits more than
``min_priority_wait_reduction`` less than the least urgent one, and starts within
``most_urgent_start_seconds``. "Most/least urgent" is taken from
celery_queue_priority_urgency_rank (Redis serves 0 first, RabbitMQ the highest number), so the
same queries hold for both brokers. Built by ``python -m monitoring.generate`` into
dashboards/priorities.json.
"""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from .board import dashboard, variables
from .panels import (
    UNIT_COUNT,
    UNIT_MESSAGES,
    UNIT_RATIO,
    UNIT_SECONDS,
    UNIT_TASK_RATE,
    Column,
    Json,
    Q,
    Row,
    above,
    bargauge,
    below,
    heatmap,
    line,
    row,
    stat,
    table,
    timeseries,
)
from .promql import (
    Priority,
    at_urgency,
    depth_by_level,
    histogram_quantile,
    m,
    selector,
    unknown_priority,
    with_transport,
)
from .settings import Settings

SLUG = "priorities"


def _depth_by_level(s: Settings) -> str:
    depth = m(cat.QUEUE_MESSAGES, selector(s, queue=True))
    return depth_by_level(depth)


def _least_oldest(s: Settings) -> str:
    age = m(cat.QUEUE_OLDEST_MESSAGE_AGE, selector(s, queue=True))
    return f"max by (broker, queue) ({at_urgency(age, s, 'least')})"


def _effectiveness_text(s: Settings) -> str:
    """What priority effectiveness means, for the panels that show it."""
    q = Priority(s)
    goal = s.goal("min_priority_wait_reduction")
    return (
        f"1 - p95 wait of the most urgent level / p95 wait of the least urgent level, over "
        f"{q.window}, recorded only while the queue had a backlog (with an idle queue every "
        f"level waits ~0 and the ratio means nothing). Goal: above {goal:.0%}. Recording "
        f"rule {q.names.priority_wait_reduction}, the one CeleryPrioritiesIneffective reads."
    )


def effectiveness(s: Settings) -> Row:
    """Is the platform goal met: effectiveness, urgent waits, starving levels."""
    q = Priority(s)
    window = q.window
    goal_reduction = s.goal("min_priority_wait_reduction")
    goal_start = s.goal("most_urgent_start_seconds")
    starvation = s.threshold("CeleryPriorityStarvation", "seconds")
    effectiveness_worst_queue = stat(
        s,
        "Effectiveness (worst queue)",
        f"Priority effectiveness of the worst selected queue: {_effectiveness_text(s)} "
        "Normal: green. Red means urgent tasks wait about as long as the rest: check "
        "prefetching (worker_prefetch_multiplier=1, acks_late) and, on Redis, that the "
        "queue is not starved by other queues. Empty without a backlog or without "
        "per-priority waits (install(app) on producers and workers).",
        [Q(f"min({q.effectiveness})")],
        unit=UNIT_RATIO,
        thresholds=below(goal_reduction),
        runbooks=["CeleryPrioritiesIneffective"],
        no_value="no backlog",
    )
    most_urgent_level_p95 = stat(
        s,
        "Most urgent level: p95 wait",
        f"p95 queue wait (start minus the later of publish and ETA) at the most urgent "
        f"level, worst queue, over "
        f"{window}. Goal: start within {goal_start:g}s. Normal: well below the goal.",
        [Q(f"max({q.most_p95})")],
        unit=UNIT_SECONDS,
        thresholds=above(goal_start),
        runbooks=["CeleryQueueMostUrgentWaitingTooLong"],
        no_value="no tasks started",
    )
    least_urgent_level_oldest = stat(
        s,
        "Least urgent level: oldest",
        "Oldest message waiting at the least urgent level of any selected queue. Some "
        "wait is expected (that is what priorities do). Normal: minutes at most under "
        "load, "
        f"0 when idle; red past {starvation:g}s "
        "(CeleryPriorityStarvation).",
        [Q(f"max({_least_oldest(s)})")],
        unit=UNIT_SECONDS,
        thresholds=above(starvation),
        runbooks=["CeleryPriorityStarvation"],
    )
    starving_levels = stat(
        s,
        "Starving levels",
        "Priority levels with messages waiting and no task started from them in "
        f"{window} while their queue did start tasks from other levels. Normal: 0, or "
        "brief bursts while urgent work drains.",
        [Q(f"count({q.starving}) or vector(0)")],
        unit=UNIT_COUNT,
        thresholds=above(1, over="orange"),
        runbooks=["CeleryPriorityStarvation"],
    )
    priority_effectiveness_queue = timeseries(
        s,
        "Priority effectiveness per queue",
        f"{_effectiveness_text(s)} Normal: above the dashed goal line under load. "
        "Below it the CeleryPrioritiesIneffective alert fires after a while. Gaps "
        "are periods without backlog.",
        [Q(q.effectiveness, "{{broker}} / {{queue}}")],
        unit=UNIT_RATIO,
        thresholds=below(goal_reduction),
        max_value=1,
        min_value=None,
        runbooks=["CeleryPrioritiesIneffective"],
    )
    most_least_urgent_level = timeseries(
        s,
        "Most vs least urgent level: p95 wait",
        f"p95 wait of the most and the least urgent level per queue over {window}. "
        "Normal: the 'most' line far below the 'least' line under load; both near 0 "
        f"when idle. Dashed line: the {goal_start:g}s start goal for the most urgent "
        "level.",
        [
            Q(q.most_p95, "{{broker}} / {{queue}} most urgent"),
            Q(q.least_p95, "{{broker}} / {{queue}} least urgent"),
        ],
        unit=UNIT_SECONDS,
        thresholds=above(goal_start),
        runbooks=["CeleryQueueMostUrgentWaitingTooLong"],
    )
    return row(
        "Priority effectiveness against the goal",
        line(
            5,
            (effectiveness_worst_queue, 6),
            (most_urgent_level_p95, 6),
            (least_urgent_level_oldest, 6),
            (starving_levels, 6),
        ),
        line(8, (priority_effectiveness_queue, 12), (most_least_urgent_level, 12)),
    )


def depth_across_levels(s: Settings) -> Row:
    """How the backlog spreads over the priority levels now and over time."""
    sq = selector(s, queue=True)

    waiting_messages_level_now = bargauge(
        s,
        "Waiting messages per level, now",
        "Messages waiting at each priority level of each queue now. Redis: 0 is the "
        "most urgent level; RabbitMQ: the highest. 'unknown' is a RabbitMQ queue "
        "whose per-level counts the broker does not report. Normal: urgent levels "
        "near 0.",
        [
            Q(
                unknown_priority(_depth_by_level(s)),
                "{{broker}} / {{queue}} p{{priority}}",
            )
        ],
        unit=UNIT_MESSAGES,
        thresholds=above(s.threshold("CeleryQueueBacklogHigh", "messages")),
        dashboards=["queues"],
    )
    share_backlog_level = timeseries(
        s,
        "Share of the backlog per level",
        "Each level's share of its queue's waiting messages, stacked to 100% per "
        "queue. Normal under load: the least urgent levels hold most of the backlog; "
        "a large share at the most urgent level means urgent work is queueing.",
        [
            Q(
                unknown_priority(
                    f"{_depth_by_level(s)} / on (broker, queue) group_left () "
                    f"sum by (broker, queue) ({m(cat.QUEUE_MESSAGES, sq)})"
                ),
                "{{broker}} / {{queue}} p{{priority}}",
            )
        ],
        unit=UNIT_RATIO,
        stacked=True,
    )
    return row(
        "Depth across levels", line(8, (waiting_messages_level_now, 10), (share_backlog_level, 14))
    )


def waits_per_level(s: Settings) -> Row:
    """Waits per level, the urgent level in detail, starts and the oldest laggard."""
    q = Priority(s)
    window = q.window
    goal_start = s.goal("most_urgent_start_seconds")
    starvation = s.threshold("CeleryPriorityStarvation", "seconds")
    wait_quantiles_priority_level = timeseries(
        s,
        "Wait quantiles per priority level",
        f"p50 and p95 queue wait per queue and level over {window} "
        "(celery_queue_wait_seconds: start minus the later of the run's own publish and "
        "its ETA, so countdowns and retry backoffs do not count; needs install(app) on "
        "producers and workers for the priority label). Normal: waits ordered by urgency "
        "under load.",
        [
            Q(q.p50_by_level, "{{broker}} / {{queue}} p{{priority}} p50"),
            Q(q.p95_by_level, "{{broker}} / {{queue}} p{{priority}} p95"),
        ],
        unit=UNIT_SECONDS,
        thresholds=above(goal_start),
    )
    wait_distribution_most_urgent = heatmap(
        s,
        "Wait distribution, most urgent level",
        "How waits at the most urgent level spread over the histogram buckets. Normal: "
        f"all in the buckets below the {goal_start:g}s goal.",
        f"sum by (le) ({q.most_buckets})",
    )
    tasks_started_level = timeseries(
        s,
        "Tasks started per level",
        "Tasks started per second from each queue and level (count of "
        "celery_queue_wait_seconds). A level with waiting messages and no starts "
        "while other levels start is being starved (CeleryTaskStarved names the task, "
        "CeleryUrgentTaskAtWrongPriority an urgent task at the wrong level). Normal: every "
        "level with a backlog starts something over time.",
        [Q(q.started_by_level, "{{broker}} / {{queue}} p{{priority}}")],
        unit=UNIT_TASK_RATE,
        runbooks=[
            "CeleryPriorityStarvation",
            "CeleryTaskStarved",
            "CeleryUrgentTaskAtWrongPriority",
        ],
    )
    least_urgent_level_oldest = timeseries(
        s,
        "Least urgent level: oldest waiting message",
        "Age of the head message of each queue's least urgent level. It grows while "
        "urgent work is served first. Normal: falls back at quiet times. Dashed line: "
        f"{starvation:g}s (CeleryPriorityStarvation).",
        [Q(_least_oldest(s), "{{broker}} / {{queue}}")],
        unit=UNIT_SECONDS,
        thresholds=above(starvation),
        runbooks=["CeleryPriorityStarvation"],
    )
    received_task_level = timeseries(
        s,
        "Tasks received per task and level",
        f"Tasks workers received per second over {window}, per queue, task and the priority "
        "level they were published at (celery_task_received_by_priority_total; needs "
        "install(app) on workers). Normal: each urgent task only at its queue's most urgent "
        "level; an urgent task at another level (a producer still using Redis' '0 = urgent' "
        "on RabbitMQ) fires CeleryUrgentTaskAtWrongPriority.",
        [
            Q(
                "sum by (broker, queue, task, priority) (rate("
                f"{m(cat.TASK_RECEIVED_BY_PRIORITY, selector(s, queue=True))}[{window}]))",
                "{{broker}} / {{queue}} {{task}} p{{priority}}",
            )
        ],
        unit=UNIT_TASK_RATE,
        runbooks=["CeleryUrgentTaskAtWrongPriority"],
    )
    prefetch_limit = s.threshold("CeleryTaskPrefetchTimeHigh", "seconds")
    prefetch_level = timeseries(
        s,
        "Prefetch time per priority level",
        f"p95 time tasks sat in a worker's prefetch buffer (received, not started; ETA "
        f"holds not counted) per queue and level over {window} "
        "(celery_queue_prefetch_seconds). Time there is out of the broker's priority "
        "order: an urgent task published meanwhile cannot overtake it. Normal: near 0 "
        f"with worker_prefetch_multiplier=1; red from {prefetch_limit:g}s "
        "(CeleryTaskPrefetchTimeHigh).",
        [
            Q(
                histogram_quantile(
                    0.95,
                    cat.QUEUE_PREFETCH,
                    selector(s, queue=True),
                    "broker, queue, priority",
                    window,
                ),
                "{{broker}} / {{queue}} p{{priority}}",
            )
        ],
        unit=UNIT_SECONDS,
        thresholds=above(prefetch_limit),
        runbooks=["CeleryTaskPrefetchTimeHigh"],
        dashboards=["workers"],
    )
    return row(
        "Waits per priority level",
        line(8, (wait_quantiles_priority_level, 12), (wait_distribution_most_urgent, 12)),
        line(8, (tasks_started_level, 8), (least_urgent_level_oldest, 8), (prefetch_level, 8)),
        line(8, (received_task_level, 24)),
    )


def brokers_compared(s: Settings) -> Row:
    """The same priority measures per transport, to compare Redis and RabbitMQ."""
    sq = selector(s, queue=True)
    q = Priority(s)
    goal_reduction = s.goal("min_priority_wait_reduction")
    goal_start = s.goal("most_urgent_start_seconds")

    effectiveness_broker = timeseries(
        s,
        "Effectiveness by broker",
        f"Priority effectiveness per queue, labelled with the broker's transport, so a "
        f"Redis queue and its RabbitMQ twin can be compared during a migration. Goal: "
        f"above {goal_reduction:.0%}. Normal: both brokers above the goal under load.",
        [Q(with_transport(q.effectiveness, s), "{{transport}} {{broker}} / {{queue}}")],
        unit=UNIT_RATIO,
        thresholds=below(goal_reduction),
        max_value=1,
        min_value=None,
        runbooks=["CeleryPrioritiesIneffective"],
    )
    most_urgent_level_p95 = timeseries(
        s,
        "Most urgent level p95 wait by broker",
        "p95 wait of the most urgent level per queue, labelled with the broker's "
        f"transport. Normal: below the {goal_start:g}s goal on both brokers.",
        [Q(with_transport(q.most_p95, s), "{{transport}} {{broker}} / {{queue}}")],
        unit=UNIT_SECONDS,
        thresholds=above(goal_start),
    )
    brokers_compared_now = table(
        s,
        "Brokers compared, now",
        "One row per broker and queue: the transport, waiting messages, the most and "
        "least urgent levels' p95 waits and the effectiveness. Normal: effectiveness "
        f"green (above {goal_reduction:.0%}) on both brokers.",
        [
            Column(
                "Waiting",
                with_transport(f"sum by (broker, queue) ({m(cat.QUEUE_MESSAGES, sq)})", s),
                UNIT_MESSAGES,
            ),
            Column("Most urgent p95", with_transport(q.most_p95, s), UNIT_SECONDS),
            Column("Least urgent p95", with_transport(q.least_p95, s), UNIT_SECONDS),
            Column(
                "Effectiveness",
                with_transport(q.effectiveness, s),
                UNIT_RATIO,
                below(goal_reduction),
            ),
        ],
        keys=["transport", "broker", "queue"],
        runbooks=["CeleryPrioritiesIneffective"],
    )
    return row(
        "Redis and RabbitMQ compared",
        line(8, (effectiveness_broker, 12), (most_urgent_level_p95, 12)),
        line(8, (brokers_compared_now, 24)),
    )


def build(s: Settings) -> Json:
    """The dashboard, row by row."""
    rows = [effectiveness(s), depth_across_levels(s), waits_per_level(s), brokers_compared(s)]
    return dashboard(
        s,
        SLUG,
        "Celery priority levels from celery-queue-exporter: depth across levels, per-priority "
        "waits, priority effectiveness against the platform goal, starvation, Redis and "
        "RabbitMQ compared.",
        rows,
        variables(s),
    )
