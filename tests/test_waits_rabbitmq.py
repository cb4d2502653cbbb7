"""Issue 14 on the shared RabbitMQ, in a vhost per test, with real Celery workers: countdown
and eta= tasks wait from their ETA, retries from their own republish (scenarios in
tests/apps/wait_scenarios.py, shared with test_waits_redis.py)."""

from __future__ import annotations

import pytest
import test_events_rabbitmq

pytest.register_assert_rewrite("apps.wait_scenarios", "apps.scenarios")
from apps.wait_scenarios import (  # noqa: E402
    countdown_scenario,
    prefork_retry_scenario,
    retry_scenario,
)

pytest_plugins = ["apps.scenarios"]
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

#: The machine's RabbitMQ in a vhost of the test's own (deleted afterwards): the exporter's event
#: queue then sees only this test's workers, never another xdist worker's at the same time.
rabbitmq_url = test_events_rabbitmq.rabbitmq_url
#: The test's unique queue name.
celery_queue = test_events_rabbitmq.celery_queue


def test_countdown_and_eta_waits_are_the_lateness_after_the_eta(
    rabbitmq_url, celery_queue, exporter_factory, workers, producer_hook, tmp_path
):
    exporter = exporter_factory(rabbitmq_url)
    countdown_scenario(exporter, rabbitmq_url, celery_queue, workers, tmp_path)


def test_each_retry_waits_from_its_own_republish(
    rabbitmq_url, celery_queue, exporter_factory, workers, producer_hook, tmp_path
):
    exporter = exporter_factory(rabbitmq_url)
    retry_scenario(exporter, rabbitmq_url, celery_queue, workers, tmp_path)


def test_prefork_retries_keep_every_run_joined(
    rabbitmq_url, celery_queue, exporter_factory, workers, producer_hook, tmp_path
):
    exporter = exporter_factory(rabbitmq_url)
    prefork_retry_scenario(exporter, rabbitmq_url, celery_queue, workers, tmp_path)
