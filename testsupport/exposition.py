"""Reading a Prometheus text exposition the way tests compare it: samples by name and labels."""

from __future__ import annotations


def parse_exposition(text: str) -> dict[tuple[str, frozenset], float]:
    """Samples of a text exposition keyed by (sample name, frozenset of label pairs)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample_value(samples: dict, name: str, **labels: str) -> float | None:
    """The value of the one sample with exactly these labels, or None."""
    return samples.get((name, frozenset(labels.items())))


def samples_named(samples: dict, name: str) -> dict[frozenset, float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}
