"""Empty metric families from catalogue specs, so name, help and label names are taken from
the catalogue in one place for queue and event metrics alike."""

from __future__ import annotations

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .catalogue import MetricSpec


def gauge(spec: MetricSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.family_name, spec.help, labels=list(spec.labels))


def counter(spec: MetricSpec) -> CounterMetricFamily:
    return CounterMetricFamily(spec.family_name, spec.help, labels=list(spec.labels))


def flag(value: bool | None) -> float | None:
    """A yes/no reading as 1/0; None (not reported) stays None."""
    return None if value is None else (1.0 if value else 0.0)


def add_known(labels: list[str], *readings: tuple[Metric, float | None]) -> None:
    """One sample per (family, value) whose value was reported: a broker that does not say
    something gets no series for it, rather than a misleading 0."""
    for family, value in readings:
        if value is not None:
            family.add_metric(labels, value)  # type: ignore[attr-defined]


def histogram(spec: MetricSpec) -> HistogramMetricFamily:
    return HistogramMetricFamily(spec.family_name, spec.help, labels=list(spec.labels))
