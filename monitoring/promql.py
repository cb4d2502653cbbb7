"""PromQL building blocks shared by the recording and alerting rules.

Every metric a rule reads goes through :meth:`Exprs.metric`, which refuses names that are not
in celery_queue_exporter/catalogue.py; :func:`metrics_in` then records which metrics each rule
uses (``Rule.metrics``), so the tests can check them against a real scrape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from celery_queue_exporter import catalogue as cat

from .schema import duration_seconds, format_duration


@dataclass
class Rule:
    """One recording or alerting rule plus the exported metrics its expression reads."""

    expr: str
    record: str | None = None
    alert: str | None = None
    for_: str | None = None
    keep_firing_for: str | None = None
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
        if self.keep_firing_for:
            out["keep_firing_for"] = self.keep_firing_for
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def known_series() -> frozenset[str]:
    """Sample names the exporter can expose (histograms as _bucket/_sum/_count), plus ``up``."""
    names = {series for spec in cat.all_metrics() for series in cat.exposed_series_names(spec)}
    return frozenset(names | {"up"})


def metrics_in(expr: str) -> frozenset[str]:
    """Exported sample names an expression reads: ``name{...}`` selectors and the names of a
    ``{__name__=~"a|b"}`` selector. Recording rule names (with colons) are not counted."""
    used = set(re.findall(r"(?<![\w:])([a-zA-Z_][a-zA-Z0-9_]*)\{", expr))
    for group in re.findall(r'__name__=~"([^"]*)"', expr):
        used.update(group.split("|"))
    return frozenset(used)


class Exprs:
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


def template_query(expr: str, *args: str) -> str:
    """A Go template pipeline that runs ``expr`` (a printf format: ``%s`` takes ``args``, e.g.
    ``$labels.broker``) through Prometheus' ``query`` function, for annotations such as
    ``{{ with <pipeline> }}...{{ end }}``."""
    quoted = expr.replace("\\", "\\\\").replace('"', '\\"')
    return " ".join(["printf", f'"{quoted}"', *args, "| query"])


def regex_of(names: list[str]) -> str:
    """A PromQL string body matching exactly ``names`` (``=~"..."``), escaped for RE2 and the
    PromQL string; empty when there are none (matches no series with that label set)."""
    return "|".join(re.escape(name) for name in names).replace("\\", "\\\\")


def num(value: float) -> str:
    """A PromQL number literal without a trailing ``.0``."""
    return f"{value:g}" if float(value) != int(value) else str(int(value))


def pct(ratio: float) -> str:
    """A ratio as the percentage an annotation shows: 0.5 -> ``50%``."""
    return f"{float(ratio) * 100:g}%"


def dur(value: Any) -> str:
    """A validated duration in its shortest Prometheus form: ``90s`` -> ``1m30s``."""
    return format_duration(duration_seconds(value))


#: Labels that tell two replicas of the exporter apart (the scrape target's address, and the
#: pod under the Prometheus Operator). Every rule reading a counter or a per-subject gauge
#: aggregates them away so that N replicas of one job make one series per subject, not N.
REPLICA_LABELS = "instance, pod"


def increase_counted(selector: str, span: str, *, started: str | None = None) -> str:
    """``increase(selector[span])`` that also counts a series first seen within ``span``.

    ``increase`` needs two samples: a series that first appears already at 60 (a burst between
    two scrapes, or the first failures after an exporter start) counts 0 on its first sample
    and only its later growth after. A new series has all of its value inside the window, so
    it counts at its current value (``+ 0`` drops the metric name so both branches match one
    another). The replicas of one job are then deduplicated with ``max`` (each counts the same
    events).

    What "new" means depends on who keeps the counter:

    * the exporter (task counters, ``started=None``): it keeps no counters across restarts,
      so a series absent ``span`` ago is new, per replica: a restarted replica's first
      failures count.
    * the broker (Redis' evicted keys, OOM rejections, flushes): the totals count since the
      server started, months ago maybe, and outlive exporter restarts and deploys. Its whole
      value lies inside the window only when the server itself started within it: ``started``
      is the server's uptime in seconds (matched on job and broker), and a series counts at
      its value only while that uptime is under the window. Otherwise only its growth counts,
      so deploying the exporter (or adding a broker) never pages for last month's evictions.
    """
    if started is None:
        new = f"({selector} unless {selector} offset {span}) + 0"
    else:
        new = (
            f"(max without ({REPLICA_LABELS}) ({selector})\n"
            f"   and on (job, broker) "
            f"(max without ({REPLICA_LABELS}) ({started}) < {num(duration_seconds(span))}))"
        )
    return f"max without ({REPLICA_LABELS}) (\n  {new}\n  or increase({selector}[{span}])\n)"


def rate_counted(selector: str, span: str, *, started: str | None = None) -> str:
    """:func:`increase_counted` per second of ``span`` (a new series' value spread over it)."""
    return f"{increase_counted(selector, span, started=started)} / {num(duration_seconds(span))}"
