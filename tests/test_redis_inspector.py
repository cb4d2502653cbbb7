"""The Redis inspector against real redis-server processes, with messages from real Celery apps.

Tests of what Redis answers (keys, scripts, ACLs, command statistics) run on each generation
(``redis_generation_server``: a private 7.0 and 8.0 server); the 100,000-reservation cost test
(about 20 s of writes) and the tests of the exporter's own wiring run on 7.0 only.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

from celery_queue_exporter import instrumentation
from celery_queue_exporter.brokers.redis.inspector import RedisInspector
from celery_queue_exporter.catalogue import UNKNOWN_QUEUE
from celery_queue_exporter.config.brokers import new_broker
from testsupport.exporter import build_exporter, scrape
from testsupport.exposition import sample_value, samples_named

pytestmark = pytest.mark.redis

DEFAULT_STEP_OF = {0: "0", 1: "0", 2: "0", 3: "3", 4: "3", 5: "3", 6: "6", 7: "6", 8: "6", 9: "9"}


def celery_app(url: str, **transport_options) -> Celery:
    app = Celery("cqe_test", broker=url, set_as_current=False)
    app.conf.broker_transport_options = transport_options
    app.conf.task_default_queue = "default"

    @app.task(name="cqe.noop", shared=False)
    def noop() -> None:
        return None

    return app


def publish(app: Celery, queue: str, priorities: dict[int, int]) -> None:
    """Publish ``count`` tasks at each priority through Celery's own apply_async."""
    task = app.tasks["cqe.noop"]
    for priority, count in priorities.items():
        for _ in range(count):
            task.apply_async(queue=queue, priority=priority)


def messages_by_level(samples: dict, broker: str, queue: str) -> dict[str, float]:
    return {
        dict(labels)["priority"]: value
        for labels, value in samples_named(samples, "celery_queue_messages").items()
        if dict(labels)["broker"] == broker and dict(labels)["queue"] == queue
    }


def test_default_priority_steps_exact_counts(redis_generation_server):
    app = celery_app(redis_generation_server.url)
    # priority p published p + 1 times: 1..10 messages, floored onto steps 0, 3, 6, 9.
    publish(app, "jobs", {p: p + 1 for p in range(10)})
    exporter = build_exporter(
        "--broker-url", f"main={redis_generation_server.url}", "--queue", "jobs,idle"
    )
    samples = scrape(exporter)

    assert messages_by_level(samples, "main", "jobs") == {
        "0": 1 + 2 + 3,
        "3": 4 + 5 + 6,
        "6": 7 + 8 + 9,
        "9": 10,
    }
    # An empty queue reports 0 at its first step, not nothing; its other empty steps are
    # absent (absent means 0: issue 25's lighter body), and none of them has an age.
    assert messages_by_level(samples, "main", "idle") == {"0": 0}
    assert [
        labels
        for labels in samples_named(samples, "celery_queue_oldest_message_age_seconds")
        if dict(labels)["queue"] == "idle"
    ] == []
    assert sample_value(samples, "celery_broker_up", broker="main") == 1
    # On Redis step 0 is served first: the most urgent level.
    ranks = {
        (dict(labels)["priority"], dict(labels)["urgency"]): value
        for labels, value in samples_named(samples, "celery_queue_priority_urgency_rank").items()
        if dict(labels)["queue"] == "jobs"
    }
    assert ranks == {("0", "most"): 0, ("9", "least"): 3}
    exporter.close()


def test_ten_steps_with_custom_separator(redis_generation_server):
    app = celery_app(redis_generation_server.url, priority_steps=list(range(10)), sep=":")
    publish(app, "evals", {0: 2, 4: 1, 9: 3})
    exporter = build_exporter(
        "--broker-url",
        f"r={redis_generation_server.url}",
        "--queue",
        "evals",
        "--priority-steps",
        "0,1,2,3,4,5,6,7,8,9",
        "--sep",
        ":",
    )
    samples = scrape(exporter)
    # Empty steps other than the first are absent (absent means 0).
    assert messages_by_level(samples, "r", "evals") == {"0": 2, "4": 1, "9": 3}
    # The keys really are kombu's: the exporter read what Celery wrote.
    client = redis_generation_server.client()
    assert client.llen("evals:4") == 1 and client.llen("evals:9") == 3
    exporter.close()


def test_global_keyprefix(redis_generation_server):
    app = celery_app(redis_generation_server.url, global_keyprefix="tenant-a:")
    publish(app, "jobs", {0: 1, 5: 2, 9: 4})
    # Same queue name without the prefix must not be counted.
    redis_generation_server.client().lpush("jobs", b"{}")
    exporter = build_exporter(
        "--broker-url", f"p={redis_generation_server.url}", "--global-keyprefix", "tenant-a:"
    )
    samples = scrape(exporter)
    assert messages_by_level(samples, "p", "jobs") == {"0": 1, "3": 2, "9": 4}
    exporter.close()


def test_discovery_reads_bindings_and_ignores_celeryev_and_pidbox(redis_generation_server):
    with Connection(redis_generation_server.url) as conn:
        channel = conn.default_channel
        for queue in (
            Queue("alpha", Exchange("alpha", type="direct"), routing_key="alpha"),
            Queue("beta", Exchange("tasks", type="direct"), routing_key="beta.rk"),
            Queue("celeryev.abc", Exchange("celeryev", type="topic"), routing_key="#"),
            Queue("host.celery.pidbox", Exchange("celery.pidbox", type="fanout")),
            Queue("reply-xyz", Exchange("reply.celery.pidbox", type="direct"), routing_key="r"),
        ):
            queue(channel).declare()
    keys = sorted(k.decode() for k in redis_generation_server.client().keys("_kombu.binding.*"))
    assert keys == [
        "_kombu.binding.alpha",
        "_kombu.binding.celery.pidbox",
        "_kombu.binding.celeryev",
        "_kombu.binding.reply.celery.pidbox",
        "_kombu.binding.tasks",
    ]
    inspector = RedisInspector(new_broker(name="d", url=redis_generation_server.url))
    assert inspector.watched_queues() == ["alpha", "beta"]
    # Routing keys map back to queues for reserved-work attribution.
    assert inspector.queue_for("tasks", "beta.rk", set()) == "beta"
    assert inspector.queue_for("nowhere", "x", set()) == UNKNOWN_QUEUE
    inspector.close()


def test_explicit_queues_and_discovery_together(redis_generation_server):
    app = celery_app(redis_generation_server.url)
    publish(app, "found", {0: 1})
    exporter = build_exporter(
        "--broker-url", f"b={redis_generation_server.url}", "--queue", "listed", "--discover-queues"
    )
    samples = scrape(exporter)
    queues = {dict(k)["queue"] for k in samples_named(samples, "celery_queue_messages")}
    assert queues == {"listed", "found"}
    exporter.close()


def test_age_is_exact_with_install(redis_generation_server):
    app = celery_app(redis_generation_server.url)
    instrumentation.install(app)
    try:
        publish(app, "jobs", {0: 1, 9: 1})
    finally:
        instrumentation.uninstall()
    client = redis_generation_server.client()
    stamps = {
        level: json.loads(client.lindex(key, -1))["headers"][instrumentation.ENQUEUED_AT_HEADER]
        for level, key in (("0", "jobs"), ("9", "jobs\x06\x169"))
    }
    config = new_broker(
        name="a", url=redis_generation_server.url, queues=["jobs"], discover_queues=False
    )
    now = time.time() + 42.5
    inspector = RedisInspector(config, clock=lambda: now)
    snapshot = inspector.inspect()
    ages = {lv.priority: lv.oldest_age_seconds for lv in snapshot.levels}
    # Empty levels have no next message, so no age (None: the series is absent).
    assert ages == {"0": now - stamps["0"], "3": None, "6": None, "9": now - stamps["9"]}
    # The AMQP timestamp property is set too (whole seconds), for RabbitMQ.
    message = json.loads(client.lindex("jobs", -1))
    assert message["properties"]["timestamp"] == int(stamps["0"])
    inspector.close()


def test_age_without_install_is_a_lower_bound_from_head_tracking(redis_generation_server):
    app = celery_app(redis_generation_server.url)
    published_at = time.time()
    publish(app, "jobs", {0: 2})
    config = new_broker(
        name="a", url=redis_generation_server.url, queues=["jobs"], discover_queues=False
    )
    clock = [published_at + 100.0]
    inspector = RedisInspector(config, clock=lambda: clock[0])

    def age_at_zero() -> float:
        return next(
            lv for lv in inspector.inspect().levels if lv.priority == "0"
        ).oldest_age_seconds

    assert age_at_zero() == 0.0  # first sighting: nothing known yet
    clock[0] += 17.0
    first = age_at_zero()
    assert first == 17.0
    assert first <= clock[0] - published_at  # never more than the true age
    # The head is consumed: the next message starts from 0 again.
    redis_generation_server.client().rpop("jobs")
    clock[0] += 5.0
    assert age_at_zero() == 0.0
    clock[0] += 3.0
    assert age_at_zero() == 3.0
    inspector.close()


def test_reserved_work_from_a_consumer_holding_unacked_messages(redis_generation_server):
    app = celery_app(redis_generation_server.url)
    publish(app, "work", {0: 3, 6: 2})
    publish(app, "other", {0: 1})
    received = []
    with Connection(redis_generation_server.url) as conn:
        queue = Queue("work", Exchange("work", type="direct"), routing_key="work")
        with conn.Consumer(queue, callbacks=[lambda body, msg: received.append(msg)]) as consumer:
            consumer.qos(prefetch_count=10)
            deadline = time.monotonic() + 20
            while len(received) < 5 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=1)
            assert len(received) == 5
            fetched_before = time.time()

            exporter = build_exporter(
                "--broker-url", f"r={redis_generation_server.url}", "--queue", "work,other"
            )
            samples = scrape(exporter)
            assert sample_value(samples, "celery_broker_reserved_messages", broker="r") == 5
            assert (
                sample_value(samples, "celery_queue_reserved_messages", broker="r", queue="work")
                == 5
            )
            assert (
                sample_value(samples, "celery_queue_reserved_messages", broker="r", queue="other")
                == 0
            )
            # Reserved messages are no longer in the lists.
            assert messages_by_level(samples, "r", "work") == {"0": 0}
            assert messages_by_level(samples, "r", "other")["0"] == 1
            oldest = sample_value(samples, "celery_broker_reserved_oldest_age_seconds", broker="r")
            assert 0 <= oldest <= time.time() - fetched_before + 20
            assert sample_value(samples, "celery_broker_reserved_overdue_messages", broker="r") == 0
            exporter.close()

            # Past visibility_timeout they count as overdue (Redis would deliver them again).
            config = new_broker(
                name="r", url=redis_generation_server.url, queues=["work"], visibility_timeout=30
            )
            late = RedisInspector(config, clock=lambda: time.time() + 31)
            assert late.inspect().reserved_overdue == 5
            late.close()
            for message in received:
                message.ack()
    assert redis_generation_server.client().hlen("unacked") == 0


@pytest.mark.slow
def test_reserved_cost_is_bounded_with_100000_reservations(redis_server):
    """100,000 reservations: the total stays exact, the per-queue split is read from a sample
    of reserved_sample_size entries (one HRANDFIELD), never the whole hash."""
    client = redis_server.client()
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for i in range(100_000):
            queue = "a" if i % 4 else "b"  # 75% a, 25% b
            raw = {"body": "", "headers": {"id": f"t{i}"}, "properties": {"delivery_tag": f"d{i}"}}
            pipe.hset("unacked", f"d{i}", json.dumps([raw, queue, queue]))
            pipe.zadd("unacked_index", {f"d{i}": now - i * 0.001})
        pipe.execute()
    client.config_resetstat()
    config = new_broker(
        name="big",
        url=redis_server.url,
        queues=["a", "b"],
        discover_queues=False,
        reserved_sample_size=1000,
    )
    inspector = RedisInspector(config)
    snapshot = inspector.inspect()
    assert snapshot.reserved_total == 100_000
    reserved = {q: r.reserved for q, r in snapshot.queues.items()}
    assert set(reserved) == {"a", "b"}
    assert reserved["a"] + reserved["b"] == 100_000
    # Estimated from 1,000 samples: within 10 standard deviations of the true split.
    assert abs(reserved["b"] - 25_000) < 10 * (100_000 * (0.25 * 0.75 / 1000) ** 0.5)
    stats = client.info("commandstats")
    assert stats["cmdstat_hrandfield"]["calls"] == 1
    for whole_hash_read in ("cmdstat_hgetall", "cmdstat_hscan", "cmdstat_hvals", "cmdstat_hkeys"):
        assert whole_hash_read not in stats
    assert stats["cmdstat_zrange"]["calls"] == 1  # only the oldest entry
    inspector.close()


def test_garbage_in_a_list_is_counted_and_skipped(redis_generation_server):
    app = celery_app(redis_generation_server.url)
    publish(app, "jobs", {0: 1})
    client = redis_generation_server.client()
    client.rpush("jobs", b"\x00\xffnot json at all")  # sits at the head (-1)
    client.lpush("jobs\x06\x163", b"[1, 2")
    exporter = build_exporter("--broker-url", f"g={redis_generation_server.url}", "--queue", "jobs")
    samples = scrape(exporter)
    assert sample_value(samples, "celery_broker_up", broker="g") == 1
    assert messages_by_level(samples, "g", "jobs") == {"0": 2, "3": 1}
    assert sample_value(samples, "celery_exporter_malformed_messages_total", broker="g") == 2
    samples = scrape(exporter)
    assert sample_value(samples, "celery_exporter_malformed_messages_total", broker="g") == 4
    exporter.close()


def test_pipeline_fallback_when_scripts_are_not_allowed(redis_generation_server):
    """An ACL user without scripting (or Redis < 7) gets the same readings via pipelines."""
    app = celery_app(redis_generation_server.url)
    instrumentation.install(app)
    try:
        publish(app, "jobs", {0: 2, 4: 1, 9: 3})
    finally:
        instrumentation.uninstall()
    redis_generation_server.client().rpush("jobs\x06\x163", b"garbage")
    admin = redis_generation_server.client()
    admin.acl_setuser(
        "reader",
        enabled=True,
        passwords=["+readerpw"],
        keys=["*"],
        commands=["+@read", "+@connection", "-@scripting", "+info"],
    )
    url = f"redis://reader:readerpw@127.0.0.1:{redis_generation_server.port}/0"
    now = time.time() + 10
    by_script = RedisInspector(
        new_broker(name="s", url=redis_generation_server.url, queues=["jobs"]), clock=lambda: now
    )
    by_pipeline = RedisInspector(new_broker(name="p", url=url, queues=["jobs"]), clock=lambda: now)
    first, second = by_script.inspect(), by_pipeline.inspect()
    assert by_script.use_script is True
    assert by_pipeline.use_script is False  # switched after NOPERM, without failing the scrape
    assert first.levels == second.levels
    assert [lv.messages for lv in second.levels] == [2, 2, 0, 3]
    assert first.malformed_messages == second.malformed_messages == 1
    by_script.close()
    by_pipeline.close()


def test_the_documented_least_privilege_acl_is_enough(redis_generation_server):
    """README's ACL line, run as written: the exporter reads everything, fast path included."""
    from testsupport.paths import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (acl_line,) = [ln for ln in readme.splitlines() if ln.startswith("ACL SETUSER celery-exp")]
    admin = redis_generation_server.client()
    admin.execute_command(*acl_line.split())
    publish(celery_app(redis_generation_server.url), "jobs", {0: 1, 9: 2})
    url = f"redis://celery-exporter:CHANGE-ME@127.0.0.1:{redis_generation_server.port}/0"
    inspector = RedisInspector(new_broker(name="acl", url=url))
    snapshot = inspector.inspect()
    assert inspector.use_script is True
    assert [(lv.queue, lv.priority, lv.messages) for lv in snapshot.levels] == [
        ("jobs", "0", 1),
        ("jobs", "3", 0),
        ("jobs", "6", 0),
        ("jobs", "9", 2),
    ]
    import redis as redis_lib

    with pytest.raises(redis_lib.exceptions.NoPermissionError):
        inspector.client.lpush("jobs", b"x")  # the user cannot write, whatever the exporter does
    inspector.close()


def test_discovered_queues_are_capped_by_max_queues(redis_generation_server):
    app = celery_app(redis_generation_server.url)
    for name in ("q1", "q2", "q3", "q4"):
        publish(app, name, {0: 1})
    config = new_broker(
        name="cap", url=redis_generation_server.url, queues=["listed"], max_queues=3
    )
    inspector = RedisInspector(config)
    snapshot = inspector.inspect()
    # The listed queue always counts; discovery fills the remaining two places in name order.
    assert sorted({lv.queue for lv in snapshot.levels}) == ["listed", "q1", "q2"]
    assert snapshot.queues_over_limit == 2
    inspector.close()


def test_a_non_finite_enqueue_stamp_is_not_trusted(redis_generation_server):
    """A stamp of 'nan' or 'inf' (hand-made or corrupt headers) falls back to head tracking."""
    client = redis_generation_server.client()
    for key, stamp in (("jobs", "nan"), ("jobs\x06\x163", "inf"), ("jobs\x06\x166", "-inf")):
        message = {"headers": {"id": key, instrumentation.ENQUEUED_AT_HEADER: stamp}}
        client.lpush(key, json.dumps(message))
    config = new_broker(
        name="n", url=redis_generation_server.url, queues=["jobs"], discover_queues=False
    )
    clock = [1_000_000.0]
    inspector = RedisInspector(config, clock=lambda: clock[0])
    # Step 9 is empty: no next message, no age.
    assert [lv.oldest_age_seconds for lv in inspector.inspect().levels] == [0.0, 0.0, 0.0, None]
    clock[0] += 4.0
    assert [lv.oldest_age_seconds for lv in inspector.inspect().levels] == [4.0, 4.0, 4.0, None]
    inspector.close()


# --- urgency from the levels in use, unstamped heads (issue 13) ----------------------------


def urgency_marks(samples: dict, broker: str, queue: str) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["priority"], dict(labels)["urgency"]): value
        for labels, value in samples_named(samples, "celery_queue_priority_urgency_rank").items()
        if dict(labels)["broker"] == broker and dict(labels)["queue"] == queue
    }


def unstamped_by_level(samples: dict, broker: str, queue: str) -> dict[str, float]:
    return {
        dict(labels)["priority"]: value
        for labels, value in samples_named(samples, "celery_queue_oldest_message_unstamped").items()
        if dict(labels)["broker"] == broker and dict(labels)["queue"] == queue
    }


def test_urgency_marks_the_levels_in_use(redis_generation_server):
    """Steps 0,3,6,9 with messages at 6 and 9 only: 6 is the most urgent level in use, 9 the
    least; the idle queue keeps the declared extremes; emptied levels stay learnt."""
    app = celery_app(redis_generation_server.url)
    publish(app, "jobs", {6: 2, 7: 1, 9: 1})
    exporter = build_exporter(
        "--broker-url", f"r={redis_generation_server.url}", "--queue", "jobs,idle",
        "--priority-steps", "0,3,6,9",
    )  # fmt: skip
    try:
        samples = scrape(exporter)
        assert messages_by_level(samples, "r", "jobs") == {"0": 0, "6": 3, "9": 1}
        assert urgency_marks(samples, "r", "jobs") == {("6", "most"): 2, ("9", "least"): 3}
        assert urgency_marks(samples, "r", "idle") == {("0", "most"): 0, ("9", "least"): 3}
        # Drained: what carried messages since the start stays marked.
        redis_generation_server.client().delete("jobs\x06\x166", "jobs\x06\x169")
        samples = scrape(exporter)
        assert messages_by_level(samples, "r", "jobs") == {"0": 0}
        assert urgency_marks(samples, "r", "jobs") == {("6", "most"): 2, ("9", "least"): 3}
        # A task received at step 3 (the event tracker's levels_in_use) widens the most side.
        exporter.queues.use_levels_in_use("r", lambda: {"jobs": {"3"}, "idle": {"6"}})
        samples = scrape(exporter)
        assert urgency_marks(samples, "r", "jobs") == {("3", "most"): 1, ("9", "least"): 3}
        # Only 6 seen on idle: 6 is the most urgent, the declared 9 the least (one level in
        # use must not be both, or the most-urgent alert, most unless least, drops it).
        assert urgency_marks(samples, "r", "idle") == {("6", "most"): 2, ("9", "least"): 3}
    finally:
        exporter.close()
    # Still one EVAL_RO per scrape: learning costs no broker round trip.
    stats = redis_generation_server.client().info("commandstats")
    assert stats["cmdstat_eval_ro"]["calls"] == 3


def test_urgency_override_from_the_config_file(redis_server, tmp_path):
    app = celery_app(redis_server.url)
    publish(app, "jobs", {6: 1, 9: 1})
    config = tmp_path / "config.yaml"
    config.write_text(
        f"brokers:\n  - name: r\n    url: {redis_server.url}\n    queues: [jobs]\n"
        "    priority_levels: {jobs: {most: 0}}\n"
    )
    exporter = build_exporter("--config", str(config))
    try:
        samples = scrape(exporter)
    finally:
        exporter.close()
    assert urgency_marks(samples, "r", "jobs") == {("0", "most"): 0, ("9", "least"): 3}


def test_unstamped_heads_with_and_without_install(redis_generation_server):
    """Step 0's head was published without install(app), step 9's with it; 3 and 6 are
    empty (no head, no series). A head that is not JSON has no stamp either."""
    app = celery_app(redis_generation_server.url)
    publish(app, "jobs", {0: 1})
    instrumentation.install(app)
    try:
        publish(app, "jobs", {9: 2, 0: 1})  # step 0's head stays the unstamped one
    finally:
        instrumentation.uninstall()
    redis_generation_server.client().lpush("broken\x06\x163", b"not json")
    exporter = build_exporter(
        "--broker-url", f"r={redis_generation_server.url}", "--queue", "jobs,broken"
    )
    try:
        samples = scrape(exporter)
    finally:
        exporter.close()
    assert unstamped_by_level(samples, "r", "jobs") == {"0": 1, "9": 0}
    assert unstamped_by_level(samples, "r", "broken") == {"3": 1}
    # Consumed down to the stamped message: step 0 reads 0.
    redis_generation_server.client().rpop("jobs")
    exporter = build_exporter("--broker-url", f"r={redis_generation_server.url}", "--queue", "jobs")
    try:
        samples = scrape(exporter)
    finally:
        exporter.close()
    assert unstamped_by_level(samples, "r", "jobs") == {"0": 0, "9": 0}


def test_events_levels_in_use_are_wired_to_the_urgency_marks(redis_server, monkeypatch):
    """With --events, the exporter hands each broker's EventTracker.levels_last_seen to the
    queue collector (guarded: trackers without it are skipped). A stand-in method reports
    step 3, received just now."""
    from celery_queue_exporter.events.tracker import EventTracker

    calls: list[str] = []

    def levels_last_seen(self) -> dict[str, dict[str, float]]:
        calls.append(self.broker)
        return {"jobs": {"3": time.time()}}

    monkeypatch.setattr(EventTracker, "levels_last_seen", levels_last_seen, raising=False)
    publish(celery_app(redis_server.url), "jobs", {9: 1})
    exporter = build_exporter(
        "--broker-url", f"r={redis_server.url}", "--queue", "jobs", "--events"
    )
    try:
        samples = scrape(exporter)
    finally:
        exporter.close()
    assert calls == ["r"]
    assert urgency_marks(samples, "r", "jobs") == {("3", "most"): 1, ("9", "least"): 3}


def test_a_failing_levels_source_costs_only_the_learning(redis_server, caplog):
    def broken() -> dict[str, set[str]]:
        raise RuntimeError("tracker gone")

    publish(celery_app(redis_server.url), "jobs", {6: 1})
    exporter = build_exporter("--broker-url", f"r={redis_server.url}", "--queue", "jobs")
    exporter.queues.use_levels_in_use("r", broken)
    try:
        samples = scrape(exporter)
    finally:
        exporter.close()
    assert sample_value(samples, "celery_broker_up", broker="r") == 1
    assert messages_by_level(samples, "r", "jobs") == {"0": 0, "6": 1}
    # What the inspection saw is still learnt (6 alone: the declared 9 is the least urgent).
    assert urgency_marks(samples, "r", "jobs") == {("6", "most"): 2, ("9", "least"): 3}
    assert "broker r: levels in use from events unavailable" in caplog.text


# --- clock skew (issue 21) ------------------------------------------------------------------


def test_head_age_is_corrected_by_its_producers_clock_offset(redis_generation_server):
    """Heads stamped by producers 300 s behind and ahead (the install(app) host header names
    them): with their offsets known the age is the true wait; a future stamp of an unknown
    producer reads the head tracker's lower bound, not 0; a past one is kept as it is."""
    client = redis_generation_server.client()
    now = 1_000_000.0
    heads = {  # key: (producer host, stamp on its clock) for a message published at now - 7
        "jobs": ("behind", now - 7 - 300),
        "jobs\x06\x163": ("ahead", now - 7 + 300),
        "jobs\x06\x166": ("unknown-ahead", now - 7 + 300),
        "jobs\x06\x169": ("unknown-behind", now - 7 - 300),
    }
    for key, (host, stamp) in heads.items():
        headers = {
            "id": key,
            instrumentation.ATTEMPT_AT_HEADER: stamp,
            instrumentation.PRODUCER_HEADER: host,
        }
        client.lpush(key, json.dumps({"headers": headers}))
    config = new_broker(
        name="s", url=redis_generation_server.url, queues=["jobs"], discover_queues=False
    )
    clock = [now]
    inspector = RedisInspector(config, clock=lambda: clock[0])
    offsets = {"behind": -300.0, "ahead": 300.0}
    inspector.clock_offset = offsets.get

    def ages() -> dict[str, float | None]:
        return {lv.priority: lv.oldest_age_seconds for lv in inspector.inspect().levels}

    assert ages() == {"0": 7.0, "3": 7.0, "6": 0.0, "9": 307.0}
    clock[0] += 5.0
    assert ages() == {"0": 12.0, "3": 12.0, "6": 5.0, "9": 312.0}
    # A failing source costs the correction only.
    inspector.clock_offset = lambda host: 1 / 0
    assert ages()["0"] == 312.0
    inspector.close()
