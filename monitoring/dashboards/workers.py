"""Celery / Workers: which workers are up, what they run, how long it takes, what fails.

Every panel here comes from Celery events (workers started with ``-E`` or
``worker_send_task_events``); built by ``python -m monitoring.generate`` into
dashboards/workers.json.
"""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from .board import dashboard, variables
from .panels import (
    NEUTRAL,
    UNIT_BOOL,
    UNIT_COUNT,
    UNIT_EVENT_RATE,
    UNIT_RATIO,
    UNIT_SECONDS,
    UNIT_TASK_RATE,
    UP_DOWN,
    Column,
    Json,
    Q,
    Row,
    above,
    below,
    heatmap,
    line,
    row,
    stat,
    steps,
    table,
    timeseries,
)
from .promql import (
    histogram_quantile,
    m,
    selector,
)
from .settings import Settings

SLUG = "workers"
RATE = "$__rate_interval"
PER_TASK = "broker, queue, task"


def _tasks(s: Settings) -> str:
    """Task series in the selected queues and tasks."""
    return selector(s, queue=True, task='=~"$task"')


def _rate_by(s: Settings, spec: cat.MetricSpec, by: str, sel: str | None = None) -> str:
    return f"sum by ({by}) (rate({m(spec, sel or _tasks(s))}[{RATE}]))"


def _finished(s: Settings, by: str) -> str:
    """Tasks finished per second: one selector over the three outcome counters, since a sum
    of three rates would be empty until every one of them has a series (no time-limit kill
    yet = no such series)."""
    outcomes = "|".join(c.name for c in (cat.TASK_SUCCEEDED, cat.TASK_FAILED, cat.TASK_TIME_LIMIT))
    return f'sum by ({by}) (rate({{__name__=~"{outcomes}", {_tasks(s)}}}[{RATE}]))'


def _share(s: Settings, spec: cat.MetricSpec, by: str) -> str:
    """spec's rate / finished; 0 (not empty) while spec has no series yet."""
    finished = _finished(s, by)
    return f"({_rate_by(s, spec, by)} or 0 * {finished}) / {finished}"


def overview(s: Settings) -> Row:
    """Stat tiles: workers up and down, active tasks, throughput, failures, kills."""
    sw = selector(s, worker='=~"$worker"')
    failure_ratio = s.threshold("CeleryTaskFailureRatioHigh", "ratio")
    kill_ratio = s.threshold("CeleryTaskTimeLimitKillsHigh", "ratio")

    workers_up = stat(
        s,
        "Workers up",
        "Workers sending heartbeats now (celery_worker_up == 1). Normal: the number "
        "you deploy. 0 while tasks are queued means nothing runs them "
        "(CeleryAllWorkersDown).",
        [Q(f"sum({m(cat.WORKER_UP, sw)})")],
        unit=UNIT_COUNT,
        thresholds=below(1),
        runbooks=["CeleryAllWorkersDown"],
    )
    workers_down = stat(
        s,
        "Workers down",
        "Workers that stopped sending heartbeats or went offline and are still "
        "within the exporter's retention (celery_worker_up == 0). Normal: 0; after a "
        "deploy old hostnames show here until retention drops them.",
        [Q(f"count({m(cat.WORKER_UP, sw)} == 0) or vector(0)")],
        unit=UNIT_COUNT,
        thresholds=above(1),
        runbooks=["CeleryWorkerDown"],
    )
    active_tasks = stat(
        s,
        "Active tasks",
        "Tasks being executed by the selected workers, from their last heartbeats "
        "(celery_worker_active_tasks). Normal: up to the total concurrency; stuck at "
        "the concurrency with a growing backlog means workers are saturated.",
        [Q(f"sum({m(cat.WORKER_ACTIVE_TASKS, sw)})")],
        unit=UNIT_COUNT,
        thresholds=NEUTRAL,
    )
    throughput = stat(
        s,
        "Throughput",
        "Tasks finished per second in the selected queues: succeeded + failed + "
        "time-limited (task events). Normal: follows the publish rate.",
        [Q(f"sum({_finished(s, 'broker')})")],
        unit=UNIT_TASK_RATE,
        thresholds=NEUTRAL,
    )
    failure_ratio = stat(
        s,
        "Failure ratio",
        "Failed tasks / finished tasks, time-limit kills not included (they have their "
        f"own panel). Normal: near 0; red from {failure_ratio:.0%} "
        "(CeleryTaskFailureRatioHigh).",
        [Q(f"max({_share(s, cat.TASK_FAILED, 'broker')})")],
        unit=UNIT_RATIO,
        thresholds=above(failure_ratio),
        runbooks=["CeleryTaskFailureRatioHigh"],
    )
    time_limit_kills = stat(
        s,
        "Time-limit kills",
        "Tasks stopped by a soft or hard time limit / finished tasks. Normal: 0; red "
        f"from {kill_ratio:.0%} (CeleryTaskTimeLimitKillsHigh).",
        [Q(f"max({_share(s, cat.TASK_TIME_LIMIT, 'broker')})")],
        unit=UNIT_RATIO,
        thresholds=above(kill_ratio),
        runbooks=["CeleryTaskTimeLimitKillsHigh"],
    )
    return row(
        "Overview",
        line(
            5,
            (workers_up, 4),
            (workers_down, 4),
            (active_tasks, 4),
            (throughput, 4),
            (failure_ratio, 4),
            (time_limit_kills, 4),
        ),
    )


def worker_health(s: Settings) -> Row:
    """Each worker: up or not, what it runs, how fast, how loaded its host is."""
    sw = selector(s, worker='=~"$worker"')
    heartbeat_timeout = float(s.config["exporter"]["worker_heartbeat_timeout_seconds"])
    workers_up_down = timeseries(
        s,
        "Workers up and down",
        "Workers with heartbeats (up), workers lost (heartbeats stopped without a "
        "shutdown: kept by the exporter for its retention period so CeleryWorkerDown can "
        "fire) and workers offline (announced a graceful shutdown: dropped after the "
        "grace period, never alerting), per broker. Normal: a flat 'up' line; offline "
        "blips at deploys while new workers come up.",
        [
            Q(f"sum by (broker) ({m(cat.WORKER_UP, sw)} == 1)", "{{broker}} up"),
            Q(
                f"count by (broker) ({m(cat.WORKER_UP, sw)} == 0 "
                f"unless on (broker, worker) {m(cat.WORKER_OFFLINE, sw)} == 1)",
                "{{broker}} lost",
            ),
            Q(f"count by (broker) ({m(cat.WORKER_OFFLINE, sw)} == 1)", "{{broker}} offline"),
        ],
        unit=UNIT_COUNT,
        step=True,
        runbooks=["CeleryWorkerDown", "CeleryAllWorkersDown"],
    )
    worker_up_worker = timeseries(
        s,
        "Worker up, per worker",
        "celery_worker_up per worker: 1 while heartbeats arrive, 0 once none arrived "
        f"within the heartbeat timeout ({heartbeat_timeout:g}s) or the worker went "
        "offline. Normal: every line at 1.",
        [Q(m(cat.WORKER_UP, sw), "{{broker}} / {{worker}}")],
        unit=UNIT_BOOL,
        thresholds=below(1),
        step=True,
        max_value=1,
        runbooks=["CeleryWorkerDown"],
    )
    live_workers_queue = timeseries(
        s,
        "Live workers per queue",
        "Workers consuming from each queue (celery_queue_workers). Normal: steady; a "
        "drop to less than half of the recent maximum fires "
        "CeleryQueueWorkersDropped.",
        [Q(m(cat.QUEUE_WORKERS, selector(s, queue=True)), "{{broker}} / {{queue}}")],
        unit=UNIT_COUNT,
        thresholds=below(1),
        step=True,
        runbooks=["CeleryQueueWorkersDropped", "CeleryQueueNoConsumers"],
        dashboards=["queues"],
    )
    active_tasks_worker = timeseries(
        s,
        "Active tasks per worker",
        "Tasks each worker is executing, from its heartbeats "
        "(celery_worker_active_tasks). Normal: between 0 and the worker's "
        "concurrency; all workers pinned at their concurrency while queues grow "
        "means more workers are needed.",
        [Q(m(cat.WORKER_ACTIVE_TASKS, sw), "{{broker}} / {{worker}}")],
        unit=UNIT_COUNT,
    )
    processed_second_worker = timeseries(
        s,
        "Processed per second, per worker",
        "Tasks each worker processed per second, from the processed counter of its "
        "heartbeats (celery_worker_processed_tasks_total). Normal: load spread evenly; "
        "one worker at 0 while others are busy points at a stuck process.",
        [
            Q(
                _rate_by(s, cat.WORKER_PROCESSED, "broker, worker", sw),
                "{{broker}} / {{worker}}",
            )
        ],
        unit=UNIT_TASK_RATE,
    )
    load_worker_host = timeseries(
        s,
        "Load per worker host",
        "One-minute load average of each worker's host, from its heartbeats "
        "(celery_worker_load1). Normal: below the host's CPU count.",
        [Q(m(cat.WORKER_LOAD, sw), "{{broker}} / {{worker}}")],
        unit=UNIT_COUNT,
    )
    return row(
        "Workers",
        line(8, (workers_up_down, 8), (worker_up_worker, 8), (live_workers_queue, 8)),
        line(8, (active_tasks_worker, 8), (processed_second_worker, 8), (load_worker_host, 8)),
    )


def tasks(s: Settings) -> Row:
    """Per task: throughput by outcome, runtimes, failures and kills apart, queue waits."""
    st = selector(s, queue=True, task='=~"$task"')
    failure_ratio = s.threshold("CeleryTaskFailureRatioHigh", "ratio")
    kill_ratio = s.threshold("CeleryTaskTimeLimitKillsHigh", "ratio")

    throughput_queue = timeseries(
        s,
        "Throughput per queue",
        "Tasks per second per queue, by outcome (task events). Normal: succeeded "
        "tracks the publish rate; failed and time-limited stay near 0.",
        [
            Q(
                _rate_by(s, cat.TASK_SUCCEEDED, "broker, queue"),
                "{{broker}} / {{queue}} succeeded",
            ),
            Q(
                _rate_by(s, cat.TASK_FAILED, "broker, queue"),
                "{{broker}} / {{queue}} failed",
            ),
            Q(
                _rate_by(s, cat.TASK_TIME_LIMIT, "broker, queue"),
                "{{broker}} / {{queue}} time-limited",
            ),
            Q(
                _rate_by(s, cat.TASK_RETRIED, "broker, queue"),
                "{{broker}} / {{queue}} retried",
            ),
        ],
        unit=UNIT_TASK_RATE,
    )
    runtime_quantiles_task = timeseries(
        s,
        "Runtime quantiles per task",
        "p50 and p95 execution time per task name from task-succeeded events "
        "(celery_task_runtime_seconds, bucketed). Normal: stable per task; a rising "
        "p95 points at a slow dependency; runtimes near the time limit end as kills.",
        [
            Q(
                histogram_quantile(0.5, cat.TASK_RUNTIME, st, "broker, task", RATE),
                "{{task}} p50",
            ),
            Q(
                histogram_quantile(0.95, cat.TASK_RUNTIME, st, "broker, task", RATE),
                "{{task}} p95",
            ),
        ],
        unit=UNIT_SECONDS,
    )
    failures_task_time_limits = timeseries(
        s,
        "Failures per task (time limits apart)",
        "Tasks that raised an exception per second, per task; time-limit kills are "
        "NOT counted here (next panel), so a code bug and a too-tight limit are told "
        "apart. Normal: 0 or rare. The alert compares the ratio to finished tasks "
        f"({failure_ratio:.0%}, next-but-one panel).",
        [
            Q(
                _rate_by(s, cat.TASK_FAILED, "broker, queue, task"),
                "{{queue}} / {{task}}",
            )
        ],
        unit=UNIT_TASK_RATE,
        runbooks=["CeleryTaskFailureRatioHigh"],
    )
    time_limit_kills_task = timeseries(
        s,
        "Time-limit kills per task",
        "Tasks stopped by a time limit per second, per task and limit: 'soft' "
        "(SoftTimeLimitExceeded raised in the task) or 'hard' (the process was "
        "killed). Normal: 0. Hard kills lose the task's work and restart a pool "
        "process.",
        [
            Q(
                _rate_by(s, cat.TASK_TIME_LIMIT, "broker, task, limit"),
                "{{task}} {{limit}}",
            )
        ],
        unit=UNIT_TASK_RATE,
        runbooks=["CeleryTaskTimeLimitKillsHigh"],
    )
    failure_kill_ratio_task = timeseries(
        s,
        "Failure and kill ratio per task",
        "failed / finished and time-limited / finished per task, with the alert "
        f"thresholds ({failure_ratio:.0%} failures, {kill_ratio:.0%} kills). Normal: "
        "near 0.",
        [
            Q(_share(s, cat.TASK_FAILED, PER_TASK), "{{task}} failed"),
            Q(_share(s, cat.TASK_TIME_LIMIT, PER_TASK), "{{task}} time-limited"),
        ],
        unit=UNIT_RATIO,
        thresholds=above(min(failure_ratio, kill_ratio)),
        max_value=1,
        runbooks=["CeleryTaskFailureRatioHigh", "CeleryTaskTimeLimitKillsHigh"],
    )
    runtime_distribution = heatmap(
        s,
        "Runtime distribution",
        "How task runtimes spread over the histogram buckets, all selected tasks "
        "(celery_task_runtime_seconds_bucket). Normal: a tight band; a second band "
        "or a smear upwards shows a slow path.",
        f"sum by (le) (rate({m(cat.TASK_RUNTIME, st, '_bucket')}[{RATE}]))",
    )
    queue_wait_task = timeseries(
        s,
        "Queue wait and end-to-end delay per task",
        "p95 queue wait per task name (celery_task_queue_wait_seconds: start minus the "
        "later of the run's own publish and its ETA, so countdowns and retry backoffs do "
        "not count) and p95 end-to-end delay (celery_task_publish_to_start_seconds: from "
        "the first publish, countdown and retries included). Normal: the wait well below "
        "the task's runtime; the end-to-end delay as long as the countdowns you schedule. "
        "Per-priority waits are on the Priorities dashboard.",
        [
            Q(
                histogram_quantile(0.95, cat.TASK_QUEUE_WAIT, st, "broker, task", RATE),
                "{{task}} wait p95",
            ),
            Q(
                histogram_quantile(0.95, cat.TASK_END_TO_END, st, "broker, task", RATE),
                "{{task}} end-to-end p95",
            ),
        ],
        unit=UNIT_SECONDS,
        dashboards=["priorities"],
    )
    top_exceptions = timeseries(
        s,
        "Top exceptions",
        "The 10 exception classes that failed most tasks per second, over the selected "
        "queues and tasks (exception label of celery_task_failed_total; names past the "
        "exporter's cap are '(other)', time-limit kills are not counted). Normal: empty or "
        "near 0; one class dominating points at one bug or one failing dependency.",
        [
            Q(
                f"topk(10, {_rate_by(s, cat.TASK_FAILED, 'broker, exception')})",
                "{{exception}}",
            )
        ],
        unit=UNIT_TASK_RATE,
        runbooks=["CeleryTaskFailureRatioHigh"],
    )
    return row(
        "Tasks",
        line(8, (throughput_queue, 12), (runtime_quantiles_task, 12)),
        line(
            8,
            (failures_task_time_limits, 8),
            (time_limit_kills_task, 8),
            (failure_kill_ratio_task, 8),
        ),
        line(8, (runtime_distribution, 8), (queue_wait_task, 8), (top_exceptions, 8)),
    )


def capacity(s: Settings) -> Row:
    """Per queue: pool slots, how many are busy, and how long tasks sit prefetched."""
    sq = selector(s, queue=True)
    prefetch_limit = s.threshold("CeleryTaskPrefetchTimeHigh", "seconds")
    slots = m(cat.QUEUE_WORKER_SLOTS, sq)
    busy = m(cat.QUEUE_WORKER_BUSY_SLOTS, sq)
    slots_queue = timeseries(
        s,
        "Slots per queue",
        "Pool slots of the live workers consuming each queue (celery_queue_worker_slots, "
        "from the pool size install(app) announces) and how many run a task "
        "(celery_queue_worker_busy_slots). Normal: busy below slots; a worker consuming "
        "several queues counts in each.",
        [
            Q(slots, "{{broker}} / {{queue}} slots"),
            Q(busy, "{{broker}} / {{queue}} busy"),
        ],
        unit=UNIT_COUNT,
        step=True,
    )
    utilisation_queue = timeseries(
        s,
        "Utilisation per queue",
        "Busy slots / slots per queue. Normal: below 1. At 1 with a growing backlog the "
        "workers are saturated: add workers or slots. Below 1 with long waits the wait is "
        "elsewhere (prefetch, next panel, or routing).",
        [Q(f"{busy} / ({slots} > 0)", "{{broker}} / {{queue}}")],
        unit=UNIT_RATIO,
        thresholds=above(1),
        max_value=1,
    )
    prefetch_queue = timeseries(
        s,
        "Prefetch time per queue",
        "p95 time tasks sat in a worker's prefetch buffer, received but not started "
        "(celery_queue_prefetch_seconds; an ETA hold is not counted). Normal: near 0 with "
        "worker_prefetch_multiplier=1 and late acks; red from "
        f"{prefetch_limit:g}s (CeleryTaskPrefetchTimeHigh): workers hoard tasks "
        "they cannot run yet, out of the broker's priority order.",
        [
            Q(
                histogram_quantile(0.95, cat.QUEUE_PREFETCH, sq, "broker, queue", RATE),
                "{{broker}} / {{queue}} p95",
            )
        ],
        unit=UNIT_SECONDS,
        thresholds=above(prefetch_limit),
        runbooks=["CeleryTaskPrefetchTimeHigh"],
    )
    return row(
        "Capacity",
        line(8, (slots_queue, 8), (utilisation_queue, 8), (prefetch_queue, 8)),
    )


def summary_and_event_stream(s: Settings) -> Row:
    """A table of the workers now, and the health of the event stream."""
    sb = selector(s)
    sw = selector(s, worker='=~"$worker"')
    heartbeat_timeout = float(s.config["exporter"]["worker_heartbeat_timeout_seconds"])
    workers_now = table(
        s,
        "Workers now",
        "One row per worker: up, active tasks, pool size and prefetch multiplier (as "
        "install(app) announces them), load and seconds since the exporter "
        f"last heard from it (red past the {heartbeat_timeout:g}s heartbeat timeout). "
        "Normal: all up, heartbeats a few seconds old.",
        [
            Column("Up", m(cat.WORKER_UP, sw), UNIT_BOOL, below(1)),
            Column("Active", m(cat.WORKER_ACTIVE_TASKS, sw), UNIT_COUNT),
            Column("Pool", f"max without (pool) ({m(cat.WORKER_POOL_SIZE, sw)})", UNIT_COUNT),
            Column("Prefetch x", m(cat.WORKER_PREFETCH_MULTIPLIER, sw), UNIT_COUNT),
            Column("Load 1m", m(cat.WORKER_LOAD, sw), UNIT_COUNT),
            Column(
                "Since heartbeat",
                f"time() - {m(cat.WORKER_LAST_HEARTBEAT, sw)}",
                UNIT_SECONDS,
                above(heartbeat_timeout),
            ),
        ],
        keys=["broker", "worker"],
        runbooks=["CeleryWorkerDown"],
    )
    event_consumer = stat(
        s,
        "Event consumer",
        "Whether the exporter is subscribed to each broker's Celery events "
        "(celery_event_consumer_up). Normal: UP. Every other panel on this dashboard "
        "depends on this stream.",
        [Q(f"min by (broker) ({m(cat.EVENT_CONSUMER_UP, sb)})", "{{broker}}")],
        unit=UNIT_BOOL,
        thresholds=below(1),
        mappings=UP_DOWN,
        no_value="no events consumer",
        graph=False,
    )
    event_stream = timeseries(
        s,
        "Event stream",
        "Celery events received per second, unreadable events, and interruptions of "
        "the subscription (events sent meanwhile are lost: counts undercount, a down "
        "worker may be missed), and task-metric observations folded into '(other)' by the "
        "exporter's series budget (celery_event_series_dropped_total). Normal: a steady event "
        "rate, no malformed events, no interruptions, nothing folded.",
        [
            Q(
                f"sum by (broker) (rate({m(cat.EVENTS_RECEIVED, sb)}[{RATE}]))",
                "{{broker}} received",
            ),
            Q(
                f"sum by (broker) (rate({m(cat.EVENTS_MALFORMED, sb)}[{RATE}]))",
                "{{broker}} malformed",
            ),
            Q(
                f"sum by (broker, reason) (rate({m(cat.EVENT_STREAM_INTERRUPTIONS, sb)}[{RATE}]))",
                "{{broker}} interruptions ({{reason}})",
            ),
            Q(
                f"sum by (broker) (rate({m(cat.EVENT_SERIES_DROPPED, sb)}[{RATE}]))",
                "{{broker}} folded into (other)",
            ),
        ],
        unit=UNIT_EVENT_RATE,
        runbooks=["CeleryEventSeriesDropped"],
    )
    skew_limit = s.threshold("CeleryClockSkew", "seconds")
    clock_offset = timeseries(
        s,
        "Clock offset per host",
        "Each host's clock minus the exporter's, estimated from its Celery events "
        "(celery_host_clock_offset_seconds; positive: ahead). Head ages and waits are "
        "corrected by it. Normal: within a second; red beyond "
        f"\u00b1{skew_limit:g}s (CeleryClockSkew): fix that host's NTP. Every host off alike: "
        "the exporter's clock is off.",
        [Q(f"max by (broker, host) ({m(cat.HOST_CLOCK_OFFSET, sb)})", "{{broker}} / {{host}}")],
        unit=UNIT_SECONDS,
        thresholds=steps(("red", None), ("green", -skew_limit), ("red", skew_limit)),
        runbooks=["CeleryClockSkew"],
    )
    return row(
        "Worker summary and event stream",
        line(8, (workers_now, 12), (event_consumer, 4), (event_stream, 8)),
        line(8, (clock_offset, 24)),
    )


def build(s: Settings) -> Json:
    """The dashboard, row by row."""
    rows = [overview(s), worker_health(s), capacity(s), tasks(s), summary_and_event_stream(s)]
    return dashboard(
        s,
        SLUG,
        "Celery workers and tasks from celery-queue-exporter's Celery event stream: workers "
        "up/down, active tasks, pool capacity and prefetch time, throughput, runtimes, "
        "failures by exception and time-limit kills.",
        rows,
        variables(s, "worker", "task"),
    )
