"""Unit tests of the pure event logic (decoding, joining, bounds); the real-broker paths are
covered by test_events_redis.py and test_events_rabbitmq.py."""

from __future__ import annotations

import base64
import json

import pytest

from celery_queue_exporter.brokers.rabbitmq.priority import rabbitmq_priority_level
from celery_queue_exporter.brokers.redis.priority import redis_priority_level, step_levels
from celery_queue_exporter.catalogue import OTHER_QUEUE, OTHER_TASK, OTHER_WORKER, UNKNOWN_QUEUE
from celery_queue_exporter.config import EventSettings
from celery_queue_exporter.events.decode import (
    MalformedEvent,
    decode_json_body,
    decode_redis_payload,
)
from celery_queue_exporter.events.tracker import UNKNOWN_TASK, EventTracker, time_limit_kind
from celery_queue_exporter.instrumentation import TASK_INFO_EVENT, WORKER_QUEUES_EVENT


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def envelope(body: object, encoding: str = "base64") -> bytes:
    raw = json.dumps(body).encode()
    return json.dumps(
        {
            "body": base64.b64encode(raw).decode() if encoding == "base64" else raw.decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": "w@h"},
            "properties": {"body_encoding": encoding, "delivery_info": {"exchange": "celeryev"}},
        }
    ).encode()


def test_decode_single_and_batched_events():
    one = {"type": "task-started", "uuid": "a"}
    assert decode_redis_payload(envelope(one)) == [one]
    assert decode_redis_payload(envelope([one, one])) == [one, one]
    assert decode_json_body(json.dumps([one]).encode(), "application/json") == [one]


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"body": 5}).encode(),
        json.dumps({"body": "!!!notbase64", "properties": {"body_encoding": "base64"}}).encode(),
        json.dumps({"body": "ew==", "properties": {"body_encoding": "base64"}}).encode(),
        json.dumps({"body": "x", "content-type": "application/x-python-serialize"}).encode(),
        envelope(42),
    ],
)  # fmt: skip
def test_decode_rejects_malformed(payload):
    with pytest.raises(MalformedEvent):
        decode_redis_payload(payload)


def test_time_limit_detection():
    assert time_limit_kind("SoftTimeLimitExceeded()") == "soft"
    assert time_limit_kind("TimeLimitExceeded(5,)") == "hard"
    hard_tb = "Traceback...\nbilliard.exceptions.TimeLimitExceeded: TimeLimitExceeded(0.5,)\n"
    assert time_limit_kind("ExceptionWithTraceback()", hard_tb) == "hard"
    assert time_limit_kind("ValueError('boom')", "Traceback\nValueError: boom\n") is None
    assert time_limit_kind(None) is None


def test_priority_levels_match_the_broker():
    steps = (0, 3, 6, 9)
    assert [redis_priority_level(p, steps) for p in (None, 0, 2, 3, 5, 9, 42, "x")] == [
        "0", "0", "0", "3", "3", "9", "9", "0",
    ]  # fmt: skip
    assert rabbitmq_priority_level(7, 5) == "5"
    assert rabbitmq_priority_level(None, 9) == "0"
    assert rabbitmq_priority_level(3, None) == "3"


def tracker(clock: Clock, **settings) -> EventTracker:
    return EventTracker("b", EventSettings(**settings), priority_level=step_levels(), clock=clock)


def test_wait_per_priority_from_the_hook_and_fallback_from_task_sent():
    clock = Clock()
    t = tracker(clock, wait_buckets=(1.0, 5.0))
    t.handle(
        [
            {"type": TASK_INFO_EVENT, "uuid": "a", "name": "n", "queue": "q", "priority": 5,
             "enqueued_at": 100.0, "hostname": "w"},
            {"type": "task-received", "uuid": "a", "name": "n", "timestamp": 101.0},
            {"type": "task-started", "uuid": "a", "timestamp": 103.0},
            {"type": "task-succeeded", "uuid": "a", "runtime": 0.5, "timestamp": 103.5},
            {"type": "task-sent", "uuid": "b", "name": "n", "queue": "q", "timestamp": 200.0},
            {"type": "task-received", "uuid": "b", "name": "n", "timestamp": 200.1},
            {"type": "task-started", "uuid": "b", "timestamp": 200.5},
        ]
    )  # fmt: skip
    snap = t.snapshot()
    assert snap.queue_wait == {("q", "3"): ([0, 1, 1], 3.0), ("q", None): ([1, 1, 1], 0.5)}
    assert snap.task_wait == {("q", "n"): ([1, 2, 2], 3.5)}
    assert snap.task_counts[("received", "q", "n")] == 2
    assert snap.task_counts[("succeeded", "q", "n")] == 1
    assert snap.tracked_tasks == 1  # b is still running
    assert snap.clock_skew_clamped == 0


def test_negative_and_absurd_waits_are_clamped_and_counted():
    clock = Clock()
    t = tracker(clock, max_wait_seconds=1000.0, wait_buckets=(1.0,))
    t.handle(
        [
            {"type": TASK_INFO_EVENT, "uuid": "a", "queue": "q", "enqueued_at": 100.0},
            {"type": "task-started", "uuid": "a", "timestamp": 99.0},
            {"type": TASK_INFO_EVENT, "uuid": "b", "queue": "q", "enqueued_at": 100.0},
            {"type": "task-started", "uuid": "b", "timestamp": 100.0 + 10**9},
        ]
    )
    snap = t.snapshot()
    assert snap.clock_skew_clamped == 2
    assert snap.queue_wait[("q", "0")] == ([1, 2], 1000.0)


def test_duplicate_final_events_count_once_and_time_limits_apart():
    t = tracker(Clock())
    hard = {
        "type": "task-failed",
        "uuid": "h",
        "exception": "ExceptionWithTraceback()",
        "traceback": "x\nbilliard.exceptions.TimeLimitExceeded: TimeLimitExceeded(1,)",
    }
    t.handle(
        [
            {"type": "task-received", "uuid": "h", "name": "n"},
            hard,
            hard,
            {"type": "task-received", "uuid": "s", "name": "n"},
            {"type": "task-failed", "uuid": "s", "exception": "SoftTimeLimitExceeded()"},
            {"type": "task-received", "uuid": "f", "name": "n"},
            {"type": "task-failed", "uuid": "f", "exception": "ValueError('x')"},
        ]
    )
    snap = t.snapshot()
    assert snap.time_limits == {(UNKNOWN_QUEUE, "n", "hard"): 1, (UNKNOWN_QUEUE, "n", "soft"): 1}
    assert snap.task_counts[("failed", UNKNOWN_QUEUE, "n")] == 1
    assert not any(kind == "failed" and task == UNKNOWN_TASK for kind, _, task in snap.task_counts)


def test_task_names_capped_or_allow_listed():
    t = tracker(Clock(), max_task_names=2)
    t.handle([{"type": "task-received", "uuid": str(i), "name": f"t{i}"} for i in range(4)])
    assert {task for _, _, task in t.snapshot().task_counts} == {"t0", "t1", OTHER_TASK}
    t = tracker(Clock(), task_names=["t3"])
    t.handle([{"type": "task-received", "uuid": str(i), "name": f"t{i}"} for i in range(4)])
    counts = t.snapshot().task_counts
    assert counts == {
        ("received", UNKNOWN_QUEUE, OTHER_TASK): 3,
        ("received", UNKNOWN_QUEUE, "t3"): 1,
    }


def test_queue_names_capped_everywhere_a_queue_label_comes_from():
    clock = Clock()
    t = tracker(clock, max_queue_names=2, wait_buckets=(1.0,))
    t.handle(
        [
            {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q0", "timestamp": 10.0},
            {"type": "task-sent", "uuid": "b", "name": "n", "routing_key": "q1"},
            {"type": "task-sent", "uuid": "c", "name": "n", "queue": "q2", "timestamp": 10.0},
            {"type": "task-sent", "uuid": "d", "name": "n", "queue": "q3"},
            {"type": "task-sent", "uuid": "e", "name": "n", "queue": "q0"},
            {"type": "task-sent", "uuid": "f", "name": "n"},  # no queue: not a new name
            {"type": "task-started", "uuid": "c", "timestamp": 10.5},
            {"type": TASK_INFO_EVENT, "uuid": "g", "name": "n", "queue": "q4", "priority": 0,
             "enqueued_at": 20.0, "hostname": "w"},
            {"type": "task-started", "uuid": "g", "timestamp": 20.5},
            {"type": "worker-online", "hostname": "w"},
            {"type": WORKER_QUEUES_EVENT, "hostname": "w", "queues": ["q1", "q5", "q6", ""]},
        ]
    )  # fmt: skip
    snap = t.snapshot()
    assert {(q, n): c for (kind, q, n), c in snap.task_counts.items() if kind == "sent"} == {
        ("q0", "n"): 2,
        ("q1", "n"): 1,
        (OTHER_QUEUE, "n"): 2,
        (UNKNOWN_QUEUE, "n"): 1,
    }
    assert snap.task_counts[("started", OTHER_QUEUE, "n")] == 2
    assert snap.queue_wait == {
        (OTHER_QUEUE, None): ([1, 1], 0.5),
        (OTHER_QUEUE, "0"): ([1, 1], 0.5),
    }
    assert snap.queue_workers == {"q1": 1, OTHER_QUEUE: 1}


def test_workers_capped_the_rest_folded_into_one_series():
    clock = Clock()
    t = tracker(clock, max_workers=2, heartbeat_timeout_seconds=10, worker_retention_seconds=100)
    heartbeat = {"type": "worker-heartbeat", "active": 3, "processed": 9, "loadavg": [0.7]}
    t.handle([{**heartbeat, "hostname": f"w{i}"} for i in range(1, 5)])
    t.handle(
        [
            {"type": WORKER_QUEUES_EVENT, "hostname": "w1", "queues": ["q1"]},
            {"type": WORKER_QUEUES_EVENT, "hostname": "w3", "queues": ["q3"]},
            {"type": WORKER_QUEUES_EVENT, "hostname": "w4", "queues": ["q3", "q4"]},
            {"type": TASK_INFO_EVENT, "uuid": "a", "name": "n", "queue": "q5", "hostname": "w4"},
            {"type": "worker-offline", "hostname": "w3"},  # w4 still alive: (other) stays up
        ]
    )  # fmt: skip
    snap = t.snapshot()
    assert [(w.worker, w.up, w.active, w.processed, w.load1) for w in snap.workers] == [
        ("w1", True, 3.0, 9.0, 0.7),
        ("w2", True, 3.0, 9.0, 0.7),
        (OTHER_WORKER, True, None, None, None),
    ]
    assert snap.queue_workers == {"q1": 1, "q3": 1, "q4": 1, "q5": 1}
    clock.now += 50
    t.handle([{**heartbeat, "hostname": "w2"}])
    snap = t.snapshot()
    assert [(w.worker, w.up) for w in snap.workers] == [
        ("w1", False), ("w2", True), (OTHER_WORKER, False),
    ]  # fmt: skip
    assert snap.queue_workers == {"q1": 0, "q3": 0, "q4": 0, "q5": 0}
    clock.now += 51  # w1 and the folded workers silent past the retention: dropped
    t.handle([{**heartbeat, "hostname": "w2"}, {**heartbeat, "hostname": "w3"}])
    snap = t.snapshot()
    assert [(w.worker, w.up, w.active) for w in snap.workers] == [
        ("w2", True, 3.0), ("w3", True, 3.0),  # w1's slot freed: w3 exported on its own
    ]  # fmt: skip
    t.handle([{**heartbeat, "hostname": "w4"}])
    assert [w.worker for w in t.snapshot().workers] == ["w2", "w3", OTHER_WORKER]


def test_join_state_bounded_in_size_and_age():
    clock = Clock()
    t = tracker(clock, max_tracked_tasks=1000, max_task_age_seconds=60)
    batch = [
        {"type": "task-sent", "uuid": f"id-{i}", "name": "n", "queue": "q"} for i in range(5000)
    ]
    t.handle(batch)
    assert t.snapshot().tracked_tasks == 1000
    clock.now += 61
    assert t.snapshot().tracked_tasks == 0
    assert t.snapshot().task_counts[("sent", "q", "n")] == 5000


def test_worker_down_after_timeout_kept_for_retention_then_dropped():
    clock = Clock()
    t = tracker(clock, heartbeat_timeout_seconds=10, worker_retention_seconds=100)
    t.handle(
        [
            {"type": "worker-heartbeat", "hostname": "w1", "active": 2, "processed": 7,
             "loadavg": [0.5, 0.1, 0.1]},
            {"type": WORKER_QUEUES_EVENT, "hostname": "w1", "queues": ["q1", "q2"]},
            {"type": "worker-online", "hostname": "w2"},
        ]
    )  # fmt: skip
    snap = t.snapshot()
    assert [(w.worker, w.up, w.active, w.processed, w.load1) for w in snap.workers] == [
        ("w1", True, 2.0, 7.0, 0.5),
        ("w2", True, None, None, None),
    ]
    assert snap.queue_workers == {"q1": 1, "q2": 1}
    clock.now += 10.5
    t.handle([{"type": "worker-offline", "hostname": "w2"}])
    snap = t.snapshot()
    assert [(w.worker, w.up) for w in snap.workers] == [("w1", False), ("w2", False)]
    assert snap.queue_workers == {"q1": 0, "q2": 0}
    clock.now += 89  # w1 silent for 99.5 s: still exported as down
    assert [w.worker for w in t.snapshot().workers] == ["w1", "w2"]
    clock.now += 1
    assert [w.worker for w in t.snapshot().workers] == ["w2"]


def test_malformed_events_counted_and_skipped():
    t = tracker(Clock())
    t.handle([42, {"no": "type"}, {"type": "task-started", "uuid": ["not", "hashable"]}], 2)
    t.handle([{"type": "task-received", "uuid": "a", "name": "n"}])
    snap = t.snapshot()
    assert snap.malformed == 2 + 3
    assert snap.events_received == 1
    assert snap.task_counts == {("received", UNKNOWN_QUEUE, "n"): 1}


def test_non_finite_numbers_never_reach_a_histogram():
    """The stdlib JSON fallback accepts NaN and Infinity; one such event must not poison a
    histogram's sum for good."""
    t = tracker(Clock(), wait_buckets=(1.0,), runtime_buckets=(1.0,))
    nan, inf = float("nan"), float("inf")
    t.handle(
        [
            {"type": TASK_INFO_EVENT, "uuid": "a", "name": "n", "queue": "q", "enqueued_at": nan},
            {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q", "timestamp": 10.0},
            {"type": "task-started", "uuid": "a", "timestamp": 10.5, "hostname": "w"},
            {"type": "task-succeeded", "uuid": "a", "runtime": inf, "timestamp": 11.0},
        ]
    )  # fmt: skip
    snap = t.snapshot()
    # The NaN stamp is ignored: the wait falls back to task-sent, without a priority level.
    assert snap.queue_wait == {("q", None): ([1, 1], 0.5)}
    assert snap.task_wait == {("q", "n"): ([1, 1], 0.5)}
    assert snap.runtime == {}


def test_plain_celery_events_tell_which_queues_a_worker_consumes():
    """Without install(app) on workers, a worker's queues come from the tasks it starts."""
    t = tracker(Clock())
    t.handle(
        [
            {"type": "worker-heartbeat", "hostname": "w1", "active": 0, "processed": 0},
            {"type": "worker-heartbeat", "hostname": "w2", "active": 0, "processed": 0},
            {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q", "timestamp": 1.0},
            {"type": "task-started", "uuid": "a", "hostname": "w1", "timestamp": 2.0},
        ]
    )  # fmt: skip
    assert t.snapshot().queue_workers == {"q": 1}


def test_graceful_offline_exported_for_the_grace_then_dropped_lost_kept():
    clock = Clock()
    t = tracker(
        clock, heartbeat_timeout_seconds=10, worker_retention_seconds=100,
        worker_offline_grace_seconds=20,
    )  # fmt: skip
    t.handle(
        [
            {"type": "worker-heartbeat", "hostname": "gone", "active": 1, "processed": 4},
            {"type": WORKER_QUEUES_EVENT, "hostname": "gone", "queues": ["q1"], "pool_size": 2},
            {"type": "worker-heartbeat", "hostname": "lost", "active": 0, "processed": 0},
            {"type": WORKER_QUEUES_EVENT, "hostname": "lost", "queues": ["q2"], "pool_size": 4},
        ]
    )  # fmt: skip
    clock.now += 5
    t.handle([{"type": "worker-offline", "hostname": "gone"}])
    snap = t.snapshot()
    assert [(w.worker, w.up, w.offline) for w in snap.workers] == [
        ("gone", False, True), ("lost", True, False),
    ]  # fmt: skip
    assert snap.queue_workers == {"q1": 0, "q2": 1}
    assert snap.queue_slots == {"q2": (4.0, 0.0)}
    clock.now += 19.5  # 19.5 s after worker-offline: still exported as offline
    snap = t.snapshot()
    assert [(w.worker, w.up, w.offline) for w in snap.workers] == [
        ("gone", False, True), ("lost", False, False),  # lost: no heartbeat for 24.5 s
    ]  # fmt: skip
    assert snap.queue_workers == {"q1": 0, "q2": 0}
    clock.now += 0.5  # the grace is over: every series of the offline worker goes
    snap = t.snapshot()
    assert [(w.worker, w.up, w.offline) for w in snap.workers] == [("lost", False, False)]
    assert snap.queue_workers == {"q2": 0}
    assert snap.queue_slots == {}
    clock.now += 75  # the lost one stays for the retention (100 s since its last heartbeat)
    assert [w.worker for w in t.snapshot().workers] == ["lost"]
    clock.now += 1
    assert t.snapshot().workers == []


def test_a_worker_back_after_offline_is_up_and_no_longer_offline():
    clock = Clock()
    t = tracker(clock, heartbeat_timeout_seconds=10, worker_offline_grace_seconds=20)
    t.handle(
        [{"type": "worker-online", "hostname": "w"}, {"type": "worker-offline", "hostname": "w"}]
    )
    assert [(w.up, w.offline) for w in t.snapshot().workers] == [(False, True)]
    clock.now += 5
    t.handle([{"type": "worker-online", "hostname": "w"}])
    assert [(w.up, w.offline) for w in t.snapshot().workers] == [(True, False)]
    clock.now += 30  # not dropped at the old grace's end: lost now, kept for the retention
    assert [(w.up, w.offline) for w in t.snapshot().workers] == [(False, False)]
    t.handle([{"type": "worker-offline", "hostname": "w"}])
    clock.now += 5
    t.handle([{"type": "worker-heartbeat", "hostname": "w"}])
    assert [(w.up, w.offline) for w in t.snapshot().workers] == [(True, False)]


def test_live_workers_without_announced_queues_are_counted():
    clock = Clock()
    t = tracker(clock, max_workers=2, heartbeat_timeout_seconds=10)
    t.handle(
        [
            {"type": "worker-heartbeat", "hostname": "w1"},
            {"type": WORKER_QUEUES_EVENT, "hostname": "w1", "queues": ["q"]},
            {"type": "worker-heartbeat", "hostname": "w2"},  # no install(app)
        ]
    )
    assert t.snapshot().queues_unknown == 1
    t.handle([{"type": "worker-heartbeat", "hostname": "w3"}])  # folded into (other)
    assert t.snapshot().queues_unknown == 2
    t.handle([{"type": WORKER_QUEUES_EVENT, "hostname": "w3", "queues": ["q"]}])
    assert t.snapshot().queues_unknown == 1  # (other): one of its workers announced
    t.handle([{"type": "worker-offline", "hostname": "w2"}])
    assert t.snapshot().queues_unknown == 0  # only live workers count
    clock.now += 11  # the rest lost too, (other)'s announcement is stale
    assert t.snapshot().queues_unknown == 0
    t.handle([{"type": "worker-heartbeat", "hostname": "w4"}])
    assert t.snapshot().queues_unknown == 1  # (other) up again, no fresh announcement


def test_a_starting_worker_is_not_counted_before_its_first_heartbeat():
    """install(app) announces the queues before each heartbeat, but not with worker-online
    (the worker's consumer is not ready then): a worker just online is not yet known to lack
    it. One that sends a heartbeat without an announcement is."""
    t = tracker(Clock(), heartbeat_timeout_seconds=10)
    t.handle([{"type": "worker-online", "hostname": "installed"}])
    t.handle([{"type": "worker-online", "hostname": "plain"}])
    assert [w.up for w in t.snapshot().workers] == [True, True]
    assert t.snapshot().queues_unknown == 0
    t.handle(
        [
            {"type": WORKER_QUEUES_EVENT, "hostname": "installed", "queues": ["q"]},
            {"type": "worker-heartbeat", "hostname": "installed"},
            {"type": "worker-heartbeat", "hostname": "plain"},
        ]
    )
    assert t.snapshot().queues_unknown == 1  # plain: a heartbeat, no announcement before it


def info(uuid: str, priority: int | None, retries: int = 0, **extra) -> dict:
    return {"type": TASK_INFO_EVENT, "uuid": uuid, "name": "n", "queue": "q", "hostname": "w",
            "priority": priority, "retries": retries, **extra}  # fmt: skip


def test_received_by_priority_counts_each_run_once_at_its_level():
    t = tracker(Clock())  # Redis steps 0, 3, 6, 9
    t.handle(
        [
            info("a", 0), info("a", 0),  # the same run announced twice: once
            {"type": "task-received", "uuid": "a", "name": "n", "retries": 0},
            {"type": "task-started", "uuid": "a"},
            {"type": "task-retried", "uuid": "a"},
            info("a", 0, retries=1),  # the retry is a run of its own
            info("b", 5), info("c", 9), info("d", None),
        ]
    )  # fmt: skip
    snap = t.snapshot()
    assert snap.received_by_priority == {("q", "n", "0"): 3, ("q", "n", "3"): 1, ("q", "n", "9"): 1}
    assert t.levels_in_use() == {"q": {"0", "3", "9"}}


def test_received_by_priority_skips_unknown_levels_and_caps_queues():
    levels = {1: "1", 2: None, 3: "(unknown)"}
    t = EventTracker(
        "b", EventSettings(max_queue_names=1), clock=Clock(),
        priority_level=lambda priority, _max: levels.get(priority),
    )  # fmt: skip
    t.handle(
        [
            info("a", 1), info("b", 2), info("c", 3),
            info("d", 1, queue="q2"),
            {**info("e", 1), "queue": None},
        ]
    )  # fmt: skip
    assert t.snapshot().received_by_priority == {
        ("q", "n", "1"): 1, (OTHER_QUEUE, "n", "1"): 1, (UNKNOWN_QUEUE, "n", "1"): 1,
    }  # fmt: skip
    assert t.levels_in_use() == {"q": {"1"}}


def test_levels_last_seen_tells_when_each_level_was_last_received():
    """The urgency marks forget a level not used for urgency_memory_seconds: the tracker
    keeps when a task was last received at each level (its own clock)."""
    clock = Clock()
    t = tracker(clock)
    t.handle([info("a", 9), info("b", 0)])
    clock.now += 100
    t.handle([info("c", 0)])
    assert t.levels_last_seen() == {"q": {"9": 1_000_000.0, "0": 1_000_100.0}}
    assert t.levels_in_use() == {"q": {"0", "9"}}


def test_revoked_run_keeps_the_record_of_the_retry_it_published():
    """task-revoked/rejected end their run only: a retry announced (or started, prefork's
    reordering) before them keeps its queue and name."""
    for kind in ("task-revoked", "task-rejected"):
        t = tracker(Clock())
        t.handle(
            [
                {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q", "retries": 0},
                {"type": "task-received", "uuid": "a", "name": "n", "retries": 0},
                {"type": "task-started", "uuid": "a"},
                {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q", "retries": 1},
                {"type": kind, "uuid": "a"},  # the first run terminated after its retry went
                {"type": "task-received", "uuid": "a", "name": "n", "retries": 1},
                {"type": "task-started", "uuid": "a"},
                {"type": "task-succeeded", "uuid": "a", "runtime": 0.1},
            ]
        )
        snap = t.snapshot()
        assert snap.task_counts == {
            ("sent", "q", "n"): 2, ("received", "q", "n"): 2, ("started", "q", "n"): 2,
            (kind.removeprefix("task-"), "q", "n"): 1, ("succeeded", "q", "n"): 1,
        }, kind  # fmt: skip
        assert snap.tracked_tasks == 0

        t = tracker(Clock())
        t.handle(
            [
                {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q", "retries": 0},
                {"type": "task-received", "uuid": "a", "name": "n", "retries": 0},
                {"type": "task-started", "uuid": "a"},
                {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q", "retries": 1},
                {"type": "task-received", "uuid": "a", "name": "n", "retries": 1},
                {"type": "task-started", "uuid": "a"},
                {"type": kind, "uuid": "a"},  # the second run ends before the first's retry
                {"type": "task-retried", "uuid": "a"},
            ]
        )
        snap = t.snapshot()
        assert snap.task_counts[(kind.removeprefix("task-"), "q", "n")] == 1, kind
        assert snap.task_counts[("retried", "q", "n")] == 1, kind
        assert snap.tracked_tasks == 0


def test_a_task_sent_event_after_its_task_ended_counts_but_is_not_tracked():
    """The producer's task-sent travels on its own connection and can arrive after the worker's
    task-failed (seen on a loaded machine: a record that nothing closed, held until
    max_task_age_seconds). It is counted, under the queue it names; no record stays open."""
    t = EventTracker("b", EventSettings(), priority_level=step_levels(), clock=lambda: 1000.0)
    t.handle(
        [
            {"type": "task-received", "uuid": "a", "name": "n", "timestamp": 1.0},
            {"type": "task-started", "uuid": "a", "timestamp": 2.0},
            {"type": "task-failed", "uuid": "a", "exception": "ValueError()", "timestamp": 3.0},
            {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q", "timestamp": 0.5},
        ]
    )
    snap = t.snapshot()
    assert snap.tracked_tasks == 0
    assert snap.task_counts[("sent", "q", "n")] == 1
    # A redelivery of the same task (task-received again) is tracked anew.
    t.handle([{"type": "task-received", "uuid": "a", "name": "n", "timestamp": 4.0}])
    assert t.snapshot().tracked_tasks == 1
