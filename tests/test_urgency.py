"""The urgency resolver's pure logic (urgency.py): which levels it marks from what it saw. The
same paths against real brokers are in test_rabbitmq_inspector.py and test_redis_inspector.py."""

from __future__ import annotations

import logging

from celery_queue_exporter.brokers.rabbitmq.priority import rabbitmq_priority_level
from celery_queue_exporter.config.brokers import new_broker
from celery_queue_exporter.snapshot import BrokerSnapshot, LevelReading
from celery_queue_exporter.urgency import UrgencyResolver, levels_source, resolver_for

#: A RabbitMQ queue with x-max-priority 10: 10 is served first.
RABBIT_LEVELS = [str(p) for p in range(10, -1, -1)]
#: A Redis queue with kombu's default steps: 0 is served first.
REDIS_LEVELS = ["0", "3", "6", "9"]


def marks(snapshot: BrokerSnapshot) -> dict[tuple[str, str], tuple[str, int]]:
    """(queue, urgency) -> (level, rank)."""
    return {(u.queue, u.urgency): (u.priority, u.rank) for u in snapshot.urgency}


def rabbit_snapshot(queue: str, depths: dict[int, int], max_priority: int = 10) -> BrokerSnapshot:
    snapshot = BrokerSnapshot()
    snapshot.queue(queue).max_priority = max_priority
    for level in range(max_priority + 1):
        snapshot.levels.append(LevelReading(queue, str(level), depths.get(level, 0)))
    snapshot.declare_levels(queue, [str(p) for p in range(max_priority, -1, -1)])
    return snapshot


def redis_snapshot(queue: str, depths: dict[str, int]) -> BrokerSnapshot:
    snapshot = BrokerSnapshot()
    snapshot.queue(queue)
    for level in REDIS_LEVELS:
        snapshot.levels.append(LevelReading(queue, level, depths.get(level, 0)))
    snapshot.declare_levels(queue, REDIS_LEVELS)
    return snapshot


def test_nothing_seen_marks_the_declared_extremes():
    snapshot = rabbit_snapshot("jobs", {})
    UrgencyResolver().resolve(snapshot)
    assert marks(snapshot) == {("jobs", "most"): ("10", 0), ("jobs", "least"): ("0", 10)}


def test_levels_with_messages_are_marked_and_remembered_once_empty():
    resolver = UrgencyResolver()
    first = rabbit_snapshot("jobs", {9: 2, 4: 1})
    resolver.resolve(first)
    assert marks(first) == {("jobs", "most"): ("9", 1), ("jobs", "least"): ("4", 6)}
    # Emptied, then 0 carries messages: 9 stays the most urgent level seen, 0 the least.
    second = rabbit_snapshot("jobs", {0: 5})
    resolver.resolve(second)
    assert marks(second) == {("jobs", "most"): ("9", 1), ("jobs", "least"): ("0", 10)}
    empty = rabbit_snapshot("jobs", {})
    resolver.resolve(empty)
    assert marks(empty) == marks(second)
    assert resolver.seen("jobs") == {"9", "4", "0"}


def test_one_level_seen_is_most_and_the_declared_least_is_least():
    """An urgent-only backlog (after a restart, only 9 seen): 9 is the most urgent level and
    the declared 0 the least, so the most-urgent alert (most unless least) still watches 9."""
    snapshot = rabbit_snapshot("jobs", {9: 1})
    UrgencyResolver().resolve(snapshot)
    assert marks(snapshot) == {("jobs", "most"): ("9", 1), ("jobs", "least"): ("0", 10)}
    redis = redis_snapshot("jobs", {"0": 4})
    UrgencyResolver().resolve(redis)
    assert marks(redis) == {("jobs", "most"): ("0", 0), ("jobs", "least"): ("9", 3)}


def test_only_the_declared_least_urgent_level_seen_is_most_and_least():
    """Seen only at the declared least urgent level: most is that level (the most urgent
    seen), least falls back to the declared least, the same level."""
    snapshot = rabbit_snapshot("jobs", {0: 3})
    UrgencyResolver().resolve(snapshot)
    assert marks(snapshot) == {("jobs", "most"): ("0", 10), ("jobs", "least"): ("0", 10)}


def test_a_single_declared_level_is_both():
    snapshot = BrokerSnapshot()
    snapshot.queue("jobs")
    snapshot.levels.append(LevelReading("jobs", "0", 2))
    snapshot.declare_levels("jobs", ["0"])
    UrgencyResolver().resolve(snapshot)
    assert marks(snapshot) == {("jobs", "most"): ("0", 0), ("jobs", "least"): ("0", 0)}


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_level_not_seen_for_the_memory_is_forgotten():
    """One stray message filed at 10 (a producer sent 255) marks 10 most urgent only for
    urgency_memory_seconds; then the level in use (9) is the most urgent again."""
    clock = FakeClock()
    resolver = UrgencyResolver(memory_seconds=600, clock=clock)
    resolver.resolve(rabbit_snapshot("jobs", {10: 1, 9: 4, 3: 2}))
    clock.now += 300
    seen_again = rabbit_snapshot("jobs", {9: 1, 3: 1})
    resolver.resolve(seen_again)
    assert marks(seen_again) == {("jobs", "most"): ("10", 0), ("jobs", "least"): ("3", 7)}
    clock.now += 300  # 10 last seen exactly 600 s ago: still remembered
    at_memory = rabbit_snapshot("jobs", {})
    resolver.resolve(at_memory)
    assert marks(at_memory)[("jobs", "most")] == ("10", 0)
    clock.now += 1  # 601 s: 10 is forgotten; 9 and 3 were seen 301 s ago
    later = rabbit_snapshot("jobs", {})
    resolver.resolve(later)
    assert marks(later) == {("jobs", "most"): ("9", 1), ("jobs", "least"): ("3", 7)}
    assert resolver.seen("jobs") == {"9", "3"}
    clock.now += 600  # nothing seen any more: the declared extremes again
    idle = rabbit_snapshot("jobs", {})
    resolver.resolve(idle)
    assert marks(idle) == {("jobs", "most"): ("10", 0), ("jobs", "least"): ("0", 10)}
    assert resolver.seen("jobs") == set()


def test_levels_from_events_expire_by_when_they_were_last_received():
    """The tracker's levels_last_seen gives when each level was last received at: a level
    received long ago is not refreshed by every inspection."""
    clock = FakeClock()
    resolver = UrgencyResolver(memory_seconds=600, clock=clock)
    received = {"jobs": {"10": clock.now, "9": clock.now}}
    resolver.resolve(rabbit_snapshot("jobs", {}), received)
    clock.now += 500
    received["jobs"]["9"] = clock.now
    resolver.resolve(rabbit_snapshot("jobs", {}), received)
    clock.now += 200  # 10 last received 700 s ago, 9 200 s ago
    snapshot = rabbit_snapshot("jobs", {})
    resolver.resolve(snapshot, received)
    assert marks(snapshot) == {("jobs", "most"): ("9", 1), ("jobs", "least"): ("0", 10)}


def test_redis_order_is_ascending():
    snapshot = redis_snapshot("jobs", {"6": 3, "9": 1})
    UrgencyResolver().resolve(snapshot)
    assert marks(snapshot) == {("jobs", "most"): ("6", 2), ("jobs", "least"): ("9", 3)}


def test_levels_in_use_from_events_count_as_seen():
    resolver = UrgencyResolver()
    snapshot = rabbit_snapshot("jobs", {})
    # Queue "other" is not watched and "11" is no level of jobs: both ignored.
    resolver.resolve(snapshot, {"jobs": {"7", "2", "11"}, "other": {"1"}})
    assert marks(snapshot) == {("jobs", "most"): ("7", 3), ("jobs", "least"): ("2", 8)}
    assert resolver.seen("jobs") == {"7", "2"}
    assert resolver.seen("other") == frozenset()


def test_queues_without_priorities_get_no_marks_and_others_are_forgotten():
    resolver = UrgencyResolver()
    resolver.resolve(rabbit_snapshot("gone", {3: 1}))
    assert resolver.seen("gone") == {"3"}
    snapshot = BrokerSnapshot()
    snapshot.levels.append(LevelReading("plain", None, 4))
    snapshot.queue("plain")
    resolver.resolve(snapshot, {"plain": {"0"}})
    assert snapshot.urgency == []
    assert resolver.seen("gone") == frozenset()  # no longer watched: forgotten
    assert resolver.seen("plain") == frozenset()


def test_a_queue_missing_for_one_inspection_without_levels_keeps_what_it_learnt():
    """The AMQP fallback reports no levels: the queue is still watched, its history kept."""
    resolver = UrgencyResolver()
    resolver.resolve(rabbit_snapshot("jobs", {8: 1}))
    amqp = BrokerSnapshot()
    amqp.queue("jobs")
    amqp.levels.append(LevelReading("jobs", None, 1))
    resolver.resolve(amqp)
    again = rabbit_snapshot("jobs", {})
    resolver.resolve(again)
    assert marks(again) == {("jobs", "most"): ("8", 2), ("jobs", "least"): ("0", 10)}


def test_override_wins_over_what_was_seen_per_side():
    resolver = UrgencyResolver(
        {"jobs": {"most": 9, "least": 1}, "half": {"least": 0}}, rabbitmq_priority_level
    )
    jobs = rabbit_snapshot("jobs", {5: 1})
    resolver.resolve(jobs)
    assert marks(jobs) == {("jobs", "most"): ("9", 1), ("jobs", "least"): ("1", 9)}
    half = rabbit_snapshot("half", {5: 1})
    resolver.resolve(half)
    assert marks(half) == {("half", "most"): ("5", 5), ("half", "least"): ("0", 10)}


def test_override_above_x_max_priority_is_capped_as_rabbitmq_serves_it():
    resolver = UrgencyResolver({"jobs": {"most": 9}}, rabbitmq_priority_level)
    snapshot = rabbit_snapshot("jobs", {}, max_priority=5)
    resolver.resolve(snapshot)
    assert marks(snapshot) == {("jobs", "most"): ("5", 0), ("jobs", "least"): ("0", 5)}


def test_override_that_is_no_level_is_ignored_with_one_warning(caplog):
    resolver = UrgencyResolver({"jobs": {"most": 4}}, broker="r")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            snapshot = redis_snapshot("jobs", {"3": 1})
            resolver.resolve(snapshot)
    assert marks(snapshot) == {("jobs", "most"): ("3", 1), ("jobs", "least"): ("9", 3)}
    warnings = [r.getMessage() for r in caplog.records if r.name == "celery_queue_exporter.urgency"]
    assert warnings == [
        "broker r: priority_levels.jobs.most = 4 is not a level of the queue (0, 3, 6, 9); ignored"
    ]


def test_redeclared_queue_drops_levels_it_no_longer_has():
    resolver = UrgencyResolver()
    resolver.resolve(rabbit_snapshot("jobs", {10: 1, 2: 1}))
    smaller = rabbit_snapshot("jobs", {}, max_priority=5)
    resolver.resolve(smaller)
    assert marks(smaller) == {("jobs", "most"): ("2", 3), ("jobs", "least"): ("0", 5)}


def test_memory_is_bounded_by_declared_levels_of_watched_queues():
    resolver = UrgencyResolver()
    snapshot = rabbit_snapshot("jobs", {p: 1 for p in range(11)})
    resolver.resolve(snapshot, {"jobs": {str(n) for n in range(1000)}})
    assert resolver.seen("jobs") == set(RABBIT_LEVELS)
    assert len(resolver._seen) == 1


def test_plugin_readings_without_declared_levels_are_kept():
    snapshot = BrokerSnapshot()
    snapshot.queue("jobs")
    from celery_queue_exporter.snapshot import urgency_readings

    snapshot.urgency.extend(urgency_readings("jobs", ["high", "low"]))
    UrgencyResolver().resolve(snapshot, {"jobs": {"low"}})
    assert marks(snapshot) == {("jobs", "most"): ("high", 0), ("jobs", "least"): ("low", 1)}


def test_resolver_for_reads_the_broker_override_and_transport():
    broker = new_broker(name="rmq", url="amqp://guest:guest@127.0.0.1:5672//")
    broker.priority_levels = {"jobs": {"most": 12}}
    resolver = resolver_for(broker)
    snapshot = rabbit_snapshot("jobs", {}, max_priority=10)
    resolver.resolve(snapshot)
    assert marks(snapshot)[("jobs", "most")] == ("10", 0)  # 12 is served at 10


def test_levels_source_guards_trackers_without_it():
    class Old:
        pass

    class New:
        def levels_in_use(self) -> dict[str, set[str]]:
            return {"jobs": {"9"}}

    class Newer(New):
        def levels_last_seen(self) -> dict[str, dict[str, float]]:
            return {"jobs": {"9": 12.0}}

    assert levels_source(Old()) is None
    source = levels_source(New())
    assert source is not None and source() == {"jobs": {"9"}}
    newer = levels_source(Newer())
    assert newer is not None and newer() == {"jobs": {"9": 12.0}}
