"""Per-level depth of a classic priority queue on RabbitMQ 4.0.5, whose management API gives only
the total (issue 23): the levels come from Celery events (task-sent with the priority
install(app) adds, task-received), reconciled with the broker's exact total; what the events do
not account for is the level ``unknown``.

Real parts: RabbitMQ 4.0.5 (scripts/debian13-brokers.sh) in a vhost of the test's own, a real
Celery producer with install(app) and task-sent on, a real worker (tests/apps/events_app.py) and
the exporter as the CLI builds it with --events. The management API refreshes its statistics
every 5 s: the tests wait for the expected figures.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from apps.events_app import make_app
from apps.harness import Worker
from apps.scenarios import publish_heartbeat

from celery_queue_exporter.brokers.rabbitmq.management import SETTLE_AFTER_SECONDS
from celery_queue_exporter.instrumentation import install, uninstall
from testsupport.exporter import build_exporter, scrape_until
from testsupport.exposition import sample_value, samples_named

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

MAX_PRIORITY = 9


@pytest.fixture(autouse=True)
def _uninstall_after() -> Iterator[None]:
    """The tests install(app) in this process: its Celery signals are process-wide, so they
    are undone after each test (a later test of this xdist worker publishing "without
    install(app)" once read a stamp left behind)."""
    yield
    uninstall()


@pytest.fixture
def vhost_4(rabbitmq4) -> Iterator[str]:
    """A vhost of its own on RabbitMQ 4, with Celery's event exchange in it."""
    name = rabbitmq4.create_vhost(f"cqe-test-{uuid.uuid4().hex[:10]}")
    try:
        publish_heartbeat(rabbitmq4.url(name), "ensure@exchange")  # declares celeryev
        yield name
    finally:
        rabbitmq4.delete_vhost(name)


def levels_of(samples: dict, queue: str, name: str = "celery_queue_messages") -> dict:
    """{priority label (None: no label): value} of ``name`` for ``queue``."""
    return {
        dict(labels).get("priority"): value
        for labels, value in samples_named(samples, name).items()
        if dict(labels)["queue"] == queue
    }


def expected(by_level: dict[int, int], unknown: int) -> dict[str, float]:
    """Every declared level (0 included) and the level 'unknown'."""
    out = {str(level): float(by_level.get(level, 0)) for level in range(MAX_PRIORITY + 1)}
    out["unknown"] = float(unknown)
    return out


def exporter_with_events(rabbitmq4, vhost: str, queue: str):
    return build_exporter(
        "--broker-url", f"rmq={rabbitmq4.url(vhost)}",
        "--management-url", rabbitmq4.management_url,
        "--queue", queue, "--events",
    )  # fmt: skip


def wait_for_event_consumer(exporter) -> None:
    scrape_until(
        exporter,
        lambda s: sample_value(s, "celery_event_consumer_up", broker="rmq") == 1,
        what="the event consumer up",
        timeout=60.0,
    )


def publish(app, counts: dict[int, int], task: str, args: tuple) -> None:
    for priority, count in counts.items():
        for _ in range(count):
            app.send_task(task, args=args, priority=priority)


def source_of(samples: dict, queue: str) -> set[str]:
    return {
        dict(labels)["source"]
        for labels in samples_named(samples, "celery_queue_priority_levels_source_info")
        if dict(labels)["queue"] == queue
    }


def test_levels_from_events_exact_then_a_worker_takes_the_most_urgent(rabbitmq4, vhost_4):
    """3 tasks at priority 0, 5 at 3 and 2 at 9, no consumer: exact levels, 'unknown' 0, the
    head age on level 9. A worker (prefetch 1) then takes one task at 9 and runs it: 1 left at 9.
    Killed, its task is requeued after the receipt the events showed: the broker holds it again,
    at a level the events no longer tell, so it is 'unknown' (the total stays exact)."""
    queue = f"cqe-test-{uuid.uuid4().hex[:10]}"
    url = rabbitmq4.url(vhost_4)
    app = make_app(url, queue, max_priority=MAX_PRIORITY)
    install(app)
    exporter = exporter_with_events(rabbitmq4, vhost_4, queue)
    worker = None
    try:
        wait_for_event_consumer(exporter)
        publish(app, {0: 3, 3: 5, 9: 2}, "events.sleep", (300,))
        want = expected({0: 3, 3: 5, 9: 2}, 0)
        ages = "celery_queue_oldest_message_age_seconds"
        samples = scrape_until(
            exporter,
            # the head's timestamp can come a refresh after the counts (seen under load)
            lambda s: levels_of(s, queue) == want and levels_of(s, queue, ages) != {},
            what=f"levels {want} and the head's age",
            timeout=60.0,
            show=lambda s: (levels_of(s, queue), levels_of(s, queue, ages)),
        )
        assert source_of(samples, queue) == {"events"}
        # install(app) stamps the AMQP timestamp: the head's age, on its own level only.
        assert list(levels_of(samples, queue, ages)) == ["9"]
        assert (
            sample_value(
                samples, "celery_queue_oldest_message_age_lower_bound", broker="rmq", queue=queue
            )
            is None
        )

        worker = Worker(url, queue).start()  # solo, prefetch 1, acks late: holds one task
        want = expected({0: 3, 3: 5, 9: 1}, 0)
        samples = scrape_until(
            exporter,
            lambda s: (
                levels_of(s, queue) == want
                and sample_value(s, "celery_queue_reserved_messages", broker="rmq", queue=queue)
                == 1
            ),
            what=f"levels {want} with 1 task running",
            timeout=90.0,
            show=lambda s: levels_of(s, queue),
        )

        worker.kill()  # SIGKILL: the unacknowledged task goes back to the queue
        want = expected({0: 3, 3: 5, 9: 1}, 1)
        samples = scrape_until(
            exporter,
            lambda s: levels_of(s, queue) == want,
            what=f"levels {want} after the requeue",
            timeout=60.0,
            show=lambda s: levels_of(s, queue),
        )
        # The head's level is no longer known: its age is on 'unknown', a lower bound.
        ages = levels_of(samples, queue, "celery_queue_oldest_message_age_seconds")
        assert list(ages) == ["unknown"]
        flag = sample_value(
            samples, "celery_queue_oldest_message_age_lower_bound", broker="rmq", queue=queue
        )
        assert flag == 1
    finally:
        if worker is not None:
            worker.stop()
        exporter.close()
        app.close()


def test_a_purged_queue_leaves_no_count_behind(rabbitmq4, vhost_4):
    """4 tasks at priority 0, then the queue purged: no receipt is ever seen for them. Once the
    broker reads the queue empty their counts go, and 2 tasks at 9 published afterwards read
    9: 2 (counts left behind would be taken off the most urgent levels first: 9: 0, 0: 2)."""
    queue = f"cqe-test-{uuid.uuid4().hex[:10]}"
    url = rabbitmq4.url(vhost_4)
    app = make_app(url, queue, max_priority=MAX_PRIORITY)
    install(app)
    exporter = exporter_with_events(rabbitmq4, vhost_4, queue)
    try:
        wait_for_event_consumer(exporter)
        publish(app, {0: 4}, "events.sleep", (300,))
        want = expected({0: 4}, 0)
        scrape_until(
            exporter,
            lambda s: levels_of(s, queue) == want,
            what=f"levels {want}",
            timeout=60.0,
            show=lambda s: levels_of(s, queue),
        )
        seen = time.monotonic()  # every task-sent of the 4 was seen by now
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)
        # An empty reading settles the publishes seen before its statistics may be from.
        time.sleep(max(0.0, SETTLE_AFTER_SECONDS + 1 - (time.monotonic() - seen)))
        want = expected({}, 0)
        scrape_until(
            exporter,
            lambda s: levels_of(s, queue) == want,
            what="the purged queue empty",
            timeout=60.0,
            show=lambda s: levels_of(s, queue),
        )
        publish(app, {9: 2}, "events.sleep", (300,))
        want = expected({9: 2}, 0)
        samples = scrape_until(
            exporter,
            lambda s: levels_of(s, queue) == want,
            what=f"levels {want}",
            timeout=60.0,
            show=lambda s: levels_of(s, queue),
        )
        assert list(levels_of(samples, queue, "celery_queue_oldest_message_age_seconds")) == ["9"]
    finally:
        exporter.close()
        app.close()


def test_messages_published_before_the_exporter_started_are_unknown(rabbitmq4, vhost_4):
    """4 tasks at priority 5 published before the exporter started (their task-sent unseen),
    then 2 at 5 and 1 at 0: levels 5: 2, 0: 1 and 'unknown' 4 (the total, 7, exact). A worker
    then runs them all: every level and 'unknown' back to 0, never below (the receipts of the
    4 unseen publishes count nowhere)."""
    queue = f"cqe-test-{uuid.uuid4().hex[:10]}"
    url = rabbitmq4.url(vhost_4)
    app = make_app(url, queue, max_priority=MAX_PRIORITY)
    install(app)
    publish(app, {5: 4}, "events.ok", (1,))
    exporter = exporter_with_events(rabbitmq4, vhost_4, queue)
    worker = None
    try:
        wait_for_event_consumer(exporter)
        publish(app, {5: 2, 0: 1}, "events.ok", (1,))
        want = expected({5: 2, 0: 1}, 4)
        samples = scrape_until(
            exporter,
            lambda s: levels_of(s, queue) == want,
            what=f"levels {want}",
            timeout=60.0,
            show=lambda s: levels_of(s, queue),
        )
        assert source_of(samples, queue) == {"events"}
        assert sum(levels_of(samples, queue).values()) == 7

        worker = Worker(url, queue).start()
        want = expected({}, 0)
        scrape_until(
            exporter,
            lambda s: (
                levels_of(s, queue) == want
                and sample_value(
                    s, "celery_task_succeeded_total", broker="rmq", queue=queue, task="events.ok"
                )
                == 7
            ),  # fmt: skip
            what="every level at 0 after 7 tasks ran",
            timeout=90.0,
            show=lambda s: levels_of(s, queue),
        )
    finally:
        if worker is not None:
            worker.stop()
        exporter.close()
        app.close()


def test_without_events_the_queue_has_one_total_and_says_so(rabbitmq4, vhost_4):
    """The same queue without --events: one series without priority, source 'none'."""
    queue = f"cqe-test-{uuid.uuid4().hex[:10]}"
    app = make_app(rabbitmq4.url(vhost_4), queue, max_priority=MAX_PRIORITY)
    publish(app, {0: 1, 9: 2}, "events.ok", (1,))
    exporter = build_exporter(
        "--broker-url", f"rmq={rabbitmq4.url(vhost_4)}",
        "--management-url", rabbitmq4.management_url, "--queue", queue,
    )  # fmt: skip
    try:
        samples = scrape_until(
            exporter,
            # The API's statistics, not the passive declare that bridges a new queue's first
            # seconds (a total with no source series).
            lambda s: levels_of(s, queue) == {None: 3.0} and source_of(s, queue),
            what="one total of 3 from the API",
            timeout=60.0,
            show=lambda s: levels_of(s, queue),
        )
    finally:
        exporter.close()
        app.close()
    assert source_of(samples, queue) == {"none"}
