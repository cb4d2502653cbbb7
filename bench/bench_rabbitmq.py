"""Benchmark: RabbitMQ scrape latency for 200 queues on one vhost, and Redis + RabbitMQ together.

Not a test: it prints figures. Uses the machine's RabbitMQ (amqp://guest:guest@127.0.0.1:5672//,
management API on 15672) and a private redis-server on a spare port. Creates 200 classic
priority queues (x-max-priority 10) named ``cqe-bench-<random>-NNN``, each holding a few
messages at a few priorities, and deletes them at the end (also on errors). Measures, as the
median of repeated scrapes (each a full exposition through the real Exporter):

* management: the management API (one GET /api/queues/{vhost} for all queues);
* amqp:       AMQP passive queue.declare, one per queue (management-api never);
* both:       one exporter watching Redis (the same 200 queue names, kombu's 4 priority steps)
              and RabbitMQ (management API) at once.

The management API answers for every queue of the vhost, not only the watched ones: the
figure depends on how many queues the vhost holds (printed).

Usage: .venv/bin/python bench/bench_rabbitmq.py [--queues 200] [--repeat 20]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import pika
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import median_seconds  # noqa: E402
from celery_queue_exporter.brokers.rabbitmq.inspector import RabbitMQInspector  # noqa: E402
from celery_queue_exporter.brokers.rabbitmq.management import MANAGEMENT_COLUMNS  # noqa: E402
from celery_queue_exporter.cli import Exporter  # noqa: E402
from celery_queue_exporter.config import BrokerConfig, ExporterConfig  # noqa: E402
from celery_queue_exporter.config.brokers import new_broker  # noqa: E402
from testsupport.rabbitmq import delete_rabbitmq_objects, pika_url  # noqa: E402
from testsupport.redis_server import RedisServer  # noqa: E402

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
MANAGEMENT = "http://127.0.0.1:15672"
AUTH = ("guest", "guest")
PRIORITIES = (0, 3, 9)


def create_queues(names: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(pika_url(AMQP_URL)))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_declare(name, arguments={"x-max-priority": 10})
            for priority in PRIORITIES:
                channel.basic_publish("", name, b"{}", pika.BasicProperties(priority=priority))
    finally:
        connection.close()


def delete_queues(names: list[str]) -> None:
    for error in delete_rabbitmq_objects(AMQP_URL, names, []):
        print(f"clean-up: {error}", file=sys.stderr)


def wait_for_stats(names: list[str], timeout: float = 30.0) -> int:
    """Wait until the management API reports every bench queue; return the vhost's size."""
    deadline = time.monotonic() + timeout
    wanted = set(names)
    while time.monotonic() < deadline:
        entries = requests.get(
            f"{MANAGEMENT}/api/queues/%2F",
            params={"columns": "name,messages_ready"},
            auth=AUTH,
            timeout=10,
        ).json()
        ready = {e["name"] for e in entries if e.get("messages_ready") == len(PRIORITIES)}
        if wanted <= ready:
            return len(entries)
        time.sleep(0.5)
    raise SystemExit("management API statistics did not catch up")


def fill_redis(client: redis.Redis, names: list[str]) -> None:
    body = '{"body": "W1tdLCB7fSwge31d", "headers": {"task": "bench", "id": "x"}, "properties": {}}'
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.lpush(name, body)
            pipe.lpush(f"{name}\x06\x169", body)
        pipe.execute()


def exporter_for(brokers: list[BrokerConfig]) -> Exporter:
    return Exporter(ExporterConfig(brokers=brokers, scrape_timeout_seconds=30))


def rabbit(names: list[str], management: str) -> BrokerConfig:
    return new_broker(
        name="rabbit", url=AMQP_URL, queues=names, discover_queues=False, management=management
    )


def run(queues: int, repeat: int) -> None:
    prefix = f"cqe-bench-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i:03d}" for i in range(queues)]
    redis_server = RedisServer().start()
    try:
        create_queues(names)
        vhost_size = wait_for_stats(names)
        client = redis_server.client()
        fill_redis(client, names)
        redis_broker = new_broker(
            name="redis", url=redis_server.url, queues=names,
            discover_queues=False,
        )  # fmt: skip

        results: dict[str, tuple[float, float, float]] = {}
        for label, brokers in (
            ("management API", [rabbit(names, "always")]),
            ("AMQP passive declares", [rabbit(names, "never")]),
            ("Redis + RabbitMQ (management API)", [redis_broker, rabbit(names, "always")]),
            ("Redis alone (same queues)", [redis_broker]),
        ):
            exporter = exporter_for(brokers)
            try:
                text, all_up = exporter.scrape_once()
                if not all_up:
                    raise SystemExit(f"{label}: a broker did not answer")
                series = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
                results[label] = median_seconds(exporter.scrape_once, repeat)
            finally:
                exporter.close()
            median, best, p90 = results[label]
            print(
                f"{label:36s} median {median * 1000:7.1f} ms  min {best * 1000:7.1f} ms  "
                f"p90 {p90 * 1000:7.1f} ms  ({series} series)"
            )
        for label, mode in (
            ("inspect only, management API", "always"),
            ("inspect only, AMQP", "never"),
        ):
            inspector = RabbitMQInspector(rabbit(names, mode), timeout_seconds=30)
            try:
                median, best, p90 = median_seconds(inspector.inspect, repeat)
            finally:
                inspector.close()
            print(
                f"{label:36s} median {median * 1000:7.1f} ms  min {best * 1000:7.1f} ms  "
                f"p90 {p90 * 1000:7.1f} ms"
            )
        session = requests.Session()
        params = {"columns": ",".join(MANAGEMENT_COLUMNS)}

        def bare_get() -> None:
            session.get(f"{MANAGEMENT}/api/queues/%2F", params=params, auth=AUTH, timeout=30).json()

        median, best, p90 = median_seconds(bare_get, repeat)
        print(
            f"{'floor: bare GET /api/queues + JSON':36s} median {median * 1000:7.1f} ms  "
            f"min {best * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms"
        )
        print(f"queues watched on RabbitMQ: {queues}; queues in the vhost: {vhost_size}")
    finally:
        try:
            delete_queues(names)
        finally:
            redis_server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    run(args.queues, args.repeat)


if __name__ == "__main__":
    main()
