"""Issue 12 on real brokers: one bad key or message costs that key or message, never the broker
(points 2, 3 and 10: wrong-typed keys, a deeply nested message, a name that is not UTF-8, a
stamp that is not a number)."""

from __future__ import annotations

import json
import logging

import pytest

from celery_queue_exporter.brokers.redis.inspector import RedisInspector
from celery_queue_exporter.config.brokers import new_broker
from celery_queue_exporter.instrumentation import ATTEMPT_AT_HEADER, ENQUEUED_AT_HEADER
from testsupport.exporter import build_exporter, scrape
from testsupport.exposition import sample_value, samples_named

pytestmark = pytest.mark.redis

SEP = "\x06\x16"
STEPS = ("0", "3", "6", "9")


def _message(task_id: str, headers: dict | None = None) -> bytes:
    """A kombu-shaped message as the Redis transport stores it."""
    body = {"body": "W10=", "headers": {"id": task_id, **(headers or {})}, "properties": {}}
    return json.dumps(body).encode()


def _bind(client, queues: list[str | bytes]) -> None:
    """kombu's binding set for queues routed by name on the default exchange."""
    for queue in queues:
        raw = queue if isinstance(queue, bytes) else queue.encode()
        client.sadd("_kombu.binding.celery", raw + SEP.encode() + SEP.encode() + raw)


def _levels(samples: dict, queue: str) -> dict[str, float]:
    return {
        dict(labels)["priority"]: value
        for labels, value in samples_named(samples, "celery_queue_messages").items()
        if dict(labels)["queue"] == queue
    }


def _reader_url(redis_server) -> str:
    """A user without scripting: the exporter reads with pipelines (the fallback path)."""
    redis_server.client().acl_setuser(
        "reader",
        enabled=True,
        passwords=["+readerpw"],
        keys=["*"],
        commands=["+@read", "+@connection", "-@scripting", "+info"],
    )
    return f"redis://reader:readerpw@127.0.0.1:{redis_server.port}/0"


def _scrape_once(redis_server, path: str, *args: str) -> dict:
    """One scrape of broker b, read by the Lua script or (path "pipeline") by pipelines."""
    url = redis_server.url if path == "script" else _reader_url(redis_server)
    exporter = build_exporter("--broker-url", f"b={url}", *args)
    try:
        return scrape(exporter)
    finally:
        exporter.close()


@pytest.mark.parametrize("path", ["script", "pipeline"])
@pytest.mark.parametrize("kind", ["hash", "string", "zset"])
def test_one_wrong_typed_key_among_50_queues_costs_that_level(redis_server, path, kind, caplog):
    client = redis_server.client()
    queues = [f"q{i:02d}" for i in range(50)]
    _bind(client, queues)
    for i, queue in enumerate(queues):
        client.rpush(queue, *[_message(f"{queue}-{n}") for n in range(i + 1)])
        client.rpush(f"{queue}{SEP}6", _message(f"{queue}-six"))
    bad = "q17"
    client.delete(bad)
    {
        "hash": lambda: client.hset(bad, "f", "v"),
        "string": lambda: client.set(bad, "v"),
        "zset": lambda: client.zadd(bad, {"m": 1.0}),
    }[kind]()
    url = redis_server.url if path == "script" else _reader_url(redis_server)
    exporter = build_exporter("--broker-url", f"b={url}", "--discover-queues")
    try:
        for _ in range(2):  # the second scrape too: nothing sticks
            samples = scrape(exporter)
            assert sample_value(samples, "celery_broker_up", broker="b") == 1
            for i, queue in enumerate(queues):
                # Empty levels but the first are absent (absent means 0, issue 25).
                expected = {"0": i + 1, "6": 1}
                if queue == bad:
                    del expected["0"]  # the one unreadable level has no depth series
                assert _levels(samples, queue) == expected, queue
                flag = sample_value(samples, "celery_queue_unreadable", broker="b", queue=queue)
                assert flag == (1 if queue == bad else 0)
            assert sample_value(samples, "celery_exporter_unreadable_keys", broker="b") == 1
            assert sample_value(samples, "celery_exporter_scrape_errors_total", broker="b") == 0
            assert sample_value(samples, "celery_broker_reserved_messages", broker="b") == 0
    finally:
        exporter.close()
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name.endswith("redis.inspector") and r.levelno == logging.WARNING
    ]
    assert warnings == [  # one line for two scrapes: logged when the set changes
        "broker b: 1 key(s) of another type than kombu writes, skipped (queues: q17)"
    ]


@pytest.mark.parametrize("path", ["script", "pipeline"])
def test_listed_queue_that_is_a_hash_and_unacked_that_is_a_string(redis_server, path):
    client = redis_server.client()
    client.hset("x", "f", "v")
    client.rpush("jobs", _message("a"), _message("b"))
    client.set("unacked", "not a hash")
    client.set("unacked_index", "not a zset")
    samples = _scrape_once(redis_server, path, "--queue", "x,jobs")
    assert sample_value(samples, "celery_broker_up", broker="b") == 1
    assert _levels(samples, "jobs") == {"0": 2}
    # x's first level is unreadable and its others are empty: no depth series at all, its
    # celery_queue_unreadable 1 says why.
    assert _levels(samples, "x") == {}
    assert sample_value(samples, "celery_queue_unreadable", broker="b", queue="x") == 1
    assert sample_value(samples, "celery_queue_unreadable", broker="b", queue="jobs") == 0
    # x's level 0, the unacked hash and its index: 3 keys; no reserved readings at all.
    assert sample_value(samples, "celery_exporter_unreadable_keys", broker="b") == 3
    for name in (
        "celery_broker_reserved_messages",
        "celery_broker_reserved_oldest_age_seconds",
        "celery_broker_reserved_overdue_messages",
    ):
        assert sample_value(samples, name, broker="b") is None, name
    assert samples_named(samples, "celery_queue_reserved_messages") == {}


@pytest.mark.parametrize("path", ["script", "pipeline"])
def test_deeply_nested_head_is_one_malformed_message(redis_server, path):
    client = redis_server.client()
    nested = b"[" * 1000 + b"]" * 1000  # 2 kB: beyond the stdlib parser's recursion limit
    client.rpush("deep", _message("later"), nested)  # LINDEX -1: the nested one is the head
    client.rpush("fine", _message("f"))
    samples = _scrape_once(redis_server, path, "--queue", "deep,fine")
    assert sample_value(samples, "celery_broker_up", broker="b") == 1
    assert _levels(samples, "deep") == {"0": 2}
    assert _levels(samples, "fine") == {"0": 1}
    assert sample_value(samples, "celery_exporter_malformed_messages_total", broker="b") == 1


def test_stamp_that_is_not_a_number_is_malformed_and_falls_back_to_head_tracking(redis_server):
    client = redis_server.client()
    for queue, stamp in (("nan", "NaN"), ("abc", "abc"), ("good", None)):
        headers = {ENQUEUED_AT_HEADER: stamp} if stamp else {}
        client.rpush(queue, _message(f"{queue}-1", headers))
    client.rpush("stamped", _message("s-1", {ENQUEUED_AT_HEADER: 1000.0}))
    # A retry's own publish stamp wins over the first publish; a bad one is malformed too.
    client.rpush("retried", _message("r-1", {ENQUEUED_AT_HEADER: 1000.0, ATTEMPT_AT_HEADER: 1005}))
    client.rpush("bad-retry", _message("b-1", {ENQUEUED_AT_HEADER: 1000.0, ATTEMPT_AT_HEADER: "x"}))
    now = [1010.0]
    queues = ["nan", "abc", "good", "stamped", "retried", "bad-retry"]
    inspector = RedisInspector(
        new_broker(name="b", url=redis_server.url, queues=queues), clock=lambda: now[0]
    )
    try:
        first = inspector.inspect()
        now[0] += 7.0
        second = inspector.inspect()
    finally:
        inspector.close()
    # "NaN", "abc" and the attempt stamp "x"
    assert first.malformed_messages == second.malformed_messages == 3
    ages = {(lv.queue, lv.priority): lv.oldest_age_seconds for lv in second.levels}
    # Head tracking: seen 7 s ago at the head, still there; the stamped one is exact.
    assert ages[("nan", "0")] == ages[("abc", "0")] == ages[("good", "0")] == 7.0
    assert ages[("stamped", "0")] == 17.0
    assert ages[("retried", "0")] == 12.0
    assert ages[("bad-retry", "0")] == 17.0  # the first publish, the one stamp that reads


def test_queue_name_that_is_not_utf8_reads_its_own_key(redis_server):
    client = redis_server.client()
    raw = b"caf\xe9"  # latin-1 bytes, not UTF-8
    _bind(client, [raw, "plain"])
    client.rpush(raw, _message("r"), _message("r2"))
    client.rpush(raw + SEP.encode() + b"9", _message("r9"))
    client.rpush("caf\ufffd", _message("decoy"))  # what a replacement-character decode reads
    client.rpush("plain", _message("p"))
    exporter = build_exporter("--broker-url", f"b={redis_server.url}", "--discover-queues")
    try:
        samples = scrape(exporter)
        second = scrape(exporter)
    finally:
        exporter.close()
    assert sample_value(samples, "celery_broker_up", broker="b") == 1
    assert _levels(samples, "caf\\xe9") == {"0": 2, "9": 1}
    assert _levels(samples, "plain") == {"0": 1}
    assert _levels(samples, "caf\ufffd") == {}  # not bound: not a queue of the broker
    assert sample_value(second, "celery_exporter_unreadable_keys", broker="b") == 0
    assert _levels(second, "caf\\xe9") == {"0": 2, "9": 1}
