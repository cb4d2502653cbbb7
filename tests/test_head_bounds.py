"""Issue 21: RabbitMQ head ages bounded by what the exporter saw (headbounds.py).

The pure bounds first, then a real producer whose clock is 5 minutes behind or ahead
(libfaketime, testsupport/clock_skew.py) publishing with install(app) to a real RabbitMQ (3.10
and 4.0, a vhost of its own each), read by the real RabbitMQ inspector through the management
API. The inspector's clock is the real one, but recorded at every inspection, so the test knows
the exact ``now``, ``t0`` (last seen empty) and ``t1`` (head stamp first seen) the bounds use
and asserts the exact ages they imply.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pika
import pytest
import requests

from celery_queue_exporter.brokers.rabbitmq.inspector import RabbitMQInspector
from celery_queue_exporter.brokers.rabbitmq.management import STATS_SLACK_SECONDS
from celery_queue_exporter.config.brokers import new_broker
from celery_queue_exporter.headbounds import HeadBounds
from testsupport.brokers import GUEST, RabbitMQGeneration
from testsupport.clock_skew import skewed_producer
from testsupport.processes import stop_process
from testsupport.rabbitmq import pika_url
from testsupport.waiting import wait_for

KEY = ("jobs", "0")


# --- the pure bounds --------------------------------------------------------------------------


def test_no_bound_known_leaves_the_stamp_age_as_it_is():
    bounds = HeadBounds(slack_seconds=6.0)
    # First sighting, never seen empty: the lower bound is 0, no upper bound.
    assert bounds.observe(KEY, 3, 1000.0, 301.5, now=1301.5) == 301.5
    assert bounds.observe(KEY, 3, None, None, now=1302.0) is None
    assert bounds.clamped == 0


def test_upper_bound_is_the_last_time_seen_empty_plus_slack():
    bounds = HeadBounds(slack_seconds=6.0)
    assert bounds.observe(KEY, 0, None, None, now=100.0) is None
    assert bounds.observe(KEY, 0, None, None, now=101.0) is None  # the LAST empty counts
    # A producer 300 s behind: its stamp says 302 s; the level was empty 4 s ago.
    assert bounds.observe(KEY, 2, 103.0 - 300, 302.0, now=105.0) == 105.0 - 101.0 + 6.0
    assert bounds.observe(KEY, 2, 103.0 - 300, 310.0, now=113.0) == 113.0 - 101.0 + 6.0
    # Under the bound, the stamp's age stands.
    assert bounds.observe(KEY, 2, 110.0, 3.0, now=113.0) == 3.0
    assert bounds.clamped == 2


def test_lower_bound_is_since_the_head_stamp_was_first_seen():
    bounds = HeadBounds(slack_seconds=6.0)
    assert bounds.observe(KEY, 0, None, None, now=100.0) is None
    # A producer 300 s ahead: the stamp is in the future, its age reads 0.
    assert bounds.observe(KEY, 5, 410.0, 0.0, now=110.0) == 0.0
    assert bounds.observe(KEY, 5, 410.0, 0.0, now=125.0) == 15.0
    # The head changed: the new head has been seen 0 s.
    assert bounds.observe(KEY, 4, 411.0, 0.0, now=126.0) == 0.0
    assert bounds.observe(KEY, 4, 411.0, 0.0, now=130.0) == 4.0
    # A level not at the head (no age) keeps what was seen of it.
    assert bounds.observe(KEY, 4, None, None, now=131.0) is None
    assert bounds.observe(KEY, 4, 411.0, 0.0, now=140.0) == 14.0
    assert bounds.clamped == 3


def test_lower_bound_never_passes_the_upper_bound():
    bounds = HeadBounds(slack_seconds=0.0)
    assert bounds.observe(KEY, 0, None, None, now=100.0) is None
    assert bounds.observe(KEY, 1, 50.0, 60.0, now=110.0) == 10.0  # upper: 110 - 100
    assert bounds.observe(KEY, 1, 50.0, 70.0, now=120.0) == 20.0
    # The lower bound (since 110) stays under the upper one (since 100).
    assert bounds.observe(KEY, 1, 500.0, 0.0, now=130.0) == 0.0
    assert bounds.observe(KEY, 1, 500.0, 0.0, now=135.0) == 5.0


def test_empty_level_forgets_its_head_and_unknown_counts_change_nothing():
    bounds = HeadBounds(slack_seconds=6.0)
    assert bounds.observe(KEY, 1, 410.0, 0.0, now=100.0) == 0.0
    assert bounds.observe(KEY, 0, None, None, now=105.0) is None
    # The same stamp after an empty reading is a new message: seen 0 s, not 10 s.
    assert bounds.observe(KEY, 1, 410.0, 0.0, now=110.0) == 0.0
    # Counts unknown (statistics not in): neither empty nor a head.
    assert bounds.observe(KEY, None, 410.0, 0.0, now=150.0) == 0.0
    assert bounds.observe(KEY, 1, 410.0, 0.0, now=160.0) == 50.0
    assert bounds.observe(KEY, 1, 50.0, 250.0, now=300.0) == 300.0 - 105.0 + 6.0


def test_memory_is_one_entry_per_level_of_a_watched_queue():
    bounds = HeadBounds()
    for queue in ("a", "b"):
        for level in ("0", "1"):
            bounds.observe((queue, level), 0, None, None, now=1.0)
    bounds.observe(("c", None), 1, 5.0, 1.0, now=6.0)
    assert len(bounds) == 5
    bounds.forget_except({"b", "c"})
    assert len(bounds) == 3
    bounds.forget_except(set())
    assert len(bounds) == 0
    with pytest.raises(ValueError):
        HeadBounds(slack_seconds=-1.0)


# --- a skewed producer on a real RabbitMQ -----------------------------------------------------


@dataclass
class Watch:
    """The real inspector on the real broker, its clock recorded at every inspection."""

    inspector: RabbitMQInspector
    queue: str
    level: str | None
    now: float = 0.0
    #: (clock, messages, age) of every inspection of the level, management API readings only.
    seen: list[tuple[float, int, float | None]] = field(default_factory=list)

    def inspect(self) -> tuple[float, int, float | None] | None:
        self.now = time.time()
        snapshot = self.inspector.inspect()
        if not snapshot.management_api_up or self.queue in self.inspector.management.stats_pending:
            return None
        found = [r for r in snapshot.levels if r.queue == self.queue and r.priority == self.level]
        if not found:
            return None
        reading = (self.now, found[0].messages, found[0].oldest_age_seconds)
        self.seen.append(reading)
        return reading

    def last_empty(self) -> float:
        """t0: the clock of the last inspection that saw the level empty."""
        return max(now for now, messages, _ in self.seen if messages == 0)


@pytest.fixture
def watch(rabbitmq_generation: RabbitMQGeneration, generation_vhost: str) -> Iterator[Watch]:
    """An empty classic priority queue (x-max-priority 9, as tests/apps/events_app.py declares
    it) watched by the inspector until it has been seen empty with its full statistics."""
    url = rabbitmq_generation.url(generation_vhost)
    queue = "skewed"
    connection = pika.BlockingConnection(pika.URLParameters(pika_url(url)))
    try:
        connection.channel().queue_declare(queue, durable=True, arguments={"x-max-priority": 9})
    finally:
        connection.close()
    # 3.10 reports per-level counts (the head's age on level "0"); 4.0 the total only.
    level = "0" if rabbitmq_generation.version().startswith("3.") else None
    broker = new_broker(
        "r", url, queues=[queue], discover_queues=False,
        management_url=rabbitmq_generation.management_url,
    )  # fmt: skip
    state = Watch(RabbitMQInspector(broker, timeout_seconds=10), queue, level)
    state.inspector.clock = lambda: state.now
    try:
        wait_for(lambda: (r := state.inspect()) and r[1] == 0, timeout=30, what="empty queue")
        yield state
    finally:
        state.inspector.close()


def head_stamp(generation: RabbitMQGeneration, vhost: str, queue: str) -> float:
    """The head_message_timestamp the management API reports now (the producer's clock)."""
    reply = requests.get(
        f"{generation.management_api}/queues/{vhost}/{queue}", auth=GUEST, timeout=10
    )
    reply.raise_for_status()
    return float(reply.json()["head_message_timestamp"])


def publish(watch: Watch, url: str, skew: int, count: int) -> tuple[float, float]:
    """``count`` tasks from a producer ``skew`` seconds off, and no consumer; returns when the
    producer started and when it was done (the real clock)."""
    started = time.time()
    producer = skewed_producer(url, watch.queue, skew_seconds=skew, host="skewed", count=count,
                               every=0.0, sent_event=False)  # fmt: skip
    try:
        assert producer.stdout is not None
        assert producer.stdout.read().splitlines()[-1] == "done"
        assert producer.wait(timeout=30) == 0
    finally:
        stop_process(producer)
    return started, time.time()


def first_age(watch: Watch, count: int) -> tuple[float, float]:
    """Inspect until the level holds ``count`` messages and reports its head's age: (now, age)."""
    reading = wait_for(
        lambda: (r := watch.inspect()) and r[1] == count and r[2] is not None and r,
        timeout=30,
        interval=0.5,
        what=f"{count} messages and a head age",
    )
    return reading[0], reading[2]


@pytest.mark.rabbitmq
@pytest.mark.subprocess
def test_producer_5_minutes_behind_reads_at_most_since_the_queue_was_seen_empty(
    watch, rabbitmq_generation, generation_vhost
):
    started, done = publish(watch, rabbitmq_generation.url(generation_vhost), -300, 3)
    now, age = first_age(watch, 3)
    t0 = watch.last_empty()
    stamp = head_stamp(rabbitmq_generation, generation_vhost, watch.queue)
    # The stamp (whole seconds) is 5 minutes behind the publish; the exporter saw the queue
    # empty at t0, a few seconds ago.
    assert started - 301.0 <= stamp <= done - 300.0, (started, stamp, done)
    assert age == now - t0 + STATS_SLACK_SECONDS, (age, now, t0)
    assert age < 60.0, age  # far from any age page
    for _ in range(3):
        time.sleep(1.0)
        later, messages, later_age = watch.inspect() or (0.0, -1, None)
        assert messages == 3
        assert later_age == later - t0 + STATS_SLACK_SECONDS
    assert watch.inspector.management.head_bounds.clamped == 4


@pytest.mark.rabbitmq
@pytest.mark.subprocess
def test_producer_5_minutes_ahead_cannot_hide_a_backlog_the_exporter_watched(
    watch, rabbitmq_generation, generation_vhost
):
    started, done = publish(watch, rabbitmq_generation.url(generation_vhost), 300, 3)
    t1, age = first_age(watch, 3)
    stamp = head_stamp(rabbitmq_generation, generation_vhost, watch.queue)
    # The stamp (whole seconds) is 5 minutes ahead of the publish: in the future, its age
    # reads 0, and so does the first sighting.
    assert started + 299.0 <= stamp <= done + 300.0, (started, stamp, done)
    assert age == 0.0
    ages = []
    for _ in range(3):
        time.sleep(1.0)
        now, messages, later_age = watch.inspect() or (0.0, -1, None)
        assert messages == 3
        # The same head since t1: it has waited at least that long, on the exporter's clock.
        assert later_age == now - t1, (later_age, now, t1)
        ages.append(later_age)
    assert ages == sorted(ages) and ages[0] > 0.0, ages
    assert watch.inspector.management.head_bounds.clamped == 3
