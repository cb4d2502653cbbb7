"""Pure tests of the clock-offset estimate (events/clock.py) and of the corrections it feeds:
the tracker's waits and the Redis inspector's head ages. The same paths run with a producer
whose clock is really skewed (libfaketime) in test_clock_skew_redis.py and, in a real
Prometheus, in test_oncall_scenarios.py."""

from __future__ import annotations

import json

import pytest

from celery_queue_exporter.brokers.redis.inspector import _decode_head
from celery_queue_exporter.brokers.redis.priority import step_levels
from celery_queue_exporter.config import EventSettings
from celery_queue_exporter.events.clock import ClockOffsets, host_of
from celery_queue_exporter.events.tracker import SKEW_DEAD_BAND_SECONDS, EventTracker
from celery_queue_exporter.instrumentation import (
    ATTEMPT_AT_HEADER,
    ENQUEUED_AT_HEADER,
    PRODUCER_HEADER,
    TASK_INFO_EVENT,
    producer_of,
)


class Clock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_host_of_takes_the_machine_part_of_a_node_name():
    assert host_of("celery@web1") == "web1"
    assert host_of("gen42@web1") == "web1"
    assert host_of("a@b@c") == "c"
    assert host_of("plain") == "plain"
    assert [host_of(v) for v in (None, "", "x@", 3)] == [None, None, None, None]


def test_offset_is_the_largest_stamp_minus_receipt_of_the_window():
    clocks = ClockOffsets(max_hosts=4, window_seconds=300, buckets=5)
    # A host 300 s behind; transits of 0.5, 0.02 and 3 s.
    for received, transit in ((1000.0, 0.5), (1002.0, 0.02), (1004.0, 3.0)):
        clocks.observe("skewed", received - 300.0 - transit, received)
    assert clocks.offset("skewed", 1004.0) == pytest.approx(-300.02)
    # A host 300 s ahead.
    clocks.observe("ahead", 1300.25, 1000.0)
    assert clocks.offset("ahead", 1000.0) == pytest.approx(300.25)
    assert clocks.offset("unknown", 1000.0) is None
    assert clocks.offsets(1004.0) == pytest.approx({"skewed": -300.02, "ahead": 300.25})
    assert clocks.to_exporter_clock("skewed", 700.0, 1004.0) == pytest.approx(1000.02)
    assert clocks.to_exporter_clock("unknown", 700.0, 1004.0) == 700.0


def test_a_stepped_clock_is_followed_within_one_window():
    clocks = ClockOffsets(max_hosts=1, window_seconds=300, buckets=5)
    clocks.observe("h", 1000.0 + 120.0, 1000.0)  # 120 s ahead
    clocks.observe("h", 1200.0 + 0.1, 1200.0)  # chrony stepped it back to +0.1
    assert clocks.offset("h", 1200.0) == pytest.approx(120.0)  # still in the window
    clocks.observe("h", 1300.0 + 0.1, 1300.0)
    assert clocks.offset("h", 1300.0) == pytest.approx(0.1)  # the 120 s bucket left it
    assert clocks.offset("h", 1700.0) is None  # silent for a whole window: unknown


def test_hosts_are_capped_and_a_silent_host_frees_its_place():
    clocks = ClockOffsets(max_hosts=2, window_seconds=60, buckets=2)
    clocks.observe("a", 1000.0, 1000.0)
    clocks.observe("b", 1000.0, 1000.0)
    clocks.observe("c", 1000.0, 1000.0)
    assert set(clocks.offsets(1000.0)) == {"a", "b"} and clocks.hosts_dropped == 1
    clocks.observe("b", 1050.0, 1050.0)
    clocks.observe("c", 1075.0, 1075.0)  # "a" silent for a window: "c" takes its place
    assert set(clocks.offsets(1075.0)) == {"b", "c"} and clocks.hosts_dropped == 1
    # A flood of made-up host names (a hostile publisher) is counted, never kept.
    for number in range(10_000):
        clocks.observe(f"flood{number}", 1076.0, 1076.0)
    assert set(clocks.offsets(1076.0)) == {"b", "c"} and clocks.hosts_dropped == 10_001


def test_bad_samples_are_ignored():
    clocks = ClockOffsets(max_hosts=2)
    for stamp in (None, "1000", True, float("nan"), float("inf")):
        clocks.observe("h", stamp, 1000.0)
    clocks.observe(None, 1000.0, 1000.0)
    assert clocks.offsets(1000.0) == {}
    with pytest.raises(ValueError):
        ClockOffsets(max_hosts=1, window_seconds=0)


def tracker(clock: Clock) -> EventTracker:
    return EventTracker(
        "b", EventSettings(max_workers=8), priority_level=step_levels(), clock=clock
    )


def heartbeat(host: str, stamp: float) -> dict:
    return {"type": "worker-heartbeat", "hostname": f"celery@{host}", "timestamp": stamp,
            "active": 0, "processed": 0, "freq": 2.0}  # fmt: skip


@pytest.mark.parametrize("skew", [-300.0, 300.0])
def test_a_wait_from_a_skewed_producer_is_corrected(skew):
    """Producer ``skew`` s off, worker in sync: the task waited 2 s, read 2 s (not 302 / 0)."""
    clock = Clock(10_000.0)
    t = tracker(clock)
    t.handle([heartbeat("worker", 10_000.0 - 0.01)])
    published = 10_000.0 + skew  # producer clock at the true publish time 10 000
    clock.now = 10_000.05
    t.handle(
        [
            {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q",
             "hostname": "gen7@producer", "timestamp": published, "retries": 0},
            {"type": TASK_INFO_EVENT, "uuid": "a", "queue": "q", "priority": 0, "retries": 0,
             "hostname": "celery@worker", "timestamp": 10_000.04, "producer": "producer",
             "enqueued_at": published, "attempt_at": published},
        ]
    )  # fmt: skip
    clock.now = 10_002.05
    t.handle([{"type": "task-started", "uuid": "a", "hostname": "celery@worker",
               "timestamp": 10_002.0}])  # fmt: skip
    snap = t.snapshot()
    assert snap.clock_offsets == pytest.approx({"worker": -0.01, "producer": skew - 0.05})
    ((buckets, total),) = snap.queue_wait.values()
    # 2 s true wait, read 2 s minus the producer's fastest transit (0.05) + worker's (0.01).
    assert total == pytest.approx(2.0 - 0.05 + 0.01)
    assert snap.clock_skew_clamped == 0


def test_the_worker_receipt_of_a_stamped_message_estimates_a_producer_without_events():
    """No task-sent (task_send_sent_event off): the install(app) stamp against the worker's
    receipt (worker clock, corrected by its heartbeats) bounds the producer's offset."""
    clock = Clock(10_000.0)
    t = tracker(clock)
    t.handle([heartbeat("worker", 10_000.0 - 0.5)])  # worker 0.5 s behind (minus transit)
    clock.now = 10_001.0
    t.handle(
        [{"type": TASK_INFO_EVENT, "uuid": "a", "queue": "q", "priority": 0, "retries": 0,
          "hostname": "celery@worker", "timestamp": 10_000.2 - 0.5, "producer": "p",
          "attempt_at": 10_000.1 - 300.0}]
    )  # fmt: skip
    # Stamped 9 700.1 (300 s behind), received by the worker at 10 000.2 on the exporter's
    # clock: the offset less the 0.1 s the message waited.
    assert t.clock_offset("p") == pytest.approx(-300.1)
    assert t.clock_offset("worker") == pytest.approx(-0.5)


def test_a_countdown_task_gives_no_producer_sample():
    """A countdown or ETA run starts when due, not when published: its task-info event (sent as
    it starts) would read the producer as far behind as the countdown. Seen as clamped waits on
    a loaded machine (tests/test_waits_rabbitmq.py's countdown scenario)."""
    clock = Clock(10_000.0)
    t = tracker(clock)
    t.handle([heartbeat("worker", 10_000.0)])
    clock.now = 10_010.0
    t.handle(
        [{"type": TASK_INFO_EVENT, "uuid": "a", "queue": "q", "priority": 0, "retries": 0,
          "hostname": "celery@worker", "timestamp": 10_010.0, "producer": "p",
          "attempt_at": 10_000.0, "eta": 10_010.0}]
    )  # fmt: skip
    assert t.clock_offset("p") is None


def test_without_both_offsets_the_wait_is_left_as_measured():
    clock = Clock(10_000.0)
    t = tracker(clock)
    t.handle([heartbeat("worker", 10_000.0 - 300.0)])  # only the worker is known
    t.handle(
        [
            {"type": TASK_INFO_EVENT, "uuid": "a", "queue": "q", "priority": 0, "retries": 0,
             "attempt_at": 9_500.0},
            {"type": "task-started", "uuid": "a", "hostname": "celery@worker",
             "timestamp": 9_703.0},
        ]
    )  # fmt: skip
    ((_buckets, total),) = t.snapshot().queue_wait.values()
    assert total == pytest.approx(203.0)


def message(headers: dict) -> bytes:
    return json.dumps({"body": "", "headers": headers, "properties": {}}).encode()


def test_the_head_names_its_producer():
    head = _decode_head(
        message({ENQUEUED_AT_HEADER: 1.0, ATTEMPT_AT_HEADER: 2.0, PRODUCER_HEADER: "web1"})
    )
    assert (head.stamp, head.producer, head.malformed) == (2.0, "web1", 0)
    assert _decode_head(message({ATTEMPT_AT_HEADER: 2.0})).producer is None
    assert producer_of({PRODUCER_HEADER: 7}) is None and producer_of(None) is None


def test_a_clock_difference_within_the_dead_band_is_not_corrected():
    """Offsets a few seconds apart are transit noise on a busy exporter (seen: sub-second
    countdown lateness corrected to below 0 and clamped): waits are left as measured."""
    clock = Clock(10_000.0)
    t = tracker(clock)
    t.handle([heartbeat("worker", 10_000.0)])  # worker: offset 0
    t.handle(
        [{"type": "task-sent", "uuid": "a", "name": "n", "queue": "q", "hostname": "gen@p",
          "timestamp": 10_000.0 - 3.0}]
    )  # fmt: skip
    assert t.clock_offset("p") == pytest.approx(-3.0)
    assert abs(t.clock_offset("p") - t.clock_offset("worker")) < SKEW_DEAD_BAND_SECONDS
    assert t._skew({"hostname": "celery@worker"}, t._tasks["a"], clock.now) == 0.0
