"""Broker-neutral scenarios of issue 14 (honest waits, prefetch time, pool size, exceptions),
shared by tests/test_waits_redis.py and tests/test_waits_rabbitmq.py.

The truth comes from the tasks themselves (tests/apps/events_app.py ``events.timed`` and
``events.retry_timed`` append their own start time to a file) and from the producer (publish
time, countdown, ETA); the exporter's histograms must put every run within one bucket of it.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from datetime import UTC, datetime
from pathlib import Path

from apps.events_app import make_app
from apps.harness import Exporter
from apps.scenarios import tracked_in, wait_worker_up
from celery_queue_exporter.config import DEFAULT_WAIT_BUCKETS
from testsupport.waiting import wait_for

BOUNDS = tuple(float(b) for b in DEFAULT_WAIT_BUCKETS)


def bucket_of(value: float) -> int:
    """Index of the histogram bucket ``value`` falls in (Prometheus' ``le`` is inclusive)."""
    return bisect_left(BOUNDS, value)


def observed_buckets(exporter: Exporter, metric: str, **labels: str) -> list[int]:
    """One bucket index per observation of the series ``metric`` (summed over the label sets
    matching ``labels``), from the cumulative ``_bucket`` samples."""
    cumulative = [0.0] * (len(BOUNDS) + 1)
    wanted = {"broker": exporter.broker.name, **labels}
    for (sample, pairs), value in exporter.samples().items():
        found = dict(pairs)
        if sample != f"{metric}_bucket" or any(found.get(k) != v for k, v in wanted.items()):
            continue
        le = found["le"]
        index = len(BOUNDS) if le == "+Inf" else BOUNDS.index(float(le))
        cumulative[index] += value
    out: list[int] = []
    previous = 0.0
    for index, total in enumerate(cumulative):
        out.extend([index] * int(total - previous))
        previous = total
    return out


def assert_within_one_bucket(observed: list[int], truths: list[float], what: str) -> None:
    expected = sorted(bucket_of(t) for t in truths)
    assert len(observed) == len(expected), (what, observed, truths)
    for got, want in zip(sorted(observed), expected, strict=True):
        assert abs(got - want) <= 1, (what, sorted(observed), expected, truths)


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def countdown_scenario(exporter, url: str, queue: str, workers, tmp_path: Path) -> None:
    """Countdown and eta= tasks: the corrected wait is the lateness after the ETA (within one
    bucket of the tasks' own start times), the end-to-end histogram keeps the whole delay, the
    prefetch time excludes the ETA hold."""
    worker = workers(url, queue, pool="solo")
    wait_worker_up(exporter, worker)
    app = make_app(url, queue)
    path = tmp_path / "timed.jsonl"
    published: dict[str, tuple[float, float]] = {}  # id -> (publish time, ETA)
    for countdown in (2.0, 3.0, 3.0):
        at = time.time()
        result = app.send_task("events.timed", args=[str(path)], countdown=countdown)
        published[result.id] = (at, at + countdown)
    for delay in (2.5, 4.0):
        at = time.time()
        eta = datetime.fromtimestamp(at + delay, tz=UTC)
        result = app.send_task("events.timed", args=[str(path)], eta=eta)
        published[result.id] = (at, eta.timestamp())
    q = {"queue": queue}
    wait_for(lambda: len(records(path)) == len(published), 30, what="timed tasks ran")
    wait_for(
        lambda: exporter.value("celery_task_succeeded_total", task="events.timed", **q) == 5,
        15,
        what="successes seen",
    )
    wait_for(lambda: tracked_in(exporter, queue) == 0, 15, what="joins done")
    runs = {r["id"]: r for r in records(path)}
    lateness = [runs[i]["start"] - eta for i, (_at, eta) in published.items()]
    full = [runs[i]["start"] - at for i, (at, _eta) in published.items()]
    assert all(-0.05 < late < 1.0 for late in lateness), lateness  # the worker honoured ETAs
    assert_within_one_bucket(
        observed_buckets(exporter, "celery_queue_wait_seconds", **q), lateness, "queue wait"
    )
    assert_within_one_bucket(
        observed_buckets(exporter, "celery_task_queue_wait_seconds", task="events.timed", **q),
        lateness,
        "task queue wait",
    )
    assert_within_one_bucket(
        observed_buckets(
            exporter, "celery_task_publish_to_start_seconds", task="events.timed", **q
        ),
        full,
        "end to end",
    )
    end_to_end = exporter.value(
        "celery_task_publish_to_start_seconds_sum", task="events.timed", **q
    )
    assert end_to_end is not None and abs(end_to_end - sum(full)) < 0.5, (end_to_end, full)
    wait_sum = exporter.value("celery_queue_wait_seconds_sum", priority="0", **q)
    assert wait_sum is not None and abs(wait_sum - sum(lateness)) < 0.5, (wait_sum, lateness)
    # Received at once, held for the ETA by the worker's timer: that hold is not prefetch.
    assert_within_one_bucket(
        observed_buckets(exporter, "celery_queue_prefetch_seconds", **q), lateness, "prefetch"
    )
    assert exporter.value("celery_event_clock_skew_clamped_total") == 0


def retry_scenario(exporter, url: str, queue: str, workers, tmp_path: Path) -> None:
    """A task retried 3 times with a countdown: 4 runs, each wait measured from its own
    republish and ETA, while the end-to-end delay of the last run spans all the backoffs."""
    countdown = 1.0
    worker = workers(url, queue, pool="solo")
    wait_worker_up(exporter, worker)
    app = make_app(url, queue)
    path = tmp_path / "retry.jsonl"
    first = time.time()
    app.send_task("events.retry_timed", args=[str(path), countdown])
    q = {"queue": queue, "task": "events.retry_timed"}
    wait_for(lambda: len(records(path)) == 4, 30, what="4 runs")
    wait_for(
        lambda: exporter.value("celery_task_succeeded_total", **q) == 1,
        15,
        what="success seen",
    )
    wait_for(lambda: tracked_in(exporter, queue) == 0, 15, what="joins done")
    runs = sorted(records(path), key=lambda r: r["retries"])
    assert [r["retries"] for r in runs] == [0, 1, 2, 3]
    # Run n was republished by run n-1 (right after its start) with an ETA `countdown` later.
    truths = [runs[0]["start"] - first] + [
        runs[n]["start"] - (runs[n - 1]["start"] + countdown) for n in range(1, 4)
    ]
    assert all(t < 1.0 for t in truths), truths
    assert exporter.value("celery_task_retried_total", **q) == 3
    assert_within_one_bucket(
        observed_buckets(exporter, "celery_task_queue_wait_seconds", **q), truths, "retry waits"
    )
    wait_sum = exporter.value("celery_task_queue_wait_seconds_sum", **q)
    assert wait_sum is not None and wait_sum < 2.0, wait_sum  # not 4 runs x seconds of backoff
    full = [r["start"] - first for r in runs]
    assert full[-1] > 3 * countdown
    assert_within_one_bucket(
        observed_buckets(exporter, "celery_task_publish_to_start_seconds", **q),
        full,
        "end to end",
    )


def prefork_retry_scenario(exporter, url: str, queue: str, workers, tmp_path: Path) -> None:
    """Immediate retries on a prefork pool: the worker may receive (and another child start)
    the next delivery before it reports the retry. Every run keeps its queue and its wait."""
    worker = workers(url, queue, pool="prefork", concurrency=3)
    wait_worker_up(exporter, worker)
    app = make_app(url, queue)
    path = tmp_path / "retries.jsonl"
    for _ in range(8):
        app.send_task("events.retry_timed", args=[str(path), 0])
    q = {"queue": queue, "task": "events.retry_timed"}
    wait_for(lambda: len(records(path)) == 32, 60, what="32 runs")
    wait_for(
        lambda: exporter.value("celery_task_succeeded_total", **q) == 8, 20, what="8 successes"
    )
    wait_for(lambda: tracked_in(exporter, queue) == 0, 20, what="joins done")
    assert exporter.value("celery_task_started_total", **q) == 32
    assert exporter.value("celery_task_retried_total", **q) == 24
    assert exporter.value("celery_task_queue_wait_seconds_count", **q) == 32
    assert exporter.value("celery_task_publish_to_start_seconds_count", **q) == 32
    per_queue = exporter.values("celery_task_started_total", "queue", task="events.retry_timed")
    assert per_queue == {queue: 32}  # none under "(unknown)"
