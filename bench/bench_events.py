"""Benchmark (not a test): Celery event ingestion through real Redis pub/sub.

1. Sustained ingestion: a private redis-server, the exporter's RedisEventConsumer + tracker in
   this process pinned to one core, and several publisher processes (pinned, with the
   redis-server, to the other cores: nothing of the benchmark shares the consumer's core)
   PUBLISHing kombu envelopes exactly as workers do, at a fixed target rate, for a fixed time.
   Each task produces four events (task-sent, task-received, task-started, task-succeeded) with
   a distinct id. Reports, per target rate and message shape (one event per message as solo
   workers send, or task.multi batches as prefork workers send):
   - published: events the publishers sent, and Redis' delivery count (PUBLISH replies: how
     many subscribers got each message; 0 once Redis dropped the consumer);
   - received / lost: events the tracker counted (zero loss = received == published);
   - backlog_at_end: events published but not yet ingested when the publishers stopped, and
     drain_s, the time to ingest them: a consumer that keeps up has a backlog of a few
     milliseconds' worth, one that falls behind a backlog that grew all run long;
   - consumer_cpu_s and events_per_cpu_s: CPU time of the consumer thread alone, so the
     capacity of one dedicated core can be read even on a machine shared with other work.
2. Per-stage costs (``--stages``): CPU time per message of RESP parsing (hiredis, fed as the
   consumer feeds it), envelope + body decoding, and the tracker, on pre-built messages.
3. Memory: peak RSS of a process that runs a million distinct task ids through the tracker
   (a) with the full lifecycle and (b) as task-sent only (tasks that never start, the worst
   case for the join state, bounded by max_tracked_tasks).

    .venv/bin/python bench/bench_events.py [--seconds 10] [--rates 20000,40000] [--publishers 3]
        [--batches 1,8] [--stages] [--tasks 1000000]
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from celery_queue_exporter.brokers.redis.events import RedisEventConsumer  # noqa: E402
from celery_queue_exporter.brokers.redis.priority import step_levels  # noqa: E402
from celery_queue_exporter.config import EventSettings  # noqa: E402
from celery_queue_exporter.config.brokers import new_broker  # noqa: E402
from celery_queue_exporter.events.tracker import EventTracker  # noqa: E402
from testsupport.redis_server import RedisServer  # noqa: E402
from testsupport.waiting import ServiceError  # noqa: E402


def envelope(events: list[dict] | dict, routing_key: str) -> str:
    """A kombu Redis envelope as kombu writes it (checked against a real publish)."""
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


# envelope() with the body, routing key and delivery tag as holes: byte-identical output (the
# publishers check that once) at a fraction of the cost, so publishing stays cheap.
_ENVELOPE = (
    '{"body": "%s", "content-encoding": "utf-8", "content-type": "application/json", '
    '"headers": {"hostname": "celery@bench-worker-1"}, "properties": {"delivery_mode": 1, '
    '"delivery_info": {"exchange": "celeryev", "routing_key": "%s"}, "priority": 0, '
    '"body_encoding": "base64", "delivery_tag": "%s"}}'
)


def fast_envelope(events: list[dict] | dict, routing_key: str) -> bytes:
    body = base64.b64encode(json.dumps(events).encode()).decode()
    return (_ENVELOPE % (body, routing_key, uuid.uuid4())).encode()


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


def messages(events: list[dict], batch: int, channel_prefix: str) -> list[tuple[bytes, bytes, int]]:
    """(channel, payload, events in it) per message: one per event, or task.multi batches."""
    if batch <= 1:
        out = []
        for event in events:
            routing = event["type"].replace("-", ".")
            out.append((f"{channel_prefix}/{routing}".encode(), fast_envelope(event, routing), 1))
        return out
    channel = f"{channel_prefix}/task.multi".encode()
    return [
        (channel, fast_envelope(events[i : i + batch], "task.multi"), len(events[i : i + batch]))
        for i in range(0, len(events), batch)
    ]


def resp_publish(channel: bytes, payload: bytes) -> bytes:
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel), channel, len(payload), payload,
    )  # fmt: skip


def publisher(port: int, cpus: set[int], events_per_second: float, seconds: float, batch: int,
              channel_prefix: str, index: int, start, counters) -> None:  # fmt: skip
    """Publish task lifecycles at a fixed rate over a raw socket (pre-packed PUBLISH commands,
    replies read back and summed: Redis' count of deliveries)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    probe = task_events("0" * 32, 1.0)[0]
    expected = json.loads(envelope(probe, "task.sent"))
    assert json.loads(fast_envelope(probe, "task.sent"))["body"] == expected["body"]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = delivered = sequence = 0
    tick = 0.01
    start.wait()
    started = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
        due = int(events_per_second * min(elapsed + tick, seconds)) - sent
        if due <= 0:
            time.sleep(tick / 2)
            continue
        events: list[dict] = []
        now = time.time()
        while len(events) < due:
            sequence += 1
            events.extend(task_events(f"{index:08x}{sequence:024x}", now))  # distinct ids
        batch_messages = messages(events, batch, channel_prefix)
        sock.sendall(b"".join(resp_publish(c, m) for c, m, _n in batch_messages))
        replies = b""
        while replies.count(b"\n") < len(batch_messages):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the publisher's connection")
            replies += chunk
        lines = replies.split(b"\r\n")[: len(batch_messages)]
        for line, (_channel, _payload, count) in zip(lines, batch_messages, strict=True):
            delivered += int(line[1:]) * count  # ":<subscribers>" per message
        sent += len(events)
        with counters.get_lock():
            counters[0] += len(events)
    with counters.get_lock():
        counters[1] += delivered
    sock.close()


def thread_cpu(thread) -> float | None:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError, TypeError):
        return None


def ingestion(port: int, rate: int, seconds: float, publishers: int, batch: int,
              consumer_cpu: int, other_cpus: set[int]) -> dict:  # fmt: skip
    broker = new_broker(name="bench", url=f"redis://127.0.0.1:{port}/0")
    tracker = EventTracker("bench", EventSettings(), priority_level=step_levels())
    consumer = RedisEventConsumer(broker, tracker)
    consumer.start()
    consumer.subscribed.wait(10)
    counters = multiprocessing.Array("q", 2)  # events published, deliveries counted by Redis
    start = multiprocessing.Event()
    processes = [
        multiprocessing.Process(
            target=publisher,
            args=(
                port,
                other_cpus,
                rate / publishers,
                seconds,
                batch,
                "/0.celeryev",
                i,
                start,
                counters,
            ),
        )  # fmt: skip
        for i in range(publishers)
    ]
    for process in processes:
        process.start()
    time.sleep(1.0)  # let the publishers import and connect: not part of the run
    before = tracker.events_received
    cpu_before = thread_cpu(consumer._thread)
    started = time.perf_counter()
    start.set()
    for process in processes:
        process.join()
    published_at = time.perf_counter()
    backlog = counters[0] - (tracker.events_received - before)
    published, delivered = counters[0], counters[1]
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        if tracker.events_received - before >= published:
            break
        time.sleep(0.005)
    done = time.perf_counter()
    cpu_after = thread_cpu(consumer._thread)
    snap = tracker.snapshot()
    consumer.stop()
    received = snap.events_received - before
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {
        "target_events_per_s": rate,
        "batch": batch,
        "published": published,
        "published_events_per_s": round(published / (published_at - started)),
        "delivered_by_redis": delivered,
        "received": received,
        "lost": published - received,
        "interruptions": sum(snap.interruptions.values()),
        "backlog_at_end": backlog,
        "drain_s": round(done - published_at, 3),
        "ingested_events_per_s": round(received / (done - started)),
        "consumer_cpu_s": None if cpu is None else round(cpu, 2),
        "events_per_cpu_s": None if not cpu else round(received / cpu),
        "consumer_core": consumer_cpu,
    }


def stages(messages_count: int = 40_000) -> None:
    """CPU time per message of each stage of the consumer, on pre-built one-event messages."""
    import hiredis

    from celery_queue_exporter.brokers.redis.events import FEED_SIZE
    from celery_queue_exporter.events.decode import decode_redis_payload

    now = time.time()
    events: list[dict] = []
    while len(events) < messages_count:
        events.extend(task_events(uuid.uuid4().hex, now))
    frames = []
    for channel, payload, _count in messages(events, 1, "/0.celeryev"):
        parts = [b"pmessage", b"/0.celeryev/*", channel, payload]
        frames.append(b"*4\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in parts))
    data = b"".join(frames)
    reads = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]

    def parse() -> list:
        reader, out = hiredis.Reader(), []
        for read in reads:
            for offset in range(0, len(read), FEED_SIZE):
                reader.feed(read, offset, min(FEED_SIZE, len(read) - offset))
                while (reply := reader.gets()) is not False:
                    out.append(reply[3])
        return out

    payloads = parse()
    decoded = [event for payload in payloads for event in decode_redis_payload(payload)]

    def track() -> None:
        tracker = EventTracker("bench", EventSettings(), priority_level=step_levels())
        for i in range(0, len(decoded), 2000):
            tracker.handle(decoded[i : i + 2000])

    def best(fn) -> float:  # us per message, best of 5 (CPU time of this thread)
        times = []
        for _ in range(5):
            t0 = time.thread_time()
            fn()
            times.append(time.thread_time() - t0)
        return round(min(times) / len(frames) * 1e6, 2)

    result = {
        "messages": len(frames),
        "bytes_per_message": len(data) // len(frames),
        "parse_us": best(parse),
        "decode_us": best(lambda: [decode_redis_payload(p) for p in payloads]),
        "track_us": best(track),
    }
    result["total_us"] = round(result["parse_us"] + result["decode_us"] + result["track_us"], 2)
    result["messages_per_cpu_s"] = round(1e6 / result["total_us"])
    print(json.dumps({"stages": result}), flush=True)


def memory(mode: str, tasks: int) -> None:
    """Run ``tasks`` distinct ids through a tracker; print peak RSS (MiB). Own process."""
    tracker = EventTracker("bench", EventSettings(), priority_level=step_levels())
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
    parser.add_argument("--stages", action="store_true", help="per-stage costs only")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--memory-mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_mode:
        memory(args.memory_mode, args.tasks)
        return 0
    if args.stages:
        stages()
        return 0

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    consumer_cpu = cpus[0]
    # Publishers and redis-server on the other cores; with a single core all share it.
    other_cpus = set(cpus[1:]) or {consumer_cpu}
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {consumer_cpu})  # the exporter: one core
    if not args.memory_only:
        server = RedisServer()
        try:
            server.start()
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(server.process.pid, other_cpus)
            for batch in [int(b) for b in args.batches.split(",")]:
                for rate in [int(r) for r in args.rates.split(",")]:
                    result = ingestion(
                        server.port,
                        rate,
                        args.seconds,
                        args.publishers,
                        batch,
                        consumer_cpu,
                        other_cpus,
                    )
                    print(json.dumps(result), flush=True)
        except ServiceError as exc:
            print(exc, file=sys.stderr)
            return 2
        finally:
            server.close()
    for mode in ("lifecycle", "sent-only"):
        subprocess.run(
            [sys.executable, __file__, "--memory-mode", mode, "--tasks", str(args.tasks)],
            check=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
