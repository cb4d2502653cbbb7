"""The events state file (events/state.py): the known workers across exporter restarts.

Pure logic with fake clocks here; the real restart (a real Redis, a real worker killed with
SIGKILL, the exporter process restarted) is in test_events_redis.py.
"""

from __future__ import annotations

import json
import logging
import os

import pytest

from celery_queue_exporter.brokers.redis.priority import step_levels
from celery_queue_exporter.config import EventSettings
from celery_queue_exporter.config.load import load_config
from celery_queue_exporter.events.state import SAVE_INTERVAL_SECONDS, StateFile
from celery_queue_exporter.events.tracker import EventTracker
from celery_queue_exporter.instrumentation import WORKER_QUEUES_EVENT


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


SETTINGS = dict(
    heartbeat_timeout_seconds=10.0, worker_retention_seconds=100.0,
    worker_offline_grace_seconds=20.0,
)  # fmt: skip


def tracker(clock: Clock, broker: str = "b", **settings) -> EventTracker:
    return EventTracker(
        broker, EventSettings(**{**SETTINGS, **settings}), priority_level=step_levels(),
        clock=clock,
    )  # fmt: skip


def readings(t: EventTracker) -> list[tuple]:
    return sorted((w.worker, w.up, w.offline, w.last_heard) for w in t.snapshot().workers)


def busy_tracker(clock: Clock) -> EventTracker:
    """lost (silent 50 s), gone (offline 5 s ago), live (announced queues, pool) and a worker
    without install(app) known from the queue it ran a task from."""
    t = tracker(clock)
    start = clock.now
    t.handle([{"type": "worker-heartbeat", "hostname": "lost"}])
    t.handle([{"type": WORKER_QUEUES_EVENT, "hostname": "lost", "queues": ["q1"]}])
    clock.now = start + 45
    t.handle([{"type": "worker-heartbeat", "hostname": "gone"}])
    t.handle([{"type": "worker-offline", "hostname": "gone"}])
    clock.now = start + 50
    t.handle(
        [
            {"type": "worker-heartbeat", "hostname": "live", "active": 1},
            {"type": WORKER_QUEUES_EVENT, "hostname": "live", "queues": ["q1", "q2"],
             "pool_size": 4, "pool": "prefork", "prefetch_multiplier": 1},
            {"type": "worker-heartbeat", "hostname": "plain"},
            {"type": "task-sent", "uuid": "a", "name": "n", "queue": "q3"},
            {"type": "task-started", "uuid": "a", "hostname": "plain"},
        ]
    )  # fmt: skip
    return t


def state_file(path, trackers: list[EventTracker], clock: Clock) -> StateFile:
    return StateFile(path, trackers, wall_clock=clock)


def test_workers_restored_as_they_were_lost_ones_down_at_once(tmp_path):
    """Lost at save time: lost after the restart (its CeleryWorkerDown comes back). Up at save
    time and not heard again: offline once silent past the timeout, then dropped
    heartbeat_timeout + worker_offline_grace_seconds after the restart, never lost."""
    path = tmp_path / "state.json"
    clock = Clock(1_000_000.0)
    before = busy_tracker(clock)
    state_file(path, [before], clock).save()
    assert readings(before) == [
        ("gone", False, True, 1_000_045.0),
        ("live", True, False, 1_000_050.0),
        ("lost", False, False, 1_000_000.0),
        ("plain", True, False, 1_000_050.0),
    ]

    clock.now += 3  # the exporter restarts 3 s later; no event arrives
    after = tracker(clock)
    state_file(path, [after], clock).load()
    assert readings(after) == readings(before)
    snap = after.snapshot()
    assert snap.queue_workers == {"q1": 1, "q2": 1, "q3": 1}
    assert snap.queue_slots == {"q1": (4.0, 0.0), "q2": (4.0, 0.0)}
    assert snap.queues_unknown == 1  # plain: no install(app)
    (live,) = [w for w in snap.workers if w.worker == "live"]
    assert (live.pool, live.pool_size, live.prefetch_multiplier) == ("prefork", 4.0, 1.0)

    clock.now += 10  # no heartbeat since the restart: maybe stopped gracefully meanwhile
    assert readings(after) == [
        ("gone", False, True, 1_000_045.0),
        ("live", False, True, 1_000_050.0),
        ("lost", False, False, 1_000_000.0),
        ("plain", False, True, 1_000_050.0),
    ]
    assert after.snapshot().queue_workers == {"q1": 0, "q2": 0, "q3": 0}  # capacity gone
    clock.now = 1_000_065.0  # gone's grace (offline at 45 + 20) is over
    assert [w[0] for w in readings(after)] == ["live", "lost", "plain"]
    clock.now = 1_000_082.5  # restart (53) + timeout 10 + grace 20 not reached yet
    assert [w[0] for w in readings(after)] == ["live", "lost", "plain"]
    clock.now = 1_000_083.0  # reached: live and plain dropped like offline workers
    assert readings(after) == [("lost", False, False, 1_000_000.0)]
    clock.now = 1_000_100.0  # lost: the retention since its last heartbeat, still kept
    assert [w[0] for w in readings(after)] == ["lost"]
    clock.now += 0.5
    assert readings(after) == []


def test_a_restored_up_worker_heard_again_is_an_ordinary_worker(tmp_path):
    """Heard after the restart: up again, and lost as usual if it then goes silent."""
    path = tmp_path / "state.json"
    clock = Clock(1_000_000.0)
    state_file(path, [busy_tracker(clock)], clock).save()
    clock.now += 3
    after = tracker(clock)
    state_file(path, [after], clock).load()
    clock.now += 12  # silent 15 s: offline (unconfirmed)
    assert ("live", False, True, 1_000_050.0) in readings(after)
    after.handle([{"type": "worker-heartbeat", "hostname": "live"}])
    assert ("live", True, False, 1_000_065.0) in readings(after)
    clock.now = 1_000_090.0  # silent 25 s since: lost, kept past restart + 30
    assert ("live", False, False, 1_000_065.0) in readings(after)
    assert [w[0] for w in readings(after)] == ["live", "lost"]


def test_an_unconfirmed_worker_stays_unconfirmed_across_a_second_restart(tmp_path):
    """Restarted again before the restored worker was heard: still not lost, and dropped at
    the first restart's deadline (its silence at the second save is no evidence)."""
    path = tmp_path / "state.json"
    clock = Clock(1_000_000.0)
    state_file(path, [busy_tracker(clock)], clock).save()
    clock.now += 3
    first = tracker(clock)
    state_file(path, [first], clock).load()
    clock.now += 15  # 1_000_068: live silent 18 s, unconfirmed since 53
    state_file(path, [first], clock).save()
    clock.now += 2
    second = tracker(clock)
    state_file(path, [second], clock).load()
    assert [w for w in readings(second) if w[0] == "live"] == [("live", False, True, 1_000_050.0)]
    clock.now = 1_000_083.0
    assert [w[0] for w in readings(second)] == ["lost"]


def test_a_file_without_saved_at_restores_every_silent_worker_as_lost(tmp_path):
    path = tmp_path / "state.json"
    clock = Clock(1_000_000.0)
    state_file(path, [busy_tracker(clock)], clock).save()
    data = json.loads(path.read_text())
    del data["saved_at"]
    path.write_text(json.dumps(data))
    clock.now += 13
    after = tracker(clock)
    state_file(path, [after], clock).load()
    assert ("live", False, False, 1_000_050.0) in readings(after)


def test_entries_past_retention_or_grace_not_restored_and_caps_hold(tmp_path):
    path = tmp_path / "state.json"
    clock = Clock(1_000_000.0)
    StateFile(path, [busy_tracker(clock)]).save()
    clock.now = 1_000_070.0  # gone offline 25 s ago (grace 20), lost silent 70 s
    after = tracker(clock)
    StateFile(path, [after]).load()
    assert [w[0] for w in readings(after)] == ["live", "lost", "plain"]
    clock.now = 1_000_101.0  # lost silent 101 s (retention 100)
    after = tracker(clock)
    StateFile(path, [after]).load()
    assert [w[0] for w in readings(after)] == ["live", "plain"]
    capped = tracker(clock, max_workers=1, max_queue_names=1)
    StateFile(path, [capped]).load()
    assert [w[0] for w in readings(capped)] == ["live"]  # the most recently heard first
    assert capped.snapshot().queue_workers == {"q1": 0, "(other)": 0}


def test_each_broker_keeps_its_own_workers(tmp_path):
    path = tmp_path / "state.json"
    clock = Clock(1_000_000.0)
    one, two = tracker(clock, "one"), tracker(clock, "two")
    one.handle([{"type": "worker-heartbeat", "hostname": "w@one"}])
    two.handle([{"type": "worker-heartbeat", "hostname": "w@two"}])
    StateFile(path, [one, two]).save()
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert sorted(data["brokers"]) == ["one", "two"]
    assert list(data["brokers"]["one"]["workers"]) == ["w@one"]
    renamed, other = tracker(clock, "two"), tracker(clock, "three")
    StateFile(path, [other, renamed]).load()
    assert [w[0] for w in readings(renamed)] == ["w@two"]
    assert readings(other) == []


def test_written_at_most_every_interval_and_only_when_changed(tmp_path):
    path = tmp_path / "state.json"
    clock = Clock(1_000_000.0)
    ticks = Clock(0.0)  # the state file's own (monotonic) clock
    t = tracker(clock)
    state = StateFile(path, [t], clock=ticks)
    state.load()  # no file yet: a first start
    assert state.save_if_due() is False  # nothing known, nothing changed
    assert not path.exists()
    t.handle([{"type": "worker-heartbeat", "hostname": "w"}])
    assert state.save_if_due() is True
    assert list(json.loads(path.read_text())["brokers"]["b"]["workers"]) == ["w"]
    t.handle([{"type": "worker-heartbeat", "hostname": "w2"}])
    ticks.now += SAVE_INTERVAL_SECONDS - 0.5
    assert state.save_if_due() is False  # changed, but written 9.5 s ago
    ticks.now += 0.5
    assert state.save_if_due() is True
    assert list(json.loads(path.read_text())["brokers"]["b"]["workers"]) == ["w", "w2"]
    ticks.now += 60
    assert state.save_if_due() is False  # unchanged since
    clock.now += 101  # both past the retention: expiring them is a change
    t.snapshot()
    assert state.save_if_due() is True
    assert json.loads(path.read_text())["brokers"]["b"]["workers"] == {}
    assert sorted(os.listdir(tmp_path)) == ["state.json"]  # no temporary file left


def test_restored_state_is_not_written_again_unchanged(tmp_path):
    path = tmp_path / "state.json"
    clock = Clock(1_000_000.0)
    StateFile(path, [busy_tracker(clock)]).save()
    written = path.stat().st_mtime_ns
    state = StateFile(path, [tracker(clock)], clock=Clock(100.0))
    state.load()
    assert state.save_if_due() is False
    assert path.stat().st_mtime_ns == written


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "UnicodeDecodeError"),
        (b"[]", "not a version 1 state file"),
        (b'{"version": 2, "brokers": {}}', "not a version 1 state file"),
        (b'{"version": 1, "brokers": []}', "no brokers mapping"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_corrupt_file_one_warning_and_an_empty_start(tmp_path, caplog, content, why):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    t = tracker(Clock(1_000_000.0))
    with caplog.at_level(logging.WARNING, logger="celery_queue_exporter.events.state"):
        StateFile(path, [t]).load()
    (record,) = caplog.records
    assert record.getMessage().startswith(f"events state file {path} is unreadable ({why}")
    assert record.getMessage().endswith("): starting without known workers")
    assert readings(t) == []


def test_unreadable_entries_skipped_with_one_warning(tmp_path, caplog):
    path = tmp_path / "state.json"
    good = {"last_heard": 999_990.0, "offline_at": None, "queues": ["q"], "task_queues": {}}
    workers = {
        "good": good,
        "no-time": {**good, "last_heard": "yesterday"},
        "bad-queues": {**good, "queues": "q"},
        "bad-offline": {**good, "offline_at": "x"},
        "bad-task-queues": {**good, "task_queues": {"q": None}},
        "not-a-mapping": 5,
        "": good,
    }
    path.write_text(json.dumps({"version": 1, "brokers": {"b": {"workers": workers}}}))
    t = tracker(Clock(1_000_000.0))
    with caplog.at_level(logging.WARNING, logger="celery_queue_exporter.events.state"):
        StateFile(path, [t]).load()
    assert [r.getMessage() for r in caplog.records] == [
        f"events state file {path}: 6 unreadable worker entries skipped"
    ]
    assert readings(t) == [("good", True, False, 999_990.0)]


def test_a_failed_write_warns_once_and_never_raises(tmp_path, caplog):
    folder = tmp_path / "gone"
    folder.mkdir()
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    t.handle([{"type": "worker-heartbeat", "hostname": "w"}])
    state = StateFile(folder / "state.json", [t])
    folder.rmdir()
    with caplog.at_level(logging.WARNING, logger="celery_queue_exporter.events.state"):
        assert state.save() is False
        assert state.save() is False
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(f"cannot write events state file {folder}")
    folder.mkdir()
    assert state.save() is True
    assert list(json.loads((folder / "state.json").read_text())["brokers"]["b"]["workers"]) == ["w"]


def test_state_file_and_grace_options(tmp_path):
    path = str(tmp_path / "state.json")
    config = load_config(
        ["--events-state-file", path, "--events-worker-offline-grace", "30"], environ={}
    )
    assert config.event_settings.state_file == path
    assert config.event_settings.worker_offline_grace_seconds == 30.0
    config = load_config(
        [],
        environ={
            "CELERY_EXPORTER_EVENTS_STATE_FILE": path,
            "CELERY_EXPORTER_EVENTS_WORKER_OFFLINE_GRACE": "45",
        },
    )
    assert config.event_settings.state_file == path
    assert config.event_settings.worker_offline_grace_seconds == 45.0
    config_file = tmp_path / "exporter.yaml"
    config_file.write_text(f"events: {{state_file: {path!r}, worker_offline_grace_seconds: 60}}\n")
    config = load_config(["--config", str(config_file)], environ={})
    assert config.event_settings.state_file == path
    assert config.event_settings.worker_offline_grace_seconds == 60.0
    defaults = load_config([], environ={}).event_settings
    assert (defaults.state_file, defaults.worker_offline_grace_seconds) == (None, 120.0)


def test_a_worker_turning_lost_is_saved_so_a_restart_restores_it_lost(tmp_path):
    """Nothing else changes, yet the file is written again once the worker is silent past the
    timeout: its saved_at then shows it was lost, so the restart keeps it down (CeleryWorkerDown)
    instead of taking it for a worker that may have stopped gracefully."""
    path = tmp_path / "state.json"
    clock = Clock(1_000_000.0)
    before = tracker(clock)
    before.handle([{"type": "worker-heartbeat", "hostname": "w"}])
    saver = StateFile(path, [before], clock=clock, wall_clock=clock)
    assert saver.save_if_due() is True  # the new worker
    clock.now += 10  # silent 10 s: not past the timeout yet
    assert saver.save_if_due() is False
    clock.now += 0.5
    assert saver.save_if_due() is True
    assert json.loads(path.read_text())["saved_at"] == 1_000_010.5
    clock.now += 10.5
    assert saver.save_if_due() is False  # still lost: nothing new
    after = tracker(clock)
    StateFile(path, [after], wall_clock=clock).load()
    clock.now += 60
    assert readings(after) == [("w", False, False, 1_000_000.0)]
