"""Redis Sentinel (issue 16): a real master, replica and three sentinels on spare ports.

Depths and events are exact before and after ``SENTINEL FAILOVER``; the exporter follows the
new master: ``celery_broker_up`` is back to 1 within FOLLOW_SECONDS of the sentinels naming
the new master, and the event subscription moves over, counted as one interruption.
"""

from __future__ import annotations

import time

import pytest
import redis
from apps.harness import Exporter
from celery import Celery

from celery_queue_exporter.cli import make_inspector
from celery_queue_exporter.collector import QueueCollector
from celery_queue_exporter.config.brokers import broker_from_mapping
from celery_queue_exporter.exposition import render_text
from celery_queue_exporter.static_labels import StaticLabelRegistry
from testsupport.exposition import parse_exposition, sample_value
from testsupport.redis_topologies import MASTER_NAME, sentinel_set
from testsupport.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

#: Bound on following a failover: from the sentinels naming the new master to a successful
#: inspection of it (one sentinel round trip per scrape; measured well under 1 s).
FOLLOW_SECONDS = 5.0
#: Bound on the event subscription moving to the new master (the sentinels disconnect the
#: old master's clients when they turn it into a replica, within ~10 s of the failover).
RESUBSCRIBE_SECONDS = 30.0


def producer(url: str, queue: str) -> Celery:
    """A Celery app publishing through the sentinels, as a production producer would."""
    app = Celery("cqe_sentinel", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport_options={"master_name": MASTER_NAME},
        task_default_queue=queue,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
    )
    return app


def publish(url: str, queue: str, priorities: list[int]) -> None:
    app = producer(url, queue)
    try:
        for priority in priorities:
            app.send_task("cqe.sentinel", queue=queue, priority=priority)
    finally:
        app.close()


def depth(samples: dict, queue: str, priority: str) -> float | None:
    return sample_value(
        samples, "celery_queue_messages", broker="ha", queue=queue, priority=priority
    )


def sent(events: Exporter, queue: str) -> float | None:
    return events.value("celery_task_sent_total", queue=queue, task="cqe.sentinel")


def scrape(collector: QueueCollector) -> dict:
    registry = StaticLabelRegistry()
    registry.register(collector)
    return parse_exposition(render_text(registry.collect()).decode())


def test_depths_and_events_follow_a_sentinel_failover(unique_name):
    queue = unique_name
    with sentinel_set() as topology:
        url = topology.url()
        broker = broker_from_mapping(
            "test",
            {"name": "ha", "url": url, "queues": [queue],
             "transport_options": {"master_name": MASTER_NAME}},
        )  # fmt: skip
        events = Exporter(broker).start()
        collector = QueueCollector([make_inspector(broker, 5.0)], 5.0)
        try:
            wait_for(events.consumer.subscribed.is_set, 15, what="event subscription")
            publish(url, queue, [0, 0, 0, 6, 6])
            before = scrape(collector)
            assert sample_value(before, "celery_broker_up", broker="ha") == 1.0
            assert depth(before, queue, "0") == 3
            assert depth(before, queue, "6") == 2
            wait_for(lambda: sent(events, queue) == 5, 10, what="5 sent events")
            # Replication is asynchronous and a forced failover does not wait for it: the 5
            # messages must be on the replica first (at load 8 they once were not, and the
            # promoted replica held none of them).
            master = redis.Redis(host="127.0.0.1", port=topology.master_port)
            try:
                assert master.execute_command("WAIT", 1, 10_000) == 1
            finally:
                master.close()

            old_master = topology.master_port
            topology.sentinel(0).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            wait_for(lambda: topology.master_port_now() == topology.replica_port, 30,
                       what="sentinels name the new master")  # fmt: skip
            promoted = time.monotonic()
            assert topology.master_port_now() != old_master

            def up_on_new_master() -> bool:
                samples = scrape(collector)
                return sample_value(samples, "celery_broker_up", broker="ha") == 1.0

            wait_for(up_on_new_master, FOLLOW_SECONDS, what="broker up on the new master")
            followed = time.monotonic() - promoted
            assert followed < FOLLOW_SECONDS

            print(f"inspection followed the new master after {followed:.2f}s")
            wait_for(
                lambda: events.consumer.subscribed.is_set()
                and events.value("celery_event_stream_interruptions_total",
                                 reason="disconnected") == 1,
                RESUBSCRIBE_SECONDS,
                what="events resubscribed on the new master",
            )  # fmt: skip
            print(f"events resubscribed after {time.monotonic() - promoted:.2f}s")
            publish(url, queue, [0, 0, 9])
            after = scrape(collector)
            assert sample_value(after, "celery_broker_up", broker="ha") == 1.0
            assert depth(after, queue, "0") == 5
            assert depth(after, queue, "6") == 2
            assert depth(after, queue, "9") == 1
            wait_for(lambda: sent(events, queue) == 8, 10, what="8 sent events")
            assert events.value("celery_event_stream_interruptions_total",
                                reason="disconnected") == 1  # fmt: skip
        finally:
            events.close()
            collector.close()
