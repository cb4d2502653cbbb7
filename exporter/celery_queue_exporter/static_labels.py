"""Static labels on every series the exporter emits.

They are added in one place, the registry every scrape is collected from, so queue, event,
process and build series all carry them and no collector has to know (validation:
config/labels.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from .linefamily import LineFamily


class StaticLabelRegistry(CollectorRegistry):
    """A registry whose collected samples all carry ``labels`` (first, in declared order)."""

    def __init__(self, labels: dict[str, str] | None = None) -> None:
        super().__init__()
        self.static_labels = dict(labels or {})

    def collect(self) -> Iterator[Metric]:
        if not self.static_labels:
            yield from super().collect()
            return
        static = self.static_labels
        # Samples often share one labels dict (a level's depth and age): keep them sharing
        # one merged dict, so the exposition still renders it once.
        merged: dict[int, tuple[dict[str, str], dict[str, str]]] = {}
        for metric in super().collect():
            if isinstance(metric, LineFamily) and metric.lines is not None:
                metric.add_labels_first(static)  # its rendered lines keep being used
                yield metric
                continue
            samples = []
            for sample in metric.samples:
                own = sample.labels
                cached = merged.get(id(own))
                if cached is None or cached[0] is not own:
                    cached = merged[id(own)] = (own, {**static, **own})
                samples.append(sample._replace(labels=cached[1]))
            metric.samples = samples
            yield metric
