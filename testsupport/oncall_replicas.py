"""On-call stacks of the second round (issue 21): several exporter replicas in one job, and a
real Alertmanager that counts the pages Prometheus sends it.

:class:`ReplicaStack` is an :class:`testsupport.oncall_stack.OncallStack` whose exporter runs as
``replicas`` processes (one job, one scrape target each, each with its own port, log and state
file), whose Prometheus sends its alerts to a private Alertmanager (``alertmanager=True``), and
which can pause Prometheus (SIGSTOP: nothing is scraped, a burst lands between two scrapes)
or SIGKILL and restart the exporter replicas.

The Alertmanager (Debian's prometheus-alertmanager) routes every alert on its own
(``group_by: ['...']``), waits 1 s before the first notification and repeats none within the
test, and notifies a webhook served by the test process (:class:`PageLog`) with
``send_resolved``: a page is one firing notification for one label set, a false all-clear a
resolved one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

from testsupport.net import free_port, port_open
from testsupport.oncall_stack import JOB, AlertKey, OncallStack, alert_key, stacks
from testsupport.paths import ROOT
from testsupport.processes import stop_process
from testsupport.services import missing_service
from testsupport.waiting import wait_for


@dataclass(frozen=True)
class Notification:
    """One alert of one webhook notification: its full labels and firing/resolved."""

    labels: tuple[tuple[str, str], ...]
    status: str
    at: float

    @property
    def key(self) -> AlertKey:
        return alert_key(dict(self.labels))


class PageLog:
    """The webhook receiver: an HTTP server in the test process recording every alert of
    every notification Alertmanager sends."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        log = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = json.loads(body)
                with log._lock:
                    for item in payload.get("alerts", []):
                        log.notifications.append(
                            Notification(
                                tuple(sorted(item["labels"].items())), item["status"], time.time()
                            )
                        )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def all(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    def pages(self) -> dict[tuple[tuple[str, str], ...], int]:
        """Firing notifications per full label set (instance included: two replicas paging
        for one subject are two label sets)."""
        counts: dict[tuple[tuple[str, str], ...], int] = {}
        for item in self.all():
            if item.status == "firing":
                counts[item.labels] = counts.get(item.labels, 0) + 1
        return counts

    def resolved(self) -> list[Notification]:
        return [item for item in self.all() if item.status == "resolved"]


class Alertmanager:
    """A private prometheus-alertmanager on a free loopback port notifying ``webhook``."""

    def __init__(self, workdir: Path, webhook: str) -> None:
        executable = shutil.which("prometheus-alertmanager")
        if executable is None:
            missing_service("prometheus-alertmanager is not installed")
        self.workdir = workdir
        self.port = free_port()
        config = {
            "route": {
                "receiver": "hook",
                "group_by": ["..."],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "24h",
            },
            "receivers": [
                {"name": "hook", "webhook_configs": [{"url": webhook, "send_resolved": True}]}
            ],
        }
        path = workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._log = open(workdir / "alertmanager.log", "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [
                executable,
                f"--config.file={path}",
                f"--storage.path={workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{self.port}"

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    "alertmanager exited: " + (workdir / "alertmanager.log").read_text()
                )
            try:
                return requests.get(f"{base}/-/ready", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, timeout=30, what="alertmanager ready")

    def close(self) -> None:
        stop_process(self.process)
        self._log.close()


@dataclass
class ReplicaStack(OncallStack):
    """An :class:`OncallStack` with ``replicas`` exporters in one job and, with
    ``alertmanager``, a real Alertmanager counting pages (:attr:`pages`)."""

    replicas: int = 1
    alertmanager: bool = False
    replica_ports: list[int] = field(default_factory=list)
    replica_processes: list[subprocess.Popen | None] = field(default_factory=list)
    page_log: PageLog | None = None
    _alertmanager: Alertmanager | None = None
    _prometheus_paused: bool = False

    def start(self) -> ReplicaStack:
        super().start()  # replica 0 and Prometheus scraping it
        assert self.prometheus is not None
        if self.replicas > 1 or self.alertmanager:
            config = yaml.safe_load((self.workdir / "prometheus.yml").read_text())
            config["scrape_configs"][0]["static_configs"] = [
                {"targets": [f"127.0.0.1:{port}" for port in self.ports]}
            ]
            if self.alertmanager:
                self.page_log = PageLog()
                self._alertmanager = Alertmanager(self.workdir, self.page_log.url)
                config["alerting"] = {
                    "alertmanagers": [
                        {"static_configs": [{"targets": [f"127.0.0.1:{self._alertmanager.port}"]}]}
                    ]
                }
            (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
            assert self.prometheus.process is not None
            self.prometheus.process.send_signal(signal.SIGHUP)  # reload the config
            self.wait_value(
                f'count(up{{job="{JOB}"}} == 1)', float(self.replicas), what="every replica up"
            )
        return self

    @property
    def ports(self) -> list[int]:
        return [self.exporter_port, *self.replica_ports]

    # --- exporter replicas ------------------------------------------------------------------

    def start_exporter(self) -> None:
        """Replica 0 (the base stack's exporter), then the others, each its own port, config,
        log and state file."""
        super().start_exporter()
        if not self.replica_ports:
            self.replica_ports = [free_port() for _ in range(self.replicas - 1)]
            self.replica_processes = [None] * (self.replicas - 1)
        for index in range(1, self.replicas):
            self.start_replica(index)

    def start_replica(self, index: int) -> None:
        port = self.replica_ports[index - 1]
        config = json.loads(json.dumps(self.exporter_config))
        config["port"] = port
        if "state_file" in config.get("events", {}):
            config["events"]["state_file"] = str(self.workdir / f"exporter-{index}-state.json")
        path = self.workdir / f"exporter-{index}.yaml"
        path.write_text(yaml.safe_dump(config))
        log = open(self.workdir / f"exporter-{index}.log", "a")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_EXPORTER_")}
        env["ONCALL_RABBITMQ_PASSWORD"] = "guest"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery_queue_exporter", "--config", str(path), "--events"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.replica_processes[index - 1] = process
        wait_for(lambda: port_open(port), timeout=30, what=f"exporter replica {index}")

    def stop_exporter(self) -> None:
        super().stop_exporter()
        for process in self.replica_processes:
            stop_process(process)

    def kill_exporters(self) -> None:
        """SIGKILL every replica (no state file written on the way out: a crash, an OOM kill)
        and wait for them to exit."""
        for process in [self.exporter_process, *self.replica_processes]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=15)

    def wait_worker_up(self, name: str, timeout: float = 60) -> None:
        """Until every replica reports the worker up in Prometheus."""
        hostname = self.worker_name(name)
        selector = f'celery_worker_up{{job="{JOB}", worker="{hostname}"}}'

        def up() -> bool:
            worker = self.workers[name]
            if worker.process is not None and worker.process.poll() is not None:
                raise AssertionError(f"worker {hostname} exited: {worker.output()[-3000:]}")
            return self.value(f"count({selector} == 1)") == float(self.replicas)

        wait_for(up, timeout=timeout, interval=0.5, what=f"{hostname} up on every replica")

    # --- Prometheus ---------------------------------------------------------------------------

    def pause_prometheus(self) -> None:
        """SIGSTOP Prometheus: no scrape, no evaluation until :meth:`resume_prometheus`."""
        assert self.prometheus is not None and self.prometheus.process is not None
        self.prometheus.process.send_signal(signal.SIGSTOP)
        self._prometheus_paused = True

    def resume_prometheus(self) -> None:
        assert self.prometheus is not None and self.prometheus.process is not None
        self.prometheus.process.send_signal(signal.SIGCONT)
        self._prometheus_paused = False

    # --- pages --------------------------------------------------------------------------------

    def page_keys(self) -> list[AlertKey]:
        """One entry per full label set Alertmanager paged for (duplicates: double pages)."""
        assert self.page_log is not None
        keys = [Notification(labels, "firing", 0).key for labels in self.page_log.pages()]
        return sorted(keys, key=str)

    def close(self) -> None:
        if self._prometheus_paused:
            with contextlib.suppress(Exception):
                self.resume_prometheus()
        if self._alertmanager is not None:
            self._alertmanager.close()
        if self.page_log is not None:
            self.page_log.close()
        super().close()


def replica_stacks():  # noqa: ANN201 - a generator context manager of a factory
    """Like oncall_stack.stacks(), for :class:`ReplicaStack`."""
    return stacks(ReplicaStack)
