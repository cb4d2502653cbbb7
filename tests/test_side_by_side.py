"""Redis and RabbitMQ watched by one exporter: one scrape, same metric names, distinct broker
labels; a RabbitMQ outage neither hides nor slows the Redis broker's metrics."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import pika
import pytest
import requests
from celery import Celery

from celery_queue_exporter.server import MetricsServer
from testsupport.exporter import build_exporter, scrape
from testsupport.exposition import parse_exposition, sample_value, samples_named
from testsupport.services import missing_service
from testsupport.waiting import wait_for

pytest_plugins = ["testsupport.rabbitmq_node"]
pytestmark = [pytest.mark.redis, pytest.mark.rabbitmq]

PROMTOOL = Path("/usr/bin/promtool")
SCRAPE_TIMEOUT = 3.0
#: Tasks per Celery priority published to both brokers.
PUBLISHED = {0: 3, 4: 1, 9: 2}


def publish(url: str, queue: str, max_priority: int | None = None, durable: bool = False) -> None:
    """Publish PUBLISHED with a real Celery app (declares the queue the way Celery does)."""
    from kombu import Exchange, Queue

    app = Celery(f"sbs-{queue}", broker=url, set_as_current=False)
    arguments = {"x-max-priority": max_priority} if max_priority else None
    app.conf.task_queues = [
        Queue(queue, Exchange(queue), routing_key=queue, queue_arguments=arguments, durable=durable)
    ]
    app.conf.task_default_delivery_mode = "persistent" if durable else "transient"
    try:
        for priority, count in PUBLISHED.items():
            for _ in range(count):
                app.send_task("sbs.noop", queue=queue, priority=priority)
    finally:
        app.close()


def delete_rabbit_queue(url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url[:-1] + "%2F"))
    try:
        channel = connection.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(queue)  # Celery declared a direct exchange named after it
    finally:
        connection.close()


def levels_of(samples: dict, broker: str, queue: str) -> dict[str | None, float]:
    return {
        dict(labels).get("priority"): value
        for labels, value in samples_named(samples, "celery_queue_messages").items()
        if ("broker", broker) in labels and ("queue", queue) in labels
    }


def families_of(samples: dict, broker: str) -> set[str]:
    return {name for (name, labels) in samples if ("broker", broker) in labels}


def redis_view(samples: dict) -> dict:
    """Everything the exporter says about the Redis broker except timings, ages, times and the
    server's own running readings (the lower-bound head ages and the server's uptime grow between
    scrapes, its memory moves with every client connection; every scrape inspects anew)."""
    return {
        (name, labels): value
        for (name, labels), value in samples.items()
        if ("broker", "redis") in labels
        and name
        not in {
            "celery_exporter_scrape_duration_seconds",
            "celery_queue_oldest_message_age_seconds",
            "celery_broker_last_success_timestamp_seconds",
            "celery_redis_uptime_seconds",
            "celery_redis_memory_used_bytes",
        }
    }


def assert_same_redis(samples: dict, healthy: dict) -> None:
    now = redis_view(samples)
    changed = {key for key in now.keys() | healthy.keys() if now.get(key) != healthy.get(key)}
    assert not changed, sorted((key, healthy.get(key), now.get(key)) for key in changed)


# --- one scrape, both brokers -------------------------------------------------------------


@pytest.mark.prometheus
def test_one_scrape_shows_both_brokers_under_the_same_names(
    redis_server, rabbitmq_url, unique_name
):
    if not PROMTOOL.exists():
        missing_service("promtool is not installed at /usr/bin/promtool")
    queue = unique_name
    publish(redis_server.url, queue)
    publish(rabbitmq_url, queue, max_priority=10)
    exporter = build_exporter(
        "--broker-url", f"redis={redis_server.url}",
        "--broker-url", f"rabbit={rabbitmq_url}",
        "--queue", queue, "--host", "127.0.0.1", "--port", "0",
    )  # fmt: skip
    server = MetricsServer(exporter.registry, exporter.config)
    server.start()
    try:

        def complete():
            reply = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=30)
            samples = parse_exposition(reply.text)
            levels = levels_of(samples, "rabbit", queue)
            # Right after publishing the management API may still report the total alone,
            # and a new queue's entry may not carry its unacked count yet.
            done = (
                None not in levels
                and sum(levels.values()) == sum(PUBLISHED.values())
                and "celery_queue_reserved_messages" in families_of(samples, "rabbit")
            )
            return (reply.text, samples) if done else None

        text, samples = wait_for(complete, timeout=20, interval=0.5, what="both brokers")
    finally:
        server.stop()
        exporter.close()
        delete_rabbit_queue(rabbitmq_url, queue)

    assert sample_value(samples, "celery_broker_up", broker="redis") == 1
    assert sample_value(samples, "celery_broker_up", broker="rabbit") == 1
    # Redis floors priorities to the steps 0, 3, 6, 9 (the empty 6 is absent, issue 25);
    # RabbitMQ keeps every level 0..10, 0 included.
    assert levels_of(samples, "redis", queue) == {"0": 3.0, "3": 1.0, "9": 2.0}
    rabbit = {str(p): 0.0 for p in range(11)} | {str(p): float(n) for p, n in PUBLISHED.items()}
    assert levels_of(samples, "rabbit", queue) == rabbit
    # The same PromQL picks each broker's most urgent level in use: 0 on Redis, 9 on RabbitMQ
    # (x-max-priority 10, but nothing was published at 10).
    most = {
        dict(labels)["broker"]: dict(labels)["priority"]
        for labels in samples_named(samples, "celery_queue_priority_urgency_rank")
        if ("urgency", "most") in labels
    }
    assert most == {"redis": "0", "rabbit": "9"}
    shared = {
        "celery_queue_messages",
        "celery_queue_priority_urgency_rank",
        "celery_queue_reserved_messages",
        "celery_broker_reserved_messages",
        "celery_broker_up",
        "celery_broker_info",
        "celery_exporter_scrape_duration_seconds",
        "celery_exporter_scrape_errors_total",
    }
    assert shared <= families_of(samples, "redis")
    assert shared <= families_of(samples, "rabbit")

    check = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


# --- a RabbitMQ outage --------------------------------------------------------------------


def timed_scrape(exporter) -> tuple[dict, float]:
    started = time.monotonic()
    samples = scrape(exporter)
    return samples, time.monotonic() - started


@pytest.mark.slow
def test_rabbitmq_outage_neither_hides_nor_slows_redis(
    redis_server, private_rabbitmq, unique_name, caplog
):
    caplog.set_level(logging.WARNING)
    queue = unique_name
    publish(redis_server.url, queue)
    # Durable queue, persistent messages: they are still there when the node comes back.
    publish(private_rabbitmq.amqp_url, queue, max_priority=10, durable=True)
    exporter = build_exporter(
        "--broker-url", f"redis={redis_server.url}",
        "--broker-url", f"rabbit={private_rabbitmq.amqp_url}",
        "--management-url", private_rabbitmq.management_url,
        "--queue", queue, "--scrape-timeout", str(SCRAPE_TIMEOUT),
    )  # fmt: skip
    total = float(sum(PUBLISHED.values()))

    def rabbit_complete(samples: dict) -> bool:
        return (
            sample_value(samples, "celery_broker_up", broker="rabbit") == 1
            and None not in (levels := levels_of(samples, "rabbit", queue))
            and sum(levels.values()) == total
        )

    try:
        samples = wait_for(
            lambda: (s := scrape(exporter)) and rabbit_complete(s) and s,
            timeout=20,
            interval=0.5,
            what="both brokers up",
        )
        assert sample_value(samples, "celery_rabbitmq_management_api_up", broker="rabbit") == 1
        healthy_redis = redis_view(samples)
        assert levels_of(samples, "redis", queue) == {"0": 3.0, "3": 1.0, "9": 2.0}

        # 1. The node hangs (SIGSTOP: its ports accept connections, nothing answers). Two
        # scrapes in a row: each ends within the per-broker timeout (the second one too, so
        # the hung inspection did not outlive its deadline), Redis is reported as before.
        private_rabbitmq.pause()
        for _ in range(2):
            samples, took = timed_scrape(exporter)
            assert took < SCRAPE_TIMEOUT + 1.5, f"scrape took {took:.1f}s"
            assert sample_value(samples, "celery_broker_up", broker="rabbit") == 0
            assert not levels_of(samples, "rabbit", queue)
            assert_same_redis(samples, healthy_redis)
        assert "previous inspection still running" not in caplog.text
        assert "broker rabbit: inspection failed: " in caplog.text
        assert "did not answer within" in caplog.text
        private_rabbitmq.resume()
        samples = wait_for(
            lambda: (s := scrape(exporter)) and rabbit_complete(s) and s,
            timeout=30,
            interval=0.5,
            what="RabbitMQ back after the hang",
        )
        assert_same_redis(samples, healthy_redis)

        # 2. The node stops: connection refused, fast failure, Redis unaffected.
        errors_before = sample_value(
            samples, "celery_exporter_scrape_errors_total", broker="rabbit"
        )
        assert errors_before >= 2  # the two hung scrapes above (more if recovery took retries)
        private_rabbitmq.stop()
        samples, took = timed_scrape(exporter)
        assert took < SCRAPE_TIMEOUT + 1.5, f"scrape took {took:.1f}s"
        assert sample_value(samples, "celery_broker_up", broker="rabbit") == 0
        errors = sample_value(samples, "celery_exporter_scrape_errors_total", broker="rabbit")
        assert errors == errors_before + 1
        assert_same_redis(samples, healthy_redis)

        # 3. It comes back: the exporter reconnects on its own and reports the same messages.
        private_rabbitmq.start()
        samples = wait_for(
            lambda: (s := scrape(exporter)) and rabbit_complete(s) and s,
            timeout=30,
            interval=0.5,
            what="RabbitMQ back after the restart",
        )
        rabbit = {str(p): 0.0 for p in range(11)} | {str(p): float(n) for p, n in PUBLISHED.items()}
        assert levels_of(samples, "rabbit", queue) == rabbit
        assert sample_value(samples, "celery_rabbitmq_management_api_up", broker="rabbit") == 1
        assert_same_redis(samples, healthy_redis)
    finally:
        private_rabbitmq.resume()
        exporter.close()
