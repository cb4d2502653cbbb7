"""Prometheus recording and alerting rules, rendered from monitoring/config.yaml.

Recording rules follow Prometheus' ``level:metric:operations`` naming. The level
``celery_queue`` means "per broker and queue", keeping the ``priority`` label where the source
metric has one. Their names depend on ``recording.window``; import them from here:

    from monitoring.rules import recording_names
    names = recording_names(config)      # names.wait_p95 == "celery_queue:...:p95_5m"

or, for the committed defaults, the module constants (``WAIT_P95`` ...).

Every metric a rule reads goes through :func:`metric`, which refuses names that are not in
celery_queue_exporter/catalogue.py and records which metrics each rule uses (``Rule.metrics``),
so the tests can check them against a real scrape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from celery_queue_exporter import catalogue as cat
from celery_queue_exporter.catalogue import URGENCY_LEAST, URGENCY_MOST

from .config import duration_seconds, format_duration, load, runbook_url

GROUP_RECORDING = "celery-queue-exporter.recording"
GROUP_ALERTS = "celery-queue-exporter.alerts"
LEVEL = "celery_queue"


# --- recording rule names ---------------------------------------------------------------------


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


def recording_names(config: dict[str, Any] | None = None) -> RecordingNames:
    """Recording rule names for ``config`` (default: the committed monitoring/config.yaml)."""
    window = format_duration(duration_seconds((config or load())["recording"]["window"]))
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


_DEFAULT_NAMES = recording_names()
#: Names for the committed defaults (recording.window 5m); a test keeps them in step.
QUEUE_MESSAGES_SUM = _DEFAULT_NAMES.queue_messages
WAIT_BUCKET_RATE = _DEFAULT_NAMES.wait_bucket_rate
WAIT_P50 = _DEFAULT_NAMES.wait_p50
WAIT_P95 = _DEFAULT_NAMES.wait_p95
WAIT_P95_MOST_URGENT = _DEFAULT_NAMES.wait_p95_most_urgent
WAIT_P95_LEAST_URGENT = _DEFAULT_NAMES.wait_p95_least_urgent
PRIORITY_WAIT_REDUCTION = _DEFAULT_NAMES.priority_wait_reduction


# --- building blocks --------------------------------------------------------------------------


@dataclass
class Rule:
    """One recording or alerting rule plus the exported metrics its expression reads."""

    expr: str
    record: str | None = None
    alert: str | None = None
    for_: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    metrics: frozenset[str] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.record:
            out["record"] = self.record
        if self.alert:
            out["alert"] = self.alert
        out["expr"] = self.expr
        if self.for_:
            out["for"] = self.for_
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def known_series() -> frozenset[str]:
    """Sample names the exporter can expose (histograms as _bucket/_sum/_count), plus ``up``."""
    names = {series for spec in cat.all_metrics() for series in cat.exposed_series_names(spec)}
    return frozenset(names | {"up"})


class _Exprs:
    """Selector-aware expression helpers that refuse metrics missing from the catalogue."""

    def __init__(self, selector: str) -> None:
        self.selector = selector.strip().strip(",")

    def metric(self, name: str, **matchers: str) -> str:
        """``name{<selector>, k="v"}`` for a sample name of the catalogue."""
        if name not in known_series():
            raise KeyError(f"{name} is not a metric of celery_queue_exporter/catalogue.py")
        parts = [self.selector] + [f'{key}="{value}"' for key, value in matchers.items()]
        return f"{name}{{{', '.join(part for part in parts if part)}}}"

    def urgency(self, level: str) -> str:
        return self.metric(cat.QUEUE_PRIORITY_URGENCY.name, urgency=level)


def _num(value: float) -> str:
    """A PromQL number literal without a trailing ``.0``."""
    return f"{value:g}" if float(value) != int(value) else str(int(value))


def _pct(ratio: float) -> str:
    return f"{float(ratio) * 100:g}%"


def _dur(value: Any) -> str:
    return format_duration(duration_seconds(value))


# --- recording rules --------------------------------------------------------------------------


def recording_rules(config: dict[str, Any]) -> list[Rule]:
    names = recording_names(config)
    e = _Exprs(config["selector"])
    window = names.window
    backlog = _num(config["recording"]["backlog_min_messages"])
    rules: list[Rule] = []

    def add(record: str, expr: str) -> None:
        rules.append(Rule(record=record, expr=expr, metrics=metrics_in(expr)))

    # Both RabbitMQ shapes (per level, or one series without priority) sum the same way.
    add(names.queue_messages, f"sum without (priority) ({e.metric(cat.QUEUE_MESSAGES.name)})")
    add(
        names.wait_bucket_rate,
        "sum by (job, broker, queue, priority, le) (\n"
        f"  rate({e.metric(cat.QUEUE_WAIT.name + '_bucket')}[{window}])\n)",
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


# --- alerting rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _AlertText:
    summary: str
    description: str


def alert_rules(config: dict[str, Any]) -> list[Rule]:
    """One rule per enabled alert in ``config['alerts']``, in the config's order."""
    names = recording_names(config)
    e = _Exprs(config["selector"])
    alerts = config["alerts"]
    goals = config["goals"]
    exporter = config["exporter"]
    messages = names.queue_messages
    where = "queue {{ $labels.queue }} on broker {{ $labels.broker }}"
    task_labels = "job, broker, queue, task"
    finished = [cat.TASK_SUCCEEDED.name, cat.TASK_FAILED.name, cat.TASK_TIME_LIMIT.name]

    def cfg(alert: str) -> dict[str, Any]:
        return alerts[alert]

    def for_text(alert: str) -> str:
        return _dur(cfg(alert)["for"])

    built: dict[str, tuple[str, _AlertText]] = {}

    # -- the exporter and the brokers --
    name = "CeleryExporterDown"
    up = e.metric("up")
    built[name] = (
        f"{up} == 0\nor\nabsent({up})",
        _AlertText(
            "The Celery queue exporter is down or missing.",
            "{{ if $labels.instance }}Prometheus has failed to scrape {{ $labels.instance }} "
            "(job {{ $labels.job }})"
            f"{{{{ else }}}}Prometheus has no scrape target matching {config['selector']}"
            f"{{{{ end }}}} for more than {for_text(name)}: queue, worker and task metrics are "
            "not collected and the other Celery alerts cannot fire.",
        ),
    )

    name = "CeleryBrokerDown"
    built[name] = (
        f"{e.metric(cat.BROKER_UP.name)} == 0",
        _AlertText(
            "The exporter cannot inspect a Celery broker.",
            "The exporter {{ $labels.instance }} has failed to inspect broker "
            f"{{{{ $labels.broker }}}} for more than {for_text(name)} (celery_broker_up is 0): "
            "the broker is down, unreachable, refuses the exporter's credentials, or answers "
            "slower than the scrape timeout. This broker's queue metrics are missing meanwhile.",
        ),
    )

    # -- queue backup --
    name = "CeleryQueueBacklogHigh"
    limit = _num(cfg(name)["messages"])
    built[name] = (
        f"{messages} > {limit}",
        _AlertText(
            "A Celery queue has a large backlog.",
            f"{where[0].upper()}{where[1:]} has had more than {limit} messages waiting (all "
            f"priority levels) for more than {for_text(name)}: {{{{ $value | humanize }}}} now.",
        ),
    )

    name = "CeleryQueueBacklogGrowing"
    horizon = duration_seconds(cfg(name)["horizon"])
    trend = _dur(cfg(name)["window"])
    built[name] = (
        f"predict_linear({messages}[{trend}], {horizon}) > {limit}\nand\n{messages} <= {limit}",
        _AlertText(
            "A Celery queue is filling up and will soon hold a large backlog.",
            f"At the trend of the last {trend}, {where} will hold {{{{ $value | humanize }}}} "
            f"messages in {format_duration(horizon)}, more than the {limit} of "
            "CeleryQueueBacklogHigh.",
        ),
    )

    age = cat.QUEUE_OLDEST_MESSAGE_AGE.name
    name = "CeleryQueueMostUrgentWaitingTooLong"
    seconds = cfg(name)["seconds"]
    usage = _dur(cfg(name)["priority_usage_window"])
    built[name] = (
        f"{e.metric(age)} > {_num(seconds)}\n"
        f"and on (broker, queue, priority) {e.urgency(URGENCY_MOST)}\n"
        f"unless on (broker, queue, priority) {e.urgency(URGENCY_LEAST)}\n"
        "and on (broker, queue) (\n"
        "  max by (broker, queue) (\n"
        f"    max_over_time({e.metric(cat.QUEUE_MESSAGES.name)}[{usage}])\n"
        f"    unless on (broker, queue, priority) {e.urgency(URGENCY_MOST)}\n"
        "  ) > 0\n"
        ")",
        _AlertText(
            "The most urgent Celery tasks do not start within their goal.",
            "The next message at the most urgent level (priority {{ $labels.priority }}) of "
            f"{where} has been waiting {{{{ $value | humanizeDuration }}}}, over the "
            f"{format_duration(int(seconds))} goal, for more than {for_text(name)}.",
        ),
    )
    name = "CeleryQueueMessageWaitingTooLong"
    seconds = cfg(name)["seconds"]
    built[name] = (
        f"{e.metric(age)} > {_num(seconds)}",
        _AlertText(
            "Messages in a Celery queue have been waiting too long.",
            "The next message at {{ if $labels.priority }}priority {{ $labels.priority }}"
            "{{ else }}an unknown priority level{{ end }} of "
            f"{where} has been waiting {{{{ $value | humanizeDuration }}}}, over the limit of "
            f"{format_duration(int(seconds))}, for more than {for_text(name)}.",
        ),
    )

    name = "CeleryQueueNoConsumers"
    consumers = e.metric(cat.QUEUE_CONSUMERS.name)
    built[name] = (
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
        ")",
        _AlertText(
            "A Celery queue has waiting messages and nothing consuming them.",
            f"{where[0].upper()}{where[1:]} has {{{{ $value | humanize }}}} messages waiting and "
            "no consumer (RabbitMQ) or no live worker (Celery events) for more than "
            f"{for_text(name)}: nothing is processing them.",
        ),
    )

    # -- workers --
    timeout = _num(exporter["worker_heartbeat_timeout_seconds"])
    # Worker alerts need a working event stream: when it is down (broker outage), every
    # worker turns 0 after the heartbeat timeout, and CeleryBrokerDown already pages for that.
    stream_up = f"on (instance, broker) {e.metric(cat.EVENT_CONSUMER_UP.name)} == 1"
    name = "CeleryWorkerDown"
    built[name] = (
        f"{e.metric(cat.WORKER_UP.name)} == 0\nand {stream_up}",
        _AlertText(
            "A Celery worker stopped sending heartbeats.",
            "Worker {{ $labels.worker }} on broker {{ $labels.broker }} has sent no heartbeat "
            f"for {timeout}s or announced its shutdown, and has not come back for "
            f"{for_text(name)}.",
        ),
    )

    name = "CeleryQueueWorkersDropped"
    ratio = _num(cfg(name)["ratio"])
    span = _dur(cfg(name)["window"])
    workers = e.metric(cat.QUEUE_WORKERS.name)
    built[name] = (
        f"(\n  {workers} < {ratio} * max_over_time({workers}[{span}])\n  and {stream_up}\n)\n"
        "or\n"
        "(\n"
        f"  {consumers} < {ratio} * max_over_time({consumers}[{span}])\n"
        f"  unless on (broker, queue) {workers}\n"
        ")",
        _AlertText(
            "The number of workers serving a Celery queue dropped.",
            f"{where[0].upper()}{where[1:]} is served by {{{{ $value }}}} live workers (RabbitMQ "
            f"consumers when events are off), under {_pct(cfg(name)['ratio'])} of its maximum "
            f"over the last {span}.",
        ),
    )

    name = "CeleryAllWorkersDown"
    built[name] = (
        f"{e.metric(cat.EVENT_CONSUMER_UP.name)} == 1\n"
        f"unless on (broker) {e.metric(cat.WORKER_UP.name)} == 1",
        _AlertText(
            "No Celery worker is alive on a broker.",
            "The exporter {{ $labels.instance }} receives Celery events from broker "
            "{{ $labels.broker }}, yet no worker has sent a heartbeat for more than "
            f"{for_text(name)}: no task on this broker is being processed.",
        ),
    )

    # -- task outcomes --
    for name, metric, what in (
        ("CeleryTaskFailureRatioHigh", cat.TASK_FAILED.name, "failed"),
        ("CeleryTaskTimeLimitKillsHigh", cat.TASK_TIME_LIMIT.name, "were stopped by a time limit"),
    ):
        span = _dur(cfg(name)["window"])
        # Finished runs = succeeded + failed + time-limited. Summed through `or` with an
        # `outcome` label so a task that only ever fails (no succeeded series) still counts;
        # `a + b` would drop it.
        built[name] = (
            f"sum by ({task_labels}) (rate({e.metric(metric)}[{span}]))\n"
            "/\n"
            "(\n"
            f"  sum by ({task_labels}) (\n"
            f"    label_replace(rate({e.metric(finished[0])}[{span}]), "
            '"outcome", "succeeded", "", "")\n'
            f"    or label_replace(rate({e.metric(finished[1])}[{span}]), "
            '"outcome", "failed", "", "")\n'
            f"    or rate({e.metric(finished[2])}[{span}])\n"
            "  )\n"
            f"  >= {_num(cfg(name)['min_tasks_per_second'])}\n"
            ")\n"
            f"> {_num(cfg(name)['ratio'])}",
            _AlertText(
                "A Celery task fails often."
                if metric == cat.TASK_FAILED.name
                else "A Celery task is often stopped by its time limit.",
                "{{ $value | humanizePercentage }} of the runs of task {{ $labels.task }} from "
                f"{where} that finished in the last {span} {what} (threshold "
                f"{_pct(cfg(name)['ratio'])}).",
            ),
        )

    # -- priorities --
    name = "CeleryPriorityStarvation"
    span = _dur(cfg(name)["window"])
    seconds = cfg(name)["seconds"]
    limit = format_duration(int(seconds))
    least = e.urgency(URGENCY_LEAST)
    most = e.urgency(URGENCY_MOST)
    messages = e.metric(cat.QUEUE_MESSAGES.name)
    wait_count = e.metric(cat.QUEUE_WAIT.name + "_count")
    # Two ways to see that the least urgent level's next message has waited past the limit:
    # its age (Redis; RabbitMQ only reports the age of the most urgent non-empty level), or
    # (RabbitMQ) messages waiting at that level for the whole limit while none of its tasks
    # started - per-level starts need install(app), so that branch requires priority-labelled
    # waits for the queue. Its value is the limit: the wait is at least that.
    built[name] = (
        "(\n"
        f"  {e.metric(age)} > {_num(seconds)}\n"
        f"  and on (broker, queue, priority) {least}\n"
        f"  unless on (broker, queue, priority) {most}\n"
        "  or\n"
        f"  (min_over_time({messages}[{limit}]) > 0) * 0 + {_num(seconds)}\n"
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
        _AlertText(
            "Low-priority Celery tasks are starved by more urgent ones.",
            "The next message at the least urgent level (priority {{ $labels.priority }}) of "
            f"{where} has been waiting at least {{{{ $value | humanizeDuration }}}} (limit "
            f"{limit}), while workers kept starting this queue's tasks during the last {span}: "
            "they serve the more urgent levels and skip this one.",
        ),
    )

    name = "CeleryPrioritiesIneffective"
    goal = goals["min_priority_wait_reduction"]
    built[name] = (
        f"{names.priority_wait_reduction} < {_num(goal)}",
        _AlertText(
            "Celery priorities do not shorten the waits of urgent tasks.",
            f"Under backlog, the p95 wait at the most urgent level of {where} is only "
            "{{ $value | humanizePercentage }} shorter than at the least urgent level "
            f"(goal: more than {_pct(goal)}), over {names.window} windows for more than "
            f"{for_text(name)}.",
        ),
    )

    name = "CeleryReservedNearVisibilityTimeout"
    ratio_value = cfg(name)["ratio"]
    built[name] = (
        f"{e.metric(cat.BROKER_RESERVED_OLDEST_AGE.name)}\n"
        f"> {_num(ratio_value)} * {e.metric(cat.BROKER_VISIBILITY_TIMEOUT.name)}",
        _AlertText(
            "Reserved Celery tasks approach the Redis visibility timeout and will run twice.",
            "The oldest unacknowledged reservation on Redis broker {{ $labels.broker }} has been "
            "held for {{ $value | humanizeDuration }}, over "
            f"{_pct(ratio_value)} of the visibility_timeout: once it passes, Redis delivers the "
            "message again and the task runs a second time.",
        ),
    )

    rules: list[Rule] = []
    for alert, settings in alerts.items():
        if not settings.get("enabled", True):
            continue
        expr, text = built[alert]
        rules.append(
            Rule(
                alert=alert,
                expr=expr,
                for_=None if duration_seconds(settings["for"]) == 0 else _dur(settings["for"]),
                labels={"severity": settings["severity"], **(settings.get("labels") or {})},
                annotations={
                    "summary": text.summary,
                    "description": text.description,
                    "runbook_url": runbook_url(config, alert),
                },
                metrics=metrics_in(expr),
            )
        )
    return rules


def metrics_in(expr: str) -> frozenset[str]:
    """Exported sample names an expression reads: ``name{...}`` selectors and the names of a
    ``{__name__=~"a|b"}`` selector. Recording rule names (with colons) are not counted."""
    used = set(re.findall(r"(?<![\w:])([a-zA-Z_][a-zA-Z0-9_]*)\{", expr))
    for group in re.findall(r'__name__=~"([^"]*)"', expr):
        used.update(group.split("|"))
    return frozenset(used)


# --- rule files -------------------------------------------------------------------------------


def rule_groups(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``groups:`` of a Prometheus rule file."""
    return [
        {
            "name": GROUP_RECORDING,
            "interval": _dur(config["recording"]["interval"]),
            "rules": [rule.as_dict() for rule in recording_rules(config)],
        },
        {
            "name": GROUP_ALERTS,
            "rules": [rule.as_dict() for rule in alert_rules(config)],
        },
    ]


def rule_file(config: dict[str, Any]) -> dict[str, Any]:
    """A plain Prometheus rule file (``rule_files:`` of prometheus.yml)."""
    return {"groups": rule_groups(config)}


def prometheus_rule(config: dict[str, Any]) -> dict[str, Any]:
    """The same rules as a prometheus-operator PrometheusRule object."""
    obj = config["rule_object"]
    metadata: dict[str, Any] = {"name": obj["name"], "namespace": obj["namespace"]}
    if obj.get("labels"):
        metadata["labels"] = dict(obj["labels"])
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": rule_groups(config)},
    }
