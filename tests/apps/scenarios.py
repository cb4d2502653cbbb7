"""Broker-neutral scenarios and fixtures for the event tests (a pytest plugin: test modules
name it in ``pytest_plugins``)."""

from __future__ import annotations

import subprocess

import pytest

from apps.events_app import make_app
from apps.harness import Exporter, Worker
from celery_queue_exporter.config import EventSettings
from celery_queue_exporter.instrumentation import install, uninstall
from testsupport.waiting import wait_for

PROMTOOL = "/usr/bin/promtool"


@pytest.fixture
def exporter_factory():
    started: list[Exporter] = []

    def start(url: str, settings: EventSettings | None = None) -> Exporter:
        # The exporter only binds to Celery's event exchange (it is read-only); a worker
        # declares it. Declare it the way a worker does, before the exporter listens (so the
        # event is not counted), or subscribing would depend on what an earlier test left.
        publish_heartbeat(url, "declares-the-event-exchange@test")
        exporter = Exporter(url, settings).start()
        started.append(exporter)
        wait_for(exporter.consumer.subscribed.is_set, 15, what="event subscription")
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

    wait_for(up, timeout, what=f"{worker.name} up")


def tracked_in(exporter: Exporter, queue: str) -> int:
    """Tasks of ``queue`` whose events the tracker still holds to join. Counted per queue: on
    the shared RabbitMQ the exporter also sees other tests' tasks."""
    tracker = exporter.tracker
    with tracker.lock:
        return sum(1 for task in tracker._tasks.values() if task.queue == queue)


def still_tracked(exporter: Exporter, queue: str) -> list[str]:
    """The records ``tracked_in`` counts, as a failure message shows them."""
    tracker = exporter.tracker
    with tracker.lock:
        return [
            f"{task_id}: {task.name} run={task.run} started_run={task.started_run} "
            f"open_starts={task.open_starts} pending={getattr(task.pending, 'run', None)}"
            for task_id, task in tracker._tasks.items()
            if task.queue == queue
        ]


def outcome_scenario(exporter, url: str, unique_name: str, workers, lowest_level: str) -> None:
    """Known tasks with known outcomes on a prefork worker: exact counters per task and queue
    (shared with test_events_rabbitmq.py)."""
    worker = workers(url, unique_name, pool="prefork", concurrency=2)
    wait_worker_up(exporter, worker)
    app = make_app(url, unique_name)
    for value in range(3):
        app.send_task("events.ok", args=[value])
    for _ in range(2):
        app.send_task("events.boom")
    app.send_task("events.retry_once")
    app.send_task("events.soft_limit")
    app.send_task("events.hard_limit")
    q = {"queue": unique_name}
    victim = app.send_task("events.sleep", args=[60])
    wait_for(
        lambda: exporter.value("celery_task_started_total", task="events.sleep", **q) == 1,
        60,
        what="task to revoke running",
    )
    app.control.revoke(victim.id, terminate=True)

    def finished() -> bool:
        return (
            exporter.value("celery_task_succeeded_total", task="events.ok", **q) == 3
            and exporter.value("celery_task_succeeded_total", task="events.retry_once", **q) == 1
            and exporter.value(
                "celery_task_failed_total", task="events.boom", exception="ValueError", **q
            )
            == 2
            and len(exporter.values("celery_task_time_limit_exceeded_total", "limit", **q)) == 2
            and exporter.value("celery_task_revoked_total", task="events.sleep", **q) == 1
        )

    wait_for(finished, 60, what="all outcomes")
    left: list[str] = []

    def joined() -> bool:
        left[:] = still_tracked(exporter, unique_name)
        return not left

    try:
        wait_for(joined, 30, what="joins done")
    except AssertionError as timeout:  # say which records the tracker still holds, and how
        raise AssertionError(f"{timeout}; still tracked: {left}") from None
    expected = {
        "sent": {"events.ok": 3, "events.sleep": 1, "events.boom": 2, "events.retry_once": 2,
                 "events.soft_limit": 1, "events.hard_limit": 1},
        "received": {"events.ok": 3, "events.sleep": 1, "events.boom": 2, "events.retry_once": 2,
                     "events.soft_limit": 1, "events.hard_limit": 1},
        "started": {"events.ok": 3, "events.sleep": 1, "events.boom": 2, "events.retry_once": 2,
                    "events.soft_limit": 1, "events.hard_limit": 1},
        "succeeded": {"events.ok": 3, "events.retry_once": 1},
        "failed": {"events.boom": 2},
        "retried": {"events.retry_once": 1},
        "revoked": {"events.sleep": 1},
        "rejected": {},
    }  # fmt: skip
    tasks = expected["sent"].keys()
    for kind, per_task in expected.items():
        found = exporter.values(f"celery_task_{kind}_total", "task", **q)
        # Every outcome series of a seen task is exported, at 0 until counted (issue 21), but
        # the failures' (their exception label is unknown before one).
        wanted = per_task if kind == "failed" else dict.fromkeys(tasks, 0) | per_task
        assert found == wanted, kind
    # Time limits are not failures: the only exception label is boom's ValueError.
    assert exporter.values("celery_task_failed_total", "exception", **q) == {"ValueError": 2}
    limits = exporter.values("celery_task_time_limit_exceeded_total", "limit", **q)
    assert limits == {"soft": 1, "hard": 1}
    assert exporter.values("celery_task_time_limit_exceeded_total", "task", **q) == dict.fromkeys(
        tasks, 0
    ) | {"events.soft_limit": 1, "events.hard_limit": 1}
    # Runtimes of successes, waits of every start, per task.
    assert exporter.values("celery_task_runtime_seconds_count", "task", **q) == {
        "events.ok": 3,
        "events.retry_once": 1,
    }
    assert (
        exporter.values("celery_task_queue_wait_seconds_count", "task", **q) == expected["started"]
    )
    # install(app) on both sides: every wait has the priority level (no priority: level 0).
    assert exporter.values("celery_queue_wait_seconds_count", "priority", **q) == {lowest_level: 10}
    assert exporter.value("celery_queue_workers", **q) == 1
    assert exporter.value("celery_event_clock_skew_clamped_total") == 0
    # Every run received once at its level (retry_once: two runs), the same as task-received.
    assert exporter.values(
        "celery_task_received_by_priority_total", "task", priority=lowest_level, **q
    ) == expected["received"]  # fmt: skip
    assert len(exporter.values("celery_task_received_by_priority_total", "priority", **q)) == 1
    assert exporter.tracker.levels_in_use()[unique_name] == {lowest_level}
    assert exporter.value("celery_workers_queues_unknown") == 0

    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=exporter.text(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def priority_scenario(exporter, url: str, unique_name: str, workers, most: str, least: str):
    """A backlog at two levels, then one solo worker with prefetch 1: the most urgent level's
    measured waits must be lower (shared with test_events_rabbitmq.py)."""
    app = make_app(url, unique_name)
    per_level = 6
    for _ in range(per_level):  # a backlog, interleaved: least urgent first each time
        app.send_task("events.sleep", args=[0.05], priority=int(least))
        app.send_task("events.sleep", args=[0.05], priority=int(most))
    worker = workers(url, unique_name, pool="solo")
    q = {"queue": unique_name}
    wait_for(
        lambda: (
            exporter.value("celery_task_succeeded_total", task="events.sleep", **q) == 2 * per_level
        ),
        60,
        what="backlog done",
    )
    counts = exporter.values("celery_queue_wait_seconds_count", "priority", **q)
    sums = exporter.values("celery_queue_wait_seconds_sum", "priority", **q)
    assert counts == {most: per_level, least: per_level}
    received = exporter.values(
        "celery_task_received_by_priority_total", "priority", task="events.sleep", **q
    )
    assert received == {most: per_level, least: per_level}
    assert exporter.tracker.levels_in_use()[unique_name] == {most, least}
    assert sums[most] / counts[most] < sums[least] / counts[least], (sums, worker.name)


def publish_heartbeat(url: str, hostname: str) -> None:
    """A real worker-heartbeat through Celery's own EventDispatcher."""
    app = make_app(url, "unused")
    with (
        app.connection_for_write() as conn,
        app.events.Dispatcher(conn, hostname=hostname, enabled=True) as dispatcher,
    ):
        dispatcher.send("worker-heartbeat", active=0, processed=0, loadavg=[0.0, 0, 0])
