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

from testsupport.net import port_open
from testsupport.rabbitmq import RABBITMQ_URL, create_vhost, delete_vhost
from testsupport.redis_server import RedisServer
from testsupport.services import missing_service

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


@pytest.fixture
def unique_name() -> str:
    """A queue/prefix name no other test (or concurrent run) uses."""
    return f"cqe-test-{uuid.uuid4().hex[:10]}"
