"""Issue 24, point 1: label values cut to events.max_label_length with a hash suffix and one
series budget for the task metrics, so no event stream can blow up the scrape or the memory.

The issue's cases run against a private redis-server and the exporter as its own process (so
its peak RSS is its own), fed raw ``task.multi`` messages on the Redis event channel as a
buggy or hostile publisher would send them. Defaults: max_label_length 128,
max_series_per_family 2,000, max_event_samples 20,000; runtime histograms have 17 buckets (a
series costs 17 + 3 = 20 samples)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_queue_exporter.config.model import EventSettings
from celery_queue_exporter.events.budget import SeriesBudget, cut
from celery_queue_exporter.events.tracker import EventTracker
from testsupport.exposition import parse_exposition
from testsupport.net import free_port
from testsupport.processes import proc_status, stop_process
from testsupport.waiting import wait_for

#: The stated bounds for these cases (docs/reliability.md#series-budget).
MAX_SCRAPE_BYTES = 5_000_000
MAX_RSS_KIB = 150 * 1024
LONG = 10_000  # characters of each hostile name
CUT = re.compile(r"^.{119}~[0-9a-f]{8}$", re.DOTALL)
CHANNEL = "/0.celeryev/task.multi"


def _envelope(events: list[dict]) -> bytes:
    """What kombu's Redis transport publishes for one task.multi message."""
    body = json.dumps(events)
    return json.dumps(
        {
            "body": base64.b64encode(body.encode()).decode(),
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "properties": {"body_encoding": "base64"},
        }
    ).encode()


class ExporterProcess:
    """``python -m celery_queue_exporter --events`` on a spare port, scraped over HTTP."""

    def __init__(self, url: str, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.log = tmp / "exporter.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery_queue_exporter", "--broker-url", url,
                    "--events", "--host", "127.0.0.1", "--port", str(self.port), *args,
                ],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

    def scrape(self) -> bytes:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.read()

    def samples(self) -> dict:
        return parse_exposition(self.scrape().decode())

    def value(self, name: str) -> float | None:
        try:
            return sum(v for (sample, _), v in self.samples().items() if sample == name)
        except OSError:
            return None

    def peak_rss_kib(self) -> int:
        return proc_status(self.process.pid, "VmHWM")["VmHWM"]

    def close(self) -> None:
        stop_process(self.process)


@pytest.fixture
def exporter_process(redis_server, tmp_path) -> Iterator[ExporterProcess]:
    exporter = ExporterProcess(redis_server.url, tmp_path)
    try:
        wait_for(lambda: exporter.value("celery_event_consumer_up") == 1, 30, what="subscribed")
        yield exporter
    finally:
        exporter.close()


def _publish(redis_server, events: list[dict], batch: int = 100) -> None:
    client = redis_server.client()
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, len(events), batch):
            pipe.publish(CHANNEL, _envelope(events[start : start + batch]))
        assert set(pipe.execute()) == {1}  # the exporter got every message


def _series(samples: dict, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels), _ in samples.items() if sample == name]


def _value(samples: dict, name: str, **wanted: str) -> float:
    return sum(
        value
        for (sample, labels), value in samples.items()
        if sample == name and all(dict(labels).get(k) == v for k, v in wanted.items())
    )


@pytest.mark.redis
def test_500_task_names_of_10_kb_are_cut_and_the_scrape_stays_small(redis_server, exporter_process):
    """Before: one scrape of 274 MB and 1.1 GB RSS. Each of 500 tasks (a different 10 kB name,
    the names sharing their first 9,990 characters) is sent, received, started and succeeds."""
    names = [f"{'n' * (LONG - 10)}{i:010d}" for i in range(500)]
    events: list[dict] = []
    for i, name in enumerate(names):
        uuid = f"task-{i}"
        events += [
            {"type": "task-sent", "uuid": uuid, "name": name, "queue": "q"},
            {"type": "task-received", "uuid": uuid, "name": name, "timestamp": 1.0},
            {"type": "task-started", "uuid": uuid, "hostname": "w@h", "timestamp": 2.0},
            {"type": "task-succeeded", "uuid": uuid, "runtime": 0.5},
        ]
    _publish(redis_server, events)
    exporter = exporter_process
    wait_for(lambda: exporter.value("celery_events_received_total") == 2_000, 60, what="all")
    body = exporter.scrape()
    samples = parse_exposition(body.decode())
    tasks = [labels["task"] for labels in _series(samples, "celery_task_sent_total")]
    assert len(tasks) == 500
    assert len(set(tasks)) == 500  # same 119-character prefix, told apart by the hash
    assert all(CUT.match(task) for task in tasks)
    assert set(tasks) == {cut(name, 128) for name in names}
    for counter in ("sent", "received", "started", "succeeded"):
        assert _value(samples, f"celery_task_{counter}_total") == 500
        assert len(_series(samples, f"celery_task_{counter}_total")) == 500
    assert len(_series(samples, "celery_task_runtime_seconds_count")) == 500
    assert _series(samples, "celery_event_series_dropped_total") == []
    print(f"\n500 x 10 kB task names: scrape {len(body):,} bytes, peak RSS "
          f"{exporter.peak_rss_kib() / 1024:.1f} MiB")  # fmt: skip
    assert len(body) < MAX_SCRAPE_BYTES
    assert exporter.peak_rss_kib() < MAX_RSS_KIB


@pytest.mark.redis
def test_1000_hostnames_of_10_kb_are_cut(redis_server, exporter_process):
    """Before: a 62 MB scrape. 1,000 workers (the max_workers default) with 10 kB hostnames
    send a heartbeat each."""
    hosts = [f"{'h' * (LONG - 10)}{i:010d}" for i in range(1_000)]
    events = [
        {"type": "worker-heartbeat", "hostname": host, "active": 1, "processed": 2,
         "loadavg": [0.5, 0.5, 0.5], "timestamp": 1.0}
        for host in hosts
    ]  # fmt: skip
    _publish(redis_server, events)
    exporter = exporter_process
    wait_for(lambda: exporter.value("celery_events_received_total") == 1_000, 60, what="all")
    body = exporter.scrape()
    samples = parse_exposition(body.decode())
    workers = [labels["worker"] for labels in _series(samples, "celery_worker_up")]
    assert len(workers) == 1_000 == len(set(workers))
    assert set(workers) == {cut(host, 128) for host in hosts}
    assert _value(samples, "celery_worker_up") == 1_000
    assert _value(samples, "celery_worker_active_tasks") == 1_000
    print(f"\n1,000 x 10 kB hostnames: scrape {len(body):,} bytes, peak RSS "
          f"{exporter.peak_rss_kib() / 1024:.1f} MiB")  # fmt: skip
    assert len(body) < MAX_SCRAPE_BYTES
    assert exporter.peak_rss_kib() < MAX_RSS_KIB


@pytest.mark.redis
def test_500_tasks_by_40_queues_fold_past_the_budget(redis_server, exporter_process):
    """Before: 1,062,358 samples, a 127.6 MB scrape and 1.3 GB RSS. 20,000 task x queue pairs,
    each sent once, then each succeeds once (runtime 0.5 s).

    Budget arithmetic (max_series_per_family 2,000, max_event_samples 20,000): task-sent gives
    each of the first 2,000 pairs its sent series and, as a task now seen, its six other outcome
    series at 0 (received, started, succeeded, retried, rejected, revoked): 7 samples each; the
    first 1,000 pairs also get their two time-limit series at 0 (that family is then full):
    2,000 x 7 + 2,000 = 16,000 samples; the other 18,000 sends fold. task-succeeded then counts
    in the 2,000 succeeded series already there (no new budget) and folds the 18,000 others; a
    runtime series takes 17 buckets + 3 = 20 samples: the 4,000 left give 200 of them, the other
    19,800 runtimes fold. Each family also has its '(other)' series."""
    pairs = [(f"task{t}", f"queue{q}") for t in range(500) for q in range(40)]
    sent = [
        {"type": "task-sent", "uuid": f"u{i}", "name": name, "queue": queue}
        for i, (name, queue) in enumerate(pairs)
    ]
    done = [{"type": "task-succeeded", "uuid": f"u{i}", "runtime": 0.5} for i in range(len(pairs))]
    _publish(redis_server, sent)
    exporter = exporter_process
    wait_for(lambda: exporter.value("celery_events_received_total") == 20_000, 60, what="sent")
    _publish(redis_server, done)
    wait_for(lambda: exporter.value("celery_events_received_total") == 40_000, 60, what="all")
    body = exporter.scrape()
    samples = parse_exposition(body.decode())
    other = {"queue": "(other)", "task": "(other)"}
    assert len(_series(samples, "celery_task_sent_total")) == 2_001
    assert _value(samples, "celery_task_sent_total") == 20_000  # nothing lost from the totals
    assert _value(samples, "celery_task_sent_total", **other) == 18_000
    assert len(_series(samples, "celery_task_succeeded_total")) == 2_001
    assert _value(samples, "celery_task_succeeded_total", **other) == 18_000
    assert len(_series(samples, "celery_task_received_total")) == 2_000  # all at 0
    assert _value(samples, "celery_task_received_total") == 0
    assert len(_series(samples, "celery_task_time_limit_exceeded_total")) == 2_000
    assert len(_series(samples, "celery_task_runtime_seconds_count")) == 201
    assert _value(samples, "celery_task_runtime_seconds_count", **other) == 19_800
    assert _value(samples, "celery_task_runtime_seconds_count") == 20_000
    dropped = {
        labels["metric"]: value
        for (sample, pairs_), value in samples.items()
        if sample == "celery_event_series_dropped_total"
        for labels in [dict(pairs_)]
    }
    assert dropped == {
        "celery_task_sent_total": 18_000,
        "celery_task_succeeded_total": 18_000,
        "celery_task_runtime_seconds": 19_800,
    }
    lines = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    print(f"\n500 tasks x 40 queues: {lines:,} samples, scrape {len(body):,} bytes, peak RSS "
          f"{exporter.peak_rss_kib() / 1024:.1f} MiB")  # fmt: skip
    assert len(body) < MAX_SCRAPE_BYTES
    assert exporter.peak_rss_kib() < MAX_RSS_KIB


# --- pure logic beside the real tests above ------------------------------------------------------


def test_cut_keeps_short_values_and_makes_long_ones_exactly_the_limit_and_stable():
    assert cut("celery.tasks.add", 128) == "celery.tasks.add"
    assert cut("x" * 128, 128) == "x" * 128
    a, b = cut("x" * 200 + "a", 128), cut("x" * 200 + "b", 128)
    assert len(a) == len(b) == 128 and a != b
    assert a[:119] == "x" * 119 and a[119] == "~"
    assert cut("x" * 200 + "a", 128) == a  # the same value, the same label
    # A lone surrogate (no UTF-8 for it) still hashes: the cut never raises.
    surrogates = cut("\udcff" * 300, 64)
    assert len(surrogates) == 64 and surrogates[:55] == "\udcff" * 55 and surrogates[55] == "~"


def test_budget_is_shared_by_the_trackers_of_all_brokers():
    budget = SeriesBudget(per_family=3, samples=1_000)
    settings = EventSettings()
    first, second = (
        EventTracker(name, settings, priority_level=lambda *_: "0", budget=budget)
        for name in ("a", "b")
    )
    first.handle([{"type": "task-sent", "uuid": f"a{i}", "name": f"t{i}"} for i in range(2)])
    second.handle([{"type": "task-sent", "uuid": f"b{i}", "name": f"t{i}"} for i in range(2)])
    assert sorted(first.snapshot().task_counts) == [
        ("sent", "(unknown)", "t0"), ("sent", "(unknown)", "t1"),
    ]  # fmt: skip
    snap = second.snapshot()
    assert snap.task_counts == {("sent", "(unknown)", "t0"): 1, ("sent", "(other)", "(other)"): 1}
    assert snap.series_dropped == {"celery_task_sent_total": 1}
    # Each task's sent series took one sample, and its six other outcome series at 0 one each
    # while their families had room (3 series): 3 x 7; the time-limit family's 3 series went
    # to a's t0 (hard, soft) and t1 (hard). 21 + 3 = 24.
    assert budget.used == 24
    assert sorted(first.snapshot().limits_with_zeros()) == [
        ("(unknown)", "t0", "hard"), ("(unknown)", "t0", "soft"), ("(unknown)", "t1", "hard"),
    ]  # fmt: skip
