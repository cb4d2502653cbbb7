"""Every dashboard query against a real Prometheus scraping a real exporter.

One module-scoped stack: a private redis-server, a real Celery app publishing mixed-priority
tasks (a backlog up front, then urgent tasks trickling in), a real ``celery worker`` (prefork,
concurrency 1, task events on) draining one queue while another
has no consumer, the exporter as a subprocess (queues and Celery events), and /usr/bin/prometheus
on a spare port with a temporary storage dir, a 1 s scrape interval and the generated recording
rules evaluated every second. Grafana's variables are replaced by concrete values before a
query is sent (``$__rate_interval`` -> 1m, ``$queue`` -> the two test queues, ...).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from test_dashboards import (
    all_targets,
    committed,
    concrete,
    label_values_query,
    metric_names,
    recording_rule_names,
    spec_of_series,
    variable_queries,
)

from celery_queue_exporter import catalogue as cat
from monitoring import config as monitoring_config
from monitoring import rules
from testsupport.exposition import parse_exposition
from testsupport.net import free_port, port_open
from testsupport.processes import stop_process
from testsupport.prometheus import PROMETHEUS, Prometheus
from testsupport.redis_server import RedisServer
from testsupport.services import missing_service
from testsupport.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.prometheus, pytest.mark.subprocess, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BROKER = "dash-redis"
BUSY, IDLE = "dash-busy", "dash-idle"
#: Tasks per priority on the queue the worker drains (0 is served first on Redis) ...
BUSY_TASKS = {0: 30, 9: 300}
#: ... then one urgent task every this many seconds until the end.
URGENT_EVERY_SECONDS = 0.5
#: ... and on the queue nobody consumes.
IDLE_TASKS = {0: 2, 3: 2, 6: 2, 9: 2}
TASK_SECONDS = 0.1

#: Values the variables take, as Grafana would substitute them (multi-value: a regex).
VARIABLES = {
    "job": "celery-queue-exporter",
    "namespace": ".*",
    "broker": BROKER,
    "queue": f"({BUSY}|{IDLE})",
    "worker": ".*",
    "task": ".*",
}

APP_SOURCE = """
import os
import time

from celery import Celery
from kombu import Queue

from celery_queue_exporter.instrumentation import install

app = Celery("dash_app", broker=os.environ["DASH_BROKER_URL"], set_as_current=False)
app.conf.update(
    task_queues=[Queue(name, routing_key=name) for name in os.environ["DASH_QUEUES"].split(",")],
    task_send_sent_event=True,
    worker_send_task_events=True,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)
install(app)


@app.task(name="dash.sleep")
def sleep(seconds):
    time.sleep(seconds)


@app.task(name="dash.boom")
def boom():
    raise ValueError("boom")


@app.task(name="dash.soft_limit", soft_time_limit=0.2)
def soft_limit():
    time.sleep(3)
"""


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    redis: RedisServer
    exporter_url: str
    prometheus: Prometheus  # testsupport's, the one Prometheus helper of the suite

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    def query(self, expr: str) -> dict[str, Any]:
        """The whole /api/v1/query answer (status, errorType, data): tests check errors too."""
        return self.prometheus.query(expr)

    def query_range(self, expr: str, start: float, end: float) -> dict[str, Any]:
        return self.prometheus.api("query_range", query=expr, start=start, end=end, step="1s")

    def scrape(self) -> dict:
        return parse_exposition(requests.get(self.exporter_url, timeout=10).text)


class Producer:
    """The Celery app of the test (install(app) stamps every message): a backlog published
    up front, then urgent tasks trickling in while the worker works through it, so the most
    urgent level has waits to measure at any moment of the test."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.workdir = str(workdir)
        sys.path.insert(0, self.workdir)
        os.environ["DASH_BROKER_URL"], os.environ["DASH_QUEUES"] = url, f"{BUSY},{IDLE}"
        import dash_app  # the module written by the fixture

        self.app = dash_app.app
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._trickle, name="dash-producer", daemon=True)

    def publish_backlog(self) -> None:
        for task in ("dash.boom", "dash.soft_limit"):
            self.app.send_task(task, queue=BUSY, priority=0)
        for priority, count in BUSY_TASKS.items():
            for _ in range(count):
                self.send(BUSY, priority)
        for priority, count in IDLE_TASKS.items():
            for _ in range(count):
                self.send(IDLE, priority)

    def send(self, queue: str, priority: int) -> None:
        self.app.send_task("dash.sleep", args=(TASK_SECONDS,), queue=queue, priority=priority)

    def _trickle(self) -> None:
        while not self.stopped.wait(URGENT_EVERY_SECONDS):
            self.send(BUSY, 0)

    def start_trickle(self) -> None:
        self.thread.start()

    def close(self) -> None:
        from celery_queue_exporter.instrumentation import uninstall

        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.app.close()
        uninstall()
        sys.path.remove(self.workdir)
        sys.modules.pop("dash_app", None)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not PROMETHEUS.exists():  # testsupport.prometheus's binary
        missing_service("/usr/bin/prometheus is not installed (Debian package prometheus)")
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="cqe-dash-"))
    processes: list[subprocess.Popen] = []
    redis = RedisServer(port=free_port(), workdir=workdir)
    producer = None
    prometheus: Prometheus | None = None
    logs = []

    def spawn(command: list[str], name: str, env: dict[str, str] | None = None):
        log = open(workdir / f"{name}.log", "w")  # noqa: SIM115 - closed at teardown
        logs.append(log)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(process)
        return process

    try:
        redis.start()
        (workdir / "dash_app.py").write_text(textwrap.dedent(APP_SOURCE))
        producer = Producer(redis.url, workdir)
        producer.publish_backlog()

        exporter_port = free_port()
        spawn(
            [
                sys.executable,
                "-m",
                "celery_queue_exporter",
                "--broker-url",
                f"{BROKER}={redis.url}",
                "--queue",
                BUSY,
                "--queue",
                IDLE,
                "--host",
                "127.0.0.1",
                "--port",
                str(exporter_port),
                "--events",
            ],
            "exporter",
        )
        wait_for(lambda: port_open(exporter_port), timeout=20, what="the exporter to listen")

        config = monitoring_config.load()
        config["recording"]["interval"] = "1s"
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rules.rule_file(config)))
        prometheus = Prometheus(
            workdir,
            job="celery-queue-exporter",
            target=f"127.0.0.1:{exporter_port}",
            rule_file=workdir / "rules.yaml",
        ).start()
        spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "dash_app",
                "worker",
                "-P",
                "prefork",
                "-c",
                "1",
                "-E",
                "-Q",
                BUSY,
                "-n",
                "dash-worker@cqe-test",
                "--without-gossip",
                "--without-mingle",
                "--heartbeat-interval",
                "1",
                "-l",
                "WARNING",
            ],
            "worker",
            env={
                "PYTHONPATH": f"{workdir}{os.pathsep}{ROOT}",
                "DASH_BROKER_URL": redis.url,
                "DASH_QUEUES": f"{BUSY},{IDLE}",
            },
        )
        producer.start_trickle()
        yield Stack(redis, f"http://127.0.0.1:{exporter_port}/metrics", prometheus)
    finally:
        if producer is not None:
            producer.close()
        for process in reversed(processes):
            stop_process(process, group=True)
        if prometheus is not None:
            prometheus.close()
        for log in logs:
            log.close()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _has_data(stack: Stack, expr: str, minutes: int = 10) -> bool:
    """Whether ``expr`` returned anything in the last minutes, as a panel would show it."""
    end = time.time()
    answer = stack.query_range(expr, end - 60 * minutes, end)
    return answer["status"] == "success" and bool(answer["data"]["result"])


def _queries() -> list[tuple[str, str, str, str]]:
    """(dashboard, panel title, refId, concrete expression) of every panel query."""
    return [
        (slug, panel["title"], target["refId"], concrete(target["expr"], VARIABLES))
        for slug, panel, target in all_targets(committed())
    ]


# --- validity ---------------------------------------------------------------------------------


@pytest.mark.xdist_group("dashboards-stack")
def test_every_panel_query_is_valid_promql(stack):
    wait_for(
        lambda: _has_data(stack, 'count_over_time(up{job="celery-queue-exporter"}[1m]) >= 3'),
        timeout=30,
        what="three scrapes",
    )
    problems = []
    queries = _queries()
    for slug, title, ref, expr in queries:
        answer = stack.query(expr)
        if answer["status"] != "success" or answer.get("warnings"):
            problems.append(f"{slug}: {title} [{ref}]: {answer.get('error')} {answer}: {expr}")
    assert problems == []
    assert len(queries) > 80


@pytest.mark.xdist_group("dashboards-stack")
def test_a_broken_query_is_reported_as_an_error(stack):
    answer = stack.query(
        concrete('sum by (queue (celery_queue_messages{queue=~"$queue"})', {"queue": ".*"})
    )
    assert answer["status"] == "error" and answer["errorType"] == "bad_data"


@pytest.mark.xdist_group("dashboards-stack")
def test_variable_queries_return_the_test_values(stack):
    expected = {"job": {"celery-queue-exporter"}, "broker": {BROKER}, "queue": {BUSY, IDLE}}
    wait_for(lambda: _has_data(stack, "celery_queue_messages"), what="queue series")
    for slug, variable in variable_queries(committed()):
        series, label = label_values_query(variable["query"])
        expr = concrete(series, {**VARIABLES, "queue": ".*", "broker": ".*", "job": ".*"})
        answer = stack.query(f"group by ({label}) ({expr})")
        assert answer["status"] == "success", (slug, variable["name"], answer)
        values = {item["metric"].get(label, "") for item in answer["data"]["result"]}
        if label in expected:
            assert values == expected[label], (slug, label)
        elif label == "namespace":
            assert values == {""}  # no namespace label outside Kubernetes: "All" matches
        else:
            assert values, (slug, label)


# --- names ------------------------------------------------------------------------------------


@pytest.mark.xdist_group("dashboards-stack")
def test_every_queried_metric_is_in_a_real_scrape_or_the_generated_rules(stack):
    """Names a panel queries: the Redis exporter's scrape, the recording rules Prometheus
    loaded, Prometheus' own ``up``; RabbitMQ-only metrics must at least be in the catalogue,
    and the RabbitMQ test scrapes those."""
    loaded = {
        rule["name"]
        for group in requests.get(f"{stack.prometheus_url}/api/v1/rules", timeout=10).json()[
            "data"
        ]["groups"]
        for rule in group["rules"]
        if rule["type"] == "recording"
    }
    assert loaded == recording_rule_names()
    used = {name for _, _, _, expr in _queries() for name in metric_names(expr)}
    must_scrape = set()
    for name in sorted(used - loaded - {"up"}):
        spec = spec_of_series(name)
        assert spec is not None, f"{name} is neither recorded nor in the catalogue"
        redis_queue_metric = spec in cat.QUEUE_METRICS and "redis" in spec.brokers
        event_metric = spec in cat.EVENT_METRICS and name not in _EVENT_SERIES_ON_DEMAND
        if redis_queue_metric or event_metric:
            must_scrape.add(name)
    last: set[str] = set()

    def scraped_all() -> bool:
        nonlocal last
        last = {name for name, _ in stack.scrape()}
        return must_scrape <= last

    try:
        wait_for(scraped_all, timeout=40, interval=0.5, what="every queried metric scraped")
    except AssertionError:
        pytest.fail(f"queried but never exported: {sorted(must_scrape - last)}")
    assert len(must_scrape) >= 25


#: Event series that appear only after their first event of that kind (not produced here).
_EVENT_SERIES_ON_DEMAND = {
    cat.TASK_RETRIED.name,
    cat.EVENT_STREAM_INTERRUPTIONS.name,
    cat.EVENT_SERIES_DROPPED.name,  # only once the series budget folds something
}


# --- data -------------------------------------------------------------------------------------

#: Queries allowed to return nothing with this workload, and why.
NO_DATA_EXPECTED = {
    ("queues", "Consumers (RabbitMQ)"): "RabbitMQ-only metric; the stack has only Redis",
    ("queues", "Max priority (RabbitMQ)"): "RabbitMQ-only metric",
    ("queues", "Management API, missing and unreadable queues", "A"): "RabbitMQ-only metric",
    ("queues", "Management API, missing and unreadable queues", "B"): "RabbitMQ-only metric",
    ("queues", "Management API, missing and unreadable queues", "C"): (
        "no key of the wrong type in this workload (celery_queue_unreadable is 0 everywhere)"
    ),
    ("queues", "Consumer utilisation (RabbitMQ)"): "RabbitMQ-only metric",
    ("queues", "RabbitMQ: waiting messages per priority level"): "no RabbitMQ broker",
    ("queues", "RabbitMQ: oldest waiting message per level"): "no RabbitMQ broker",
    ("queues", "Redis brokers now", "D"): "the test Redis has no maxmemory: no share of it",
    ("workers", "Workers up and down", "B"): "counts lost workers; none is lost",
    ("workers", "Workers up and down", "C"): "counts offline workers; none stopped gracefully",
    ("workers", "Throughput per queue", "D"): "no task retries in this workload",
    ("workers", "Event stream", "C"): "no interruption of the event stream",
    ("workers", "Event stream", "D"): "nothing past the series budget in this workload",
}


def _exempt(slug: str, title: str, ref: str, expr: str) -> bool:
    return (
        (slug, title) in NO_DATA_EXPECTED
        or (slug, title, ref) in NO_DATA_EXPECTED
        or 'transport="rabbitmq"' in expr
    )


def _needs_events(expr: str) -> bool:
    recorded = recording_rule_names()
    for name in metric_names(expr):
        spec = spec_of_series(name)
        if name in recorded or (spec is not None and spec in cat.EVENT_METRICS):
            return True
    return False


def _wait_for_data(stack: Stack, queries: list[tuple[str, str, str, str]]) -> None:
    pending = {(slug, title, ref): expr for slug, title, ref, expr in queries}

    def all_have_data() -> bool:
        for key, expr in list(pending.items()):
            if _has_data(stack, expr):
                del pending[key]
        return not pending

    try:
        wait_for(all_have_data, timeout=60, interval=1, what="data in every panel")
    except AssertionError:
        pytest.fail(f"queries without data: {sorted(pending)}")


@pytest.mark.xdist_group("dashboards-stack")
def test_queue_panels_have_data(stack):
    queries = [
        q
        for q in _queries()
        if not _exempt(*q)
        and not _needs_events(q[3])
        and all(
            name == "up" or "redis" in (spec_of_series(name) or cat.BUILD_INFO).brokers
            for name in metric_names(q[3])
        )
    ]
    assert len(queries) >= 25
    _wait_for_data(stack, queries)


@pytest.mark.xdist_group("dashboards-stack")
def test_event_panels_have_data(stack):
    queries = [q for q in _queries() if not _exempt(*q) and _needs_events(q[3])]
    assert len(queries) >= 30
    _wait_for_data(stack, queries)


@pytest.mark.xdist_group("dashboards-stack")
def test_urgent_level_is_served_first_in_the_panels(stack):
    """What the panels show matches the workload: on the busy queue the most urgent level
    (Redis: 0) was empty while the least urgent one still had messages waiting."""
    depth = 'celery_queue_messages{job="celery-queue-exporter", queue="dash-busy", priority="%s"}'
    expr = f"({depth % 0} == 0) and on (broker, queue) ({depth % 9} > 0)"
    wait_for(lambda: _has_data(stack, expr), timeout=60, interval=1, what="level 0 first")


# --- RabbitMQ-only metrics --------------------------------------------------------------------


@pytest.mark.rabbitmq
def test_rabbitmq_metrics_the_panels_query_are_in_a_real_rabbitmq_scrape(rabbitmq_url, unique_name):
    """The RabbitMQ-only series the Redis stack cannot produce, from a real RabbitMQ scrape."""
    import pika
    from celery import Celery
    from kombu import Queue

    from testsupport.exporter import build_exporter, scrape

    used = {name for _, _, _, expr in _queries() for name in metric_names(expr)}
    rabbit_only = {
        name
        for name in used
        if (spec := spec_of_series(name)) is not None and spec.brokers == ("rabbitmq",)
    }
    assert rabbit_only == {
        cat.QUEUE_CONSUMERS.name,
        cat.QUEUE_CONSUMER_UTILISATION.name,
        cat.QUEUE_MAX_PRIORITY.name,
        cat.QUEUE_MISSING.name,
        cat.RABBITMQ_MANAGEMENT_UP.name,
        cat.QUEUE_REDELIVERED.name,
        cat.SCHEDULED_MESSAGES.name,
        *(spec.name for spec in cat.BROKER_PRESSURE_METRICS if spec.brokers == ("rabbitmq",)),
    }
    # Series only some queues have: consumer_utilisation needs consumers; scheduled messages
    # need Celery's delay queues (tests/test_rabbitmq4.py scrapes them on 3.10 and 4.0).
    on_demand = {cat.QUEUE_CONSUMER_UTILISATION.name, cat.SCHEDULED_MESSAGES.name}
    app = Celery("dash-rmq", broker=rabbitmq_url, set_as_current=False)
    app.conf.task_queues = [Queue(unique_name, queue_arguments={"x-max-priority": 9})]
    exporter = None
    try:
        for priority in (0, 9):
            app.send_task("dash.noop", queue=unique_name, priority=priority)
        exporter = build_exporter(
            "--broker-url", f"rmq={rabbitmq_url}", "--queue", unique_name,
            "--queue", f"{unique_name}-absent",
        )  # fmt: skip
        samples = wait_for(
            lambda: (
                (s := scrape(exporter)) and {name for name, _ in s} >= rabbit_only - on_demand and s
            ),
            timeout=30,
            interval=1,
            what="RabbitMQ series",
        )
        names = {name for name, _ in samples}
        # RabbitMQ reports consumer_utilisation only for queues with consumers
        assert rabbit_only - names <= on_demand
        assert (
            samples[
                (
                    cat.QUEUE_MISSING.name,
                    frozenset({("broker", "rmq"), ("queue", f"{unique_name}-absent")}),
                )
            ]
            == 1
        )
    finally:
        if exporter is not None:
            exporter.close()
        app.close()
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url[:-1] + "%2F"))
        try:
            channel = connection.channel()
            channel.queue_delete(unique_name)
            channel.exchange_delete(unique_name)  # Celery declared a direct exchange for it
        finally:
            connection.close()


@pytest.mark.xdist_group("dashboards-stack")
def test_effectiveness_panel_shows_the_goal_met_when_urgent_work_goes_first(stack):
    """On Redis with prefetch 1 the worker takes level 0 first: the trickled urgent tasks wait
    about one task's runtime, the backlog at level 9 tens of seconds, so the effectiveness
    panel must show more than the goal's reduction."""
    goal = monitoring_config.load()["goals"]["min_priority_wait_reduction"]
    (expr,) = [
        concrete(target["expr"], VARIABLES)
        for slug, panel, target in all_targets(committed())
        if (slug, panel["title"]) == ("priorities", "Priority effectiveness per queue")
    ]

    def best() -> float | None:
        end = time.time()
        result = stack.query_range(expr, end - 600, end)["data"]["result"]
        values = [float(v) for series in result for _, v in series["values"]]
        return max(values) if values else None

    value = wait_for(best, timeout=60, interval=1, what="an effectiveness value")
    assert goal < value <= 1
