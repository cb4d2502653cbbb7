"""Benchmark (not a test): Celery event ingestion through real Redis pub/sub.

1. Sustained ingestion: a private redis-server, the exporter's RedisEventConsumer + tracker in
   this process pinned to one core, and several publisher processes (pinned to the other
   cores) PUBLISHing kombu envelopes exactly as workers do, at a fixed target rate, for a fixed
   time. Each task produces four events (task-sent, task-received, task-started,
   task-succeeded) with a distinct id. Reports, per target rate and message shape (one event
   per message as solo workers send, or task.multi batches as prefork workers send), the rate
   achieved and whether every event arrived (zero loss, no interruption).
2. Memory: peak RSS of a process that runs a million distinct task ids through the tracker
   (a) with the full lifecycle and (b) as task-sent only (tasks that never start, the worst
   case for the join state, bounded by max_tracked_tasks).

    .venv/bin/python bench/bench_events.py [--seconds 10] [--rates 20000,40000] [--publishers 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from exporter.config import BrokerConfig, EventSettings  # noqa: E402
from exporter.events.redis_consumer import RedisEventConsumer  # noqa: E402
from exporter.events.tracker import EventTracker  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def envelope(events: list[dict] | dict, routing_key: str) -> str:
    body = base64.b64encode(json.dumps(events).encode()).decode()
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": "celery@bench-worker-1"},
            "properties": {
                "delivery_mode": 1,
                "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def task_events(task_id: str, now: float) -> list[dict]:
    common = {"hostname": "celery@bench-worker-1", "utcoffset": 0, "pid": 4242, "clock": 1}
    return [
        {"type": "task-sent", "uuid": task_id, "name": "bench.task", "queue": "bench",
         "exchange": "", "routing_key": "bench", "timestamp": now, **common},
        {"type": "task-received", "uuid": task_id, "name": "bench.task", "args": "()",
         "kwargs": "{}", "timestamp": now + 0.001, **common},
        {"type": "task-started", "uuid": task_id, "timestamp": now + 0.002, **common},
        {"type": "task-succeeded", "uuid": task_id, "result": "None", "runtime": 0.01,
         "timestamp": now + 0.012, **common},
    ]  # fmt: skip


def publisher(port: int, cpu: int, events_per_second: float, seconds: float, batch: int,
              channel_prefix: str, counter) -> None:  # fmt: skip
    """Publish task lifecycles at a fixed rate; batch > 1 packs events like task.multi."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    client = redis.Redis(port=port)
    sent = 0
    started = time.perf_counter()
    tick = 0.01
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
        due = int(events_per_second * min(elapsed + tick, seconds)) - sent
        if due <= 0:
            time.sleep(tick / 2)
            continue
        pipe = client.pipeline(transaction=False)
        events: list[dict] = []
        while len(events) < due:
            events.extend(task_events(uuid.uuid4().hex, time.time()))
        if batch <= 1:
            for event in events:
                routing = event["type"].replace("-", ".")
                pipe.publish(f"{channel_prefix}/{routing}", envelope(event, routing))
        else:
            for i in range(0, len(events), batch):
                pipe.publish(
                    f"{channel_prefix}/task.multi", envelope(events[i : i + batch], "task.multi")
                )
        pipe.execute()
        sent += len(events)
    with counter.get_lock():
        counter.value += sent


def ingestion(port: int, rate: int, seconds: float, publishers: int, batch: int) -> dict:
    broker = BrokerConfig(name="bench", url=f"redis://127.0.0.1:{port}/0")
    tracker = EventTracker("bench", EventSettings(), transport="redis")
    consumer = RedisEventConsumer(broker, tracker)
    consumer.start()
    consumer.subscribed.wait(10)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    counter = multiprocessing.Value("q", 0)
    start_cpu_time = time.thread_time  # noqa: F841 - documented: one consumer thread
    before = tracker.snapshot().events_received
    processes = [
        multiprocessing.Process(
            target=publisher,
            args=(
                port,
                cpus[(i + 1) % len(cpus)],
                rate / publishers,
                seconds,
                batch,
                "/0.celeryev",
                counter,
            ),
        )  # fmt: skip
        for i in range(publishers)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    published = counter.value
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if tracker.snapshot().events_received - before >= published:
            break
        time.sleep(0.01)
    done = time.perf_counter()
    snap = tracker.snapshot()
    consumer.stop()
    received = snap.events_received - before
    return {
        "target_events_per_s": rate,
        "batch": batch,
        "published": published,
        "received": received,
        "lost": published - received,
        "interruptions": sum(snap.interruptions.values()),
        "achieved_events_per_s": round(received / (done - started)),
    }


def memory(mode: str, tasks: int) -> None:
    """Run ``tasks`` distinct ids through a tracker; print peak RSS (MiB). Own process."""
    tracker = EventTracker("bench", EventSettings(), transport="redis")
    now = time.time()
    chunk: list[dict] = []
    for i in range(tasks):
        task_id = f"{i:032x}"
        if mode == "lifecycle":
            chunk.extend(task_events(task_id, now))
        else:
            chunk.append(task_events(task_id, now)[0])
        if len(chunk) >= 4000:
            tracker.handle(chunk)
            chunk = []
    tracker.handle(chunk)
    snap = tracker.snapshot()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "tasks": tasks, "tracked": snap.tracked_tasks,
                      "events": snap.events_received, "peak_rss_mib": round(peak, 1)}))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="20000,40000")
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--memory-mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_mode:
        memory(args.memory_mode, args.tasks)
        return 0

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # the exporter: one core
    if not args.memory_only:
        binary = shutil.which("redis-server")
        if binary is None:
            print("redis-server not found", file=sys.stderr)
            return 2
        workdir = tempfile.mkdtemp(prefix="bench-events-")
        port = free_port()
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            for batch in [int(b) for b in args.batches.split(",")]:
                for rate in [int(r) for r in args.rates.split(",")]:
                    result = ingestion(port, rate, args.seconds, args.publishers, batch)
                    print(json.dumps(result), flush=True)
        finally:
            server.terminate()
            server.wait()
            shutil.rmtree(workdir, ignore_errors=True)
    for mode in ("lifecycle", "sent-only"):
        subprocess.run(
            [sys.executable, __file__, "--memory-mode", mode, "--tasks", str(args.tasks)],
            check=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
