"""Prometheus text format (0.0.4) rendering, fast enough for tens of thousands of series.

prometheus_client's generate_latest re-validates and escapes every label name and sorts the
labels of every sample; at 1,000 queues x 10 levels (about 23,000 series) that alone took
several times longer than reading the 10,000 Redis keys (see docs/performance.md). This
renderer produces the same format from the same Metric objects, trusting the label names
(they come from celery_queue_exporter/catalogue.py and prometheus_client's own collectors, all
valid) and escaping only label values. The tests parse its output with prometheus_client's
parser and check it with ``promtool check metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_TYPE_RENAMES = {"stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_OPENMETRICS_ONLY = ("_created", "_gsum", "_gcount")


def escape_label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def format_value(value: float) -> str:
    """Go's float formatting as Prometheus expects: 1.0, 2.5e-05, +Inf, NaN."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:  # NaN
        return "NaN"
    return repr(float(value))


def render_text(metrics: Iterable[Metric]) -> bytes:
    """Render collected metric families in the Prometheus text format."""
    out: list[str] = []
    append = out.append
    # Families often share one labels dict between samples (a level's depth and its age): render
    # each dict once. Keyed by id(), so the dict itself is kept in the value: families already
    # rendered are freed as collect() moves on, and a new dict can get a freed dict's id.
    rendered: dict[int, tuple[dict[str, str], str]] = {}
    for metric in metrics:
        name = metric.name
        kind = metric.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name += "_info"
            kind = "gauge"
        else:
            kind = _TYPE_RENAMES.get(kind, kind)
        append(f"# HELP {name} {_escape_help(metric.documentation)}\n# TYPE {name} {kind}\n")
        lines = getattr(metric, "lines", None)
        if lines is not None:  # a LineFamily (linefamily.py): its lines are rendered already
            out.extend(lines)
            continue
        extra: dict[str, list[str]] = {}
        for sample in metric.samples:
            labels = sample.labels
            if labels:
                cached = rendered.get(id(labels))
                if cached is not None and cached[0] is labels:
                    inner = cached[1]
                else:
                    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
                    rendered[id(labels)] = (labels, inner)
                line = f"{sample.name}{{{inner}}} {format_value(sample.value)}"
            else:
                line = f"{sample.name} {format_value(sample.value)}"
            if sample.timestamp is not None:
                line += f" {int(float(sample.timestamp) * 1000):d}"
            suffix = sample.name[len(metric.name) :]
            if suffix in _OPENMETRICS_ONLY:
                extra.setdefault(suffix, []).append(line + "\n")
            else:
                append(line + "\n")
        for suffix, extra_lines in sorted(extra.items()):
            help_text = _escape_help(metric.documentation)
            append(f"# HELP {metric.name}{suffix} {help_text}\n")
            append(f"# TYPE {metric.name}{suffix} gauge\n")
            out.extend(extra_lines)
    return "".join(out).encode("utf-8")
