"""Start real Celery workers and an in-process event collector for the event tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from celery_queue_exporter.config import BrokerConfig, EventSettings
from celery_queue_exporter.config.brokers import broker_from_flag
from celery_queue_exporter.events.collector import EventCollector

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
# Workers import the app as apps.events_app, the name the test process imports it under: a
# second name would register every task twice (DuplicateTaskNameWarning in every app).
EVENTS_APP = "apps.events_app"


@dataclass
class Worker:
    """A ``celery worker`` subprocess running tests/apps/events_app.py."""

    broker_url: str
    queue: str
    pool: str = "solo"
    #: More queues to consume (``-Q`` lists them after ``queue``), declared like it.
    extra_queues: tuple[str, ...] = ()
    #: x-max-priority of the queues the worker's app declares.
    max_priority: int = 9
    concurrency: int = 1
    install: bool = True
    heartbeat_seconds: int = 1
    name: str = field(default_factory=lambda: f"w{uuid.uuid4().hex[:6]}@cqe-test")
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def _log(self):  # noqa: ANN202 - a file object for Popen
        import tempfile

        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            "w", prefix="cqe-worker-", suffix=".log", delete=False
        )
        self.log_path = Path(handle.name)
        self._log_file = handle
        return handle

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def start(self) -> Worker:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}",
            CQE_BROKER_URL=self.broker_url,
            CQE_QUEUE=self.queue,
            CQE_EXTRA_QUEUES=",".join(self.extra_queues),
            CQE_MAX_PRIORITY=str(self.max_priority),
            CQE_INSTALL="1" if self.install else "0",
        )
        queues = ",".join((self.queue, *self.extra_queues))
        command = [
            sys.executable, "-m", "celery", "-A", EVENTS_APP, "worker",
            "-P", self.pool, "-c", str(self.concurrency), "-E", "-Q", queues,
            "-n", self.name, "--without-gossip", "--without-mingle",
            "--heartbeat-interval", str(self.heartbeat_seconds), "-l", "WARNING",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=self._log(),
        )  # fmt: skip
        return self

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Signal the worker's main process only (SIGKILL: no worker-offline event)."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signum)
            self.process.wait(timeout=20)

    def send_signal(self, signum: int) -> None:
        """Signal the worker's main process and return at once (SIGSTOP, SIGCONT, ...)."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def stop(self) -> None:
        """Warm shutdown, then make sure the whole process group (pool children) is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        self._log_file.close()
        if self.log_path:
            self.log_path.unlink(missing_ok=True)


class Exporter:
    """An in-process EventCollector for one broker, scraped like Prometheus would."""

    def __init__(self, broker: BrokerConfig | str, settings: EventSettings | None = None):
        if isinstance(broker, str):
            broker = broker_from_flag("test", broker)
        self.broker = broker
        self.collector = EventCollector([broker], settings or EventSettings())
        self.tracker = self.collector.trackers[0]
        self.consumer = self.collector.consumers[0]
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)

    def start(self) -> Exporter:
        self.collector.start()
        return self

    def close(self) -> None:
        self.collector.close()

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def samples(self) -> dict:
        from testsupport.exposition import parse_exposition

        return parse_exposition(self.text())

    def value(self, name: str, **labels: str) -> float | None:
        from testsupport.exposition import sample_value

        return sample_value(self.samples(), name, broker=self.broker.name, **labels)

    def values(self, name: str, key: str, **labels: str) -> dict[str, float]:
        """{label ``key`` value: sample value} of ``name`` series matching ``labels``, summed
        over the series that share a ``key`` value (other labels told apart)."""
        out: dict[str, float] = {}
        wanted = {"broker": self.broker.name, **labels}
        for (sample, pairs), value in self.samples().items():
            found = dict(pairs)
            if sample == name and all(found.get(k) == v for k, v in wanted.items()):
                out[found.get(key, "")] = out.get(found.get(key, ""), 0) + value
        return out
