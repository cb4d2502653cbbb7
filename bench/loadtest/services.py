"""Processes the load test starts and owns: the exporter and workers (its private
redis-server is testsupport's RedisServer, its RabbitMQ clean-up testsupport.rabbitmq's).

It never stops or changes anything it did not start: the machine's Redis on 6379 is not used,
and on the shared RabbitMQ only the load test's own uniquely named queues and exchanges are
created and deleted.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
import yaml

from testsupport import waiting
from testsupport.net import free_port, http_ok
from testsupport.processes import stop_process
from testsupport.waiting import ServiceError

ROOT = Path(__file__).resolve().parents[2]


# The loadtest's failures are ServiceErrors (printed as one line by __main__), timeouts too.
wait_for = functools.partial(waiting.wait_for, error=ServiceError)


def events_supported(transport: str) -> bool:
    """Whether this checkout's exporter can consume Celery events from the transport."""
    return importlib.util.find_spec(f"celery_queue_exporter.brokers.{transport}.events") is not None


class ExporterProcess:
    """The real exporter (``python -m celery_queue_exporter``) watching the load test's queues."""

    def __init__(
        self,
        brokers: list[dict[str, Any]],
        events: bool,
        wait_buckets: tuple[float, ...],
        log_dir: Path,
    ) -> None:
        self.port = free_port()
        self.brokers = brokers
        self.events = events
        self.wait_buckets = wait_buckets
        self.log_path = log_dir / f"exporter-{self.port}.log"
        self.config_path = log_dir / f"exporter-{self.port}.yaml"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> ExporterProcess:
        config: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "log_level": "WARNING",
            "brokers": self.brokers,
        }
        if self.events:
            config["events"] = {"enabled": True, "wait_buckets": list(self.wait_buckets)}
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        os.chmod(self.config_path, 0o600)  # it may hold a broker password
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery_queue_exporter", "--config", str(self.config_path)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        log.close()

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceError(f"exporter exited early; see {self.log_path}")
            return http_ok(self.url)

        wait_for(answers, 30, "the exporter's /metrics")
        return self

    def scrape(self) -> str:
        return requests.get(self.url, timeout=10).text

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
        self.process = None
        with contextlib.suppress(OSError):
            self.config_path.unlink()


class WorkerProcess:
    """``celery -A bench.loadtest.app worker`` (prefork) configured through LT_* variables."""

    def __init__(self, name: str, env: dict[str, str], queue: str, concurrency: int, log_dir: Path):
        self.name = name
        self.env = env
        self.queue = queue
        self.concurrency = concurrency
        self.log_path = log_dir / f"worker-{name.split('@')[0]}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.loadtest.app", "worker",
             "-P", "prefork", "-c", str(self.concurrency), "-E", "-Q", self.queue,
             "-n", self.name, "--without-gossip", "--without-mingle", "-l", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        return self

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise ServiceError(f"worker {self.name} exited early; see {self.log_path}")
        text = self.log_path.read_text(errors="replace")
        return " ready." in text

    def terminate(self) -> None:
        """Ask for a warm shutdown (finish running tasks) without waiting."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        """Warm shutdown; after 15 s kill the worker's own process group (its pool children)."""
        stop_process(self.process, timeout=15, group=True)
        self.process = None
