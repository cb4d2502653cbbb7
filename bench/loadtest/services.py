"""Processes the load test starts and owns: a private redis-server, the exporter, workers.

It never stops or changes anything it did not start: the machine's Redis on 6379 is not used,
and on the shared RabbitMQ only the load test's own uniquely named queues and exchanges are
created and deleted.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests
import yaml

from celery_queue_exporter.config import redact_url

ROOT = Path(__file__).resolve().parents[2]


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise ServiceError(f"timed out after {timeout:g}s waiting for {what}")


class PrivateRedis:
    """A redis-server on a spare port with no persistence, removed on stop()."""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="cqe-loadtest-redis-"))
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server is not installed (run scripts/bootstrap.sh)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(host="127.0.0.1", port=self.port)

        def pings() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(pings, 10, f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def rabbitmq_available(url: str) -> bool:
    import pika

    try:
        connection = pika.BlockingConnection(pika.URLParameters(_pika_url(url)))
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False
    connection.close()
    return True


def _pika_url(url: str) -> str:
    # kombu writes the default vhost as "//" ("/" + "/"); pika wants it %2F-encoded.
    if url.endswith("//"):
        return url[:-1] + "%2F"
    return url


def delete_rabbitmq_objects(url: str, queues: list[str], exchanges: list[str]) -> list[str]:
    """Delete the load test's own queues and exchanges (names it generated). Returns errors."""
    import pika

    errors: list[str] = []
    try:
        connection = pika.BlockingConnection(pika.URLParameters(_pika_url(url)))
    except Exception as exc:  # noqa: BLE001
        return [f"cannot connect to {redact_url(url)} for clean-up: {type(exc).__name__}"]
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = connection.channel()
                try:
                    if kind == "queue":
                        channel.queue_delete(queue=name)
                    else:
                        channel.exchange_delete(exchange=name)
                except Exception as exc:  # noqa: BLE001 - report, go on with the rest
                    errors.append(f"delete {kind} {name}: {type(exc).__name__}")
                with contextlib.suppress(Exception):
                    channel.close()
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    return errors


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
            try:
                return requests.get(self.url, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, 30, "the exporter's /metrics")
        return self

    def scrape(self) -> str:
        return requests.get(self.url, timeout=10).text

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
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
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.process = None
