"""Shared test fixtures: real services, started privately where a test must own them.

Rules every test follows:
* Redis tests run against private ``redis-server`` processes on spare ports (started here), so
  tests can stop them, read their command statistics, and never disturb the machine's Redis.
* RabbitMQ tests use the machine's node on 127.0.0.1:5672 with unique queue names, and start a
  private node on spare ports when they need to stop one.
* In CI (``CI=true``) a missing service fails the test; locally it skips with the reason and
  the command that sets it up.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

pytest_plugins = ["skip_summary"]  # a local run that skipped says so last (tests/skip_summary.py)

ROOT = Path(__file__).resolve().parent.parent
SETUP_HINT = "run `bash scripts/bootstrap.sh` (installs and starts the services), then pytest"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_service(reason: str) -> None:
    """Fail in CI, skip locally, always saying why and how to fix it."""
    message = f"{reason}; {SETUP_HINT}"
    if in_ci():
        pytest.fail(f"CI: required service missing: {message}", pytrace=False)
    pytest.skip(message)


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


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# --- Redis ------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A private redis-server process owned by the test that started it."""

    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing_service("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self._pings(), timeout=10, what=f"redis-server on {self.port}")

    def _pings(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh private redis-server for one test."""
    workdir = Path(tempfile.mkdtemp(prefix="cqe-redis-"))
    server = RedisServer(port=free_port(), workdir=workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- RabbitMQ ---------------------------------------------------------------------------------


RABBITMQ_URL = os.environ.get("CQE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def rabbitmq_url() -> str:
    """The machine's RabbitMQ; fails in CI / skips locally when it does not answer."""
    if not port_open(5672):
        missing_service("RabbitMQ is not answering on 127.0.0.1:5672")
    return RABBITMQ_URL


@pytest.fixture
def unique_name() -> str:
    """A queue/prefix name no other test (or concurrent run) uses."""
    return f"cqe-test-{uuid.uuid4().hex[:10]}"


# --- scraping ---------------------------------------------------------------------------------


def parse_exposition(text: str) -> dict[tuple[str, frozenset], float]:
    """Samples of a text exposition keyed by (sample name, frozenset of label pairs)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample_value(samples: dict, name: str, **labels: str) -> float | None:
    """The value of the one sample with exactly these labels, or None."""
    return samples.get((name, frozenset(labels.items())))


def samples_named(samples: dict, name: str) -> dict[frozenset, float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}
