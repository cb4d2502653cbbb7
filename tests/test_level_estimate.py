"""Pure logic of the per-level depth from events (brokers/rabbitmq/level_estimate.py, the event
tracker's waiting_levels, install(app)'s priority in task-sent and the management reader's use
of them), beside the real RabbitMQ 4.0.5 tests of the same path in
tests/test_rabbitmq4_levels.py."""

from __future__ import annotations

from celery import Celery

from celery_queue_exporter import catalogue as cat
from celery_queue_exporter import instrumentation
from celery_queue_exporter.brokers.rabbitmq.level_estimate import UNKNOWN_LEVEL, reconcile
from celery_queue_exporter.brokers.rabbitmq.management import SETTLE_AFTER_SECONDS, ManagementReader
from celery_queue_exporter.brokers.rabbitmq.priority import rabbitmq_priority_level
from celery_queue_exporter.brokers.rabbitmq.url import broker_target
from celery_queue_exporter.config import EventSettings
from celery_queue_exporter.config.brokers import broker_from_flag
from celery_queue_exporter.events.tracker import EventTracker
from celery_queue_exporter.instrumentation import TASK_INFO_EVENT

# --- reconciliation ------------------------------------------------------------------------


def test_levels_adding_up_to_the_total_are_exact():
    estimate = reconcile(10, 9, {"0": 3, "3": 5, "9": 2})
    assert estimate.levels == [(str(p), {0: 3, 3: 5, 9: 2}.get(p, 0)) for p in range(10)]
    assert (estimate.unknown, estimate.trimmed, estimate.exact) == (0, 0, True)
    assert estimate.head_level() == "9"


def test_what_the_events_do_not_account_for_is_unknown():
    estimate = reconcile(7, 9, {"5": 2, "0": 1})
    assert dict(estimate.levels)["5"] == 2 and dict(estimate.levels)["0"] == 1
    assert sum(count for _, count in estimate.levels) == 3
    assert (estimate.unknown, estimate.trimmed, estimate.exact) == (4, 0, False)


def test_a_count_above_the_total_is_taken_off_the_most_urgent_levels_first():
    # 9 counted, 4 in the broker: the excess 5 is 2 off level 9, then 3 off level 3.
    estimate = reconcile(4, 9, {"0": 2, "3": 5, "9": 2})
    assert dict(estimate.levels) == {str(p): {0: 2, 3: 2}.get(p, 0) for p in range(10)}
    assert (estimate.unknown, estimate.trimmed, estimate.exact) == (0, 5, False)
    # An empty broker: every level 0, never negative.
    empty = reconcile(0, 3, {"1": 4})
    assert empty.levels == [("0", 0), ("1", 0), ("2", 0), ("3", 0)]
    assert (empty.unknown, empty.trimmed, empty.head_level()) == (0, 4, None)


def test_levels_above_x_max_priority_wait_at_it_and_odd_labels_are_ignored():
    estimate = reconcile(6, 5, {"7": 2, "5": 1, "255": 1, "x": 9, "²": 9, "-1": 9, "2": -3})
    assert dict(estimate.levels)["5"] == 4
    assert sum(count for _, count in estimate.levels) == 4
    assert estimate.unknown == 2
    # A negative total (a broker's odd document) is an empty queue.
    assert reconcile(-2, 1, {}).levels == [("0", 0), ("1", 0)]


# --- the tracker's counts -------------------------------------------------------------------


def rabbit_tracker(**settings) -> EventTracker:
    return EventTracker(
        "rmq",
        EventSettings(**settings),
        priority_level=rabbitmq_priority_level,
        clock=lambda: 1_000_000.0,
    )


def sent(uuid: str, priority: object = None, queue: str = "q", retries: int = 0, **more) -> dict:
    event = {"type": "task-sent", "uuid": uuid, "name": "t", "queue": queue, "retries": retries}
    if priority is not ...:
        event["priority"] = priority
    return event | more


def received(uuid: str, retries: int = 0) -> dict:
    return {"type": "task-received", "uuid": uuid, "name": "t", "retries": retries}


def test_published_minus_received_per_queue_and_level():
    t = rabbit_tracker()
    t.handle([sent("a", 9), sent("b", 9), sent("c", None), sent("d", 3, queue="other")])
    assert t.waiting_levels() == {"q": {"9": 2, "0": 1}, "other": {"3": 1}}
    t.handle([received("a")])
    info = {"type": TASK_INFO_EVENT, "uuid": "c", "queue": "q", "priority": None}
    t.handle([info])  # install(app)'s receipt counts as much as task-received
    assert t.waiting_levels() == {"q": {"9": 1}, "other": {"3": 1}}
    t.handle([received("b"), received("d"), received("b")])  # a redelivery: nothing to take
    assert t.waiting_levels() == {}


def test_publishes_whose_level_is_unknown_are_not_counted():
    t = rabbit_tracker()
    t.handle(
        [
            sent("old", ...),  # a producer without install(app): no priority field
            sent("inf", float("inf")),  # no level holds it; the task-sent itself counts
            {"type": "task-sent", "uuid": "noq", "name": "t", "priority": 1},  # no queue
        ]
    )
    assert t.waiting_levels() == {}
    assert t.snapshot().task_counts[("sent", "q", "t")] == 2
    assert t.malformed == 0


def test_a_late_task_sent_and_a_retry_count_only_what_waits():
    t = rabbit_tracker()
    # The worker's receipt came first (events of two connections): the run is not waiting.
    t.handle([received("a"), sent("a", 5)])
    assert t.waiting_levels() == {}
    # The run retried: its next delivery is published (retries=1) and waits until received.
    t.handle([{"type": "task-started", "uuid": "a"}, sent("a", 7, retries=1)])
    assert t.waiting_levels() == {"q": {"7": 1}}
    t.handle([{"type": "task-retried", "uuid": "a"}, received("a", retries=1)])
    assert t.waiting_levels() == {}


def test_a_queue_read_empty_drops_the_publishes_seen_before_its_statistics():
    """A purge, an expired message or a lost task-received leaves no receipt: the broker's
    empty reading settles every publish seen before its statistics were taken."""
    now = [1000.0]
    t = EventTracker(
        "rmq", EventSettings(), priority_level=rabbitmq_priority_level, clock=lambda: now[0]
    )
    t.handle([sent("a", 0), sent("b", 0), sent("x", 3, queue="other")])
    now[0] = 1010.0
    t.handle([sent("c", 9)])
    assert t.waiting_levels({"q": 1005.0}) == {"q": {"9": 1}, "other": {"3": 1}}
    t.handle([received("a")])  # a receipt of a settled publish takes nothing
    assert t.waiting_levels({"elsewhere": 2000.0}) == {"q": {"9": 1}, "other": {"3": 1}}
    assert t.waiting_levels({"q": 1010.0}) == {"q": {"9": 1}, "other": {"3": 1}}  # not before
    assert t.waiting_levels({"q": 1010.5, "other": 999.0}) == {"other": {"3": 1}}
    t.handle([sent("d", 9)])  # a new publish counts as before
    assert t.waiting_levels() == {"q": {"9": 1}, "other": {"3": 1}}


def test_a_dropped_record_leaves_the_count():
    t = rabbit_tracker(max_tracked_tasks=2)
    t.handle([sent("a", 1), sent("b", 1), sent("c", 2)])
    # "a" was the oldest record: its message, if still queued, is the total's unknown part.
    assert t.waiting_levels() == {"q": {"1": 1, "2": 1}}
    t.handle([{"type": "task-revoked", "uuid": "b"}])  # the record ends: not waiting
    assert t.waiting_levels() == {"q": {"2": 1}}


# --- install(app): the priority in task-sent -----------------------------------------------


def test_install_adds_the_priority_to_task_sent_without_reading_the_configuration():
    app = Celery("levels", broker="memory://", set_as_current=False)
    instrumentation.install(app)
    try:
        instrumentation.install(app)  # twice: wrapped once
        assert not app.configured  # install(app) read nothing of the configuration
        app.conf.update(task_default_queue="late")  # so this, after install(app), still counts
        build = app.amqp.create_task_message
        with_priority = build("id1", "t", (), {}, create_sent_event=True, priority=7)
        assert with_priority.sent_event["priority"] == 7
        assert with_priority.properties.get("priority") is None  # the message is untouched
        without = build("id2", "t", (), {}, create_sent_event=True)
        assert "priority" in without.sent_event and without.sent_event["priority"] is None
        assert build("id3", "t", (), {}, priority=7).sent_event is None  # task-sent off
        assert app.amqp.default_queue.name == "late"
    finally:
        # Its signal handlers are process-wide: a later test in this process (an xdist
        # worker) publishing "without install(app)" must not be stamped.
        instrumentation.uninstall()
    assert "priority" not in build("id4", "t", (), {}, create_sent_event=True).sent_event


# --- the management reader -----------------------------------------------------------------


def reader(waiting: dict | None, asked: list | None = None) -> ManagementReader:
    """A reader at time 1000 whose tracker holds ``waiting``; ``asked`` collects what each
    read handed the tracker (the queues read empty, and since when)."""
    config = broker_from_flag("rmq", "amqp://guest:guest@127.0.0.1:5682/")
    out = ManagementReader(config, broker_target(config), clock=lambda: 1000.0)
    if waiting is not None:

        def source(empty_before):
            if asked is not None:
                asked.append(dict(empty_before))
            return waiting

        out.waiting_levels = source
    return out


def classic(name: str, ready: int, head: float | None = None) -> dict:
    """A RabbitMQ 4.0 entry of a classic x-max-priority 3 queue (no per-level counts)."""
    entry = {
        "name": name,
        "type": "classic",
        "arguments": {"x-max-priority": 3},
        "messages_ready": ready,
        "messages_unacknowledged": 0,
        "consumers": 0,
    }
    return entry | ({"head_message_timestamp": head} if head is not None else {})


def levels(snapshot, queue: str) -> dict:
    return {
        r.priority: (r.messages, r.oldest_age_seconds) for r in snapshot.levels if r.queue == queue
    }


def extras(snapshot, spec) -> dict:
    return {s.labels: s.value for s in snapshot.extra if s.spec is spec}


def test_reader_places_the_events_counts_and_the_head_age():
    asked: list = []
    r = reader({"exact": {"3": 1, "1": 2}, "short": {"1": 1}, "over": {"3": 3}}, asked)
    snap = r.snapshot_from_entries(
        [
            classic("exact", 3, head=990.0),
            classic("short", 4, head=900.0),
            classic("none", 0),
            classic("over", 2, head=995.0),
        ]
    )
    # The queue read empty goes to the tracker with the time its statistics may be from.
    assert asked == [{"none": 1000.0 - SETTLE_AFTER_SECONDS}]
    # The events count one more than the broker holds (its statistics lag them): every level
    # is still known, so the head's age stays on its level, with no lower-bound flag.
    assert levels(snap, "over") == {
        "0": (0, None), "1": (0, None), "2": (0, None), "3": (2, 5.0), UNKNOWN_LEVEL: (0, None)
    }  # fmt: skip
    # Exact: the age on the head's own level, no lower-bound flag.
    assert levels(snap, "exact") == {
        "0": (0, None), "1": (2, None), "2": (0, None), "3": (1, 10.0), UNKNOWN_LEVEL: (0, None)
    }  # fmt: skip
    # 3 unknown: the head's level is not known, its age is on 'unknown', a lower bound.
    assert levels(snap, "short") == {
        "0": (0, None), "1": (1, None), "2": (0, None), "3": (0, None), UNKNOWN_LEVEL: (3, 100.0)
    }  # fmt: skip
    assert levels(snap, "none")[UNKNOWN_LEVEL] == (0, None)
    assert extras(snap, cat.QUEUE_OLDEST_AGE_LOWER_BOUND) == {("short",): 1.0}
    assert extras(snap, cat.QUEUE_PRIORITY_LEVELS_SOURCE) == {
        ("exact", "events"): 1.0,
        ("short", "events"): 1.0,
        ("none", "events"): 1.0,
        ("over", "events"): 1.0,
    }
    # 'unknown' is never a declared level (no urgency mark).
    assert snap.declared_levels["exact"] == ["3", "2", "1", "0"]


def test_reader_without_events_or_with_a_failing_tracker_reports_the_total():
    for r in (reader(None), reader({})):
        if r.waiting_levels is not None:
            r.waiting_levels = lambda _empty: 1 / 0  # the tracker fails: the total is still there
        snap = r.snapshot_from_entries([classic("q", 4, head=990.0)])
        assert levels(snap, "q") == {None: (4, 10.0)}
        assert extras(snap, cat.QUEUE_PRIORITY_LEVELS_SOURCE) == {("q", "none"): 1.0}
        assert extras(snap, cat.QUEUE_OLDEST_AGE_LOWER_BOUND) == {("q",): 1.0}
