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

#: Each RabbitMQ generation (3.10, 4.0) in a vhost of the test's own (deleted afterwards): the
#: exporter's event queue then sees only this test's workers, never another xdist worker's.
rabbitmq_url = test_events_rabbitmq.rabbitmq_url
#: The test's unique queue name.
celery_queue = test_events_rabbitmq.celery_queue


# 3.10 only. On 4.0 the scenario's premise does not hold: kombu 5.7 treats RabbitMQ >= 4.0 as
# per-consumer QoS (kombu.transport.pyamqp qos_semantics_matches_spec), so Celery cannot raise the
# prefetch for a held ETA task; the solo worker (prefetch 1) then took the later ETA tasks off the
# broker one by one, 0.9 to 2.4 s past their ETA (the exporter's queue waits matched that, its
# prefetch read 0). What 4.0 should report for that is not settled here.
@pytest.mark.parametrize("rabbitmq_generation", ["rabbitmq-3"], indirect=True)
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
