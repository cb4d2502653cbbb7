"""Issue 14 on a real (private) Redis with real Celery workers: queue waits without ETA and
retry delays, the end-to-end delay, prefetch time, pool size and utilisation, failures per
exception (scenarios in tests/apps/wait_scenarios.py)."""

from __future__ import annotations

import pytest

from celery_queue_exporter.config import EventSettings
from testsupport.waiting import wait_for

pytest.register_assert_rewrite("apps.wait_scenarios", "apps.scenarios")
from apps.events_app import make_app  # noqa: E402
from apps.scenarios import wait_worker_up  # noqa: E402
from apps.wait_scenarios import (  # noqa: E402
    countdown_scenario,
    prefork_retry_scenario,
    retry_scenario,
)

pytest_plugins = ["apps.scenarios"]
pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_countdown_and_eta_waits_are_the_lateness_after_the_eta(
    redis_server, unique_name, exporter_factory, workers, producer_hook, tmp_path
):
    exporter = exporter_factory(redis_server.url)
    countdown_scenario(exporter, redis_server.url, unique_name, workers, tmp_path)


def test_each_retry_waits_from_its_own_republish(
    redis_server, unique_name, exporter_factory, workers, producer_hook, tmp_path
):
    exporter = exporter_factory(redis_server.url)
    retry_scenario(exporter, redis_server.url, unique_name, workers, tmp_path)


def test_prefork_pool_size_and_utilisation_reaches_one(
    redis_server, unique_name, exporter_factory, workers, producer_hook
):
    exporter = exporter_factory(redis_server.url)
    worker = workers(redis_server.url, unique_name, pool="prefork", concurrency=3)
    wait_worker_up(exporter, worker)
    q = {"queue": unique_name}
    wait_for(
        lambda: exporter.value("celery_worker_pool_size", worker=worker.name, pool="prefork") == 3,
        15,
        what="pool size announced",
    )
    assert exporter.value("celery_worker_prefetch_multiplier", worker=worker.name) == 1
    assert exporter.value("celery_queue_worker_slots", **q) == 3
    app = make_app(redis_server.url, unique_name)
    for _ in range(5):  # more than the slots: the pool saturates
        app.send_task("events.sleep", args=[4])

    def saturated() -> bool:
        busy = exporter.value("celery_queue_worker_busy_slots", **q)
        slots = exporter.value("celery_queue_worker_slots", **q)
        return busy is not None and slots == 3 and busy / slots == 1.0

    wait_for(saturated, 20, what="utilisation 1.0")


def test_failures_counted_per_exception_with_the_cap(
    redis_server, unique_name, exporter_factory, workers
):
    exporter = exporter_factory(redis_server.url, EventSettings(max_exception_names=3))
    worker = workers(redis_server.url, unique_name, pool="solo")
    wait_worker_up(exporter, worker)
    app = make_app(redis_server.url, unique_name)
    # One solo worker takes them in order: the first three names get labels of their own.
    sent = ["ValueError"] * 3 + ["KeyError"] * 2 + ["ZeroDivisionError"]
    sent += ["LookupError", "AppError", "LookupError"]
    for kind in sent:
        app.send_task("events.raise", args=[kind])
    q = {"queue": unique_name, "task": "events.raise"}
    wait_for(
        lambda: sum(exporter.values("celery_task_failed_total", "exception", **q).values()) == 9,
        30,
        what="9 failures",
    )
    assert exporter.values("celery_task_failed_total", "exception", **q) == {
        "ValueError": 3,
        "KeyError": 2,
        "ZeroDivisionError": 1,
        "(other)": 3,
    }


def test_prefork_retries_keep_every_run_joined(
    redis_server, unique_name, exporter_factory, workers, producer_hook, tmp_path
):
    exporter = exporter_factory(redis_server.url)
    prefork_retry_scenario(exporter, redis_server.url, unique_name, workers, tmp_path)
