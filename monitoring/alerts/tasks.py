"""Alerts on task outcomes, from the broker's events (alerts/tests/tasks.yaml)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from ..promql import dur, num, pct
from ..schema import Duration, Number, Ratio
from .base import WHERE, Body, Settings, alert

TASK_LABELS = "job, broker, queue, task"

#: Both outcome alerts take the same parameters: a ratio of the runs finished in `window`,
#: gated by a minimum number of finished runs in that window (`min_runs`) so that one failure
#: of a rare task (1 in 9) does not page.
OUTCOME_PARAMETERS = {"ratio": Ratio(), "min_runs": Number(minimum=1), "window": Duration()}


def outcome_ratio(s: Settings, metric: str, what: str) -> Body:
    """``metric``'s share of the finished runs per task, above the configured ratio."""
    e = s.e
    span = dur(s["window"])
    succeeded, failed, time_limited = (
        e.metric(name)
        for name in (cat.TASK_SUCCEEDED.name, cat.TASK_FAILED.name, cat.TASK_TIME_LIMIT.name)
    )
    # Finished runs = succeeded + failed + time-limited. Summed through `or` with an `outcome`
    # label so a task that only ever fails (no succeeded series) still counts; `a + b` would
    # drop it.
    return Body(
        f"sum by ({TASK_LABELS}) (increase({e.metric(metric)}[{span}]))\n"
        "/\n"
        "(\n"
        f"  sum by ({TASK_LABELS}) (\n"
        f'    label_replace(increase({succeeded}[{span}]), "outcome", "succeeded", "", "")\n'
        f'    or label_replace(increase({failed}[{span}]), "outcome", "failed", "", "")\n'
        f"    or increase({time_limited}[{span}])\n"
        "  )\n"
        f"  >= {num(s['min_runs'])}\n"
        ")\n"
        f"> {num(s['ratio'])}",
        "{{ $value | humanizePercentage }} of the runs of task {{ $labels.task }} from "
        f"{WHERE} that finished in the last {span} {what} (threshold "
        f"{pct(s['ratio'])}, judged from {num(s['min_runs'])} finished runs on).",
    )


@alert(
    "CeleryTaskFailureRatioHigh",
    summary="A Celery task fails often.",
    **OUTCOME_PARAMETERS,
)
def failure_ratio_high(s: Settings) -> Body:
    return outcome_ratio(s, cat.TASK_FAILED.name, "failed")


@alert(
    "CeleryTaskTimeLimitKillsHigh",
    summary="A Celery task is often stopped by its time limit.",
    **OUTCOME_PARAMETERS,
)
def time_limit_kills_high(s: Settings) -> Body:
    return outcome_ratio(s, cat.TASK_TIME_LIMIT.name, "were stopped by a time limit")
