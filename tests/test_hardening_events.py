"""Issue 12, point 1: one event holding a number no float can hold costs one malformed count;
the subscription survives and every event around it is counted (real Redis, real RabbitMQ)."""

from __future__ import annotations

import base64
import json

import pika
import pytest
from apps.harness import Exporter

from celery_queue_exporter.brokers.celery_layout import EVENT_EXCHANGE
from celery_queue_exporter.instrumentation import TASK_INFO_EVENT
from testsupport.waiting import wait_for

BIG = "1" + "0" * 400  # an integer of 401 digits: beyond a double
BATCH = 100


def _heartbeat(i: int, **fields: str) -> str:
    """One heartbeat as JSON text; ``fields`` are spliced in raw (to write BIG or Infinity)."""
    values = {"active": "0", "processed": str(i), "timestamp": "1700000000.5", **fields}
    raw = ", ".join(f'"{key}": {value}' for key, value in values.items())
    return f'{{"type": "worker-heartbeat", "hostname": "w{i % 7}@h", {raw}}}'


def _kombu_envelope(body: str) -> bytes:
    """What kombu's Redis transport publishes for one event message."""
    return json.dumps(
        {
            "body": base64.b64encode(body.encode()).decode(),
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "properties": {"body_encoding": "base64"},
        }
    ).encode()


def _batches(bad_field: str) -> list[str]:
    """10,000 heartbeats in task.multi batches of 100; the 5,000th holds BIG in ``bad_field``."""
    events = [_heartbeat(i) for i in range(10_000)]
    events[4_999] = _heartbeat(4_999, **{bad_field: BIG})
    return ["[" + ", ".join(events[i : i + BATCH]) + "]" for i in range(0, len(events), BATCH)]


@pytest.mark.redis
@pytest.mark.parametrize("bad_field", ["active", "timestamp"])
def test_one_huge_number_among_10000_events_costs_one_malformed(redis_server, bad_field):
    exporter = Exporter(redis_server.url).start()
    try:
        wait_for(exporter.consumer.subscribed.is_set, 15, what="subscribed")
        client = redis_server.client()
        with exporter.tracker.lock, client.pipeline(transaction=False) as pipe:
            # Held lock: the whole stream arrives in few large reads, bad event in the middle.
            for body in _batches(bad_field):
                pipe.publish("/0.celeryev/task.multi", _kombu_envelope(body))
            assert pipe.execute() == [1] * 100
        wait_for(lambda: exporter.value("celery_events_received_total") == 9_999, 20, what="events")
        assert exporter.value("celery_events_malformed_total") == 1
        interruptions = exporter.values("celery_event_stream_interruptions_total", "reason")
        assert interruptions == {"disconnected": 0, "overflow": 0}
        assert exporter.value("celery_event_consumer_up") == 1
        assert exporter.value("celery_worker_active_tasks", worker="w0@h") == 0
    finally:
        exporter.close()


@pytest.mark.redis
def test_huge_runtime_infinite_priority_and_lone_surrogate_each_one_malformed(redis_server):
    """Task events: a 401-digit runtime, ``"priority": Infinity`` and a queue name holding a
    lone surrogate (all three only the stdlib fallback parser accepts; the last one, as a
    label, would make every scrape fail to encode) cost one count each; their neighbours in
    the batch count, and the exposition renders."""
    exporter = Exporter(redis_server.url).start()
    try:
        wait_for(exporter.consumer.subscribed.is_set, 15, what="subscribed")
        batch = (
            '[{"type": "task-sent", "uuid": "a", "name": "t", "queue": "q", "timestamp": 1.0},'
            f' {{"type": "{TASK_INFO_EVENT}", "uuid": "a", "queue": "q", "priority": Infinity}},'
            ' {"type": "task-started", "uuid": "a", "hostname": "w@h", "timestamp": 2.0},'
            f' {{"type": "task-succeeded", "uuid": "a", "runtime": {BIG}}},'
            ' {"type": "task-sent", "uuid": "c", "name": "t", "queue": "q\\udcff"},'
            ' {"type": "task-sent", "uuid": "b", "name": "t", "queue": "q", "timestamp": 3.0}]'
        )
        redis_server.client().publish("/0.celeryev/task.multi", _kombu_envelope(batch))
        wait_for(lambda: exporter.value("celery_events_received_total") == 3, 10, what="3")
        assert exporter.value("celery_events_malformed_total") == 3
        assert exporter.value("celery_task_sent_total", queue="q", task="t") == 2
        assert exporter.value("celery_task_started_total", queue="q", task="t") == 1
        interruptions = exporter.values("celery_event_stream_interruptions_total", "reason")
        assert interruptions == {"disconnected": 0, "overflow": 0}
    finally:
        exporter.close()


@pytest.mark.rabbitmq
def test_rabbitmq_one_huge_number_in_a_batch_costs_one_malformed(rabbitmq_vhost):
    url = f"amqp://guest:guest@127.0.0.1:5672/{rabbitmq_vhost}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.exchange_declare(EVENT_EXCHANGE, exchange_type="topic")  # as a worker does
        exporter = Exporter(url).start()
        try:
            wait_for(exporter.consumer.subscribed.is_set, 20, what="subscribed")
            for body in _batches("active"):
                channel.basic_publish(
                    EVENT_EXCHANGE,
                    "task.multi",
                    body.encode(),
                    pika.BasicProperties(content_type="application/json"),
                )
            wait_for(
                lambda: exporter.value("celery_events_received_total") == 9_999, 30, what="all"
            )
            assert exporter.value("celery_events_malformed_total") == 1
            interruptions = exporter.values("celery_event_stream_interruptions_total", "reason")
            assert interruptions == {"disconnected": 0, "overflow": 0}
        finally:
            exporter.close()
    finally:
        connection.close()
