"""Alerts on task outcomes, from the broker's events (alerts/tests/tasks.yaml)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from ..promql import dur, increase_counted, num, pct, template_query
from ..schema import Duration, Number, Ratio
from .base import WHERE, Body, Settings, alert

TASK_LABELS = "job, broker, queue, task"
#: How many exception classes the failure page names.
TOP_EXCEPTIONS = 3

#: Both outcome alerts take the same parameters: a ratio of the runs finished in `window`,
#: gated by a minimum number of finished runs in that window (`min_runs`) so that one failure
#: of a rare task (1 in 9) does not page.
OUTCOME_PARAMETERS = {"ratio": Ratio(), "min_runs": Number(minimum=1), "window": Duration()}


def outcome_ratio(s: Settings, metric: str, what: str, detail: str = "") -> Body:
    """``metric``'s share of the finished runs per task, above the configured ratio."""
    e = s.e
    span = dur(s["window"])
    succeeded, failed, time_limited = (
        increase_counted(e.metric(name), span)
        for name in (cat.TASK_SUCCEEDED.name, cat.TASK_FAILED.name, cat.TASK_TIME_LIMIT.name)
    )
    # Finished runs = succeeded + failed + time-limited. Summed through `or` with an `outcome`
    # label so a task that only ever fails (no succeeded series) still counts; `a + b` would
    # drop it. increase_counted: a burst whose series first appears at its full value counts,
    # and the replicas of one job count once.
    counted = increase_counted(e.metric(metric), span)
    return Body(
        f"sum by ({TASK_LABELS}) (\n{counted}\n)\n"
        "/\n"
        "(\n"
        f"  sum by ({TASK_LABELS}) (\n"
        f'    label_replace({succeeded}, "outcome", "succeeded", "", "")\n'
        f'    or label_replace({failed}, "outcome", "failed", "", "")\n'
        f"    or {time_limited}\n"
        "  )\n"
        f"  >= {num(s['min_runs'])}\n"
        ")\n"
        f"> {num(s['ratio'])}",
        "{{ $value | humanizePercentage }} of the runs of task {{ $labels.task }} from "
        f"{WHERE} that finished in the last {span} {what} (threshold "
        f"{pct(s['ratio'])}, judged from {num(s['min_runs'])} finished runs on).{detail}",
    )


def top_exceptions(s: Settings) -> str:
    """The annotation text naming the task's TOP_EXCEPTIONS most frequent exception classes in
    the window and their share of its failures (the runbook gives the query for all)."""
    span = dur(s["window"])
    # One line (a template string literal holds no newline); printf's indexed %[n]s take the
    # three labels however often the expression repeats them.
    selector = s.e.metric(cat.TASK_FAILED.name, broker="%[1]s", queue="%[2]s", task="%[3]s")
    failed = " ".join(increase_counted(selector, span).split())
    share = template_query(
        f"sort_desc(topk({TOP_EXCEPTIONS}, sum by (exception) ({failed}) / scalar(sum({failed}))))",
        "$labels.broker",
        "$labels.queue",
        "$labels.task",
    )
    return (
        f" Top exceptions: {{{{ range $i, $e := {share} }}}}{{{{ if $i }}}}, {{{{ end }}}}"
        "{{ $e.Labels.exception }} ({{ $e.Value | humanizePercentage }})"
        "{{ else }}none recorded{{ end }}."
    )


@alert(
    "CeleryTaskFailureRatioHigh",
    summary="A Celery task fails often.",
    **OUTCOME_PARAMETERS,
)
def failure_ratio_high(s: Settings) -> Body:
    return outcome_ratio(s, cat.TASK_FAILED.name, "failed", top_exceptions(s))


@alert(
    "CeleryTaskTimeLimitKillsHigh",
    summary="A Celery task is often stopped by its time limit.",
    **OUTCOME_PARAMETERS,
)
def time_limit_kills_high(s: Settings) -> Body:
    return outcome_ratio(s, cat.TASK_TIME_LIMIT.name, "were stopped by a time limit")
