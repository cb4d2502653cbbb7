"""celery_queue_exporter/exposition.py must say exactly what prometheus_client's renderer says."""

from __future__ import annotations

import gc
import math

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from test_exporter_service import fill

from celery_queue_exporter.exposition import render_text
from testsupport.exporter import build_exporter
from testsupport.exposition import parse_exposition


def families():
    """Freshly built families, dropped as soon as they are rendered (ids get reused)."""
    for i in range(60):
        gauge = GaugeMetricFamily(
            f"g{i}", 'help with "quotes" and \\ backslash\nnewline', labels=["a", "b"]
        )
        gauge.add_metric([f"x{i}", 'va"l\\ue\n'], i / 7)
        gauge.add_metric([f"y{i}", ""], float("inf"))
        yield gauge
        if i % 10 == 0:
            gc.collect()
    counter = CounterMetricFamily("c", "a counter", labels=["k"])
    counter.add_metric(["v"], 3, created=1700000000.5)
    yield counter
    histogram = HistogramMetricFamily("h_seconds", "a histogram", labels=["q"])
    histogram.add_metric(["a"], [("0.5", 1), ("+Inf", 3)], sum_value=2.5)
    yield histogram
    info = InfoMetricFamily("build", "build info")
    info.add_metric([], {"version": "1"})
    yield info
    nan = GaugeMetricFamily("n", "nan", value=float("nan"))
    yield nan


class _Families:
    def collect(self):
        return families()


def test_render_text_equals_prometheus_client_on_tricky_families():
    ours = render_text(families()).decode()
    theirs = generate_latest(_Families()).decode()
    a, b = parse_exposition(ours), parse_exposition(theirs)
    nan_key = ("n", frozenset())
    assert math.isnan(a.pop(nan_key)) and math.isnan(b.pop(nan_key))
    assert a == b
    assert ours.count("# TYPE") == theirs.count("# TYPE")


@pytest.mark.redis
def test_render_text_equals_prometheus_client_on_a_real_scrape(redis_server):
    fill(redis_server.url)
    exporter = build_exporter("--broker-url", f"r={redis_server.url}")
    ours = parse_exposition(render_text(exporter.registry.collect()).decode())
    theirs = parse_exposition(generate_latest(exporter.registry).decode())
    exporter.close()
    volatile = (
        "process_",
        "python_gc_",
        "celery_exporter_scrape_duration",
        "celery_queue_oldest",
        "celery_broker_reserved_oldest",
        "celery_exporter_scrape_errors",
        "celery_broker_last_success_timestamp",  # each render inspects anew: a new time
        "celery_redis_memory_used_bytes",  # Redis' own memory moves between the two renders
        "celery_redis_uptime_seconds",
    )
    strip = lambda samples: {k: v for k, v in samples.items() if not k[0].startswith(volatile)}  # noqa: E731
    assert strip(ours) == strip(theirs)
    assert {k for k in ours} == {k for k in theirs}


@pytest.mark.redis
def test_cached_lines_are_byte_identical_to_rendering_their_samples(redis_server):
    """The queue families are rendered from cached lines (linefamily.py); the same families
    rendered sample by sample (the general path above, checked against prometheus_client)
    give the same bytes, on a first scrape and on later ones that reuse the cache, with label
    values that need escaping, non-empty and empty levels, stamped and unstamped heads."""
    from prometheus_client.metrics_core import Metric

    fill(redis_server.url)
    client = redis_server.client()
    odd = 'q"uo\\te'
    client.sadd(f"_kombu.binding.{odd}", f"{odd}\x06\x16\x06\x16{odd}")
    client.lpush(odd, '{"headers": {"id": "a"}}', "not json")
    client.lpush(f"{odd}\x06\x163", '{"headers": {"celery_queue_exporter_enqueued_at": 1.5}}')
    exporter = build_exporter("--broker-url", f"r={redis_server.url}")
    collector = exporter.queues

    def plain(family: Metric) -> Metric:
        copy = Metric(family.name, family.documentation, family.type)
        copy.samples = list(family.samples)
        return copy

    try:
        for round_number in range(3):
            if round_number == 2:
                client.lpush("jobs", '{"headers": {"id": "new"}}')  # one level changes
            families = list(collector.families(collector.inspect_all()))
            fast = render_text(families)
            slow = render_text([plain(family) for family in families])
            assert fast == slow
            line = 'celery_queue_messages{broker="r",queue="q\\"uo\\\\te",priority="0"} 2.0\n'
            assert line.encode() in fast
    finally:
        exporter.close()


@pytest.mark.redis
def test_static_labels_on_cached_lines_are_byte_identical_to_their_samples(redis_server):
    """With --static-label the cached lines get the static labels first, as the samples do:
    the same bytes as rendering the samples, and every queue series carries them."""
    from prometheus_client.metrics_core import Metric

    fill(redis_server.url)
    exporter = build_exporter(
        "--broker-url", f"r={redis_server.url}", "--static-label", 'env=pr"od'
    )

    def plain(family: Metric) -> Metric:
        copy = Metric(family.name, family.documentation, family.type)
        copy.samples = list(family.samples)
        return copy

    try:
        for _ in range(2):
            families = [f for f in exporter.registry.collect() if f.name.startswith("celery_queue")]
            fast = render_text(families)
            assert fast == render_text([plain(family) for family in families])
            lines = [line for line in fast.decode().splitlines() if not line.startswith("#")]
            assert lines and all(
                line.split("{", 1)[1].startswith('env="pr\\"od",') for line in lines
            )
    finally:
        exporter.close()
