"""Celery events on real RabbitMQ with real Celery workers.

Each test runs on each broker generation (``rabbitmq_generation``: the machine's 3.10 and the
Debian 13 root's 4.0.5) in a vhost of its own: other tests' events and event queues, run at
the same time on other xdist workers, never reach it (a test here counts the exporter's
queues). The restart test runs on a private 3.10 node (testsupport/rabbitmq_node.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote

import pika
import pytest
import requests
from apps.harness import ROOT, Exporter

from celery_queue_exporter.brokers.celery_layout import EVENT_EXCHANGE
from celery_queue_exporter.brokers.rabbitmq.events import QUEUE_PREFIX
from testsupport.brokers import RabbitMQGeneration
from testsupport.net import free_port
from testsupport.rabbitmq import GUEST, pika_url
from testsupport.waiting import wait_for

pytest.register_assert_rewrite("apps.scenarios")  # its asserts are the tests' asserts
from apps.scenarios import outcome_scenario, priority_scenario, publish_heartbeat  # noqa: E402

pytest_plugins = ["testsupport.rabbitmq_node", "apps.scenarios"]
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture
def rabbitmq_url(rabbitmq_generation: RabbitMQGeneration, generation_vhost: str) -> str:
    """The generation under test, in a vhost of this test's own (deleted afterwards with
    everything in it)."""
    return rabbitmq_generation.url(generation_vhost)


@pytest.fixture
def celery_queue(rabbitmq_url, unique_name):
    """The test's unique queue name (its vhost goes with the test)."""
    return unique_name


def _vhost(url: str) -> str:
    return quote(url.rsplit("/", 1)[1] or "/", safe="")


def queue_info(generation: RabbitMQGeneration, url: str, name: str) -> dict | None:
    response = requests.get(
        f"{generation.management_api}/queues/{_vhost(url)}/{quote(name, safe='')}",
        auth=GUEST,
        timeout=10,
    )
    return response.json() if response.status_code == 200 else None


def exporter_queues(generation: RabbitMQGeneration, url: str) -> set[str]:
    response = requests.get(
        f"{generation.management_api}/queues/{_vhost(url)}", auth=GUEST, timeout=10
    )
    return {q["name"] for q in response.json() if q["name"].startswith(QUEUE_PREFIX)}


def test_task_outcomes_counted_exactly_prefork(
    rabbitmq_url, celery_queue, exporter_factory, workers, producer_hook
):
    exporter = exporter_factory(rabbitmq_url)
    outcome_scenario(exporter, rabbitmq_url, celery_queue, workers, lowest_level="0")


def test_most_urgent_level_waits_less_with_a_backlog_solo(
    rabbitmq_url, celery_queue, exporter_factory, workers, producer_hook
):
    exporter = exporter_factory(rabbitmq_url)
    # On RabbitMQ the highest priority is the most urgent (x-max-priority 9 in the test app).
    priority_scenario(exporter, rabbitmq_url, celery_queue, workers, most="9", least="0")


def test_one_exclusive_queue_removed_on_close_and_malformed_counted(
    rabbitmq_generation, rabbitmq_url
):
    publish_heartbeat(rabbitmq_url, "ensure@exchange")  # the exchange exists once a worker ran
    exporter = Exporter(rabbitmq_url).start()
    try:
        wait_for(exporter.consumer.subscribed.is_set, 20, what="subscribed")
        info = queue_info(rabbitmq_generation, rabbitmq_url, exporter.consumer.queue_name)
        assert info is not None
        assert info["exclusive"] is True and info["auto_delete"] is True
        bindings = requests.get(
            f"{rabbitmq_generation.management_api}/queues/{_vhost(rabbitmq_url)}/"
            f"{quote(exporter.consumer.queue_name, safe='')}/bindings",
            auth=GUEST,
            timeout=10,
        ).json()
        assert {(b["source"], b["routing_key"]) for b in bindings if b["source"]} == {
            (EVENT_EXCHANGE, "#")
        }
        before = exporter.value("celery_events_malformed_total")
        connection = pika.BlockingConnection(pika.URLParameters(pika_url(rabbitmq_url)))
        channel = connection.channel()
        for body, content_type in (
            (b"not json", "application/json"),
            (b'"a string"', "application/json"),
            (b"\x80\x04K\x01.", "application/x-python-serialize"),
        ):
            channel.basic_publish(
                EVENT_EXCHANGE,
                "task.started",
                body,
                pika.BasicProperties(content_type=content_type),
            )
        connection.close()
        publish_heartbeat(rabbitmq_url, "good-after-malformed@cqe-test")
        wait_for(
            lambda: exporter.value("celery_worker_up", worker="good-after-malformed@cqe-test") == 1,
            10,
            what="good event after the malformed ones",
        )
        assert exporter.value("celery_events_malformed_total") == before + 3
    finally:
        exporter.close()
    assert queue_info(rabbitmq_generation, rabbitmq_url, exporter.consumer.queue_name) is None


def test_killed_exporter_leaves_no_queue(rabbitmq_generation, rabbitmq_url):
    publish_heartbeat(rabbitmq_url, "ensure@exchange")
    before = exporter_queues(rabbitmq_generation, rabbitmq_url)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "celery_queue_exporter", "--events", "--broker-url", rabbitmq_url,
         "--management-url", rabbitmq_generation.management_url,
         "--queue", "cqe-none", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        created = wait_for(
            lambda: exporter_queues(rabbitmq_generation, rabbitmq_url) - before,
            30,
            what="exporter's queue",
        )
        assert len(created) == 1
    finally:
        process.kill()  # SIGKILL: no clean shutdown, the broker must clean up
        process.wait(timeout=10)
    wait_for(
        lambda: not (exporter_queues(rabbitmq_generation, rabbitmq_url) & created),
        30,
        what="queue removed by RabbitMQ",
    )


def test_broker_restart_events_flow_again(private_rabbitmq):
    url = private_rabbitmq.amqp_url
    publish_heartbeat(url, "before@restart")  # declares the durable celeryev exchange
    exporter = Exporter(url).start()
    try:
        wait_for(exporter.consumer.subscribed.is_set, 30, what="subscribed")
        publish_heartbeat(url, "before@restart")
        wait_for(lambda: exporter.value("celery_events_received_total") == 1, 10, what="event")
        private_rabbitmq.stop()
        wait_for(lambda: exporter.value("celery_event_consumer_up") == 0, 20, what="down")
        private_rabbitmq.start()
        wait_for(lambda: exporter.value("celery_event_consumer_up") == 1, 60, what="back")
        publish_heartbeat(url, "after@restart")
        wait_for(lambda: exporter.value("celery_events_received_total") == 2, 10, what="event")
        assert exporter.value("celery_worker_up", worker="after@restart") == 1
        assert exporter.values("celery_event_stream_interruptions_total", "reason") == {
            "disconnected": 1,
            "overflow": 0,
        }
    finally:
        exporter.close()
