"""Benchmark: RabbitMQ scrapes with the rabbitmq_prometheus plugin against the plugin's own
request (issue 25: "within 2x rabbitmq_prometheus for what the plugin has").

Not a test: it prints figures. Starts a private RabbitMQ node with rabbitmq_management and
rabbitmq_prometheus (testsupport/rabbitmq_node.py; the machine's brokers are not touched) and
fills two vhosts of it:

* ``prio``:  N classic priority queues (x-max-priority 10, 3 messages at priorities 0, 3, 9):
             RabbitMQ 3.10 gives their per-level counts in /api/queues only, so the exporter
             reads it every scrape, plugin or not (its cost measured here);
* ``plain``: N classic queues without priorities (3 messages each): everything the exporter
             exports for them the plugin has, so the steady state reads the plugin only.

Measured interleaved (one round of every figure per repeat, so the machine's load hits all
alike), medians: the plugin's request (the floor), the management API's request, and full
scrapes through the real Exporter with and without ``prometheus_url``; each as a ratio to the
floor (coarse + consumer count families) and to the plugin request the exporter makes (also
``queue_metrics``: head timestamps, consumer utilisation).

Usage: .venv/bin/python bench/bench_rabbitmq_plugin.py [--queues 200] [--repeat 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pika
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celery_queue_exporter.brokers.rabbitmq.management import MANAGEMENT_COLUMNS  # noqa: E402
from celery_queue_exporter.brokers.rabbitmq.prometheus_plugin import FAMILIES  # noqa: E402
from testsupport.exporter import build_exporter  # noqa: E402
from testsupport.rabbitmq_node import running_node  # noqa: E402

AUTH = ("guest", "guest")
#: The exporter's own /api/queues request.
API_PARAMS = {"columns": ",".join(MANAGEMENT_COLUMNS)}
PRIORITIES = (0, 3, 9)


def fill(node, vhost: str, count: int, priorities: bool) -> list[str]:
    """Create ``vhost`` with ``count`` queues of 3 messages each; their names."""
    api = node.management_url
    requests.put(f"{api}/api/vhosts/{vhost}", auth=AUTH, timeout=10).raise_for_status()
    requests.put(
        f"{api}/api/permissions/{vhost}/guest",
        json={"configure": ".*", "write": ".*", "read": ".*"},
        auth=AUTH,
        timeout=10,
    ).raise_for_status()
    url = f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/{vhost}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    names = [f"{vhost}-{i:04d}" for i in range(count)]
    try:
        channel = connection.channel()
        arguments = {"x-max-priority": 10} if priorities else None
        for name in names:
            channel.queue_declare(name, durable=True, arguments=arguments)
            for priority in PRIORITIES:
                channel.basic_publish("", name, b"{}", pika.BasicProperties(priority=priority))
    finally:
        connection.close()
    return names


def wait_for_stats(node, vhost: str, names: list[str], timeout: float = 60.0) -> None:
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = requests.get(
            f"{node.management_url}/api/queues/{vhost}",
            params={"columns": "name,messages_ready"},
            auth=AUTH,
            timeout=10,
        ).json()
        if wanted <= {e["name"] for e in entries if e.get("messages_ready") == len(PRIORITIES)}:
            return
        time.sleep(0.5)
    raise SystemExit(f"the management API did not report the {vhost} queues in time")


def interleaved(figures: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Each figure timed ``repeat`` times, one round of all per repeat, after a warm-up."""
    for fn in figures.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in figures}
    for _ in range(repeat):
        for name, fn in figures.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    session = requests.Session()
    with running_node(prometheus=True) as node:
        print(f"private node {node.nodename}: {args.queues} queues per vhost, {args.repeat} rounds")
        figures: dict[str, Callable[[], object]] = {}
        exporters = []
        for vhost, priorities in (("prio", True), ("plain", False)):
            names = fill(node, vhost, args.queues, priorities)
            wait_for_stats(node, vhost, names)
            plugin_params = [("vhost", vhost), *(("family", f) for f in FAMILIES)]
            coarse_params = [
                ("vhost", vhost),
                ("family", "queue_coarse_metrics"),
                ("family", "queue_consumer_count"),
            ]
            figures[f"{vhost}: plugin, coarse + consumer_count"] = lambda p=coarse_params: (
                session.get(f"{node.prometheus_url}/metrics/detailed", params=p).content
            )
            figures[f"{vhost}: plugin, the exporter's 3 families"] = lambda p=plugin_params: (
                session.get(f"{node.prometheus_url}/metrics/detailed", params=p).content
            )
            figures[f"{vhost}: management /api/queues (the exporter's columns)"] = lambda v=vhost: (
                session.get(
                    f"{node.management_url}/api/queues/{v}", params=API_PARAMS, auth=AUTH
                ).json()
            )
            broker = f"rmq=amqp://guest:guest@127.0.0.1:{node.amqp_port}/{quote(vhost)}"
            common = ("--broker-url", broker, "--management-url", node.management_url)
            by_api = build_exporter(*common)
            by_plugin = build_exporter(*common, "--prometheus-url", node.prometheus_url)
            exporters += [by_api, by_plugin]
            figures[f"{vhost}: scrape, management API"] = by_api.scrape_once
            figures[f"{vhost}: scrape, prometheus_url"] = by_plugin.scrape_once
        try:
            times = interleaved(figures, args.repeat)
        finally:
            for exporter in exporters:
                exporter.close()
        print(f"load average {os.getloadavg()[0]:.1f}")
        for vhost in ("prio", "plain"):
            floor = statistics.median(times[f"{vhost}: plugin, coarse + consumer_count"])
            ours = statistics.median(times[f"{vhost}: plugin, the exporter's 3 families"])
            print(
                f"\n{vhost} ({args.queues} queues)"
                "           median ms   x plugin floor   x the exporter's plugin request"
            )
            for name, values in times.items():
                if name.startswith(f"{vhost}:"):
                    median = statistics.median(values)
                    label = name.split(": ", 1)[1]
                    print(
                        f"  {label:<48} {median * 1000:8.1f}   {median / floor:6.2f}x"
                        f"          {median / ours:6.2f}x"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
