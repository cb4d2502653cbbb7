"""Celery events on a real (private) Redis with real Celery workers.

Each test starts its own redis-server (``redis_server`` fixture), an in-process event
collector (tests/apps/harness.py) and, where needed, ``celery worker`` subprocesses running
tests/apps/events_app.py.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from apps.events_app import make_app
from apps.harness import ROOT, Exporter, Worker
from conftest import free_port, parse_exposition, wait_until

from exporter.config import EventSettings
from exporter.instrumentation import install, uninstall

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROMTOOL = "/usr/bin/promtool"


@pytest.fixture
def exporter_factory():
    started: list[Exporter] = []

    def start(url: str, settings: EventSettings | None = None) -> Exporter:
        exporter = Exporter(url, settings).start()
        started.append(exporter)
        wait_until(exporter.consumer.subscribed.is_set, 15, what="event subscription")
        return exporter

    yield start
    for exporter in started:
        exporter.close()


@pytest.fixture
def workers():
    started: list[Worker] = []

    def start(*args, **kwargs) -> Worker:
        worker = Worker(*args, **kwargs).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def producer_hook():
    """install(app) in the test process, so published tasks carry the enqueue stamp."""
    install(None)
    yield
    uninstall()


def wait_worker_up(exporter: Exporter, worker: Worker, timeout: float = 30.0) -> None:
    def up() -> bool:
        if worker.process and worker.process.poll() is not None:
            raise AssertionError(f"worker exited:\n{worker.output()[-3000:]}")
        return exporter.value("celery_worker_up", worker=worker.name) == 1.0

    wait_until(up, timeout, what=f"{worker.name} up")


def test_task_outcomes_counted_exactly_per_task_and_queue_prefork(
    redis_server, unique_name, exporter_factory, workers, producer_hook
):
    exporter = exporter_factory(redis_server.url)
    worker = workers(redis_server.url, unique_name, pool="prefork", concurrency=2)
    wait_worker_up(exporter, worker)
    app = make_app(redis_server.url, unique_name)
    for value in range(3):
        app.send_task("events.ok", args=[value])
    for _ in range(2):
        app.send_task("events.boom")
    app.send_task("events.retry_once")
    app.send_task("events.soft_limit")
    app.send_task("events.hard_limit")
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=60)
    app.send_task("events.ok", expires=past)  # revoked on arrival (expired)

    q = {"queue": unique_name}

    def finished() -> bool:
        return (
            exporter.value("celery_task_succeeded_total", task="events.ok", **q) == 3
            and exporter.value("celery_task_succeeded_total", task="events.retry_once", **q) == 1
            and exporter.value("celery_task_failed_total", task="events.boom", **q) == 2
            and len(exporter.values("celery_task_time_limit_exceeded_total", "limit", **q)) == 2
            and exporter.value("celery_task_revoked_total", task="events.ok", **q) == 1
        )

    wait_until(finished, 60, what="all outcomes")
    wait_until(lambda: exporter.tracker.snapshot().tracked_tasks == 0, 10, what="joins done")
    expected = {
        "sent": {"events.ok": 4, "events.boom": 2, "events.retry_once": 2,
                 "events.soft_limit": 1, "events.hard_limit": 1},
        "received": {"events.ok": 3, "events.boom": 2, "events.retry_once": 2,
                     "events.soft_limit": 1, "events.hard_limit": 1},
        "started": {"events.ok": 3, "events.boom": 2, "events.retry_once": 2,
                    "events.soft_limit": 1, "events.hard_limit": 1},
        "succeeded": {"events.ok": 3, "events.retry_once": 1},
        "failed": {"events.boom": 2},
        "retried": {"events.retry_once": 1},
        "revoked": {"events.ok": 1},
        "rejected": {},
    }  # fmt: skip
    for kind, per_task in expected.items():
        found = exporter.values(f"celery_task_{kind}_total", "task")
        assert found == per_task, kind
        assert set(exporter.values(f"celery_task_{kind}_total", "queue")) <= {unique_name}
    limits = exporter.values("celery_task_time_limit_exceeded_total", "limit", **q)
    assert limits == {"soft": 1, "hard": 1}
    assert exporter.values("celery_task_time_limit_exceeded_total", "task", **q) == {
        "events.soft_limit": 1,
        "events.hard_limit": 1,
    }
    # Runtimes of successes, waits of every start, per task.
    assert exporter.values("celery_task_runtime_seconds_count", "task", **q) == {
        "events.ok": 3,
        "events.retry_once": 1,
    }
    assert (
        exporter.values("celery_task_queue_wait_seconds_count", "task", **q) == expected["started"]
    )
    # install(app) on both sides: every wait has the priority level (Redis step 0 here).
    assert exporter.values("celery_queue_wait_seconds_count", "priority", **q) == {"0": 9}
    assert exporter.value("celery_queue_workers", **q) == 1
    assert exporter.value("celery_events_malformed_total") == 0
    assert exporter.value("celery_event_clock_skew_clamped_total") == 0

    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=exporter.text(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_most_urgent_level_waits_less_with_a_backlog_solo(
    redis_server, unique_name, exporter_factory, workers, producer_hook
):
    exporter = exporter_factory(redis_server.url)
    app = make_app(redis_server.url, unique_name)
    per_level = 6
    for _ in range(per_level):  # a backlog, interleaved: least urgent first each time
        app.send_task("events.sleep", args=[0.05], priority=9)
        app.send_task("events.sleep", args=[0.05], priority=0)
    worker = workers(redis_server.url, unique_name, pool="solo")
    q = {"queue": unique_name}
    wait_until(
        lambda: (
            exporter.value("celery_task_succeeded_total", task="events.sleep", **q) == 2 * per_level
        ),
        60,
        what="backlog done",
    )
    counts = exporter.values("celery_queue_wait_seconds_count", "priority", **q)
    sums = exporter.values("celery_queue_wait_seconds_sum", "priority", **q)
    assert counts == {"0": per_level, "9": per_level}
    assert sums["0"] / counts["0"] < sums["9"] / counts["9"], (sums, worker.name)


def test_sigkilled_worker_down_within_timeout_and_kept_for_retention(
    redis_server, unique_name, exporter_factory, workers
):
    settings = EventSettings(heartbeat_timeout_seconds=3.0, worker_retention_seconds=8.0)
    exporter = exporter_factory(redis_server.url, settings)
    worker = workers(redis_server.url, unique_name, pool="solo", heartbeat_seconds=1)
    wait_worker_up(exporter, worker)
    wait_until(
        lambda: exporter.value("celery_queue_workers", queue=unique_name) == 1,
        15,
        what="queue announced",
    )
    worker.kill(signal.SIGKILL)
    killed = time.time()
    wait_until(
        lambda: exporter.value("celery_worker_up", worker=worker.name) == 0.0, 10, what="down"
    )
    assert time.time() - killed <= settings.heartbeat_timeout_seconds + 1.5
    assert exporter.value("celery_queue_workers", queue=unique_name) == 0
    last_heard = exporter.value(
        "celery_worker_last_heartbeat_timestamp_seconds", worker=worker.name
    )
    assert last_heard is not None and last_heard <= killed

    seen_down: list[float] = []

    def dropped() -> bool:
        value = exporter.value("celery_worker_up", worker=worker.name)
        if value is not None:
            assert value == 0.0
            seen_down.append(time.time())
        return value is None

    wait_until(dropped, 20, interval=0.2, what="series dropped after retention")
    # Exported as down until the retention had passed since the last heartbeat, not before.
    assert seen_down and seen_down[-1] >= last_heard + settings.worker_retention_seconds - 0.3
    assert time.time() <= last_heard + settings.worker_retention_seconds + 3


def publish_heartbeat(url: str, hostname: str) -> None:
    """A real worker-heartbeat through Celery's own EventDispatcher."""
    app = make_app(url, "unused")
    with (
        app.connection_for_write() as conn,
        app.events.Dispatcher(conn, hostname=hostname, enabled=True) as dispatcher,
    ):
        dispatcher.send("worker-heartbeat", active=0, processed=0, loadavg=[0.0, 0, 0])


def test_broker_restart_events_flow_again(redis_server, exporter_factory):
    exporter = exporter_factory(redis_server.url)
    publish_heartbeat(redis_server.url, "before@restart")
    wait_until(lambda: exporter.value("celery_events_received_total") == 1, 10, what="event")
    redis_server.stop()
    wait_until(lambda: exporter.value("celery_event_consumer_up") == 0, 10, what="consumer down")
    redis_server.start()
    wait_until(lambda: exporter.value("celery_event_consumer_up") == 1, 20, what="resubscribed")
    publish_heartbeat(redis_server.url, "after@restart")
    wait_until(lambda: exporter.value("celery_events_received_total") == 2, 10, what="event")
    assert exporter.value("celery_worker_up", worker="after@restart") == 1
    interruptions = exporter.values("celery_event_stream_interruptions_total", "reason")
    assert interruptions == {"disconnected": 1, "overflow": 0}


def test_overflow_drop_is_reconnected_and_counted(redis_server, exporter_factory):
    client = redis_server.client()
    client.config_set("client-output-buffer-limit", "pubsub 262144 0 0")
    exporter = exporter_factory(redis_server.url)
    payload = json.dumps({"body": "x" * 1000, "content-type": "text/plain"})
    # Stall the consumer (it blocks on the tracker's lock) so Redis' buffer for it overflows.
    with exporter.tracker.lock, client.pipeline(transaction=False) as pipe:
        for _ in range(40_000):
            pipe.publish("/0.celeryev/task.multi", payload)
        pipe.execute()
    wait_until(
        lambda: exporter.value("celery_event_stream_interruptions_total", reason="overflow") == 1,
        20,
        what="overflow counted",
    )
    wait_until(lambda: exporter.value("celery_event_consumer_up") == 1, 20, what="resubscribed")
    before = exporter.value("celery_events_received_total")
    publish_heartbeat(redis_server.url, "after@overflow")
    wait_until(
        lambda: exporter.value("celery_events_received_total") == before + 1, 10, what="event"
    )
    assert exporter.value("celery_event_stream_interruptions_total", reason="disconnected") == 0


def test_malformed_payloads_counted_skipped_and_nothing_left_behind(redis_server, exporter_factory):
    client = redis_server.client()
    exporter = exporter_factory(redis_server.url)
    channel = "/0.celeryev/task.started"
    bad = [
        b"\xff\xfe not json",
        b'"a string"',
        json.dumps({"body": "%%%", "properties": {"body_encoding": "base64"}}),
        json.dumps({"body": "e30=", "content-type": "application/x-python-serialize"}),
        json.dumps({"body": "WzEsIDJd", "properties": {"body_encoding": "base64"}}),  # [1, 2]
    ]
    for payload in bad:
        client.publish(channel, payload)
    publish_heartbeat(redis_server.url, "good@host")
    wait_until(lambda: exporter.value("celery_events_received_total") == 1, 10, what="good")
    # [1, 2] decodes to two non-event items: each counts.
    assert exporter.value("celery_events_malformed_total") == 4 + 2
    assert exporter.value("celery_worker_up", worker="good@host") == 1
    assert exporter.value("celery_event_consumer_up") == 1

    exporter.close()
    assert client.dbsize() == 0  # no binding sets, no queues, no keys
    wait_until(lambda: client.pubsub_numpat() == 0, 10, what="subscription gone")
    names = [c.get("name") for c in client.client_list()]
    assert "celery-queue-exporter-events" not in names


def test_cli_consumes_events_and_leaves_nothing_when_killed(redis_server):
    client = redis_server.client()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--events", "--broker-url", redis_server.url,
         "--queue", "q", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import requests

        def scrape() -> dict | None:
            try:
                return parse_exposition(requests.get(f"http://127.0.0.1:{port}/metrics").text)
            except requests.ConnectionError:
                return None

        def subscribed() -> bool:
            samples = scrape()
            return bool(samples) and any(
                name == "celery_event_consumer_up" and value == 1
                for (name, _), value in samples.items()
            )

        wait_until(subscribed, 20, what="exporter subscribed")
        publish_heartbeat(redis_server.url, "cli@host")
        wait_until(
            lambda: any(
                name == "celery_worker_up" and dict(labels).get("worker") == "cli@host"
                for (name, labels) in (scrape() or {})
            ),
            10,
            what="worker seen through the CLI",
        )
    finally:
        process.kill()
        process.wait(timeout=10)
    wait_until(lambda: client.pubsub_numpat() == 0, 10, what="subscription gone")
    assert client.dbsize() == 0
