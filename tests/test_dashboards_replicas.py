"""The dashboards' replica deduplication (monitoring/dashboards/replicas.py), as pure rewriting;
tests/test_oncall_scenarios.py::test_two_replicas_page_a_lost_worker_once_per_subject runs every
rewritten panel query against a real Prometheus scraping two replicas."""

from __future__ import annotations

import pytest

from monitoring.dashboards.replicas import dedupe_replicas

D = "max without (instance, pod)"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum(celery_queue_messages{queue="q"})', f'sum({D} (celery_queue_messages{{queue="q"}}))'),
        (
            'sum by (queue) (rate(celery_task_failed_total{task="t"}[5m]))',
            f'sum by (queue) ({D} (rate(celery_task_failed_total{{task="t"}}[5m])))',
        ),
        (
            'histogram_quantile(0.95, sum by (le) (rate(x_bucket{a="b"}[1m])))',
            f'histogram_quantile(0.95, sum by (le) ({D} (rate(x_bucket{{a="b"}}[1m]))))',
        ),
        # the exporter's own series stay per instance
        ('up{job="j"}', 'up{job="j"}'),
        (
            'celery_exporter_scrape_duration_seconds{b="x"}',
            'celery_exporter_scrape_duration_seconds{b="x"}',
        ),
        (
            'count(celery_worker_up{w="a"} == 0) or vector(0)',
            f'count({D} (celery_worker_up{{w="a"}}) == 0) or vector(0)',
        ),
    ],
)
def test_every_selection_is_deduplicated_but_the_exporters_own(expr, expected):
    assert dedupe_replicas(expr) == expected
