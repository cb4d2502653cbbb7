"""RabbitMQ 4 as a migration meets it (issue 23), next to 3.10: quorum queues' returned
messages and delivery limit, a new quorum queue's first seconds, and Celery's native delayed
delivery.

Each test runs on every broker generation (the ``rabbitmq_generation`` fixture: the machine's
3.10 and the Debian 13 root's 4.0.5, scripts/debian13-brokers.sh) in a vhost of its own, and
states what each generation reports. The management API refreshes statistics every 5 s: tests
wait for the expected figures rather than sleeping.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pika
import pytest
import requests
from apps.harness import Exporter as EventExporter
from apps.scenarios import publish_heartbeat
from celery import Celery
from celery.worker.consumer.delayed_delivery import DelayedDelivery
from kombu import Exchange, Queue

from celery_queue_exporter.brokers.rabbitmq.delayed import DELAY_BITS, band_label
from testsupport.brokers import GUEST, RabbitMQGeneration, Redis8Server
from testsupport.exporter import build_exporter, scrape, scrape_until
from testsupport.exposition import sample_value, samples_named
from testsupport.rabbitmq import pika_url
from testsupport.waiting import wait_for

pytestmark = pytest.mark.rabbitmq

QUORUM = {"x-queue-type": "quorum"}


@contextlib.contextmanager
def amqp(url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(pika_url(url)))
    try:
        channel = connection.channel()
        channel.confirm_delivery()  # a quorum queue holds a message once it is confirmed
        yield channel
    finally:
        connection.close()


def exporter_for(generation: RabbitMQGeneration, vhost: str, *args: str):
    return build_exporter(
        "--broker-url",
        f"rmq={generation.url(vhost)}",
        "--management-url",
        generation.management_url,
        *args,
    )


def depth_by_level(samples: dict, queue: str) -> dict[str | None, float]:
    """{priority label (None: no label): depth} of ``queue``."""
    return {
        dict(labels).get("priority"): value
        for labels, value in samples_named(samples, "celery_queue_messages").items()
        if dict(labels)["queue"] == queue
    }


# --- quorum queues -----------------------------------------------------------------------

#: What each generation reports for a quorum queue holding 4 requeued messages and 1 fresh one.
RETURNED_EXPECTED = {
    # 3.10: one ready count (requeued messages included), no delivery limit by default.
    "rabbitmq-3": ({None: 5.0}, None),
    # 4.0: high/normal leave the requeued messages out: they are the level 'returned'.
    "rabbitmq-4": ({"high": 0.0, "normal": 1.0, "returned": 4.0}, 20.0),
}


def test_quorum_queue_returned_messages_counted_apart(rabbitmq_generation, generation_vhost):
    """4 messages taken and nacked with requeue, one of them taken and nacked again, then 1
    fresh message: 4 requeued messages wait (the 4.0 level 'returned', counted in the depth),
    1 redelivery."""
    url = rabbitmq_generation.url(generation_vhost)
    queue = "tasks"
    # The channel stays open while the exporter reads: RabbitMQ folds a channel's message
    # statistics (the redelivery) into the queue's at its next collection, and a worker's channel
    # lives that long; a channel closed at once makes that race part of the test.
    with amqp(url) as channel:
        channel.queue_declare(queue, durable=True, arguments=QUORUM)
        for _ in range(4):
            channel.basic_publish("", queue, b"{}")
        taken = [channel.basic_get(queue)[0] for _ in range(4)]
        for method in taken:
            channel.basic_nack(method.delivery_tag, requeue=True)
        # A nack has no reply: wait until a requeued message is back (every waiting one is).
        again = wait_for(lambda: channel.basic_get(queue)[0], timeout=10, what="a requeue")
        assert again.redelivered
        channel.basic_nack(again.delivery_tag, requeue=True)
        channel.basic_publish("", queue, b"{}")

        levels, limit = RETURNED_EXPECTED[rabbitmq_generation.name]
        exporter = exporter_for(rabbitmq_generation, generation_vhost)
        try:
            samples = scrape_until(
                exporter,
                lambda s: (
                    depth_by_level(s, queue) == levels
                    and sample_value(s, "celery_queue_redelivered_total", broker="rmq", queue=queue)
                    == 1
                ),
                what=f"{levels} and 1 redelivery",
                timeout=60.0,
                show=lambda s: (
                    depth_by_level(s, queue),
                    sample_value(s, "celery_queue_redelivered_total", broker="rmq", queue=queue),
                ),
            )
        finally:
            exporter.close()
    assert sum(depth_by_level(samples, queue).values()) == 5
    labels = {"broker": "rmq", "queue": queue}
    assert sample_value(samples, "celery_queue_delivery_limit", **labels) == limit
    assert sample_value(samples, "celery_queue_dead_letter_configured", **labels) == 0
    assert sample_value(samples, "celery_queue_type_info", type="quorum", **labels) == 1
    # Never declared: the urgency marks stay on the broker's own levels.
    marks = {
        dict(labels_)["priority"]
        for labels_ in samples_named(samples, "celery_queue_priority_urgency_rank")
        if dict(labels_)["queue"] == queue
    }
    assert "returned" not in marks


def test_dead_letter_exchange_from_a_policy(rabbitmq_generation, generation_vhost):
    """A DLX set by policy (no redeclare) counts as much as one in the queue's arguments."""
    import requests

    url = rabbitmq_generation.url(generation_vhost)
    with amqp(url) as channel:
        channel.queue_declare("by-policy", durable=True, arguments=QUORUM)
        channel.queue_declare(
            "by-argument", durable=True, arguments={**QUORUM, "x-dead-letter-exchange": "dlx"}
        )
        channel.queue_declare("none", durable=True, arguments=QUORUM)
    requests.put(
        f"{rabbitmq_generation.management_api}/policies/{generation_vhost}/dlx",
        json={"pattern": "^by-policy$", "definition": {"dead-letter-exchange": "dlx"}},
        auth=("guest", "guest"),
        timeout=10,
    ).raise_for_status()
    expected = {"by-policy": 1.0, "by-argument": 1.0, "none": 0.0}
    exporter = exporter_for(rabbitmq_generation, generation_vhost)
    try:
        samples = scrape_until(
            exporter,
            lambda s: (
                {
                    dict(labels)["queue"]: value
                    for labels, value in samples_named(
                        s, "celery_queue_dead_letter_configured"
                    ).items()
                }
                == expected
            ),
            what=f"dead-letter set-up {expected}",
            timeout=60.0,
        )
    finally:
        exporter.close()
    assert samples


def test_new_quorum_queue_has_a_depth_from_its_first_scrape(rabbitmq_generation, generation_vhost):
    """The API has no statistics for a quorum queue's first seconds: the depth comes from a
    passive declare meanwhile, so the queue's series has no gap (only celery_queue_missing 0
    was emitted before)."""
    url = rabbitmq_generation.url(generation_vhost)
    with amqp(url) as channel:
        channel.queue_declare("fresh", durable=True, arguments=QUORUM)
        channel.basic_publish("", "fresh", b"{}")
        channel.basic_publish("", "fresh", b"{}")
    exporter = exporter_for(rabbitmq_generation, generation_vhost, "--queue", "fresh")
    try:
        first = scrape(exporter)
    finally:
        exporter.close()
    assert sum(depth_by_level(first, "fresh").values()) == 2
    assert sample_value(first, "celery_queue_missing", broker="rmq", queue="fresh") == 0


# --- Celery's native delayed delivery ------------------------------------------------------


def delayed_app(url: str, queue: str) -> Celery:
    """An app whose queue is a quorum queue on a topic exchange: Celery >= 5.5 then sends
    countdown/ETA tasks through native delayed delivery."""
    app = Celery("cqe_delayed", broker=url, set_as_current=False)
    app.conf.update(
        task_queues=[
            Queue(queue, Exchange(queue, type="topic"), routing_key=queue, queue_arguments=QUORUM)
        ],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_exchange_type="topic",
        task_default_routing_key=queue,
        task_send_sent_event=True,
    )
    return app


def test_countdown_tasks_are_scheduled_messages_not_a_waiting_queue(
    rabbitmq_generation, generation_vhost
):
    """20 tasks with a 900 s countdown on a quorum queue: 20 scheduled messages in the 512 s
    band (celery_delayed_9), 0 waiting on the app queue, no celery_queue_* series for the 28
    delay queues (so no backlog, age or no-consumer alert can fire on them), and 20 task-sent
    events under the app queue's name (not the binary routing key)."""
    url = rabbitmq_generation.url(generation_vhost)
    queue = "renders"
    app = delayed_app(url, queue)
    with app.connection_for_write() as connection:
        app.amqp.queues[queue](connection.default_channel).declare()
    # What a worker's DelayedDelivery bootstep does at start-up: declare the 28 levels and bind
    # the app queue to celery_delayed_delivery.
    DelayedDelivery(SimpleNamespace(app=app)).start(SimpleNamespace(app=app))

    publish_heartbeat(url, "declares-the-event-exchange@test")
    events = EventExporter(url).start()
    try:
        wait_for(events.consumer.subscribed.is_set, 15, what="event subscription")
        for _ in range(20):
            app.send_task("tasks.render", countdown=900)
        sent = wait_for(
            lambda: events.values("celery_task_sent_total", "queue") or None,
            what="task-sent events",
        )
        wait_for(
            lambda: events.values("celery_task_sent_total", "queue") == {queue: 20.0},
            what=f"20 task-sent events under {queue}, got {sent}",
        )
    finally:
        events.close()

    exporter = exporter_for(rabbitmq_generation, generation_vhost)
    try:
        # A new quorum queue has no statistics for a few seconds (longer on a busy node): wait
        # for every delay level's band, not only the one holding the tasks.
        samples = scrape_until(
            exporter,
            lambda s: (
                sample_value(s, "celery_scheduled_messages", broker="rmq", band="512") == 20
                and len(samples_named(s, "celery_scheduled_messages")) == DELAY_BITS
            ),
            what="20 scheduled messages in the 512 s band, and every band",
            timeout=60.0,
        )
    finally:
        exporter.close()
    bands = {
        dict(labels)["band"]: value
        for labels, value in samples_named(samples, "celery_scheduled_messages").items()
    }
    expected = {band_label(level): 20.0 if level == 9 else 0.0 for level in range(DELAY_BITS)}
    assert bands == expected
    assert sum(depth_by_level(samples, queue).values()) == 0
    watched = {
        dict(labels)["queue"]
        for (name, labels) in samples
        if name.startswith("celery_queue_") and "queue" in dict(labels)
    }
    assert watched == {queue}


# --- classic priority queues ---------------------------------------------------------------


def api_shows_messages(generation: RabbitMQGeneration, vhost: str, queue: str, ready: int) -> bool:
    """The management API reports ``ready`` messages in ``queue``, with its head's timestamp
    and, on 3.x, the per-level counts of those messages (they can come a refresh later)."""
    reply = requests.get(
        f"{generation.management_api}/queues/{vhost}/{queue}", auth=GUEST, timeout=10
    )
    entry = reply.json() if reply.ok else {}
    lengths = (entry.get("backing_queue_status") or {}).get("priority_lengths")
    if generation.name == "rabbitmq-3" and not isinstance(lengths, dict):
        return False
    return (
        entry.get("messages_ready") == ready
        and entry.get("head_message_timestamp") is not None
        and (lengths is None or sum(lengths.values()) == ready)
    )


def head_ages(samples: dict) -> dict[str | None, float]:
    return {
        dict(labels).get("priority"): value
        for labels, value in samples_named(
            samples, "celery_queue_oldest_message_age_seconds"
        ).items()
        if dict(labels)["queue"] == "prio"
    }


#: A classic x-max-priority 9 queue holding 2 messages at 0 stamped 100 s ago, 1 at 5 and 1 at 9
#: stamped 10 s ago: what each generation reports (depths; the age series; lower-bound flag).
PRIORITY_EXPECTED = {
    # 3.10: per-level counts (backing_queue_status); the age on the head level 9 only.
    "rabbitmq-3": (
        {str(p): {0: 2.0, 5: 1.0, 9: 1.0}.get(p, 0.0) for p in range(10)},
        "9",
        None,
    ),
    # 4.0: one total; the age is the head of the most urgent level, flagged a lower bound.
    "rabbitmq-4": ({None: 4.0}, None, 1.0),
}


def test_classic_priority_queue_depths_and_age_per_generation(
    rabbitmq_generation, generation_vhost
):
    url = rabbitmq_generation.url(generation_vhost)
    now = int(time.time())
    with amqp(url) as channel:
        channel.queue_declare("prio", arguments={"x-max-priority": 9})
        for priority, stamp in ((0, now - 100), (0, now - 100), (5, now - 10), (9, now - 10)):
            properties = pika.BasicProperties(priority=priority, timestamp=stamp)
            channel.basic_publish("", "prio", b"{}", properties)
    levels, age_level, lower_bound = PRIORITY_EXPECTED[rabbitmq_generation.name]
    # The stamps are backdated, as a producer's clock behind would be: an exporter that saw
    # the queue empty (statistics from before the publish) would bound the ages by its own
    # observation (headbounds.py), so it starts once the API shows the four messages.
    wait_for(
        lambda: api_shows_messages(rabbitmq_generation, generation_vhost, "prio", 4),
        timeout=30,
        what="the management API's statistics of the four messages",
    )
    exporter = exporter_for(rabbitmq_generation, generation_vhost)
    try:
        samples = scrape_until(
            exporter,
            lambda s: depth_by_level(s, "prio") == levels and list(head_ages(s)) == [age_level],
            what=f"depths {levels} and an age at level {age_level}",
            timeout=60.0,
        )
    finally:
        exporter.close()
    ages = head_ages(samples)
    assert list(ages) == [age_level]
    # The head of level 9 (stamped 10 s ago), never the 100 s old messages at level 0.
    assert 10 <= ages[age_level] < 100
    flag = sample_value(
        samples, "celery_queue_oldest_message_age_lower_bound", broker="rmq", queue="prio"
    )
    assert flag == lower_bound


def test_prefixed_delay_queues_follow_the_configured_prefix(rabbitmq_generation, generation_vhost):
    """kombu >= 5.7 names the levels {prefix}_celery_delayed_N: with delayed_delivery_prefix
    set they are scheduled messages; without it they would be watched as 28 work queues."""
    from kombu import Connection
    from kombu.transport.native_delayed_delivery import (
        declare_native_delayed_delivery_exchanges_and_queues,
    )

    url = rabbitmq_generation.url(generation_vhost)
    with Connection(url) as connection:
        declare_native_delayed_delivery_exchanges_and_queues(connection, "quorum", prefix="app1")
    exporter = exporter_for(
        rabbitmq_generation, generation_vhost, "--delayed-delivery-prefix", "app1"
    )
    try:
        samples = scrape_until(
            exporter,
            lambda s: len(samples_named(s, "celery_scheduled_messages")) == DELAY_BITS,
            what="28 delay bands",
            timeout=60.0,
        )
    finally:
        exporter.close()
    assert set(samples_named(samples, "celery_scheduled_messages").values()) == {0.0}
    assert samples_named(samples, "celery_queue_messages") == {}
    unprefixed = exporter_for(rabbitmq_generation, generation_vhost)
    try:
        watched = {
            dict(labels)["queue"]
            for labels in samples_named(scrape(unprefixed), "celery_queue_missing")
        }
    finally:
        unprefixed.close()
    assert watched == {f"app1_celery_delayed_{level}" for level in range(DELAY_BITS)}


def test_new_delay_queues_have_every_band_from_the_first_scrape(
    rabbitmq_generation, generation_vhost
):
    """A quorum queue's first seconds have no statistics in the API: the 28 delay queues a
    worker has just declared are counted by passive declare meanwhile, so no band is missing
    (2 messages held in band 2^20 s, 0 in the others) from the first scrape on."""
    from kombu import Connection
    from kombu.transport.native_delayed_delivery import (
        declare_native_delayed_delivery_exchanges_and_queues,
    )

    url = rabbitmq_generation.url(generation_vhost)
    with Connection(url) as connection:
        declare_native_delayed_delivery_exchanges_and_queues(connection, "quorum")
    with amqp(url) as channel:
        for _ in range(2):
            channel.basic_publish("", "celery_delayed_20", b"{}")
    exporter = exporter_for(rabbitmq_generation, generation_vhost)
    try:
        bands = samples_named(scrape(exporter), "celery_scheduled_messages")
    finally:
        exporter.close()
    expected = {band_label(level): 0.0 for level in range(DELAY_BITS)}
    expected[band_label(20)] = 2.0
    assert {dict(labels)["band"]: value for labels, value in bands.items()} == expected


@pytest.mark.redis
def test_each_generation_is_the_version_it_stands_for(rabbitmq_generation, redis_generation_server):
    """The fixtures' names are the versions the tests claim to cover (Debian 12: 3.10 and 7.0;
    Debian 13: 4.0 and 8.0)."""
    rabbit = {"rabbitmq-3": "3.10.", "rabbitmq-4": "4.0."}[rabbitmq_generation.name]
    assert rabbitmq_generation.version().startswith(rabbit)
    info = redis_generation_server.client().info("server")
    assert str(info["redis_version"]).split(".")[0] in {"7", "8"}
    if isinstance(redis_generation_server, Redis8Server):
        assert str(info["redis_version"]).startswith("8.0.")
    else:
        assert str(info["redis_version"]).startswith("7.0.")
