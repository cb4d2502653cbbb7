"""Shared test fixtures and hooks (helpers live in the testsupport package, never here).

Rules every test follows:
* Redis tests run against private ``redis-server`` processes on spare ports (started here), so
  tests can stop them, read their command statistics, and never disturb the machine's Redis.
* RabbitMQ tests use the machine's node on 127.0.0.1:5672 in a vhost of their own (or with
  unique queue names), and start a private node on spare ports when they need to stop one.
* In CI (``CI=true``) a missing service fails the test; locally it skips with the reason and
  the command that sets it up (testsupport.services.missing_service).
* Every test needing more than this process carries a tier marker (testsupport/tiers.py);
  ``pytest --fast`` runs the others.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from testsupport.brokers import (
    RABBITMQ_4,
    RABBITMQ_GENERATIONS,
    REDIS_GENERATIONS,
    RabbitMQGeneration,
)
from testsupport.net import port_open
from testsupport.rabbitmq import RABBITMQ_URL, create_vhost, delete_vhost
from testsupport.redis_server import RedisServer
from testsupport.services import missing_service
from testsupport.waiting import ServiceError

pytest_plugins = [
    "testsupport.tiers",  # the markers' tiers and --fast (its guard)
    "testsupport.xdist_groups",  # xdist_group marks under pytest 9.2 (see the module)
    "testsupport.skip_summary",  # a local run that skipped says so last
]


# --- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh private redis-server for one test, stopped and removed afterwards."""
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed")
    with RedisServer() as server:
        yield server


@pytest.fixture(params=list(REDIS_GENERATIONS))
def redis_generation(request: pytest.FixtureRequest) -> str:
    """Each Redis generation's name in turn (testsupport.brokers.REDIS_GENERATIONS), for
    tests whose harness starts its own server of it (the on-call stacks)."""
    return request.param


@pytest.fixture
def redis_generation_server(redis_generation: str) -> Iterator[RedisServer]:
    """A fresh private redis-server of each generation in turn: 7.0 (Debian 12's) and 8.0
    (Debian 13's, from the root scripts/debian13-brokers.sh sets up)."""
    if redis_generation == "redis-7" and shutil.which("redis-server") is None:
        missing_service("redis-server is not installed")
    server = REDIS_GENERATIONS[redis_generation]()
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
