"""Recording rules: their names, their parameters (the ``recording:`` section) and their exprs.

Names follow Prometheus' ``level:metric:operations`` convention. The level ``celery_queue``
means "per broker and queue", keeping the ``priority`` label where the source metric has one.
Names depend on ``recording.window``; import them through ``monitoring.rules``:

    from monitoring.rules import recording_names
    names = recording_names(config)      # names.wait_p95 == "celery_queue:...:p95_5m"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery_queue_exporter import catalogue as cat
from celery_queue_exporter.catalogue import URGENCY_LEAST, URGENCY_MOST

from .promql import Exprs, Rule, dur, metrics_in, num, rate_counted
from .schema import Duration, Number, Param

GROUP = "celery-queue-exporter.recording"
LEVEL = "celery_queue"

#: The ``recording:`` section of monitoring/config.yaml (the comments there say what each does).
PARAMETERS: dict[str, Param] = {
    "interval": Duration(),
    "window": Duration(),
    "backlog_min_messages": Number(),
}


@dataclass(frozen=True)
class RecordingNames:
    """Names of the recording rules for one ``recording.window``."""

    window: str
    #: Waiting messages per broker and queue, all priority levels together (works for RabbitMQ
    #: queues whose per-level counts are unknown). Keeps job/instance.
    queue_messages: str
    #: Per-second rate of celery_queue_wait_seconds_bucket by job, broker, queue, priority, le.
    wait_bucket_rate: str
    #: Median and 95th percentile wait from publish to start, by job, broker, queue, priority.
    wait_p50: str
    wait_p95: str
    #: The p95 wait of a queue's most / least urgent level (queues with one level excluded).
    wait_p95_most_urgent: str
    wait_p95_least_urgent: str
    #: 1 - (most urgent p95 / least urgent p95) by job, broker, queue, recorded only under
    #: backlog; the goal is more than goals.min_priority_wait_reduction (0.5).
    priority_wait_reduction: str

    def all(self) -> tuple[str, ...]:
        return (
            self.queue_messages,
            self.wait_bucket_rate,
            self.wait_p50,
            self.wait_p95,
            self.wait_p95_most_urgent,
            self.wait_p95_least_urgent,
            self.priority_wait_reduction,
        )


def recording_names(config: dict[str, Any]) -> RecordingNames:
    """Recording rule names for a validated monitoring ``config``."""
    window = dur(config["recording"]["window"])
    wait = cat.QUEUE_WAIT.name
    return RecordingNames(
        window=window,
        queue_messages=f"{LEVEL}:{cat.QUEUE_MESSAGES.name}:sum",
        wait_bucket_rate=f"{LEVEL}:{wait}_bucket:rate{window}",
        wait_p50=f"{LEVEL}:{wait}:p50_{window}",
        wait_p95=f"{LEVEL}:{wait}:p95_{window}",
        wait_p95_most_urgent=f"{LEVEL}:{wait}:p95_{window}_most_urgent",
        wait_p95_least_urgent=f"{LEVEL}:{wait}:p95_{window}_least_urgent",
        priority_wait_reduction=f"{LEVEL}:{wait}:p95_{window}_priority_reduction",
    )


def recording_rules(config: dict[str, Any]) -> list[Rule]:
    """Every recording rule, in the order of :meth:`RecordingNames.all`."""
    names = recording_names(config)
    e = Exprs(config["selector"])
    window = names.window
    backlog = num(config["recording"]["backlog_min_messages"])
    rules: list[Rule] = []

    def add(record: str, expr: str) -> None:
        rules.append(Rule(record=record, expr=expr, metrics=metrics_in(expr)))

    # Both RabbitMQ shapes (per level, or one series without priority) sum the same way.
    add(names.queue_messages, f"sum without (priority) ({e.metric(cat.QUEUE_MESSAGES.name)})")
    add(
        names.wait_bucket_rate,
        "sum by (job, broker, queue, priority, le) (\n"
        f"{rate_counted(e.metric(cat.QUEUE_WAIT.name + '_bucket'), window)}\n)",
    )
    add(names.wait_p50, f"histogram_quantile(0.5, {names.wait_bucket_rate})")
    add(names.wait_p95, f"histogram_quantile(0.95, {names.wait_bucket_rate})")
    # Most / least urgent level from the exporter's urgency rank, so the same rule works on
    # Redis (0 served first) and RabbitMQ (highest number served first). Queues with a single
    # level (most == least) have no priorities to compare and are left out. `>= 0` drops the
    # NaN of a window without tasks.
    for record, level, other in (
        (names.wait_p95_most_urgent, URGENCY_MOST, URGENCY_LEAST),
        (names.wait_p95_least_urgent, URGENCY_LEAST, URGENCY_MOST),
    ):
        add(
            record,
            f"({names.wait_p95} >= 0)\n"
            f"and on (broker, queue, priority) {e.urgency(level)}\n"
            f"unless on (broker, queue, priority) {e.urgency(other)}",
        )
    add(
        names.priority_wait_reduction,
        "(\n"
        f"  1 - max without (priority) ({names.wait_p95_most_urgent})\n"
        f"    / max without (priority) ({names.wait_p95_least_urgent} > 0)\n"
        ")\n"
        "and on (broker, queue)\n"
        f"(min_over_time({names.queue_messages}[{window}]) >= {backlog})",
    )
    return rules


def group(config: dict[str, Any]) -> dict[str, Any]:
    """The recording rule group of a Prometheus rule file."""
    return {
        "name": GROUP,
        "interval": dur(config["recording"]["interval"]),
        "rules": [rule.as_dict() for rule in recording_rules(config)],
    }
