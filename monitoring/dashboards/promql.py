"""PromQL of the dashboards: the config's selector narrowed by the variables, and the queries
several panels share (urgency, transport, histograms, the per-priority waits).

Metric names come from celery_queue_exporter/catalogue.py and recording rule names from
monitoring/rules.py; nothing here retypes a name.
"""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat
from monitoring import rules

from .settings import Settings


def selector(s: Settings, *, broker: bool = True, queue: bool = False, **extra: str) -> str:
    """Label matchers: the config's selector narrowed by the dashboard variables.

    ``extra`` adds matchers verbatim, e.g. ``urgency='"most"'`` or ``worker='=~"$worker"'``.
    """
    parts = [s.selector, 'job=~"$job"', 'namespace=~"$namespace"']
    if broker:
        parts.append('broker=~"$broker"')
    if queue:
        parts.append('queue=~"$queue"')
    for label, matcher in extra.items():
        op_value = matcher if matcher[:1] in "=!" else f"={matcher}"
        parts.append(f"{label}{op_value}")
    return ", ".join(parts)


def m(spec: cat.MetricSpec, sel: str, suffix: str = "") -> str:
    """``metric{selector}`` for a catalogue spec (``suffix`` e.g. ``_bucket``)."""
    return f"{spec.name}{suffix}{{{sel}}}"


def at_urgency(expr: str, s: Settings, urgency: str) -> str:
    """Keep the series of ``expr`` at a queue's most/least urgent level (any broker)."""
    rank = m(cat.QUEUE_PRIORITY_URGENCY, selector(s, queue=True, urgency=f'"{urgency}"'))
    return f"({expr}) and on (broker, queue, priority) {rank}"


def on_transport(expr: str, s: Settings, transport: str) -> str:
    """Keep the series of ``expr`` that come from brokers of one transport."""
    info = m(cat.BROKER_INFO, selector(s, transport=f'"{transport}"'))
    return f"({expr}) and on (broker) {info}"


def with_transport(expr: str, s: Settings) -> str:
    """Add the broker's ``transport`` label to every series of ``expr``."""
    info = m(cat.BROKER_INFO, selector(s))
    return f"({expr}) * on (broker) group_left (transport) max by (broker, transport) ({info})"


#: How long a level that emptied is still drawn, at 0: Redis sends no depth for an empty level
#: but a queue's first (issue 25), so without it a draining level's line would stop at its
#: last count instead of falling to 0.
EMPTIED_LEVEL_SHOWN = "5m"


def depth_by_level(depth: str) -> str:
    """Messages per (broker, queue, priority) from the ``depth`` selection, with the levels
    seen within EMPTIED_LEVEL_SHOWN and absent now (empty, on Redis) at 0."""
    by = "broker, queue, priority"
    return (
        f"(sum by ({by}) ({depth})\n"
        f"or sum by ({by}) (last_over_time({depth}[{EMPTIED_LEVEL_SHOWN}])) * 0)"
    )


def unknown_priority(expr: str) -> str:
    """Name the missing priority label (RabbitMQ without per-level counts) instead of hiding it."""
    return f'label_replace({expr}, "priority", "unknown", "priority", "")'


def histogram_quantile(q: float, spec: cat.MetricSpec, sel: str, by: str, window: str) -> str:
    bucket = m(spec, sel, "_bucket")
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({bucket}[{window}])))"


class Priority:
    """Per-priority wait queries: the priorities dashboard's core and the alerts' subject.

    The waits, the most/least urgent levels and the priority effectiveness read the recording
    rules of monitoring/rules.py, so the panels show exactly what the alerts evaluate (same
    window, same "under backlog" gate). Recorded series already carry the config's selector
    (the rules apply it) and keep only job, broker, queue and priority, so they are narrowed by
    the job/broker/queue variables alone.
    """

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.names = rules.recording_names(s.config)
        self.sel = selector(s, queue=True)
        self.recorded_sel = 'job=~"$job", broker=~"$broker", queue=~"$queue"'
        self.window = self.names.window

    def recorded(self, name: str) -> str:
        return f"{name}{{{self.recorded_sel}}}"

    @property
    def p50_by_level(self) -> str:
        return self.recorded(self.names.wait_p50)

    @property
    def p95_by_level(self) -> str:
        return self.recorded(self.names.wait_p95)

    @property
    def most_p95(self) -> str:
        return f"max by (broker, queue) ({self.recorded(self.names.wait_p95_most_urgent)})"

    @property
    def least_p95(self) -> str:
        return f"max by (broker, queue) ({self.recorded(self.names.wait_p95_least_urgent)})"

    @property
    def effectiveness(self) -> str:
        """1 - most urgent p95 / least urgent p95, per queue, recorded only under backlog."""
        return f"max by (broker, queue) ({self.recorded(self.names.priority_wait_reduction)})"

    @property
    def most_buckets(self) -> str:
        rate = self.recorded(self.names.wait_bucket_rate)
        return at_urgency(rate, self.s, cat.URGENCY_MOST)

    @property
    def started_by_level(self) -> str:
        count = m(cat.QUEUE_WAIT, self.sel, "_count")
        return unknown_priority(f"sum by (broker, queue, priority) (rate({count}[{self.window}]))")

    @property
    def starving(self) -> str:
        """Levels with waiting messages and no start in the window while their queue started
        tasks from other levels."""
        depth = f"sum by (broker, queue, priority) ({m(cat.QUEUE_MESSAGES, self.sel)}) > 0"
        count = m(cat.QUEUE_WAIT, self.sel, "_count")
        started = f"sum by (broker, queue, priority) (increase({count}[{self.window}])) > 0"
        queue_started = f"sum by (broker, queue) (increase({count}[{self.window}])) > 0"
        return (
            f"({depth}) unless on (broker, queue, priority) ({started})"
            f" and on (broker, queue) ({queue_started})"
        )
