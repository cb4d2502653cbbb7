"""Benchmark: scrape cost for 1,000 (or --queues) queues x 10 priority levels on Redis.

Not a test: it prints figures. Starts a private redis-server on a spare port, fills it the way
kombu does (priority_steps 0..9, sep ':'), one non-empty level per queue (1 to 5 stamped
messages), and measures, interleaved in one run and process (so machine load hits every
figure alike), medians of --repeat rounds:

* floor:     one EVAL_RO returning the length of every key (the broker's own cost);
* own script: the exporter's Lua script (lengths plus the head of every non-empty level);
* inspect:   the exporter's Redis inspection;
* scrape:    a full /metrics over HTTP, plain and gzip;
* 50 concurrent scrapes (gzip) against one scrape, with renders counted;
* the body's size, plain and gzip;
* anchors (bench/anchors.py): redis_exporter and celery-exporter on the same Redis, when
  installed (says so and how to install them when not).
* with --before DIR (a source tree of another version, e.g. ``git archive main``): that
  version and this one each as its own exporter process (the real CLI, events off) on the
  same Redis, scraped plain in the same interleaved rounds, so before and after are measured
  in one run beside the same floor, with their body sizes.

Usage: .venv/bin/python bench/bench_redis_scrape.py [--queues 1000] [--repeat 30] [--before DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.anchors import report, run_anchors  # noqa: E402
from celery_queue_exporter.brokers.redis.inspector import LEVELS_SCRIPT, RedisInspector  # noqa: E402
from celery_queue_exporter.cli import Exporter  # noqa: E402
from celery_queue_exporter.config import ExporterConfig  # noqa: E402
from celery_queue_exporter.config.brokers import new_broker  # noqa: E402
from celery_queue_exporter.server import MetricsServer  # noqa: E402
from testsupport.http import connect, exchange, read_response, request_bytes  # noqa: E402
from testsupport.net import free_port, port_open  # noqa: E402
from testsupport.redis_server import RedisServer  # noqa: E402
from testsupport.waiting import ServiceError  # noqa: E402

STEPS = list(range(10))
ROOT = Path(__file__).resolve().parent.parent


FLOOR_SCRIPT = "local r = {} for i, k in ipairs(KEYS) do r[i] = redis.call('LLEN', k) end return r"
CONCURRENT = 50


def fill_stamped(client: redis.Redis, queues: list[str]) -> int:
    """One non-empty level per queue, 1 to 5 stamped messages with a distinct head."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for index, queue in enumerate(queues):
            step = index % 10
            key = queue if step == 0 else f"{queue}:{step}"
            message = {
                "body": "W1tdLCB7fSwge31d",
                "headers": {"task": "bench.task", "id": queue, ENQUEUED: now},
                "properties": {"priority": step, "delivery_tag": queue},
            }
            pipe.lpush(key, *[json.dumps(message)] * (1 + index % 5))
        pipe.execute()
    return len(queues)


ENQUEUED = "celery_queue_exporter_enqueued_at"


def concurrent_scrapes(port: int, count: int) -> float:
    """Seconds until ``count`` gzip scrapes sent at once are all answered."""
    sockets = [connect(port) for _ in range(count)]
    started = time.perf_counter()
    for sock in sockets:
        sock.sendall(request_bytes("GET", "/metrics", {"Accept-Encoding": "gzip"}))
    for sock in sockets:
        assert read_response(sock).status == 200
    return time.perf_counter() - started


def exporter_process(source: Path, url: str, queues: list[str]) -> tuple[subprocess.Popen, int]:
    """The exporter of the source tree ``source`` as its own process (events off), on a spare
    port, once it answers."""
    port = free_port()
    command = [
        sys.executable, "-m", "celery_queue_exporter", "--broker-url", f"bench={url}",
        "--queue", ",".join(queues), "--priority-steps", ",".join(map(str, STEPS)),
        "--sep", ":", "--no-events", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(source / "exporter")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not port_open(port):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit(f"the exporter of {source} did not start")
        time.sleep(0.2)
    return process, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--before", type=Path, help="source tree of the version to compare")
    args = parser.parse_args()
    processes: list[subprocess.Popen] = []
    server = RedisServer()
    try:
        server.start()
    except ServiceError as exc:
        server.close()
        print(exc, file=sys.stderr)
        return 2
    try:
        client = server.client()
        queues = [f"queue-{i:04d}" for i in range(args.queues)]
        non_empty = fill_stamped(client, queues)
        keys = [q if s == 0 else f"{q}:{s}" for q in queues for s in STEPS]
        broker = new_broker(
            name="bench", url=server.url, queues=queues, discover_queues=False,
            priority_steps=STEPS, sep=":",
        )  # fmt: skip
        inspector = RedisInspector(broker)
        exporter = Exporter(ExporterConfig(brokers=[broker], host="127.0.0.1", port=0))
        http = MetricsServer(exporter.registry, exporter.config)
        http.start()

        def get(encoding: str) -> bytes:
            """A scrape with a lean client (raw socket, 64 KiB reads): what is timed is the
            exporter, not an HTTP library's reading of megabytes."""
            response = exchange(http.port, "GET", "/metrics", {"Accept-Encoding": encoding})
            assert response.status == 200
            return response.body

        measures: dict[str, Callable[[], object]] = {
            "floor: one EVAL_RO of all lengths": lambda: client.eval_ro(
                FLOOR_SCRIPT, len(keys), *keys
            ),
            "the exporter's own Lua script": lambda: client.eval_ro(
                LEVELS_SCRIPT, len(keys), *keys
            ),
            "exporter inspection": inspector.inspect,
            "full HTTP scrape, plain": lambda: get("identity"),
            "full HTTP scrape, gzip": lambda: get("gzip"),
        }
        bodies: dict[str, int] = {}
        if args.before is not None:
            for name, source in (("before", args.before), ("after", ROOT)):
                process, port = exporter_process(source.resolve(), server.url, queues)
                processes.append(process)

                def scrape_process(port: int = port) -> bytes:
                    response = exchange(port, "GET", "/metrics", {"Accept-Encoding": "identity"})
                    assert response.status == 200
                    return response.body

                measures[f"{name}: own process, scrape plain"] = scrape_process
                bodies[name] = len(scrape_process())
        for fn in measures.values():
            fn()  # warm-up: connections, caches
        times: dict[str, list[float]] = {name: [] for name in measures}
        for _ in range(args.repeat):
            for name, fn in measures.items():
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
        renderer = getattr(http.routes, "renderer", None)  # None: code before issue 25
        renders_before = renderer.renders if renderer else 0
        burst = [concurrent_scrapes(http.port, CONCURRENT) for _ in range(5)]
        renders = f"{(renderer.renders - renders_before) / 5:g}" if renderer else "not counted"
        plain = get("identity")
        series = plain.count(b"\ncelery_")
        zipped = len(gzip.compress(plain, compresslevel=1))
        http.stop()
        exporter.close()
        inspector.close()
        for process in processes:
            process.terminate()
            process.wait(10)
        anchors = run_anchors(server.url)  # redis_exporter, celery-exporter when installed
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        server.close()

    floor = statistics.median(times["floor: one EVAL_RO of all lengths"])
    print(
        f"keys: {len(keys)} ({args.queues} queues x {len(STEPS)} levels), non-empty: {non_empty}, "
        f"celery_* series: {series}, body: {len(plain):,} bytes plain, {zipped:,} gzip; "
        f"repeats: {args.repeat} interleaved; load average: {os.getloadavg()[0]:.1f}"
    )
    print(f"{'measure':<44} {'median ms':>10} {'min ms':>8} {'x floor':>8}")
    rows = [(name, statistics.median(ts), min(ts)) for name, ts in times.items()]
    one = statistics.median(times["full HTTP scrape, gzip"])
    rows.append((f"{CONCURRENT} concurrent gzip scrapes ({renders} renders)",
                 statistics.median(burst), min(burst)))  # fmt: skip
    for name, median, low in rows:
        print(f"{name:<44} {median * 1000:>10.1f} {low * 1000:>8.1f} {median / floor:>8.2f}")
    print(f"{CONCURRENT} concurrent scrapes / one scrape: {statistics.median(burst) / one:.2f}x")
    for name, size in bodies.items():
        print(f"{name}: body {size:,} bytes plain")
    ours = statistics.median(times["full HTTP scrape, plain"])
    for line in report(anchors, floor, ours, len(plain)):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
