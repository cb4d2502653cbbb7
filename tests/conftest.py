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
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# One copy, in testsupport/, shared with the benchmarks; test modules import these names from
# conftest. wait_until is the tests' name for testsupport's wait_for (AssertionError on timeout).
from testsupport.brokers import RABBITMQ_4, RABBITMQ_GENERATIONS, RabbitMQGeneration, Redis8Server
from testsupport.net import free_port, port_open  # noqa: F401 - re-exported
from testsupport.rabbitmq import create_vhost, delete_vhost
from testsupport.redis_server import RedisServer
from testsupport.waiting import ServiceError
from testsupport.waiting import wait_for as wait_until  # noqa: F401 - re-exported

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


# --- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh private redis-server for one test, stopped and removed afterwards."""
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed")
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["redis-7", "redis-8"])
def redis_generation_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A fresh private redis-server of each generation in turn: 7.0 (Debian 12's) and 8.0
    (Debian 13's, from the root scripts/debian13-brokers.sh sets up)."""
    if request.param == "redis-7":
        if shutil.which("redis-server") is None:
            missing_service("redis-server is not installed")
        server: RedisServer = RedisServer()
    else:
        server = Redis8Server()
    try:
        server.start()
    except ServiceError as exc:
        server.close()
        missing_service(str(exc))
    try:
        yield server
    finally:
        server.close()


# --- RabbitMQ ---------------------------------------------------------------------------------


RABBITMQ_URL = os.environ.get("CQE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def rabbitmq_url() -> str:
    """The machine's RabbitMQ; fails in CI / skips locally when it does not answer."""
    if not port_open(5672):
        missing_service("RabbitMQ is not answering on 127.0.0.1:5672")
    return RABBITMQ_URL


@pytest.fixture
def rabbitmq_vhost(rabbitmq_url: str) -> Iterator[str]:
    """A vhost of its own on the shared RabbitMQ (guest may use it), deleted afterwards with
    everything in it."""
    name = create_vhost(f"cqe-test-{uuid.uuid4().hex[:10]}")
    try:
        yield name
    finally:
        delete_vhost(name)


@pytest.fixture(params=["rabbitmq-3", "rabbitmq-4"])
def rabbitmq_generation(request: pytest.FixtureRequest) -> RabbitMQGeneration:
    """Each RabbitMQ generation in turn: 3.10 (the machine's) and 4.0 (the Debian 13 root's,
    testsupport.brokers). Fails in CI / skips locally when one does not answer."""
    generation = RABBITMQ_GENERATIONS[request.param]
    if not generation.answers():
        missing_service(
            f"{generation.name} is not answering on 127.0.0.1:{generation.amqp_port}/"
            f"{generation.management_port} ({generation.hint})"
        )
    return generation


@pytest.fixture
def rabbitmq4() -> RabbitMQGeneration:
    """RabbitMQ 4.0 only (quorum queue defaults, native delayed delivery as users meet them)."""
    if not RABBITMQ_4.answers():
        missing_service(f"RabbitMQ 4 is not answering on 127.0.0.1:5682/15682 ({RABBITMQ_4.hint})")
    return RABBITMQ_4


@pytest.fixture
def generation_vhost(rabbitmq_generation: RabbitMQGeneration) -> Iterator[str]:
    """A vhost of its own on the generation under test, deleted afterwards."""
    name = rabbitmq_generation.create_vhost(f"cqe-test-{uuid.uuid4().hex[:10]}")
    try:
        yield name
    finally:
        rabbitmq_generation.delete_vhost(name)


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
