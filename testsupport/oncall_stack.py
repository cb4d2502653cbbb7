"""A fresh, isolated monitoring stack per on-call scenario (tests/test_oncall_scenarios.py).

Each scenario asserts the EXACT set of alerts at its end, so nothing may leak in from another
scenario or another test run on the machine. Every :class:`OncallStack` has its own:

* exporter subprocess (``python -m celery_queue_exporter --config FILE --events``), with a
  config built from the scenario's knobs (event settings, brokers, state file, ...);
* /usr/bin/prometheus with its own tsdb, scraping and evaluating every second, loading rules
  rendered by the real generator (``python -m monitoring.generate``) from the committed
  monitoring/config.yaml plus short ``for:`` durations plus the scenario's overrides;
* private redis-server on a spare port (when the scenario watches Redis): SIGSTOP-able; 7.0,
  or 8.0 with ``redis_generation="redis-8"``;
* private RabbitMQ vhost on the machine's node (when it watches RabbitMQ; on the RabbitMQ 4.0
  node with ``rabbitmq=RABBITMQ_4``), deleted with all it holds (queues, Celery's event
  exchange, the exporter's event queue) at the end: workers of other tests on the shared vhost
  never reach this exporter;
* Celery workers (tests/apps/events_app.py subprocesses, ``-E``, heartbeat every second) that
  the scenario starts, SIGTERMs (warm shutdown: worker-offline), SIGKILLs (lost), SIGSTOPs;
* producer in the test process (``install(app)`` on or off: the publish hook is process wide).

Alerts are compared as sets of :data:`AlertKey` ``(alertname, frozenset of identifying
labels)``, the identifying labels being those of :data:`IDENTIFYING_LABELS` an alert carries
(not severity, job, instance: they do not tell two alerts apart here).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from apps.harness import Worker
from celery.events.event import get_exchange

from monitoring import config as monitoring_config
from testsupport.brokers import RABBITMQ_3, REDIS_GENERATIONS, RabbitMQGeneration
from testsupport.exposition import parse_exposition
from testsupport.net import free_port, port_open
from testsupport.paths import ROOT
from testsupport.processes import stop_process
from testsupport.prometheus import PROMETHEUS, RULES, Prometheus, merged, render_monitoring
from testsupport.redis_server import RedisServer
from testsupport.services import missing_service
from testsupport.waiting import ServiceError, wait_for

JOB = "celery-queue-exporter"
REDIS, RABBIT = "oncall-redis", "oncall-rabbitmq"
BROKERS = (REDIS, RABBIT)
#: Most and least urgent levels as each broker serves them (Redis: 0 first; RabbitMQ with
#: x-max-priority: the highest number first). Teams use 0..9 on both.
MOST_URGENT = {REDIS: 0, RABBIT: 9}
LEAST_URGENT = {REDIS: 9, RABBIT: 0}

RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_AUTH = ("guest", "guest")

#: Scrape and rule evaluation interval; Prometheus' scrape timeout (its header tells the
#: exporter, which answers before it).
INTERVAL, SCRAPE_TIMEOUT = "1s", "1s"
#: ``for:`` of every alert unless a scenario says otherwise.
FOR = "2s"
HEARTBEAT_TIMEOUT_SECONDS = 3
WORKER_RETENTION_SECONDS = 600

IDENTIFYING_LABELS = ("broker", "queue", "worker", "task", "priority", "host")
AlertKey = tuple[str, frozenset]


def alert(name: str, **labels: str | int) -> AlertKey:
    """The key of one alert: ``alert("CeleryWorkerDown", broker=REDIS, worker="a@host")``."""
    return name, frozenset((k, str(v)) for k, v in labels.items())


def alert_key(labels: dict[str, str]) -> AlertKey:
    return labels["alertname"], frozenset(
        (k, v) for k, v in labels.items() if k in IDENTIFYING_LABELS
    )


def epoch(rfc3339: str) -> float:
    """A Prometheus time (an alert's activeAt: RFC 3339, up to nanoseconds, Z) as epoch
    seconds."""
    from datetime import datetime

    head, _, fraction = rfc3339.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)


def _silence_key(item: str | AlertKey) -> AlertKey:
    """A must-be-silent entry: an alert name (any labels) or an AlertKey (these labels, a
    subset of the alert's)."""
    return (item, frozenset()) if isinstance(item, str) else item


def require_services(
    *, redis: bool, rabbitmq: bool, generation: RabbitMQGeneration = RABBITMQ_3
) -> None:
    """Fail under CI=true, skip locally, when a service the scenario needs is missing."""
    if not PROMETHEUS.exists():
        missing_service("/usr/bin/prometheus is not installed (Debian package prometheus)")
    if redis and shutil.which("redis-server") is None:
        missing_service("redis-server is not installed")
    if rabbitmq and not generation.answers():
        missing_service(
            f"{generation.name} ({generation.amqp_port}, management {generation.management_port})"
            f" is not answering on 127.0.0.1 ({generation.hint})"
        )


def short_for_overrides(base: dict[str, Any]) -> dict[str, Any]:
    """Monitoring overrides every scenario starts from: a 1 s recording interval, a 30 s
    window, the exporter's heartbeat timeout and retention, ``for: 2s`` and no
    ``keep_firing_for`` on every alert the config has (whatever the generator version: new
    alerts are covered when they land; tests/test_oncall_scenarios.py's restart scenario runs
    the shipped values)."""
    exporter = {
        "worker_heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_SECONDS,
        "worker_retention_seconds": WORKER_RETENTION_SECONDS,
    }
    return {
        "recording": {"interval": INTERVAL, "window": "30s"},
        "exporter": {k: v for k, v in exporter.items() if k in base.get("exporter", {})},
        "alerts": {name: {"for": FOR, "keep_firing_for": "0s"} for name in base["alerts"]},
    }


@dataclass
class Send:
    """One kind of task a :class:`Workload` publishes: ``every`` rounds, ``count`` at once."""

    broker: str
    role: str
    task: str = "events.sleep"
    args: tuple = (0.05,)
    priority: int | None = None
    countdown: float | None = None
    every: int = 1
    count: int = 1


class Workload:
    """A thread publishing ``sends`` every ``period`` seconds until stopped. Publishing errors
    are kept (``errors``), not raised: a scenario may stop a broker on purpose."""

    def __init__(self, stack: OncallStack, sends: list[Send], period: float = 0.5) -> None:
        self.stack = stack
        self.sends = sends
        self.period = period
        self.rounds = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oncall-workload", daemon=True)

    def start(self) -> Workload:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for send in self.sends:
                if self.rounds % send.every:
                    continue
                for _ in range(send.count):
                    try:
                        self.stack.send_one(send)
                    except Exception as exc:  # noqa: BLE001 - kept for the scenario to read
                        self.errors.append(exc)
            self.rounds += 1
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)


@dataclass
class OncallStack:
    """One scenario's stack. Build with keyword knobs, then ``start()``; ``close()`` (or the
    ``stacks()`` context manager) stops and removes everything it started.

    * ``queues``: broker -> queue roles (e.g. ``{REDIS: ["work"], RABBIT: ["work"]}``); the
      brokers watched are its keys. Queue names are unique (:meth:`queue`).
    * ``monitoring``: overrides for monitoring/config.yaml, over :func:`short_for_overrides`.
    * ``exporter``: merged into the exporter's YAML config (e.g. ``{"events": {...}}``).
    * ``broker_options``: broker -> keys merged into that broker's entry of the config.
    * ``state_file``: set ``events.state_file`` to a file in the stack's directory.
    * ``producer_install``: ``install(app)`` in the test process (the producer) or not.
    * ``max_priority``: x-max-priority of every queue (RabbitMQ declares it; workers' apps too).
    * ``preload``: messages published (``count`` of each) before the exporter and Prometheus
      start: a backlog that was already there, never seen growing.
    * ``rabbitmq``: the RabbitMQ node (testsupport.brokers: 3.10 by default, or RABBITMQ_4);
      ``redis_generation``: the private Redis server's ("redis-7" by default, or "redis-8").
    """

    queues: dict[str, list[str]] = field(default_factory=lambda: {REDIS: ["work"]})
    monitoring: dict[str, Any] = field(default_factory=dict)
    exporter: dict[str, Any] = field(default_factory=dict)
    broker_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_file: bool = False
    producer_install: bool = True
    max_priority: int = 9
    preload: list[Send] = field(default_factory=list)
    rabbitmq: RabbitMQGeneration = RABBITMQ_3
    redis_generation: str = "redis-7"

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cqe-oncall-")))
    redis: RedisServer | None = None
    vhost: str | None = None
    prometheus: Prometheus | None = None
    exporter_port: int = 0
    exporter_process: subprocess.Popen | None = None
    monitoring_config: dict[str, Any] = field(default_factory=dict)
    exporter_config: dict[str, Any] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    workloads: list[Workload] = field(default_factory=list)
    _apps: dict[str, Any] = field(default_factory=dict)
    _redis_paused: bool = False
    _logs: list[Any] = field(default_factory=list)

    # --- names ----------------------------------------------------------------------------

    def queue(self, broker: str, role: str) -> str:
        assert role in self.queues[broker], f"{role} is not a queue role of {broker}"
        return f"oncall-{self.tag}-{'r' if broker == REDIS else 'q'}-{role}"

    def url(self, broker: str) -> str:
        """The broker URL producers and workers use."""
        if broker == REDIS:
            assert self.redis is not None
            return self.redis.url
        return f"amqp://guest:guest@{RABBITMQ_HOST}:{self.rabbitmq.amqp_port}/{self.vhost}"

    def worker_name(self, name: str) -> str:
        """The hostname (the exporter's worker label) of the worker called ``name`` here."""
        return f"{name}-{self.tag}@oncall"

    @property
    def state_path(self) -> Path:
        return self.workdir / "exporter-state.json"

    # --- start and stop -------------------------------------------------------------------

    def start(self) -> OncallStack:
        require_services(
            redis=REDIS in self.queues, rabbitmq=RABBIT in self.queues, generation=self.rabbitmq
        )
        if REDIS in self.queues:
            self.redis = REDIS_GENERATIONS[self.redis_generation]()
            try:
                self.redis.start()
            except ServiceError as exc:  # Redis 8: no Debian 13 root here
                missing_service(str(exc))
        if RABBIT in self.queues:
            self._create_vhost()
        # Every queue exists (RabbitMQ: with x-max-priority) before anything watches it, and
        # Celery's event exchange too (the exporter only binds to it; workers declare it).
        for broker in self.queues:
            app = self.app(broker)
            with app.connection_for_write() as connection:
                for role in self.queues[broker]:
                    app.amqp.queues[self.queue(broker, role)].bind(
                        connection.default_channel
                    ).declare()
                exchange = get_exchange(connection, name=app.conf.event_exchange)
                exchange(connection.default_channel).declare()
        # The publish hook is process wide; importing the app module may have installed it.
        self.set_producer_install(self.producer_install)
        for item in self.preload:
            for _ in range(item.count):
                self.send_one(item)

        base = monitoring_config.load()
        self.monitoring_config = render_monitoring(
            self.workdir, merged(short_for_overrides(base), self.monitoring)
        )
        self.exporter_port = free_port()
        self.exporter_config = merged(self._base_exporter_config(), self.exporter)
        (self.workdir / "exporter.yaml").write_text(yaml.safe_dump(self.exporter_config))
        self.start_exporter()
        self.prometheus = Prometheus(
            self.workdir,
            job=JOB,
            target=f"127.0.0.1:{self.exporter_port}",
            rule_file=self.workdir / "generated" / RULES,
            interval=INTERVAL,
            scrape_timeout=SCRAPE_TIMEOUT,
        )
        self.prometheus.start()
        self.wait_value(f'up{{job="{JOB}"}}', 1.0, what="the exporter scraped")
        for broker in self.queues:
            self.wait_value(f'celery_broker_up{{broker="{broker}"}}', 1.0, what=f"{broker} up")
            self.wait_value(
                f'celery_event_consumer_up{{broker="{broker}"}}', 1.0, what=f"{broker} events"
            )
        return self

    def _base_exporter_config(self) -> dict[str, Any]:
        brokers = []
        for broker, roles in self.queues.items():
            entry: dict[str, Any] = {
                "name": broker,
                "queues": [self.queue(broker, role) for role in roles],
            }
            if broker == REDIS:
                entry["url"] = self.url(REDIS)
            else:  # the password kept out of the URL, as k8s/config/exporter.yaml does
                port = self.rabbitmq.amqp_port
                entry["url"] = f"amqp://guest@{RABBITMQ_HOST}:{port}/{self.vhost}"
                entry["management_url"] = self.rabbitmq.management_url
                entry["password_env"] = "ONCALL_RABBITMQ_PASSWORD"
            brokers.append(merged(entry, self.broker_options.get(broker, {})))
        events: dict[str, Any] = {
            "heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_SECONDS,
            "worker_retention_seconds": WORKER_RETENTION_SECONDS,
        }
        if self.state_file:
            events["state_file"] = str(self.state_path)
        return {
            "host": "127.0.0.1",
            "port": self.exporter_port,
            "log_level": "INFO",
            "events": events,
            "brokers": brokers,
        }

    def _create_vhost(self) -> None:
        self.vhost = self.rabbitmq.create_vhost(f"cqe-oncall-{self.tag}")

    def close(self) -> None:
        """Stop and remove everything, whatever state the scenario left (never raises)."""
        from celery_queue_exporter.instrumentation import uninstall

        for workload in self.workloads:
            workload.stop()
        if self._redis_paused:
            self.resume_redis()
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                worker.send_signal(signal.SIGCONT)
                worker.stop()
        self.stop_exporter()
        if self.prometheus is not None:
            self.prometheus.close()
        for app in self._apps.values():
            with contextlib.suppress(Exception):
                app.close()
        uninstall()
        if self.redis is not None:
            self.redis.close()
        if self.vhost is not None:
            with contextlib.suppress(requests.RequestException):
                self.rabbitmq.delete_vhost(self.vhost)
        for log in self._logs:
            log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- the exporter ---------------------------------------------------------------------

    def start_exporter(self) -> None:
        log = open(self.workdir / "exporter.log", "a")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_EXPORTER_")}
        env["ONCALL_RABBITMQ_PASSWORD"] = RABBITMQ_AUTH[1]
        self.exporter_process = subprocess.Popen(
            [sys.executable, "-m", "celery_queue_exporter", "--config",
             str(self.workdir / "exporter.yaml"), "--events"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def serving() -> bool:
            if self.exporter_process.poll() is not None:
                raise AssertionError(f"the exporter exited: {self.log_tail('exporter')}")
            return port_open(self.exporter_port)

        wait_for(serving, timeout=30, what="the exporter")

    def stop_exporter(self) -> None:
        """SIGTERM (the exporter writes its state file on the way out), then wait."""
        stop_process(self.exporter_process)

    def restart_exporter(self) -> None:
        """Stop the exporter and start it again with the same config (and state file)."""
        self.stop_exporter()
        self.start_exporter()

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        """One scrape of the exporter itself, parsed."""
        reply = requests.get(f"http://127.0.0.1:{self.exporter_port}/metrics", timeout=15)
        reply.raise_for_status()
        return parse_exposition(reply.text)

    def series(self, name: str, **labels: str) -> dict[frozenset, float]:
        """The exporter's samples called ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return {
            pairs: value
            for (sample, pairs), value in self.metrics().items()
            if sample == name and wanted <= set(pairs)
        }

    # --- brokers --------------------------------------------------------------------------

    def pause_redis(self) -> None:
        """SIGSTOP the private redis-server: it keeps its connections open and answers
        nothing (a hung broker, not a stopped one)."""
        assert self.redis is not None and self.redis.process is not None
        self.redis.process.send_signal(signal.SIGSTOP)
        self._redis_paused = True

    def resume_redis(self) -> None:
        assert self.redis is not None and self.redis.process is not None
        self.redis.process.send_signal(signal.SIGCONT)
        self._redis_paused = False

    # --- producing ------------------------------------------------------------------------

    def app(self, broker: str):  # noqa: ANN201 - a Celery app
        """The producer's Celery app for ``broker``, declaring all the broker's queues."""
        if broker not in self._apps:
            from apps.events_app import make_app

            from celery_queue_exporter.instrumentation import add_priority_to_task_sent

            names = [self.queue(broker, role) for role in self.queues[broker]]
            app = make_app(
                self.url(broker),
                names[0],
                extra_queues=tuple(names[1:]),
                max_priority=self.max_priority,
            )
            # install(app)'s per-app half: its task-sent events carry the message's priority
            # (RabbitMQ 3.12.7+/4.x classic priority queues get their levels from them). Like
            # the publish stamp, it adds something only while producer_install is on.
            add_priority_to_task_sent(app)
            self._apps[broker] = app
        return self._apps[broker]

    def set_producer_install(self, on: bool) -> None:
        """install(app) (publish stamps) in the test process, or uninstall()."""
        from celery_queue_exporter.instrumentation import install, uninstall

        if on:
            install(None)
        else:
            uninstall()
        self.producer_install = on

    def send(
        self,
        broker: str,
        role: str,
        task: str = "events.sleep",
        *,
        args: tuple = (0.05,),
        priority: int | None = None,
        countdown: float | None = None,
    ) -> None:
        options: dict[str, Any] = {"queue": self.queue(broker, role)}
        if priority is not None:
            options["priority"] = priority
        if countdown is not None:
            options["countdown"] = countdown
        self.app(broker).send_task(task, args=args, **options)

    def send_one(self, item: Send) -> None:
        """Publish one message as ``item`` describes (its ``count`` and ``every`` aside)."""
        self.send(
            item.broker,
            item.role,
            item.task,
            args=item.args,
            priority=item.priority,
            countdown=item.countdown,
        )

    def workload(self, sends: list[Send], period: float = 0.5) -> Workload:
        """Start a steady workload (stopped by ``close()`` or its own ``stop()``)."""
        workload = Workload(self, sends, period).start()
        self.workloads.append(workload)
        return workload

    def depth(self, broker: str, role: str) -> int:
        """Messages ready in a queue, read from the broker itself (all levels)."""
        name = self.queue(broker, role)
        if broker == REDIS:
            assert self.redis is not None
            client = self.redis.client()
            keys = [name] + [f"{name}\x06\x16{step}" for step in range(1, 10)]
            return sum(client.llen(key) for key in keys)
        with self.app(broker).connection_for_write() as connection:
            declared = connection.default_channel.queue_declare(name, passive=True)
            return declared.message_count

    # --- workers --------------------------------------------------------------------------

    def start_worker(
        self,
        name: str,
        broker: str,
        roles: Iterable[str] = ("work",),
        *,
        pool: str = "solo",
        concurrency: int = 1,
        install: bool = True,
        wait: bool = True,
    ) -> Worker:
        """A worker consuming ``roles`` of ``broker`` with hostname :meth:`worker_name`;
        ``wait``: until Prometheus has it up."""
        names = [self.queue(broker, role) for role in roles]
        worker = Worker(
            self.url(broker),
            names[0],
            pool=pool,
            concurrency=concurrency,
            install=install,
            extra_queues=tuple(names[1:]),
            max_priority=self.max_priority,
            name=self.worker_name(name),
        )
        self.workers[name] = worker.start()
        if wait:
            self.wait_worker_up(name)
        return worker

    def wait_worker_up(self, name: str, timeout: float = 60) -> None:
        hostname = self.worker_name(name)

        def up() -> bool:
            worker = self.workers[name]
            if worker.process is not None and worker.process.poll() is not None:
                raise AssertionError(f"worker {hostname} exited: {worker.output()[-3000:]}")
            return self.value(f'celery_worker_up{{worker="{hostname}"}}') == 1.0

        wait_for(up, timeout=timeout, interval=0.5, what=f"{hostname} up in Prometheus")

    def stop_worker(self, name: str) -> None:
        """SIGTERM: Celery's warm shutdown, which sends worker-offline (a graceful stop)."""
        self.workers[name].stop()

    def kill_worker(self, name: str, signum: int = signal.SIGKILL) -> None:
        """Signal the worker's main process and wait for it to exit (SIGKILL: no
        worker-offline event, the worker is lost)."""
        self.workers[name].kill(signum)

    def signal_worker(self, name: str, signum: int) -> None:
        """Signal without waiting (SIGSTOP: a hung worker; SIGCONT)."""
        self.workers[name].send_signal(signum)

    # --- Prometheus -----------------------------------------------------------------------

    def query(self, expr: str) -> dict[str, Any]:
        assert self.prometheus is not None
        return self.prometheus.query(expr)

    def value(self, expr: str) -> float | None:
        assert self.prometheus is not None
        return self.prometheus.value(expr)

    def wait_value(self, expr: str, value: float, timeout: float = 60, what: str = "") -> None:
        wait_for(
            lambda: self.value(expr) == value,
            timeout=timeout,
            interval=0.5,
            what=what or f"{expr} == {value}",
        )

    def every_alert(self, **labels: str) -> list[AlertKey]:
        """A must-be-silent list: every alert of the rendered rules, with ``labels`` (e.g.
        ``broker=RABBIT``: nothing about that broker)."""
        return [alert(name, **labels) for name in self.monitoring_config["alerts"]]

    def alerts_ever(self, start: float, end: float | None = None) -> set[AlertKey]:
        """Every alert active (pending or firing) at any evaluation between ``start`` and
        ``end`` (epoch seconds), from Prometheus' own ALERTS series: a 1 s step sees each
        evaluation, so nothing active between two polls is missed."""
        assert self.prometheus is not None
        result = self.prometheus.query_range("ALERTS", start, end or time.time(), step="1s")
        return {alert_key(series["metric"]) for series in result}

    def alert_set(self, state: str = "firing") -> set[AlertKey]:
        """{(alertname, frozenset of identifying labels)} of the alerts in ``state``:
        "firing", "pending" or "active" (both)."""
        assert self.prometheus is not None
        states = {"firing", "pending"} if state == "active" else {state}
        return {
            alert_key(a["labels"]) for a in self.prometheus.active_alerts() if a["state"] in states
        }

    def _alert_problems(
        self, expected_firing: set[AlertKey], must_be_silent: Iterable[str | AlertKey]
    ) -> list[str]:
        active = self.alert_set("active")
        firing = self.alert_set("firing")
        problems = []
        if firing != set(expected_firing):
            missing = sorted(set(expected_firing) - firing, key=str)
            extra = sorted(firing - set(expected_firing), key=str)
            problems.append(f"firing: missing {_show(missing)}, unexpected {_show(extra)}")
        for item in must_be_silent:
            name, labels = _silence_key(item)
            hits = [k for k in active if k[0] == name and labels <= k[1]]
            if hits:
                problems.append(f"must be silent, is active: {_show(hits)}")
        return problems

    def assert_alerts(
        self, expected_firing: set[AlertKey], must_be_silent: Iterable[str | AlertKey] = ()
    ) -> None:
        """Firing now is exactly ``expected_firing`` (nothing else fires), and no alert of
        ``must_be_silent`` is even pending."""
        problems = self._alert_problems(expected_firing, list(must_be_silent))
        assert not problems, "\n".join(problems) + "\n" + self.diagnostics()

    def wait_alerts(
        self,
        expected_firing: set[AlertKey],
        must_be_silent: Iterable[str | AlertKey] = (),
        timeout: float = 60,
    ) -> None:
        """Wait until :meth:`assert_alerts` holds, then assert it (a timeout shows why)."""
        silent = list(must_be_silent)
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: not self._alert_problems(expected_firing, silent),
                timeout=timeout,
                interval=0.5,
                what="the expected alerts",
            )
        self.assert_alerts(expected_firing, silent)

    def wait_quiet(self, timeout: float = 60) -> None:
        """Wait until no alert is active at all (pending included): the healthy baseline a
        scenario starts from once its workers are up (an alert pending since the stack
        started, before the workers, resolves at the next evaluation)."""
        self.wait_alerts(set(), [name for name, _ in self.every_alert()], timeout=timeout)

    def wait_firing(self, key: AlertKey, timeout: float = 60) -> dict[str, Any]:
        """Wait until the alert ``key`` (its labels a subset of the alert's) fires; return
        it."""
        assert self.prometheus is not None
        name, labels = key

        def found() -> list[dict[str, Any]]:
            return [a for a in self.prometheus.firing(name) if labels <= alert_key(a["labels"])[1]]

        try:
            return wait_for(found, timeout=timeout, interval=0.5, what=f"{key} firing")[0]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from None

    def watch_silence(
        self,
        seconds: float,
        *,
        interval: float = 2.0,
        allowed: set[AlertKey] = frozenset(),  # type: ignore[assignment]
        during: Callable[[], None] | None = None,
    ) -> None:
        """For ``seconds``, poll every ``interval`` and fail on the first active alert
        (pending included) not in ``allowed``; ``during`` runs at each poll (a check of the
        scenario's own, or a step that must happen meanwhile)."""
        deadline = time.monotonic() + seconds
        while True:
            active = self.alert_set("active") - set(allowed)
            assert not active, f"alert active during a quiet period: {_show(active)}\n" + (
                self.diagnostics()
            )
            if during is not None:
                during()
            if time.monotonic() >= deadline:
                return
            time.sleep(interval)

    def diagnostics(self) -> str:
        """Active alerts with state and value, and the exporter's last log lines."""
        lines = ["active alerts:"]
        with contextlib.suppress(Exception):
            assert self.prometheus is not None
            for a in self.prometheus.active_alerts():
                labels = {k: v for k, v in a["labels"].items() if k != "alertname"}
                lines.append(f"  {a['labels']['alertname']} {a['state']} {a['value']} {labels}")
        lines.append("exporter log:\n" + self.log_tail("exporter"))
        return "\n".join(lines)

    def log_tail(self, name: str, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""


def _show(keys: Iterable[AlertKey]) -> str:
    return "[" + ", ".join(f"{name}{dict(sorted(labels))}" for name, labels in keys) + "]"


@contextlib.contextmanager
def stacks(kind: type[OncallStack] = OncallStack) -> Iterator[Callable[..., OncallStack]]:
    """A factory of started stacks (keyword knobs of ``kind``, an :class:`OncallStack` or a
    subclass), all closed on exit: the body of a test module's fixture."""
    started: list[OncallStack] = []

    def make(**knobs: Any) -> OncallStack:
        stack = kind(**knobs)
        started.append(stack)
        return stack.start()

    try:
        yield make
    finally:
        for stack in started:
            stack.close()
