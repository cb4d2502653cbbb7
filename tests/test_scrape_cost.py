"""The Redis scrape's cost is linear in keys and spent only on what changed (issue 25), counted
as work (heads decoded, level lines rendered, key lists built) and, for linearity, as the CPU
time of this thread in a scaled run: a ratio, never an absolute time."""

from __future__ import annotations

import json
import time

import pytest
import redis.connection

from celery_queue_exporter import linefamily
from celery_queue_exporter.brokers.redis import inspector as redis_inspector
from celery_queue_exporter.collector import BrokerResult, QueueCollector
from celery_queue_exporter.config.brokers import new_broker
from celery_queue_exporter.exposition import render_text
from testsupport.exporter import serve_exporter
from testsupport.http import exchange
from testsupport.redis_server import RedisServer

pytestmark = pytest.mark.redis

STEPS = list(range(10))


def fill(server: RedisServer, queues: list[str]) -> None:
    """One non-empty level per queue (1 to 5 stamped messages, a distinct head each), as
    bench/ fills it."""
    client = server.client()
    stamp = time.time() - 5
    with client.pipeline(transaction=False) as pipe:
        for index, queue in enumerate(queues):
            step = index % 10
            key = queue if step == 0 else f"{queue}:{step}"
            message = {"headers": {"id": queue, "celery_queue_exporter_enqueued_at": stamp}}
            pipe.lpush(key, *[json.dumps(message)] * (1 + index % 5))
        pipe.execute()


def collector_for(server: RedisServer, queues: list[str], **options) -> QueueCollector:
    broker = new_broker(
        name="r", url=server.url, queues=queues, priority_steps=STEPS, sep=":", **options
    )
    return QueueCollector([redis_inspector.RedisInspector(broker)], timeout_seconds=30)


def scrape(collector: QueueCollector) -> tuple[object, bytes]:
    """One inspection and render in this thread (so its CPU time is this thread's)."""
    state = collector._brokers[0]
    snapshot = state.inspector.inspect()
    state.resolve_urgency(snapshot)
    body = render_text(collector.families([BrokerResult("r", snapshot, 0.0)]))
    return snapshot, body


def test_unchanged_levels_are_neither_decoded_nor_rendered_again(redis_server, monkeypatch):
    """50 queues x 10 levels, one non-empty stamped level each. First scrape: 50 heads
    decoded, 500 levels rendered, one key list. Second: no head decoded, the 450 empty levels
    keep their readings (same objects) and lines; only the 50 ages (which move) are
    rendered. After one push to an empty level: one head decoded, 51 levels rendered."""
    decoded, rendered = [], []
    real_decode = redis_inspector._decode_head

    def counting_decode(raw: bytes):
        decoded.append(raw)
        return real_decode(raw)

    monkeypatch.setattr(redis_inspector, "_decode_head", counting_decode)
    real_level_lines = linefamily._level_lines
    monkeypatch.setattr(
        linefamily,
        "_level_lines",
        lambda level, inner: rendered.append(level) or real_level_lines(level, inner),
    )
    queues = [f"q{i:02d}" for i in range(50)]
    fill(redis_server, queues)
    collector = collector_for(redis_server, queues)
    inspector = collector._brokers[0].inspector
    try:
        first, first_body = scrape(collector)
        layout = inspector._layout
        assert (len(decoded), len(rendered)) == (50, 500)
        decoded.clear(), rendered.clear()

        second, second_body = scrape(collector)
        assert (len(decoded), len(rendered)) == (0, 50)
        assert inspector._layout is layout
        kept = [a is b for a, b in zip(first.levels, second.levels, strict=True)]
        assert kept.count(True) == 450
        assert first_body.count(b"\n") == second_body.count(b"\n")
        decoded.clear(), rendered.clear()

        redis_server.client().lpush("q00:5", json.dumps({"headers": {"id": "new"}}))
        third, third_body = scrape(collector)
        assert (len(decoded), len(rendered)) == (1, 51)
        assert b'celery_queue_messages{broker="r",queue="q00",priority="5"} 1.0\n' in third_body
        unstamped = b'celery_queue_oldest_message_unstamped{broker="r",queue="q00",priority="5"}'
        assert unstamped + b" 1.0\n" in third_body
    finally:
        collector.close()


def test_key_lists_are_built_again_only_when_discovery_changes_the_queues(redis_server):
    client = redis_server.client()
    client.sadd("_kombu.binding.a", "a::a")  # sep is ":" here
    collector = collector_for(redis_server, [], discover_queues=True, discovery_interval_seconds=0)
    inspector = collector._brokers[0].inspector
    try:
        scrape(collector)
        layout = inspector._layout
        scrape(collector)
        assert inspector._layout is layout
        client.sadd("_kombu.binding.b", "b::b")
        snapshot, _ = scrape(collector)
        assert inspector._layout is not layout
        assert len(inspector._layout.level_keys) == 20
        assert sorted({level.queue for level in snapshot.levels}) == ["a", "b"]
    finally:
        collector.close()


def test_the_levels_script_is_packed_once_per_watched_list(redis_server, monkeypatch):
    """redis-py took 20-30 ms per scrape to pack the EVAL_RO of 50,000 keys, the same bytes
    every time: it is packed once per layout and sent as those bytes after, while Redis runs
    it every scrape (test_redis_inspector's pipeline fallback checks the readings against
    plain pipelines; here they are checked exactly too)."""
    packed = []
    real_pack = redis.connection.HiredisRespSerializer.pack

    def counting_pack(self, *args):
        if args and args[0] == "EVAL_RO":
            packed.append(len(args))
        return real_pack(self, *args)

    monkeypatch.setattr(redis.connection.HiredisRespSerializer, "pack", counting_pack)
    queues = [f"q{i:02d}" for i in range(50)]
    fill(redis_server, queues)
    collector = collector_for(redis_server, queues, discover_queues=False)
    try:
        redis_server.client().config_resetstat()
        for _ in range(3):
            snapshot, _ = scrape(collector)
    finally:
        collector.close()
    # EVAL_RO, the script, the key count and 500 keys: 503 arguments, packed once for the
    # layout (the binding scan that opens each scrape has connected, so installed the
    # pass-through, before the command is queued), then sent as those bytes.
    assert packed == [503]
    stats = redis_server.client().info("commandstats")
    assert stats["cmdstat_eval_ro"]["calls"] == 3
    depths = {(lv.queue, lv.priority): lv.messages for lv in snapshot.levels if lv.messages}
    assert depths == {(q, str(i % 10)): 1 + i % 5 for i, q in enumerate(queues)}


def cpu_seconds(collector: QueueCollector) -> float:
    """CPU time of this thread for one scrape."""
    started = time.thread_time()
    scrape(collector)
    return time.thread_time() - started


def test_scrape_cost_is_linear_in_keys():
    """1,000 and 5,000 queues x 10 levels, same shape, scraped alternately (so the machine's
    load hits both alike), least CPU time of this thread over 7 rounds each: 5x the keys cost
    less than 7.5x (measured 5.1-6.4x on the shared 2-core machine; the slack is for noise and
    cache effects, a quadratic step would show as 25x), and the work counted grows exactly 5x."""
    with RedisServer() as small, RedisServer() as large:
        collectors = []
        try:
            for server, count in ((small, 1000), (large, 5000)):
                queues = [f"queue-{i:04d}" for i in range(count)]
                fill(server, queues)
                collectors.append(collector_for(server, queues))
            lines = []
            for collector in collectors:
                scrape(collector)  # warm-up: connections, key lists, decoded heads
                _, body = scrape(collector)
                lines.append(body.count(b"\ncelery_queue_messages{"))
            costs = [[], []]
            for _ in range(7):
                for index, collector in enumerate(collectors):
                    costs[index].append(cpu_seconds(collector))
        finally:
            for collector in collectors:
                collector.close()
    # Per queue: its non-empty level, and its first level's 0 when that one is empty (every
    # queue but each tenth): 1,000 + 900 and 5,000 + 4,500 depth lines, exactly 5x.
    assert lines == [1900, 9500]
    ratio = min(costs[1]) / min(costs[0])
    assert ratio < 7.5, costs


def test_body_at_1000_queues_x_10_levels_stays_under_1_mb(redis_server):
    """The whole /metrics body of the bench layout (1,000 queues x 10 levels, one non-empty
    level each) through the real HTTP server: under 1 MB plain (2.11 MB before issue 25),
    because empty levels send no age and, but for each queue's first, no depth. The series
    that alerts read are all there: a depth, an age and an unstamped flag per non-empty level,
    a depth per queue, the urgency marks and the per-queue flags."""
    queues = [f"queue-{i:04d}" for i in range(1000)]
    fill(redis_server, queues)
    exporter, server = serve_exporter(
        "--broker-url", f"r={redis_server.url}", "--queue", ",".join(queues),
        "--priority-steps", ",".join(map(str, STEPS)), "--sep", ":",
    )  # fmt: skip
    try:
        response = exchange(server.port, "GET", "/metrics", {"Accept-Encoding": "identity"})
    finally:
        server.stop()
        exporter.close()
    assert response.status == 200
    body = response.body
    counts = {
        name: body.count(b"\n" + name + b"{")
        for name in (
            b"celery_queue_messages",
            b"celery_queue_oldest_message_age_seconds",
            b"celery_queue_oldest_message_unstamped",
            b"celery_queue_priority_urgency_rank",
            b"celery_queue_reserved_messages",
            b"celery_queue_unreadable",
            b"celery_queue_unbound",
        )
    }
    assert counts == {
        b"celery_queue_messages": 1900,
        b"celery_queue_oldest_message_age_seconds": 1000,
        b"celery_queue_oldest_message_unstamped": 1000,
        b"celery_queue_priority_urgency_rank": 2000,
        b"celery_queue_reserved_messages": 1000,
        b"celery_queue_unreadable": 1000,
        b"celery_queue_unbound": 1000,
    }
    # An empty queue-0001 level: no depth, no age; its first level's 0 is there.
    assert b'celery_queue_messages{broker="r",queue="queue-0001",priority="0"} 0.0\n' in body
    assert b'celery_queue_messages{broker="r",queue="queue-0001",priority="2"}' not in body
    assert b'_age_seconds{broker="r",queue="queue-0001",priority="0"}' not in body
    assert len(body) < 1_000_000, len(body)
