"""End to end: the bundle as users run it, in a real Prometheus, with faults induced and fixed.

One module-scoped stack, every part real:

* a private redis-server on a spare port (so the test may stop it) and the machine's RabbitMQ
  with uniquely named priority queues (x-max-priority 9), deleted at the end;
* real Celery workers (subprocesses of tests/apps/events_app.py, events on, heartbeats every
  second) and a producer in this process, with ``install(app)`` stamping every message,
  publishing a mixed-priority workload (and a few failing, retried and time-limited tasks) to
  both brokers all along;
* the exporter as a subprocess (``python -m celery_queue_exporter --config FILE --events``),
  configured like k8s/config/exporter.yaml (a RabbitMQ password from ``password_env``);
* /usr/bin/prometheus on a spare port with temporary storage, scraping every second, loading
  the rules that ``python -m monitoring.generate`` writes for the committed monitoring config
  plus ``OVERRIDES`` (shorter thresholds and ``for:``, evaluated every second). The test
  thresholds come from the generator's own config, never from edited rule files.

The tests run in file order and share the stack: each fault is induced, the real alert is read
from Prometheus' /api/v1/alerts until it fires, the fault is fixed, and the alert must clear.
The dashboard tests come last so every panel's range covers the faults (a killed worker, an
interrupted event stream) as well as the steady workload.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pytest
import requests
import yaml
from apps.harness import Worker
from test_dashboards import all_targets, concrete, metric_names

from testsupport.net import free_port, port_open
from testsupport.processes import stop_process
from testsupport.prometheus import PROMETHEUS, RULES, Prometheus, render_monitoring
from testsupport.rabbitmq import RABBITMQ_URL, delete_rabbitmq_objects
from testsupport.redis_server import RedisServer
from testsupport.services import missing_service
from testsupport.waiting import wait_for

pytestmark = [
    pytest.mark.redis,
    pytest.mark.rabbitmq,
    pytest.mark.prometheus,
    pytest.mark.subprocess,
    pytest.mark.slow,
]

ROOT = Path(__file__).resolve().parent.parent
JOB = "celery-queue-exporter"
REDIS_BROKER, RABBIT_BROKER = "e2e-redis", "e2e-rabbitmq"
HEARTBEAT_TIMEOUT_SECONDS = 3
BACKLOG_LIMIT = 20
STARVATION_SECONDS = 4

#: Test thresholds, merged into the committed monitoring/config.yaml and rendered by the same
#: generator as the shipped rules. Everything else (expressions, labels, other alerts) is as
#: shipped.
OVERRIDES: dict[str, Any] = {
    "recording": {"interval": "1s", "window": "30s"},
    "exporter": {
        "worker_heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_SECONDS,
        "worker_retention_seconds": 600,
    },
    # keep_firing_for 0s: these tests watch alerts fire and clear at test speed; pages kept
    # across exporter restarts (the shipped 5m) are tests/test_oncall_scenarios.py's.
    "alerts": {
        "CeleryExporterDown": {"for": "2s"},
        "CeleryBrokerDown": {"for": "2s", "keep_firing_for": "0s"},
        "CeleryQueueBacklogHigh": {"messages": BACKLOG_LIMIT, "for": "2s", "keep_firing_for": "0s"},
        "CeleryWorkerDown": {"for": "2s", "keep_firing_for": "0s"},
        "CeleryPriorityStarvation": {
            "seconds": STARVATION_SECONDS,
            "window": "30s",
            "for": "2s",
            "keep_firing_for": "0s",
        },
    },
}


# --- the one-command demo (runs before the stack below is started) ----------------------------


DEMO = ROOT / "scripts" / "demo.sh"
# demo.sh logs each start as it happens, and its working directory first.
STARTED = re.compile(r"demo: started (?P<name>[\w-]+) \(pid (?P<pid>\d+)\)$")
WORKDIR = re.compile(r"demo: working directory (?P<path>/tmp/cqe-demo-\w+)$", re.MULTILINE)
# The demo's own cleanup waits up to 30 s for each of the 7 things it started.
DEMO_STOP_SECONDS = 240


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)  # every process the demo starts leads its own process group
    except ProcessLookupError:
        return False
    return True


def _demo_services() -> None:
    for binary in ("redis-server", "rabbitmq-server"):
        if shutil.which(binary) is None and not Path(f"/usr/lib/rabbitmq/bin/{binary}").exists():
            missing_service(f"{binary} is not installed")
    if not PROMETHEUS.exists():
        missing_service("/usr/bin/prometheus is not installed (Debian package prometheus)")


class DemoRun:
    """scripts/demo.sh in its own session (like a terminal's foreground job), output read by
    a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            ["bash", str(DEMO), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("CELERY_EXPORTER_")},
                **(env or {}),
            },
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def field(self, label: str) -> str:
        line = next(line for line in self.lines if line.strip().startswith(label))
        return line.strip()[len(label) :].strip()

    def started(self) -> dict[str, int]:
        text = self.field("Started (pid):")
        return {name: int(pid) for name, pid in (item.split("=") for item in text.split())}

    def wait_running(self) -> None:
        wait_for(
            lambda: "demo is running" in self.output or self.process.poll() is not None,
            timeout=240,
            interval=0.5,
            what="the demo to start",
        )
        assert "demo is running" in self.output, self.output

    def started_so_far(self) -> dict[str, int]:
        """What the demo has started until now (it logs each start as it happens)."""
        found = (STARTED.match(line) for line in list(self.lines))
        return {match["name"]: int(match["pid"]) for match in found if match}

    def stop(self, timeout: float = DEMO_STOP_SECONDS) -> None:
        """Stop the demo and everything it started, whatever state it is in (a test's cleanup:
        never raises). SIGTERM lets its trap stop what it started; what is still alive after
        that, or after the demo had to be killed, is killed by process group."""
        with contextlib.suppress(ProcessLookupError):
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        for pid in self.started_so_far().values():
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        workdir = next((WORKDIR.match(line) for line in self.lines if WORKDIR.match(line)), None)
        if workdir:
            shutil.rmtree(workdir["path"], ignore_errors=True)


@pytest.mark.rabbitmq
@pytest.mark.xdist_group("demo")
def test_demo_on_a_machine_without_brokers_starts_them_and_ctrl_c_stops_all_it_started():
    """--private plays the fresh machine: the demo starts its own Redis and RabbitMQ (and
    Prometheus, exporter, workers, producer); Ctrl-C stops exactly those."""
    _demo_services()
    machine = {port: port_open(port) for port in (6379, 5672, 15672)}
    demo = DemoRun("--private")
    try:
        demo.wait_running()
        pids = demo.started()
        assert sorted(pids) == sorted(
            ["redis", "rabbitmq", "exporter", "prometheus", "worker-redis", "worker-rabbitmq",
             "producer"]
        )  # fmt: skip
        assert demo.started_so_far() == pids
        assert all(_alive(pid) for pid in pids.values())
        metrics = requests.get(demo.field("metrics"), timeout=10).text
        for broker in ("demo-redis", "demo-rabbitmq"):
            assert f'celery_broker_up{{broker="{broker}"}} 1.0' in metrics
            assert f'celery_event_consumer_up{{broker="{broker}"}} 1.0' in metrics
        prometheus = demo.field("Prometheus targets").removesuffix("/targets")
        targets = requests.get(f"{prometheus}/api/v1/targets", timeout=10).json()
        assert [t["health"] for t in targets["data"]["activeTargets"]] == ["up"]
        groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert {g["name"] for g in groups} == {
            "celery-queue-exporter.recording",
            "celery-queue-exporter.alerts",
        }
        logs = Path(demo.field("Logs:").removesuffix("/*.log"))
        assert logs.is_dir()
        os.killpg(demo.process.pid, signal.SIGINT)  # Ctrl-C in the demo's terminal
        assert demo.process.wait(timeout=180) == 130
        wait_for(lambda: not any(_alive(pid) for pid in pids.values()), timeout=10, what="stopped")
        for name in pids:
            assert f"stopped {name} (pid {pids[name]})" in demo.output
        assert not logs.exists()
        assert {port: port_open(port) for port in machine} == machine
    finally:
        demo.stop()  # whatever timed out or failed above: nothing of the demo outlives the test


@pytest.mark.xdist_group("demo")
def test_a_hung_demo_is_still_stopped_with_all_it_started():
    """The tests' cleanup does not rely on the demo's own trap: a demo frozen mid-start (SIGSTOP:
    it cannot run its trap) is killed, and so is every process group it had started."""
    _demo_services()
    demo = DemoRun("--private")
    try:
        wait_for(
            lambda: "redis" in demo.started_so_far() or demo.process.poll() is not None,
            timeout=120,
            interval=0.2,
            what="the demo to start its Redis",
        )
        started = demo.started_so_far()
        assert "redis" in started, demo.output
        os.kill(demo.process.pid, signal.SIGSTOP)
        started = demo.started_so_far()  # what it had started when it froze
        demo.stop(timeout=3)
        assert demo.process.returncode == -signal.SIGKILL
        wait_for(
            lambda: not any(_alive(pid) for pid in started.values()), timeout=10, what="stopped"
        )
        workdir = WORKDIR.search(demo.output)
        assert workdir is not None and not Path(workdir["path"]).exists()
    finally:
        demo.stop()


@pytest.mark.redis
@pytest.mark.rabbitmq
@pytest.mark.xdist_group("demo")
def test_demo_uses_running_brokers_and_leaves_them_running_and_clean(redis_server):
    """A Redis and a RabbitMQ that already run are used, not started, not stopped, and left
    without the demo's queues. The "machine's Redis" is a private redis-server here
    (DEMO_REDIS_PORT points the demo at it): tests never use the real one on 6379."""
    _demo_services()
    if not (port_open(5672) and port_open(15672)):
        missing_service("the machine's RabbitMQ (5672, management 15672) is not running")
    demo = DemoRun("--smoke", env={"DEMO_REDIS_PORT": str(redis_server.port)})
    try:
        assert demo.process.wait(timeout=240) == 0, demo.output
        demo.reader.join(timeout=10)
    finally:
        demo.stop()  # a no-op after a clean exit; stops everything after a timeout
    assert f"using the machine's Redis on 127.0.0.1:{redis_server.port}" in demo.output
    assert "using the machine's RabbitMQ on 127.0.0.1:5672" in demo.output
    pids = demo.started()
    assert sorted(pids) == sorted(
        ["exporter", "prometheus", "worker-redis", "worker-rabbitmq", "producer"]
    )
    assert not any(_alive(pid) for pid in pids.values())
    prefix = demo.field("Queues:").split()[0].removesuffix("-work")
    assert prefix.startswith("cqe-demo-")
    # The brokers still run and hold nothing of the demo's.
    client = redis_server.client()
    assert client.ping()
    assert list(client.scan_iter(match=f"{prefix}*")) == []
    bindings = [
        m
        for k in client.scan_iter(match="_kombu.binding*")  # binding and binding_permanent
        if client.type(k) == b"set"
        for m in client.smembers(k)
    ]
    assert [m for m in bindings if prefix.encode() in m] == []
    for kind in ("queues", "exchanges"):
        left = requests.get(
            f"http://127.0.0.1:15672/api/{kind}/%2F", auth=("guest", "guest"), timeout=10
        ).json()
        assert [item["name"] for item in left if item["name"].startswith(prefix)] == [], kind


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    workdir: Path
    redis: RedisServer
    tag: str
    prometheus_url: str = ""
    prometheus: Prometheus | None = None
    exporter_port: int = 0
    exporter: subprocess.Popen | None = None
    exporter_command: list[str] = field(default_factory=list)
    exporter_env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)
    apps: dict[tuple[str, str], Any] = field(default_factory=dict)
    monitoring: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    logs: list[Any] = field(default_factory=list)

    # names
    def queue(self, broker: str, role: str) -> str:
        return f"cqe-e2e-{self.tag}-{'r' if broker == REDIS_BROKER else 'q'}-{role}"

    def url(self, broker: str) -> str:
        return self.redis.url if broker == REDIS_BROKER else RABBITMQ_URL

    # publishing
    def app(self, broker: str, role: str):
        key = (broker, role)
        if key not in self.apps:
            from apps.events_app import make_app

            self.apps[key] = make_app(self.url(broker), self.queue(broker, role))
        return self.apps[key]

    def send(self, broker: str, role: str, task: str = "events.sleep", priority: int = 0, args=()):
        app = self.app(broker, role)
        app.send_task(task, args=args, queue=self.queue(broker, role), priority=priority)

    # workers
    def start_worker(self, name: str, broker: str, role: str, pool: str = "solo") -> Worker:
        worker = Worker(
            self.url(broker),
            self.queue(broker, role),
            pool=pool,
            name=f"{name}-{self.tag}@cqe-e2e",
        )
        self.workers[name] = worker.start()
        return worker

    # the exporter
    def start_exporter(self) -> None:
        log = open(self.workdir / "exporter.log", "a")  # noqa: SIM115 - closed at teardown
        self.logs.append(log)
        self.exporter = subprocess.Popen(
            self.exporter_command,
            cwd=ROOT,
            env=self.exporter_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: port_open(self.exporter_port), timeout=30, what="the exporter")

    # Prometheus
    def api(self, path: str, **params: Any) -> dict[str, Any]:
        reply = requests.get(f"{self.prometheus_url}/api/v1/{path}", params=params, timeout=10)
        return reply.json()

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def has_data_since_start(self, expr: str) -> bool:
        end = time.time()
        answer = self.api("query_range", query=expr, start=self.started_at - 5, end=end, step="1s")
        return answer["status"] == "success" and bool(answer["data"]["result"])

    def alerts(self, name: str, **labels: str) -> list[dict[str, Any]]:
        """Active alerts (pending or firing) called ``name`` whose labels include ``labels``."""
        answer = self.api("alerts")
        assert answer["status"] == "success", answer
        return [
            alert
            for alert in answer["data"]["alerts"]
            if alert["labels"].get("alertname") == name
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]

    def firing(self, name: str, **labels: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts(name, **labels) if a["state"] == "firing"]

    def value(self, expr: str) -> float | None:
        answer = self.query(expr)
        result = answer["data"]["result"] if answer["status"] == "success" else []
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""


#: Priorities on each broker: Redis serves 0 first, RabbitMQ (x-max-priority 9) serves 9 first.
MOST_URGENT = {REDIS_BROKER: 0, RABBIT_BROKER: 9}
LEAST_URGENT = {REDIS_BROKER: 9, RABBIT_BROKER: 0}
#: The main queues always hold at least this many least-urgent tasks, over
#: recording.backlog_min_messages (10): the priority-effectiveness rule records "under backlog".
MAIN_BACKLOG = 30
TASK_SECONDS = 0.05


class Workload:
    """Mixed-priority tasks on the main queue of each broker, all along the test: an urgent
    task every second, a mid-priority one every two seconds, and least-urgent tasks topping
    the queue up to MAIN_BACKLOG, so the worker is always busy, urgent tasks start at once and
    least-urgent ones wait behind the backlog (and still run: the worker has time for them,
    even on a loaded machine)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="e2e-workload", daemon=True)
        self.errors: list[BaseException] = []
        self._amqp: pika.BlockingConnection | None = None
        self._redis: Any = None

    def waiting(self, broker: str) -> int:
        queue = self.stack.queue(broker, "main")
        if broker == REDIS_BROKER:
            keys = [queue] + [f"{queue}\x06\x16{step}" for step in (3, 6, 9)]
            if self._redis is None:
                self._redis = self.stack.redis.client()
            return sum(self._redis.llen(key) for key in keys)
        if self._amqp is None or not self._amqp.is_open:
            self._amqp = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL[:-1] + "%2F"))
        declared = self._amqp.channel().queue_declare(queue, passive=True)
        return declared.method.message_count

    def _run(self) -> None:
        rounds = 0
        while not self.stop.wait(0.5):
            for broker in (REDIS_BROKER, RABBIT_BROKER):
                try:
                    send = self.stack.send
                    if rounds % 2 == 0:
                        send(broker, "main", priority=MOST_URGENT[broker], args=(TASK_SECONDS,))
                    if rounds % 4 == 1:
                        send(broker, "main", priority=5, args=(TASK_SECONDS,))
                    for _ in range(MAIN_BACKLOG - self.waiting(broker)):
                        send(broker, "main", priority=LEAST_URGENT[broker], args=(TASK_SECONDS,))
                except Exception as exc:  # noqa: BLE001 - the broker may be down on purpose
                    self.errors.append(exc)
            rounds += 1
        if self._amqp is not None and self._amqp.is_open:
            self._amqp.close()


def write_rules(workdir: Path) -> dict[str, Any]:
    """Render rules and dashboards with the test thresholds through the real generator CLI."""
    return render_monitoring(workdir, OVERRIDES)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not PROMETHEUS.exists():
        missing_service("/usr/bin/prometheus is not installed (Debian package prometheus)")
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed")
    if not port_open(5672):
        missing_service("RabbitMQ is not answering on 127.0.0.1:5672")
    workdir = Path(tempfile.mkdtemp(prefix="cqe-e2e-"))
    from apps.events_app import app as events_app

    from celery_queue_exporter.instrumentation import install

    # Every message we publish carries a stamp. Explicitly: importing the app installs it only
    # the first time, and other tests' fixtures uninstall it (the teardown below does too).
    install(events_app)

    redis = RedisServer(port=free_port(), workdir=workdir)
    stack = Stack(workdir=workdir, redis=redis, tag=os.urandom(4).hex())
    workload = Workload(stack)
    rabbit_queues = [stack.queue(RABBIT_BROKER, role) for role in ("main", "backlog")]
    try:
        redis.start()
        stack.monitoring = write_rules(workdir)
        # Declare every queue before anything watches it (RabbitMQ queues need x-max-priority).
        for broker in (REDIS_BROKER, RABBIT_BROKER):
            for role in ("main", "backlog") + (("starve",) if broker == REDIS_BROKER else ()):
                app = stack.app(broker, role)
                with app.connection_for_write() as connection:
                    queue = app.amqp.queues[stack.queue(broker, role)]
                    queue.bind(connection.default_channel).declare()

        stack.exporter_port = free_port()
        exporter_config = {
            "host": "127.0.0.1",
            "port": stack.exporter_port,
            "log_level": "INFO",
            "events": {
                "enabled": True,
                "heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_SECONDS,
                "worker_retention_seconds": OVERRIDES["exporter"]["worker_retention_seconds"],
            },
            "brokers": [
                {
                    "name": REDIS_BROKER,
                    "url": redis.url,
                    "queues": [stack.queue(REDIS_BROKER, r) for r in ("main", "backlog", "starve")],
                },
                {
                    "name": RABBIT_BROKER,
                    "url": "amqp://guest@127.0.0.1:5672//",
                    "password_env": "E2E_RABBITMQ_PASSWORD",
                    # ... and one that does not exist (celery_queue_missing).
                    "queues": [*rabbit_queues, stack.queue(RABBIT_BROKER, "absent")],
                },
            ],
        }
        (workdir / "exporter.yaml").write_text(yaml.safe_dump(exporter_config))
        stack.exporter_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CELERY_EXPORTER_")},
            "E2E_RABBITMQ_PASSWORD": "guest",
        }
        stack.exporter_command = [
            sys.executable, "-m", "celery_queue_exporter",
            "--config", str(workdir / "exporter.yaml"),
        ]  # fmt: skip
        stack.start_exporter()

        stack.prometheus = Prometheus(
            workdir,
            job=JOB,
            target=f"127.0.0.1:{stack.exporter_port}",
            rule_file=workdir / "generated" / RULES,
        )
        stack.prometheus_url = stack.prometheus.url
        stack.prometheus.start()

        # Workers draining each broker's main queue (prefork: time limits are enforced).
        stack.start_worker("main-redis", REDIS_BROKER, "main", pool="prefork")
        stack.start_worker("main-rabbit", RABBIT_BROKER, "main", pool="prefork")
        for broker in (REDIS_BROKER, RABBIT_BROKER):
            for task in ("events.boom", "events.retry_once", "events.soft_limit"):
                stack.send(broker, "main", task=task, priority=5)
        stack.send(REDIS_BROKER, "main", task="events.hard_limit", priority=5)
        workload.thread.start()
        yield stack
    finally:
        workload.stop.set()
        if workload.thread.is_alive():
            workload.thread.join(timeout=10)
        for worker in stack.workers.values():
            worker.stop()
        if stack.exporter is not None and stack.exporter.poll() is None:
            stack.exporter.terminate()
            stack.exporter.wait(timeout=15)
        if stack.prometheus is not None:
            stack.prometheus.close()
        for process in stack.processes:
            stop_process(process, group=True)
        for log in stack.logs:
            log.close()
        for app in stack.apps.values():
            app.close()
        from celery_queue_exporter.instrumentation import uninstall

        uninstall()
        redis.stop()
        # Celery declared a direct exchange named after each queue. A clean-up error is not
        # the test's result (it never raises; the test's own failure, if any, stands).
        delete_rabbitmq_objects(RABBITMQ_URL, rabbit_queues, rabbit_queues)
        shutil.rmtree(workdir, ignore_errors=True)


# --- the stack works --------------------------------------------------------------------------


@pytest.mark.xdist_group("e2e-stack")
def test_prometheus_scrapes_the_exporter_and_loads_the_test_rules(stack):
    wait_for(lambda: stack.value(f'up{{job="{JOB}"}}') == 1.0, timeout=30, what="a scraped target")
    targets = stack.api("targets")["data"]["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [(JOB, "up")]
    assert requests.get(f"http://127.0.0.1:{stack.exporter_port}/healthz", timeout=5).ok
    groups = {g["name"]: g for g in stack.api("rules")["data"]["groups"]}
    alerts = {r["name"]: r for r in groups["celery-queue-exporter.alerts"]["rules"]}
    # The generator's own config with the overrides: the shipped set of alerts, test timings.
    assert set(alerts) == set(stack.monitoring["alerts"])
    assert alerts["CeleryQueueBacklogHigh"]["duration"] == 2
    assert f"> {BACKLOG_LIMIT}" in alerts["CeleryQueueBacklogHigh"]["query"]
    assert groups["celery-queue-exporter.recording"]["interval"] == 1
    # Both brokers are inspected and the event streams of both are consumed.
    for broker in (REDIS_BROKER, RABBIT_BROKER):
        wait_for(
            lambda b=broker: stack.value(f'celery_broker_up{{broker="{b}"}}') == 1.0,
            timeout=30,
            what=f"{broker} up",
        )
        wait_for(
            lambda b=broker: stack.value(f'celery_event_consumer_up{{broker="{b}"}}') == 1.0,
            timeout=30,
            what=f"{broker} events",
        )


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.xdist_group("e2e-stack")
def test_backlog_over_the_threshold_fires_and_clears(stack):
    """Messages pile up in a queue nobody consumes, on each broker; a worker drains them."""
    for broker in (REDIS_BROKER, RABBIT_BROKER):
        for index in range(BACKLOG_LIMIT + 10):
            stack.send(broker, "backlog", priority=index % 10, args=(0.0,))
    for broker in (REDIS_BROKER, RABBIT_BROKER):
        queue = stack.queue(broker, "backlog")
        # Firing, with the full count (RabbitMQ's management API may lag a few seconds).
        (alert,) = wait_for(
            lambda b=broker, q=queue: [
                alert
                for alert in stack.firing("CeleryQueueBacklogHigh", broker=b, queue=q)
                if float(alert["value"]) == BACKLOG_LIMIT + 10
            ],
            timeout=60,
            interval=0.5,
            what=f"CeleryQueueBacklogHigh on {broker}",
        )
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["runbook_url"].endswith("/CeleryQueueBacklogHigh.md")
    # The fix: workers for the backlog queues.
    stack.start_worker("backlog-redis", REDIS_BROKER, "backlog")
    stack.start_worker("backlog-rabbit", RABBIT_BROKER, "backlog")
    for broker in (REDIS_BROKER, RABBIT_BROKER):
        queue = stack.queue(broker, "backlog")
        wait_for(
            lambda b=broker, q=queue: not stack.alerts("CeleryQueueBacklogHigh", broker=b, queue=q),
            timeout=90,
            interval=0.5,
            what=f"CeleryQueueBacklogHigh on {broker} to clear",
        )
    stack.workers.pop("backlog-rabbit").stop()


@pytest.mark.xdist_group("e2e-stack")
def test_worker_killed_with_sigkill_fires_and_clears(stack):
    """SIGKILL sends no worker-offline event: only the missing heartbeats tell."""
    worker = stack.workers["backlog-redis"]
    wait_for(
        lambda: stack.value(f'celery_worker_up{{worker="{worker.name}"}}') == 1.0,
        timeout=30,
        what="the worker up",
    )
    assert not stack.alerts("CeleryWorkerDown", worker=worker.name)
    worker.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(
        lambda: stack.firing("CeleryWorkerDown", worker=worker.name),
        timeout=60,
        interval=0.5,
        what="CeleryWorkerDown",
    )
    # Not at once: the heartbeat timeout (less the last heartbeat's 1 s interval) plus the
    # alert's for: (2 s) must pass first.
    assert time.monotonic() - killed_at >= HEARTBEAT_TIMEOUT_SECONDS - 1 + 2 - 1
    (alert,) = stack.firing("CeleryWorkerDown", worker=worker.name)
    assert alert["labels"]["broker"] == REDIS_BROKER
    # The fix: the worker comes back under the same name.
    worker.stop()
    restarted = Worker(worker.broker_url, worker.queue, name=worker.name).start()
    stack.workers["backlog-redis"] = restarted
    wait_for(
        lambda: not stack.alerts("CeleryWorkerDown", worker=worker.name),
        timeout=60,
        interval=0.5,
        what="CeleryWorkerDown to clear",
    )


@pytest.mark.xdist_group("e2e-stack")
def test_least_urgent_level_starved_by_urgent_tasks_fires_and_clears(stack):
    """A worker kept busy by a stream of urgent tasks (Redis level 0, served first) never
    reaches the least urgent level (9), whose head ages past the threshold."""
    queue = stack.queue(REDIS_BROKER, "starve")
    client = stack.redis.client()
    stop = threading.Event()

    def urgent_stream() -> None:
        while not stop.wait(0.05):
            if client.llen(queue) < 4:  # level 0 is the bare queue name on Redis
                for _ in range(4):
                    stack.send(REDIS_BROKER, "starve", priority=0, args=(0.1,))

    for _ in range(4):
        stack.send(REDIS_BROKER, "starve", priority=0, args=(0.1,))
    stream = threading.Thread(target=urgent_stream, daemon=True)
    stream.start()
    try:
        stack.start_worker("starve-redis", REDIS_BROKER, "starve")
        for _ in range(3):
            stack.send(REDIS_BROKER, "starve", priority=9, args=(0.0,))
        wait_for(
            lambda: stack.firing(
                "CeleryPriorityStarvation", broker=REDIS_BROKER, queue=queue, priority="9"
            ),
            timeout=90,
            interval=0.5,
            what="CeleryPriorityStarvation",
        )
        (alert,) = stack.firing("CeleryPriorityStarvation", queue=queue)
        assert float(alert["value"]) > STARVATION_SECONDS
        # Still waiting: the urgent stream has kept every level-9 message from running.
        assert client.llen(f"{queue}\x06\x169") == 3
    finally:
        stop.set()
        stream.join(timeout=10)
    # The fix: the urgent stream ends; the worker reaches level 9.
    wait_for(
        lambda: not stack.alerts("CeleryPriorityStarvation", queue=queue),
        timeout=60,
        interval=0.5,
        what="CeleryPriorityStarvation to clear",
    )
    assert client.llen(f"{queue}\x06\x169") == 0


@pytest.mark.xdist_group("e2e-stack")
def test_broker_stopped_fires_and_clears(stack):
    """The private Redis goes away; it comes back on the same port."""
    assert not stack.alerts("CeleryBrokerDown", broker=REDIS_BROKER)
    stack.redis.stop()
    try:
        wait_for(
            lambda: stack.firing("CeleryBrokerDown", broker=REDIS_BROKER),
            timeout=60,
            interval=0.5,
            what="CeleryBrokerDown",
        )
        assert stack.value(f'celery_broker_up{{broker="{RABBIT_BROKER}"}}') == 1.0
        assert not stack.alerts("CeleryBrokerDown", broker=RABBIT_BROKER)
    finally:
        stack.redis.start()
    wait_for(
        lambda: not stack.alerts("CeleryBrokerDown", broker=REDIS_BROKER),
        timeout=60,
        interval=0.5,
        what="CeleryBrokerDown to clear",
    )
    # The event stream was interrupted and re-established.
    wait_for(
        lambda: stack.value(f'celery_event_consumer_up{{broker="{REDIS_BROKER}"}}') == 1.0,
        timeout=60,
        what="the Redis event consumer back",
    )


@pytest.mark.xdist_group("e2e-stack")
def test_exporter_killed_fires_and_clears(stack):
    """Prometheus' own view: the scrape target is down."""
    assert not stack.alerts("CeleryExporterDown")
    stack.exporter.kill()
    stack.exporter.wait(timeout=10)
    try:
        wait_for(
            lambda: stack.firing("CeleryExporterDown", job=JOB),
            timeout=60,
            interval=0.5,
            what="CeleryExporterDown",
        )
    finally:
        stack.start_exporter()
    wait_for(
        lambda: not stack.alerts("CeleryExporterDown"),
        timeout=60,
        interval=0.5,
        what="CeleryExporterDown to clear",
    )


# --- dashboards -------------------------------------------------------------------------------


def variables(stack: Stack) -> dict[str, str]:
    roles = {
        REDIS_BROKER: ("main", "backlog", "starve"),
        RABBIT_BROKER: ("main", "backlog", "absent"),
    }
    queues = "|".join(stack.queue(b, r) for b in roles for r in roles[b])
    return {
        "job": JOB,
        "namespace": ".*",
        "broker": f"({REDIS_BROKER}|{RABBIT_BROKER})",
        "queue": f"({queues})",
        "worker": ".*",
        "task": ".*",
    }


def dashboard_queries(stack: Stack) -> list[tuple[str, str, str, str]]:
    """(dashboard, panel title, refId, concrete expression) of every panel of the dashboards
    the generator wrote for the test config."""
    import json

    boards = {
        path.stem: json.loads(path.read_text())
        for path in sorted((stack.workdir / "generated" / "dashboards").glob("*.json"))
    }
    assert sorted(boards) == ["priorities", "queues", "workers"]
    values = variables(stack)
    return [
        (slug, panel["title"], target["refId"], concrete(target["expr"], values))
        for slug, panel, target in all_targets(boards)
    ]


@pytest.mark.xdist_group("e2e-stack")
def test_every_dashboard_query_returns_without_error(stack):
    queries = dashboard_queries(stack)
    assert len(queries) > 80
    problems = []
    for slug, title, ref, expr in queries:
        answer = stack.query(expr)
        if answer["status"] != "success" or answer.get("warnings"):
            problems.append(f"{slug}: {title} [{ref}]: {answer.get('error')}: {expr}")
    assert problems == []


#: Panels allowed to stay empty with this workload, and why.
NO_DATA_EXPECTED: dict[tuple[str, str, str], str] = {
    ("workers", "Workers up and down", "C"): (
        "counts offline workers (worker-offline): no worker stops gracefully before this test "
        "(tests/test_events_redis.py and the on-call graceful deploy cover them)"
    ),
    ("queues", "Management API, missing and unreadable queues", "C"): (
        "no key of the wrong type in this workload: the query selects celery_queue_unreadable "
        "== 1 (tests/test_hardening_brokers.py plants such keys)"
    ),
    ("queues", "Scheduled tasks per delay band (RabbitMQ native delayed delivery)", "A"): (
        "no quorum queue and no countdown task through native delayed delivery in this "
        "workload (tests/test_rabbitmq4.py schedules 20 on RabbitMQ 3.10 and 4.0)"
    ),
    ("queues", "Redis brokers now", "D"): (
        "share of maxmemory: the test Redis servers have no maxmemory "
        "(tests/test_oncall_broker_pressure.py sets one)"
    ),
    ("workers", "Event stream", "D"): (
        "observations folded by the series budget: nothing is over it in this workload "
        "(tests/test_hardening_budget.py goes past it)"
    ),
}


@pytest.mark.xdist_group("e2e-stack")
def test_every_panel_that_should_have_data_has_data(stack):
    """Over the whole run (steady workload on both brokers plus the faults above)."""
    pending = {
        (slug, title, ref): expr
        for slug, title, ref, expr in dashboard_queries(stack)
        if (slug, title, ref) not in NO_DATA_EXPECTED
    }

    def all_have_data() -> bool:
        for key, expr in list(pending.items()):
            if stack.has_data_since_start(expr):
                del pending[key]
        return not pending

    try:
        wait_for(all_have_data, timeout=60, interval=2, what="data in every panel")
    except AssertionError:
        names = {name for key in pending for name in metric_names(pending[key])}
        recorded = {
            expr: stack.query(expr)["data"]["result"]
            for expr in (
                "celery_queue:celery_queue_wait_seconds:p95_30s_most_urgent",
                "celery_queue:celery_queue_wait_seconds:p95_30s_least_urgent",
                "min_over_time(celery_queue:celery_queue_messages:sum[30s])",
            )
        }
        pytest.fail(
            f"panels without data: {sorted(pending)}; metrics: {sorted(names)}; now: {recorded}"
        )
