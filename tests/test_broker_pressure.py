"""Broker pressure readings (issue 22) against real servers, exact values: Redis INFO memory,
stats, errorstats, commandstats, persistence, server (brokers/redis/health.py); queues kept
watched after their binding vanished (brokers/redis/known.py); RabbitMQ /api/nodes
(brokers/rabbitmq/nodes.py). The alerts on them: alerts/tests/broker_pressure.yaml and
tests/test_oncall_broker_pressure.py."""

from __future__ import annotations

import pytest
import redis
import requests
from kombu import Connection, Exchange, Queue

from celery_queue_exporter.brokers.rabbitmq.inspector import RabbitMQInspector
from celery_queue_exporter.brokers.rabbitmq.nodes import parse_nodes
from celery_queue_exporter.brokers.redis.health import parse_health
from celery_queue_exporter.brokers.redis.inspector import RedisInspector
from celery_queue_exporter.config.brokers import new_broker
from testsupport.exporter import build_exporter, scrape
from testsupport.exposition import sample_value

MB = 1024 * 1024


def _oom_refusals(client: redis.Redis, count: int) -> None:
    """``count`` writes refused for memory (noeviction, maxmemory below what is used)."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    for _ in range(count):
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("refused", "x")
    client.config_set("maxmemory", 0)


@pytest.mark.redis
def test_redis_health_exact_values_and_the_scrape(redis_server):
    client = redis_server.client()
    _oom_refusals(client, 3)
    client.flushdb()
    client.flushdb()
    client.flushall()
    client.config_set("maxmemory", 64 * MB)
    client.config_set("maxmemory-policy", "allkeys-lru")
    config = new_broker("p", redis_server.url, queues=["jobs"], discover_queues=False)
    inspector = RedisInspector(config)
    try:
        health = inspector.inspect().redis_health
        assert health is not None
        assert health.maxmemory_bytes == 64 * MB
        assert health.maxmemory_policy == "allkeys-lru"
        assert health.oom_rejections == 3
        assert health.flushes == {"flushall": 1, "flushdb": 2}
        assert health.evicted_keys == 0
        assert health.persistence is False  # the private server runs with --save "" and no AOF
        info = client.info("server")
        assert health.run_id == info["run_id"]
        assert 0 <= info["uptime_in_seconds"] - health.uptime_seconds <= 1
        assert 0 < health.used_memory_bytes < 64 * MB
        # RDB save points on: persistence known from CONFIG GET save.
        client.config_set("save", "900 1")
        assert inspector.inspect().redis_health.persistence is True
    finally:
        inspector.close()

    exporter = build_exporter("--broker-url", f"p={redis_server.url}", "--queue", "jobs")
    try:
        samples = scrape(exporter)
    finally:
        exporter.close()
    assert sample_value(samples, "celery_redis_memory_max_bytes", broker="p") == 64 * MB
    policy = {"broker": "p", "policy": "allkeys-lru"}
    assert sample_value(samples, "celery_redis_maxmemory_policy_info", **policy) == 1.0
    assert sample_value(samples, "celery_redis_oom_rejected_commands_total", broker="p") == 3
    flush = "celery_redis_flush_commands_total"
    assert sample_value(samples, flush, broker="p", command="flushall") == 1
    assert sample_value(samples, flush, broker="p", command="flushdb") == 2
    assert sample_value(samples, "celery_redis_evicted_keys_total", broker="p") == 0
    assert sample_value(samples, "celery_redis_persistence_enabled", broker="p") == 1
    assert sample_value(samples, "celery_queue_unbound", broker="p", queue="jobs") == 0


@pytest.mark.redis
def test_redis_evictions_counted_exactly(redis_server):
    client = redis_server.client()
    client.config_set("maxmemory", 4 * MB)
    client.config_set("maxmemory-policy", "allkeys-lru")
    for i in range(200):
        client.set(f"filler:{i}", b"x" * 50_000)
    # Room again: the count stops moving (new connections' buffers would evict more).
    client.config_set("maxmemory", 64 * MB)
    evicted = client.info("stats")["evicted_keys"]
    assert evicted > 100
    assert client.dbsize() == 200 - evicted
    inspector = RedisInspector(new_broker("p", redis_server.url, queues=["jobs"]))
    try:
        health = inspector.inspect().redis_health
    finally:
        inspector.close()
    assert health.evicted_keys == evicted
    assert health.maxmemory_bytes == 64 * MB


@pytest.mark.redis
def test_redis_health_without_config_permission_leaves_persistence_unknown(redis_server, caplog):
    """An ACL without @admin (as managed Redis often grants): CONFIG GET is refused, once; the
    rest of the health and the queues are read; persistence is unknown (no series)."""
    admin = redis_server.client()
    admin.acl_setuser(
        "monitor", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
        commands=["+@all", "-@admin", "-@write"],
    )  # fmt: skip
    url = f"redis://monitor:pw@127.0.0.1:{redis_server.port}/0"
    inspector = RedisInspector(new_broker("p", url, queues=["jobs"]))
    try:
        first = inspector.inspect()
        second = inspector.inspect()
    finally:
        inspector.close()
    for snapshot in (first, second):
        assert snapshot.redis_health.persistence is None
        assert snapshot.redis_health.maxmemory_policy == "noeviction"
        assert [lv.messages for lv in snapshot.levels] == [0, 0, 0, 0]
    refusals = [r for r in caplog.records if "CONFIG GET save refused" in r.getMessage()]
    assert len(refusals) == 1


def test_parse_health_leaves_out_what_the_server_does_not_say():
    """Pure parsing beside the real tests: Redis < 6.2 has no errorstats (unknown, not 0); a
    value of the wrong type is unknown; AOF alone says persistence is on."""
    health = parse_health(
        {"used_memory": "lots", "maxmemory": 0, "maxmemory_policy": "noeviction",
         "evicted_keys": 7, "aof_enabled": 1},
        None,
    )  # fmt: skip
    assert health.used_memory_bytes is None
    assert health.oom_rejections is None
    assert health.flushes == {}
    assert health.evicted_keys == 7
    assert health.persistence is True
    assert parse_health({"aof_enabled": 0}, None).persistence is None
    assert parse_health({"aof_enabled": 0}, {"save": "3600 1"}).persistence is True


def _declare(url: str, queue: str) -> None:
    with Connection(url) as connection:
        Queue(queue, Exchange(queue), routing_key=queue)(connection.default_channel).declare()


@pytest.mark.redis
def test_a_queue_whose_binding_vanished_stays_watched_and_flagged_unbound(redis_server):
    """Discovery finds ``jobs``; its binding is evicted (deleted) while 3 messages wait: the
    queue stays watched with its messages, flagged unbound; once empty it is kept for the
    retention, then forgotten. A queue never seen bound is never watched."""
    client = redis_server.client()
    _declare(redis_server.url, "jobs")
    client.lpush("jobs", b"{}", b"{}", b"{}")
    client.lpush("stray", b"{}")  # a list without a binding: not a Celery queue we know
    clock = [1000.0]
    config = new_broker(
        "p", redis_server.url, discovery_interval_seconds=0, unbound_queue_retention_seconds=60
    )
    inspector = RedisInspector(config, clock=lambda: clock[0])

    def watched() -> dict[str, tuple[int, bool]]:
        snapshot = inspector.inspect()
        depth: dict[str, int] = {}
        for level in snapshot.levels:
            depth[level.queue] = depth.get(level.queue, 0) + level.messages
        return {q: (depth[q], r.unbound) for q, r in snapshot.queues.items()}

    try:
        assert watched() == {"jobs": (3, False)}
        client.delete("_kombu.binding.jobs")
        clock[0] += 3600  # messages keep it however long the binding is gone
        assert watched() == {"jobs": (3, True)}
        client.delete("jobs")
        clock[0] += 60
        assert watched() == {"jobs": (0, True)}  # within the retention after the last message
        clock[0] += 0.5
        assert watched() == {}
        _declare(redis_server.url, "jobs")  # bound again: watched again, not unbound
        assert watched() == {"jobs": (0, False)}
    finally:
        inspector.close()


@pytest.mark.rabbitmq
def test_rabbitmq_nodes_from_the_management_api_exactly(rabbitmq_vhost):
    url = f"amqp://guest:guest@127.0.0.1:5672/{rabbitmq_vhost}"
    inspector = RabbitMQInspector(new_broker("r", url, queues=[]), timeout_seconds=5)
    try:
        snapshot = inspector.inspect()
    finally:
        inspector.close()
    assert snapshot.management_api_up is True
    api = requests.get("http://127.0.0.1:15672/api/nodes", auth=("guest", "guest"), timeout=5)
    truth = {node["name"]: node for node in api.json()}
    assert sorted(truth) == [node.node for node in snapshot.rabbitmq_nodes]
    for node in snapshot.rabbitmq_nodes:
        entry = truth[node.node]
        assert node.running is entry["running"] is True
        assert node.memory_alarm is entry["mem_alarm"]
        assert node.disk_alarm is entry["disk_free_alarm"]
        assert node.partitions == len(entry["partitions"]) == 0
        assert node.fd_limit == entry["fd_total"]
        assert node.sockets_limit == entry["sockets_total"]
        assert node.memory_limit_bytes == entry["mem_limit"]


def test_parse_nodes_skips_malformed_entries_and_keeps_a_down_node():
    nodes, malformed = parse_nodes(
        [
            {"name": "rabbit@b", "running": False},
            {"name": "rabbit@a", "running": True, "mem_alarm": True, "disk_free_alarm": False,
             "partitions": ["rabbit@b"], "fd_used": 10, "fd_total": "unlimited"},
            {"running": True},
            "rabbit@c",
        ]
    )  # fmt: skip
    assert malformed == 2
    assert [n.node for n in nodes] == ["rabbit@a", "rabbit@b"]
    a, b = nodes
    assert (a.memory_alarm, a.disk_alarm, a.partitions, a.fd_used, a.fd_limit) == (
        True, False, 1, 10, None,
    )  # fmt: skip
    assert (b.running, b.memory_alarm, b.partitions) == (False, None, None)
    assert parse_nodes({"error": "x"}) == ([], 1)
