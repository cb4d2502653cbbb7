"""Celery events on a real (private) Redis with real Celery workers.

Each test starts its own redis-server (``redis_server`` fixture), an in-process event
collector (tests/apps/harness.py) and, where needed, ``celery worker`` subprocesses running
tests/apps/events_app.py. The tests of what Redis does with the event stream (delivery to
workers and the exporter, restarts, output-buffer overflow, subscriptions left behind, ACLs)
run on Redis 7.0 and 8.0 (``redis_generation_server``); the worker life-cycle tests are the
event tracker's logic over the same stream and run on 7.0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from apps.events_app import make_app
from apps.harness import ROOT

from celery_queue_exporter.catalogue import OTHER_QUEUE, OTHER_WORKER
from celery_queue_exporter.config import EventSettings
from testsupport.exposition import parse_exposition, sample_value
from testsupport.net import free_port
from testsupport.waiting import wait_for

pytest.register_assert_rewrite("apps.scenarios")  # its asserts are the tests' asserts
from apps.scenarios import outcome_scenario, priority_scenario, publish_heartbeat, wait_worker_up  # noqa: E402

pytest_plugins = ["apps.scenarios"]
pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROMTOOL = "/usr/bin/promtool"


def test_task_outcomes_counted_exactly_per_task_and_queue_prefork(
    redis_generation_server, unique_name, exporter_factory, workers, producer_hook
):
    exporter = exporter_factory(redis_generation_server.url)
    outcome_scenario(exporter, redis_generation_server.url, unique_name, workers, lowest_level="0")


def test_most_urgent_level_waits_less_with_a_backlog_solo(
    redis_generation_server, unique_name, exporter_factory, workers, producer_hook
):
    exporter = exporter_factory(redis_generation_server.url)
    # On Redis 0 is the most urgent level (kombu pops step 0 first).
    priority_scenario(
        exporter, redis_generation_server.url, unique_name, workers, most="0", least="9"
    )


def test_sigkilled_worker_down_within_timeout_and_kept_for_retention(
    redis_server, unique_name, exporter_factory, workers
):
    settings = EventSettings(heartbeat_timeout_seconds=3.0, worker_retention_seconds=8.0)
    exporter = exporter_factory(redis_server.url, settings)
    worker = workers(redis_server.url, unique_name, pool="solo", heartbeat_seconds=1)
    wait_worker_up(exporter, worker)
    wait_for(
        lambda: exporter.value("celery_queue_workers", queue=unique_name) == 1,
        15,
        what="queue announced",
    )
    worker.kill(signal.SIGKILL)
    killed = time.time()
    wait_for(lambda: exporter.value("celery_worker_up", worker=worker.name) == 0.0, 10, what="down")
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

    wait_for(dropped, 20, interval=0.2, what="series dropped after retention")
    # Exported as down until the retention had passed since the last heartbeat, not before.
    assert seen_down and seen_down[-1] >= last_heard + settings.worker_retention_seconds - 0.3
    assert time.time() <= last_heard + settings.worker_retention_seconds + 3


def test_broker_restart_events_flow_again(redis_generation_server, exporter_factory):
    exporter = exporter_factory(redis_generation_server.url)
    publish_heartbeat(redis_generation_server.url, "before@restart")
    wait_for(lambda: exporter.value("celery_events_received_total") == 1, 10, what="event")
    redis_generation_server.stop()
    wait_for(lambda: exporter.value("celery_event_consumer_up") == 0, 10, what="consumer down")
    redis_generation_server.start()
    wait_for(lambda: exporter.value("celery_event_consumer_up") == 1, 20, what="resubscribed")
    publish_heartbeat(redis_generation_server.url, "after@restart")
    wait_for(lambda: exporter.value("celery_events_received_total") == 2, 10, what="event")
    assert exporter.value("celery_worker_up", worker="after@restart") == 1
    interruptions = exporter.values("celery_event_stream_interruptions_total", "reason")
    assert interruptions == {"disconnected": 1, "overflow": 0}


def test_overflow_drop_is_reconnected_and_counted(redis_generation_server, exporter_factory):
    client = redis_generation_server.client()
    client.config_set("client-output-buffer-limit", "pubsub 262144 0 0")
    exporter = exporter_factory(redis_generation_server.url)
    payload = json.dumps({"body": "x" * 1000, "content-type": "text/plain"})
    # Stall the consumer (it blocks on the tracker's lock) so Redis' buffer for it overflows.
    with exporter.tracker.lock, client.pipeline(transaction=False) as pipe:
        for _ in range(40_000):
            pipe.publish("/0.celeryev/task.multi", payload)
        pipe.execute()
    wait_for(
        lambda: exporter.value("celery_event_stream_interruptions_total", reason="overflow") == 1,
        20,
        what="overflow counted",
    )
    wait_for(lambda: exporter.value("celery_event_consumer_up") == 1, 20, what="resubscribed")
    before = exporter.value("celery_events_received_total")
    publish_heartbeat(redis_generation_server.url, "after@overflow")
    wait_for(lambda: exporter.value("celery_events_received_total") == before + 1, 10, what="event")
    assert exporter.value("celery_event_stream_interruptions_total", reason="disconnected") == 0


def test_malformed_payloads_counted_skipped_and_nothing_left_behind(
    redis_generation_server, exporter_factory
):
    client = redis_generation_server.client()
    exporter = exporter_factory(redis_generation_server.url)
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
    publish_heartbeat(redis_generation_server.url, "good@host")
    wait_for(lambda: exporter.value("celery_events_received_total") == 1, 10, what="good")
    # [1, 2] decodes to two non-event items: each counts.
    assert exporter.value("celery_events_malformed_total") == 4 + 2
    assert exporter.value("celery_worker_up", worker="good@host") == 1
    assert exporter.value("celery_event_consumer_up") == 1

    exporter.close()
    assert client.dbsize() == 0  # no binding sets, no queues, no keys
    wait_for(lambda: client.pubsub_numpat() == 0, 10, what="subscription gone")
    names = [c.get("name") for c in client.client_list()]
    assert "celery-queue-exporter-events" not in names


def test_queue_and_worker_caps_fold_the_rest_into_other(redis_server, exporter_factory):
    """Real task-sent events from a producer and real heartbeats, past both caps."""
    settings = EventSettings(max_queue_names=2, max_workers=1)
    exporter = exporter_factory(redis_server.url, settings)
    app = make_app(redis_server.url, "cap-q0")
    for queue in ("cap-q0", "cap-q1", "cap-q2", "cap-q3", "cap-q0"):
        app.send_task("cap.task", queue=queue)
    for hostname in ("cap-w1@host", "cap-w2@host", "cap-w3@host"):
        publish_heartbeat(redis_server.url, hostname)
    wait_for(lambda: exporter.value("celery_events_received_total") == 8, 10, what="events")
    assert exporter.values("celery_task_sent_total", "queue", task="cap.task") == {
        "cap-q0": 2, "cap-q1": 1, OTHER_QUEUE: 2,
    }  # fmt: skip
    assert exporter.values("celery_worker_up", "worker") == {"cap-w1@host": 1, OTHER_WORKER: 1}
    assert exporter.value("celery_worker_active_tasks", worker=OTHER_WORKER) is None
    app.close()


def test_cli_consumes_events_and_leaves_nothing_when_killed(redis_generation_server):
    client = redis_generation_server.client()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "celery_queue_exporter", "--events",
         "--broker-url", redis_generation_server.url, "--queue", "q",
         "--host", "127.0.0.1", "--port", str(port)],
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

        wait_for(subscribed, 20, what="exporter subscribed")
        publish_heartbeat(redis_generation_server.url, "cli@host")
        wait_for(
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
    wait_for(lambda: client.pubsub_numpat() == 0, 10, what="subscription gone")
    assert client.dbsize() == 0


def test_events_with_the_documented_least_privilege_acl(redis_generation_server, exporter_factory):
    """README's ACL line as written receives events; without +info it still does (INFO only
    classifies interruptions)."""
    from testsupport.paths import ROOT as REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (acl_line,) = [ln for ln in readme.splitlines() if ln.startswith("ACL SETUSER celery-exp")]
    admin = redis_generation_server.client()
    admin.execute_command(*acl_line.split())
    admin.execute_command(*acl_line.replace("celery-exporter", "no-info").split(), "-info")
    for user in ("celery-exporter", "no-info"):
        url = f"redis://{user}:CHANGE-ME@127.0.0.1:{redis_generation_server.port}/0"
        exporter = exporter_factory(url)
        publish_heartbeat(redis_generation_server.url, f"w-{user}@host")
        wait_for(
            lambda u=user, e=exporter: e.value("celery_worker_up", worker=f"w-{u}@host") == 1,
            10,
            what=f"heartbeat seen by {user}",
        )
        assert exporter.value("celery_event_consumer_up") == 1


def test_gracefully_stopped_worker_offline_during_the_grace_then_dropped(
    redis_server, unique_name, exporter_factory, workers
):
    """SIGTERM: the worker sends worker-offline. It is offline (up 0, offline 1), not lost,
    for the grace period; then every series of it is gone, its queue's worker count too."""
    settings = EventSettings(
        heartbeat_timeout_seconds=3.0, worker_retention_seconds=600.0,
        worker_offline_grace_seconds=3.0,
    )  # fmt: skip
    exporter = exporter_factory(redis_server.url, settings)
    worker = workers(redis_server.url, unique_name, pool="solo", heartbeat_seconds=1)
    wait_worker_up(exporter, worker)
    wait_for(
        lambda: exporter.value("celery_queue_workers", queue=unique_name) == 1,
        15,
        what="queue announced",
    )
    assert exporter.value("celery_worker_offline", worker=worker.name) == 0
    assert exporter.value("celery_workers_queues_unknown") == 0
    os.kill(worker.process.pid, signal.SIGTERM)  # warm shutdown: worker-offline
    samples = wait_for(
        lambda: (
            (s := exporter.samples())
            and sample_value(
                s, "celery_worker_offline", broker=exporter.broker.name, worker=worker.name
            )
            == 1
            and s
        ),
        10,
        what="offline",
    )

    def value(name: str, **labels: str) -> float | None:
        return sample_value(samples, name, broker=exporter.broker.name, **labels)

    assert value("celery_worker_up", worker=worker.name) == 0
    assert value("celery_queue_workers", queue=unique_name) == 0
    assert value("celery_worker_pool_size", worker=worker.name, pool="solo") is None

    def gone() -> bool:
        nonlocal samples
        samples = exporter.samples()
        if value("celery_worker_offline", worker=worker.name) is not None:
            assert value("celery_worker_offline", worker=worker.name) == 1  # never lost
            assert value("celery_worker_up", worker=worker.name) == 0
            return False
        return True

    wait_for(gone, 15, interval=0.2, what="series dropped after the grace")
    worker_series = [
        name for (name, labels) in samples if dict(labels).get("worker") == worker.name
    ]
    assert worker_series == []
    assert value("celery_queue_workers", queue=unique_name) is None
    assert value("celery_workers_queues_unknown") == 0


class ExporterProcess:
    """The exporter CLI as a process of its own, scraped over HTTP."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery_queue_exporter", *args,
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def scrape(self) -> dict | None:
        import requests

        if self.process.poll() is not None:
            raise AssertionError(f"exporter exited:\n{self.process.stderr.read()[-3000:]}")
        try:
            return parse_exposition(requests.get(f"http://127.0.0.1:{self.port}/metrics").text)
        except requests.ConnectionError:
            return None

    def stop(self, signum: int) -> str:
        """Signal it, wait for it to exit and return its log."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.process.wait(timeout=20)
        return self.process.stderr.read()


def test_lost_worker_still_down_after_exporter_restarts_with_a_state_file(
    redis_server, unique_name, workers, tmp_path
):
    """A worker killed with SIGKILL (no worker-offline) is down; the exporter restarts (killed
    itself, then stopped with SIGTERM) and exports it as down again at once, from the state
    file, without any new event."""
    state_file = tmp_path / "state.json"
    args = ("--events", "--broker-url", f"test={redis_server.url}", "--queue", unique_name,
            "--events-heartbeat-timeout", "3", "--events-state-file", str(state_file))  # fmt: skip
    worker = workers(redis_server.url, unique_name, pool="solo", heartbeat_seconds=1)
    first = ExporterProcess(*args)
    started = [first]
    try:

        def value_in(exporter: ExporterProcess, name: str, **labels: str) -> float | None:
            samples = exporter.scrape()
            return sample_value(samples or {}, name, broker="test", **labels)

        wait_for(
            lambda: value_in(first, "celery_worker_up", worker=worker.name) == 1, 30, what="up"
        )
        wait_for(
            lambda: value_in(first, "celery_queue_workers", queue=unique_name) == 1,
            15,
            what="queue announced",
        )
        worker.kill(signal.SIGKILL)
        wait_for(
            lambda: value_in(first, "celery_worker_up", worker=worker.name) == 0, 10, what="down"
        )
        last_heard = value_in(first, "celery_worker_last_heartbeat_timestamp_seconds",
                              worker=worker.name)  # fmt: skip

        def saved() -> tuple[float | None, float | None]:
            """(the worker's last_heard, the file's saved_at) as written."""
            try:
                data = json.loads(state_file.read_text())
            except (FileNotFoundError, ValueError):
                return None, None
            entry = data["brokers"]["test"]["workers"].get(worker.name)
            return (entry and entry["last_heard"]), data.get("saved_at")

        def saved_last_heard() -> float | None:
            return saved()[0]

        def saved_as_lost() -> bool:
            """Written while the worker was silent past the heartbeat timeout (3 s): a worker
            up at save time would be restored as possibly stopped gracefully, not lost."""
            heard, saved_at = saved()
            return heard == last_heard and saved_at is not None and saved_at - heard > 3

        # The timer writes the changed state (at most every 10 s; the worker turning lost is
        # a change): then kill the exporter, which leaves it no chance to write at shutdown.
        wait_for(saved_as_lost, 25, what="state written with the worker lost")
        first.stop(signal.SIGKILL)

        for restart in range(2):
            exporter = ExporterProcess(*args)
            started.append(exporter)
            samples = wait_for(exporter.scrape, 20, what="exporter serving")

            def value(name: str, samples=samples, **labels: str) -> float | None:
                return sample_value(samples, name, broker="test", **labels)

            assert value("celery_events_received_total") == 0  # nothing new heard
            assert value("celery_worker_up", worker=worker.name) == 0
            assert value("celery_worker_offline", worker=worker.name) == 0
            assert value("celery_worker_last_heartbeat_timestamp_seconds",
                         worker=worker.name) == last_heard  # fmt: skip
            assert value("celery_queue_workers", queue=unique_name) == 0
            if restart == 0:  # the second restart follows a SIGTERM: written at shutdown
                state_file.unlink()
                log = exporter.stop(signal.SIGTERM)
                assert "workers restored" in log, log
                assert saved_last_heard() == last_heard
    finally:
        for exporter in started:
            exporter.stop(signal.SIGKILL)
    wait_for(lambda: redis_server.client().pubsub_numpat() == 0, 10, what="unsubscribed")


def test_live_workers_without_install_counted_as_queues_unknown(
    redis_server, unique_name, exporter_factory, workers
):
    exporter = exporter_factory(redis_server.url)
    plain = workers(redis_server.url, unique_name, install=False, heartbeat_seconds=1)
    wait_worker_up(exporter, plain)
    # Counted from its first heartbeat (worker-online comes before install(app) could announce).
    wait_for(
        lambda: exporter.value("celery_workers_queues_unknown") == 1,
        15,
        what="a heartbeat without a queue announcement",
    )
    assert exporter.value("celery_queue_workers", queue=unique_name) is None  # ran no task
    installed = workers(redis_server.url, unique_name, heartbeat_seconds=1)
    wait_worker_up(exporter, installed)
    wait_for(
        lambda: exporter.value("celery_queue_workers", queue=unique_name) == 1,
        15,
        what="queue announced",
    )
    assert exporter.value("celery_workers_queues_unknown") == 1  # plain still unknown
    plain.kill(signal.SIGTERM)
    wait_for(
        lambda: exporter.value("celery_worker_offline", worker=plain.name) == 1, 15, what="off"
    )
    assert exporter.value("celery_workers_queues_unknown") == 0


def test_worker_stopped_gracefully_while_the_exporter_was_down_is_never_lost(
    redis_server, unique_name, workers, tmp_path
):
    """A graceful deploy during an exporter restart: the worker was up when the state was
    written (at the exporter's SIGTERM), then stopped with SIGTERM while no exporter listened
    (its worker-offline unheard). After the restart it is never exported as lost (up 0 and
    offline 0, what CeleryWorkerDown pages on): offline once silent past the timeout, then
    dropped after heartbeat_timeout + worker_offline_grace_seconds."""
    state_file = tmp_path / "state.json"
    args = ("--events", "--broker-url", f"test={redis_server.url}", "--queue", unique_name,
            "--events-heartbeat-timeout", "3", "--events-worker-offline-grace", "3",
            "--events-state-file", str(state_file))  # fmt: skip
    worker = workers(redis_server.url, unique_name, pool="solo", heartbeat_seconds=1)
    first = ExporterProcess(*args)
    started = [first]
    try:

        def value_in(samples: dict | None, name: str, **labels: str) -> float | None:
            return sample_value(samples or {}, name, broker="test", **labels)

        wait_for(
            lambda: value_in(first.scrape(), "celery_worker_up", worker=worker.name) == 1,
            30,
            what="up",
        )
        first.stop(signal.SIGTERM)  # writes the state with the worker up
        data = json.loads(state_file.read_text())
        heard = data["brokers"]["test"]["workers"][worker.name]["last_heard"]
        assert data["saved_at"] - heard <= 3
        os.kill(worker.process.pid, signal.SIGTERM)  # its worker-offline: nobody listening
        worker.process.wait(timeout=30)

        second = ExporterProcess(*args)
        started.append(second)
        states: list[tuple[float | None, float | None]] = []

        def dropped() -> bool:
            samples = second.scrape()
            if samples is None:
                return False
            state = (
                value_in(samples, "celery_worker_up", worker=worker.name),
                value_in(samples, "celery_worker_offline", worker=worker.name),
            )
            states.append(state)
            return state == (None, None)

        wait_for(dropped, 30, interval=0.2, what="the restored worker dropped")
        assert (0.0, 0.0) not in states  # never lost
        assert (0.0, 1.0) in states  # offline once silent past the timeout
        assert value_in(second.scrape(), "celery_events_received_total") == 0
    finally:
        for exporter in started:
            exporter.stop(signal.SIGKILL)
    wait_for(lambda: redis_server.client().pubsub_numpat() == 0, 10, what="unsubscribed")
