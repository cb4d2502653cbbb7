"""Issue 24, point 2: the events state file is bounded on read (events.state_file_max_bytes)
and the names it holds are cut like those of events. Real files in tmp_path; the exporter's
own option parsing builds the settings."""

from __future__ import annotations

import json
import logging
import time

from celery_queue_exporter.config.load import load_config
from celery_queue_exporter.events.budget import cut
from celery_queue_exporter.events.collector import EventCollector

BROKER = "redis://127.0.0.1:6379/0"
BROKER_NAME = "redis-127.0.0.1-6379-0"  # the name the exporter gives BROKER


def _collector(path, *args: str) -> EventCollector:
    """An EventCollector (no consumer threads) configured as `--events` with ``args``."""
    config = load_config(
        ["--broker-url", BROKER, "--events", "--events-state-file", str(path), *args], environ={}
    )
    return EventCollector(config.brokers, config.event_settings, consumers=False)


def _workers(collector: EventCollector) -> list[str]:
    return sorted(w.worker for w in collector.trackers[0].snapshot().workers)


def _state(workers: dict[str, dict]) -> str:
    return json.dumps(
        {"version": 1, "saved_at": time.time(), "brokers": {BROKER_NAME: {"workers": workers}}}
    )


def test_a_50_mb_state_file_is_refused_with_one_warning(tmp_path, caplog):
    """Before: a valid 54 MB file (240,000 workers) was read whole, 1,000 workers restored, the
    process at 236 MiB, no warning."""
    now = time.time()
    entry = {"last_heard": now, "queues": ["celery"], "task_queues": {}, "pool": "prefork"}
    workers = {f"worker-{i:06d}@{'h' * 120}": entry for i in range(240_000)}
    path = tmp_path / "state.json"
    path.write_text(_state(workers))
    size = path.stat().st_size
    assert size > 50_000_000
    with caplog.at_level(logging.INFO, logger="celery_queue_exporter.events.state"):
        collector = _collector(path)
    assert _workers(collector) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"events state file {path} is {size} bytes, over events.state_file_max_bytes "
        "(16777216): not read, starting without known workers (raise the limit if the file "
        "is genuine)"
    ]


def test_the_limit_is_an_option_and_a_file_under_it_is_read(tmp_path, caplog):
    now = time.time()
    path = tmp_path / "state.json"
    hosts = [f"w{i:02d}@{'h' * 60}" for i in range(20)]
    path.write_text(_state({host: {"last_heard": now} for host in hosts}))
    size = path.stat().st_size
    assert size > 1024  # the smallest limit allowed
    with caplog.at_level(logging.WARNING, logger="celery_queue_exporter.events.state"):
        refused = _collector(path, "--events-state-file-max-bytes", str(size - 1))
        read = _collector(path, "--events-state-file-max-bytes", str(size))
    assert _workers(refused) == []
    assert _workers(read) == hosts
    assert len(caplog.records) == 1  # the refused one only


def test_names_from_the_state_file_are_cut_like_those_of_events(tmp_path):
    """Before: a 40 MB hostname read from the file was exported as a label value. Here one of
    1 MB (a file under the limit) and a 10 kB queue name."""
    now = time.time()
    host, queue = "h" * 1_000_000, "q" * 10_000
    path = tmp_path / "state.json"
    path.write_text(_state({host: {"last_heard": now, "queues": [queue]}}))
    collector = _collector(path)
    snap = collector.trackers[0].snapshot()
    assert [w.worker for w in snap.workers] == [cut(host, 128)]
    assert len(snap.workers[0].worker) == 128
    assert snap.queue_workers == {cut(queue, 128): 1}
