"""Every metric the alerting and recording rules read is one the exporter really exposes.

The real exporter (the ``celery-queue-exporter`` command, ``--events``) watches a private
redis-server while a real Celery app publishes tasks at two priority levels and a real worker
(prefork, -E) runs them with known outcomes; RabbitMQ-only metrics come from the exporter
watching a queue we declare on the machine's RabbitMQ. The scrapes are compared with the
metric names and label names the generated rules use.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
from apps.events_app import make_app
from apps.harness import ROOT, Worker

from celery_queue_exporter import catalogue as cat
from celery_queue_exporter.instrumentation import install, uninstall
from monitoring import config as mconfig
from monitoring import rules
from testsupport.exposition import parse_exposition
from testsupport.net import free_port
from testsupport.waiting import wait_for

pytestmark = [pytest.mark.slow]

CONFIG = mconfig.load()
RULES = rules.recording_rules(CONFIG) + rules.alert_rules(CONFIG)
USED = frozenset().union(*(rule.metrics for rule in RULES)) - {"up"}  # up: Prometheus' own
RABBITMQ_ONLY = {
    series
    for spec in cat.all_metrics()
    if spec.brokers == ("rabbitmq",)
    for series in cat.exposed_series_names(spec)
} & USED
#: Series that appear only once something happens that this workload never does (each has its
#: own test): the series budget folding an observation (tests/test_hardening_budget.py).
ON_DEMAND = {cat.EVENT_SERIES_DROPPED.name}


def spec_of(series: str) -> cat.MetricSpec:
    for spec in cat.all_metrics():
        if series in cat.exposed_series_names(spec):
            return spec
    raise KeyError(series)


def start_exporter(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery_queue_exporter",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def serving() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return requests.get(url, timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(serving, 30, what="exporter serving")
    return process, url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def scrape(url: str) -> dict[str, list[dict[str, str]]]:
    """{sample name: [label dict, ...]} of one scrape."""
    found: dict[str, list[dict[str, str]]] = {}
    for (name, labels), _value in parse_exposition(requests.get(url, timeout=30).text).items():
        found.setdefault(name, []).append(dict(labels))
    return found


def assert_labels_match_the_catalogue(found: dict[str, list[dict[str, str]]], names) -> None:
    """The rules join and group on the catalogue's labels: the scrape must carry them."""
    for name in names:
        spec = spec_of(name)
        expected = set(spec.labels) | ({"le"} if name.endswith("_bucket") else set())
        shapes = {frozenset(labels) for labels in found[name]}
        for shape in shapes:
            # celery_queue_messages/oldest age/queue wait may lack `priority` (RabbitMQ totals,
            # no install(app)); every other label must be there
            assert expected - {"priority"} <= shape <= expected, (name, sorted(shape))


@pytest.fixture
def celery_app_factory() -> Iterator:
    apps = []

    def make(broker_url: str, queue: str):
        app = make_app(broker_url, queue)
        install(app)
        apps.append(app)
        return app

    yield make
    uninstall()
    for app in apps:
        app.close()


@pytest.mark.redis
def test_every_metric_the_rules_read_is_exposed_by_a_real_redis_scrape(
    redis_server, unique_name, celery_app_factory
):
    queue = unique_name
    app = celery_app_factory(redis_server.url, queue)
    exporter, url = start_exporter(
        "--broker-url", f"redis-test={redis_server.url}", "--queue", queue, "--events"
    )
    worker = None
    try:
        # Queue metrics: messages waiting at the most (0) and least (9) urgent Redis levels.
        app.send_task("events.ok", args=(1,), queue=queue, priority=0)
        app.send_task("events.ok", args=(2,), queue=queue, priority=9)
        found = wait_for(
            lambda: (s := scrape(url)).get("celery_queue_messages") and s,
            20,
            what="queue metrics",
        )
        levels = {
            labels["priority"]
            for labels in found["celery_queue_messages"]
            if labels["queue"] == queue
        }
        # The empty steps 3 and 6 send no depth (absent means 0, issue 25).
        assert levels == {"0", "9"}
        urgency = {
            (labels["priority"], labels["urgency"])
            for labels in found["celery_queue_priority_urgency_rank"]
        }
        assert urgency == {("0", "most"), ("9", "least")}

        # Event metrics: a real worker runs tasks that succeed, fail and hit a time limit.
        worker = Worker(redis_server.url, queue, pool="prefork", concurrency=1).start()
        app.send_task("events.boom", queue=queue, priority=0)
        app.send_task("events.hard_limit", queue=queue, priority=9)
        wanted = USED - RABBITMQ_ONLY - ON_DEMAND
        # Some series exist only for a while (celery_queue_oldest_message_unstamped only for a
        # non-empty level, which the worker then drains): each name counts once it appeared in
        # any scrape, with the labels of its latest appearance.
        seen = dict(found)

        def hard_limit_hit() -> bool:
            """The level-9 task ran into its hard limit (its series exists at 0 from the first
            event of the task on: the name alone does not say it ran)."""
            samples = parse_exposition(requests.get(url, timeout=30).text)
            return any(
                name == "celery_task_time_limit_exceeded_total" and value >= 1
                for (name, labels), value in samples.items()
                if ("queue", queue) in labels and ("limit", "hard") in labels
            )

        def everything() -> dict | None:
            assert worker.process.poll() is None, worker.output()
            seen.update(scrape(url))
            return seen if wanted <= set(seen) and hard_limit_hit() else None

        try:
            found = wait_for(everything, 60, interval=0.5, what="every metric the rules use")
        except AssertionError:
            missing = sorted(wanted - set(seen))
            raise AssertionError(f"not in a real scrape: {missing}") from None
        assert_labels_match_the_catalogue(found, wanted)
        # the per-priority wait carries the priority the alerts and recording rules join on
        wait_levels = {
            labels.get("priority")
            for labels in found["celery_queue_wait_seconds_count"]
            if labels["queue"] == queue
        }
        assert {"0", "9"} <= wait_levels
    finally:
        if worker is not None:
            worker.stop()
        stop(exporter)


@pytest.mark.rabbitmq
def test_rabbitmq_only_metrics_the_rules_read_are_exposed_by_a_real_scrape(
    rabbitmq_url, unique_name, celery_app_factory
):
    import kombu

    node_metrics = {
        spec.name for spec in cat.BROKER_PRESSURE_METRICS if spec.brokers == ("rabbitmq",)
    }
    # The redelivery and delivery-limit series come from quorum queues (RabbitMQ 4): their
    # exact values on a real RabbitMQ 4.0 are tests/test_rabbitmq4.py's; this one reads 3.10.
    quorum = {
        series
        for spec in cat.RABBITMQ4_METRICS
        for series in cat.exposed_series_names(spec)
        if series in RABBITMQ_ONLY
    }
    assert quorum == {
        "celery_queue_delivery_limit",
        "celery_queue_dead_letter_configured",
        "celery_queue_redelivered_total",
    }
    # Every node series but memory used/limit (charted, not alerted on) is read by a rule.
    assert {"celery_queue_consumers"} | node_metrics - {
        cat.RABBITMQ_NODE_MEMORY_USED.name,
        cat.RABBITMQ_NODE_MEMORY_LIMIT.name,
    } == RABBITMQ_ONLY - quorum
    queue = unique_name
    app = celery_app_factory(rabbitmq_url, queue)
    exporter, url = start_exporter(
        "--broker-url", f"rabbitmq-test={rabbitmq_url}", "--queue", queue
    )
    try:
        app.send_task("events.ok", args=(1,), queue=queue, priority=9)  # declares the queue

        def consumers_seen() -> dict | None:
            now = scrape(url)
            rows = [x for x in now.get("celery_queue_consumers", []) if x["queue"] == queue]
            return now if rows else None

        found = wait_for(consumers_seen, 30, interval=0.5, what="celery_queue_consumers")
        assert_labels_match_the_catalogue(found, RABBITMQ_ONLY - quorum | {"celery_queue_messages"})
    finally:
        stop(exporter)
        with kombu.Connection(rabbitmq_url) as connection:
            channel = connection.channel()
            kombu.Queue(queue, channel=channel).delete()
            kombu.Exchange(queue, channel=channel).delete()  # Celery declared it for the queue
