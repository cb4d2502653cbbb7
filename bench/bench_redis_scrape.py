"""Benchmark: scrape latency for 1,000 queues x 10 priority levels on Redis (10,000 keys).

Not a test: it prints figures. Starts a private redis-server on a spare port, fills it the way
kombu does (priority_steps 0..9, sep ':'), 10% of the keys non-empty, and measures, in the same
run and process:

* floor:   one bare pipelined LLEN of the same 10,000 keys with redis-py;
* inspect: the exporter's Redis inspection (depth pipeline + head messages + reserved work);
* scrape:  a full /metrics exposition over HTTP (inspection plus rendering ~30,000 series).

Usage: .venv/bin/python bench/bench_redis_scrape.py [--queues 1000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import median_seconds  # noqa: E402
from celery_queue_exporter.brokers.redis.inspector import RedisInspector  # noqa: E402
from celery_queue_exporter.cli import Exporter  # noqa: E402
from celery_queue_exporter.config import ExporterConfig  # noqa: E402
from celery_queue_exporter.config.brokers import new_broker  # noqa: E402
from celery_queue_exporter.server import MetricsServer  # noqa: E402
from testsupport.redis_server import RedisServer  # noqa: E402
from testsupport.waiting import ServiceError  # noqa: E402

STEPS = list(range(10))


def fill(client: redis.Redis, queues: list[str]) -> int:
    message = {
        "body": "W1tdLCB7fSwge31d",
        "headers": {"task": "bench.task", "id": "x", "celery_queue_exporter_enqueued_at": 0},
        "properties": {"priority": 0, "delivery_tag": "t"},
    }
    filled = 0
    with client.pipeline(transaction=False) as pipe:
        for q_index, queue in enumerate(queues):
            for step in STEPS:
                if (q_index * 10 + step) % 10 == q_index % 10:  # 10% of keys, spread over levels
                    key = queue if step == 0 else f"{queue}:{step}"
                    message["headers"]["enqueued_at"] = time.time()
                    for _ in range(1 + q_index % 5):
                        pipe.lpush(key, json.dumps(message))
                    filled += 1
        pipe.execute()
    return filled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
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
        non_empty = fill(client, queues)
        keys = [q if s == 0 else f"{q}:{s}" for q in queues for s in STEPS]

        def floor() -> None:
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.llen(key)
                pipe.execute()

        url = server.url
        broker = new_broker(
            name="bench",
            url=url,
            queues=queues,
            discover_queues=False,
            priority_steps=STEPS,
            sep=":",
        )
        inspector = RedisInspector(broker)
        exporter = Exporter(ExporterConfig(brokers=[broker], host="127.0.0.1", port=0))
        http = MetricsServer(exporter.registry, exporter.config)
        http.start()
        session = requests.Session()
        metrics_url = f"http://127.0.0.1:{http.port}/metrics"

        def scrape() -> None:
            response = session.get(metrics_url, timeout=30)
            response.raise_for_status()

        floor_s = median_seconds(floor, args.repeat)
        inspect_s = median_seconds(inspector.inspect, args.repeat)
        scrape_s = median_seconds(scrape, args.repeat)
        series = session.get(metrics_url, timeout=30).text.count("\ncelery_")
        http.stop()
        exporter.close()
        inspector.close()
    finally:
        server.close()

    print(
        f"keys: {len(keys)} ({args.queues} queues x {len(STEPS)} levels), "
        f"non-empty: {non_empty}, celery_* series per scrape: {series}, repeats: {args.repeat}"
    )
    print(f"{'measure':<34} {'median ms':>10} {'min ms':>8} {'p90 ms':>8} {'x floor':>8}")
    for label, (median, low, p90) in (
        ("floor: bare pipelined LLEN", floor_s),
        ("exporter inspection", inspect_s),
        ("full HTTP scrape (/metrics)", scrape_s),
    ):
        print(
            f"{label:<34} {median * 1000:>10.1f} {low * 1000:>8.1f} {p90 * 1000:>8.1f} "
            f"{median / floor_s[0]:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
