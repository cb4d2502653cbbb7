"""Issue 24, point 4: `--events` with least-privilege brokers. The RabbitMQ user of
docs/rabbitmq.md#permissions-for---events subscribes; one without the event-queue permission
gets exactly one ERROR line naming it (and it keeps retrying quietly). Each test creates its
own vhost and users on the shared RabbitMQ and deletes them; the Redis ACL user lives on a
private redis-server."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pika
import pytest
from apps.harness import Exporter

from celery_queue_exporter.brokers.celery_layout import EVENT_EXCHANGE
from celery_queue_exporter.brokers.rabbitmq.events import EVENT_QUEUE_PERMISSION
from testsupport.rabbitmq import create_user, delete_user
from testsupport.waiting import wait_for

#: The documented permissions (docs/rabbitmq.md, README): configure, write, read.
LEAST_PRIVILEGE = (
    r"^celeryev\.celery-queue-exporter\..*",
    r"^celeryev\.celery-queue-exporter\..*",
    ".*",
)
READ_ONLY = ("^$", "^$", ".*")  # the monitoring user of the queue inspection alone
RETRY_SECONDS = 4.0  # the consumer retries 5 times in this long (0, 0.2, 0.5, 1, 2 s)


@pytest.fixture
def event_vhost(rabbitmq_vhost: str) -> str:
    """The vhost with the celeryev exchange a Celery worker would have declared."""
    url = f"amqp://guest:guest@127.0.0.1:5672/{rabbitmq_vhost}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().exchange_declare(EVENT_EXCHANGE, exchange_type="topic")
    finally:
        connection.close()
    return rabbitmq_vhost


@pytest.fixture
def make_user(event_vhost: str) -> Iterator:
    created: list[str] = []

    def make(configure: str, write: str, read: str) -> str:
        name = create_user(
            f"cqe-test-{uuid.uuid4().hex[:8]}", "pw", event_vhost,
            configure=configure, write=write, read=read,
        )  # fmt: skip
        created.append(name)
        return f"amqp://{name}:pw@127.0.0.1:5672/{event_vhost}"

    yield make
    for name in created:
        delete_user(name)


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def pika_level_unset() -> Iterator[None]:
    """Let the exporter set pika's level as in a fresh process (another test may have)."""
    pika_log = logging.getLogger("pika")
    before = pika_log.level
    pika_log.setLevel(logging.NOTSET)
    yield
    pika_log.setLevel(before)


@pytest.mark.rabbitmq
def test_the_documented_least_privilege_user_runs_events(make_user, caplog):
    assert LEAST_PRIVILEGE[0] == EVENT_QUEUE_PERMISSION  # the regex the log line names
    exporter = Exporter(make_user(*LEAST_PRIVILEGE)).start()
    try:
        wait_for(lambda: exporter.value("celery_event_consumer_up") == 1, 20, what="up")
        assert _errors(caplog) == []
    finally:
        exporter.close()


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    "permissions, refused",
    [
        (READ_ONLY, "configure permission on queue"),
        ((LEAST_PRIVILEGE[0], "^$", ".*"), "write permission on queue"),
    ],
    ids=["read-only", "no-write"],
)
def test_a_user_without_the_event_queue_permission_gets_one_clear_line(
    make_user, event_vhost, caplog, permissions, refused
):
    """Before: celery_event_consumer_up 0 and nothing logged above DEBUG."""
    url = make_user(*permissions)
    user = url.split("//", 1)[1].split(":", 1)[0]
    with caplog.at_level(logging.INFO):  # the exporter's default --log-level
        exporter = Exporter(url).start()
        try:
            time.sleep(RETRY_SECONDS)
            assert exporter.value("celery_event_consumer_up") == 0
        finally:
            exporter.close()
    errors = _errors(caplog)
    assert len(errors) == 1, errors  # once, though it retried
    (line,) = errors
    assert line.startswith(
        f"events from {exporter.broker.name}: RabbitMQ refused {refused} "
        "'celeryev.celery-queue-exporter."
    )
    assert f"to user {user!r} in vhost {event_vhost!r}" in line
    assert line.endswith(
        "403 ACCESS_REFUSED): --events needs configure and write on the exporter's own queues "
        r"'^celeryev\.celery-queue-exporter\..*' and read on the 'celeryev' exchange and those "
        "queues (see docs/rabbitmq.md#permissions-for---events)"
    )
    assert "pw" not in line.replace("pw:", "")  # no password (the user name is shown)


@pytest.mark.rabbitmq
def test_a_user_without_vhost_access_gets_one_clear_line(make_user, event_vhost, caplog):
    url = make_user(*READ_ONLY)
    other = url.rsplit("/", 1)[0] + "/%2F"  # the default vhost: no permissions there
    with caplog.at_level(logging.INFO):
        exporter = Exporter(other).start()
        try:
            time.sleep(RETRY_SECONDS)
            assert exporter.value("celery_event_consumer_up") == 0
        finally:
            exporter.close()
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert "no access to the vhost (no permissions set)" in errors[0]
    assert "in vhost '/'" in errors[0]


@pytest.mark.redis
def test_redis_acl_without_psubscribe_gets_one_clear_line(redis_server, caplog):
    client = redis_server.client()
    client.execute_command(
        "ACL", "SETUSER", "noevents", "on", ">pw", "~*", "&*", "+@read", "+@connection", "+info"
    )
    url = f"redis://noevents:pw@127.0.0.1:{redis_server.port}/0"
    with caplog.at_level(logging.INFO):
        exporter = Exporter(url).start()
        try:
            time.sleep(RETRY_SECONDS)
            assert exporter.value("celery_event_consumer_up") == 0
        finally:
            exporter.close()
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        f"events from {exporter.broker.name}: the Redis ACL refuses the event subscription"
    )
    assert "+psubscribe" in errors[0] and "README.md#permissions" in errors[0]


@pytest.mark.rabbitmq
def test_a_management_user_without_the_monitoring_tag_gets_one_warning(event_vhost, caplog):
    """The queue inspection's side: the API refuses a user without the tag (401); the exporter
    says so once and reads the queue over AMQP."""
    from celery_queue_exporter.brokers.rabbitmq.inspector import RabbitMQInspector
    from celery_queue_exporter.config.brokers import new_broker

    name = create_user(f"cqe-test-{uuid.uuid4().hex[:8]}", "pw", event_vhost, tags="")
    try:
        url = f"amqp://{name}:pw@127.0.0.1:5672/{event_vhost}"
        setup = pika.BlockingConnection(
            pika.URLParameters(url.replace(f"{name}:pw", "guest:guest"))
        )
        setup.channel().queue_declare("jobs")
        setup.close()
        inspector = RabbitMQInspector(new_broker("r", url, queues=["jobs"]), 10.0)
        try:
            with caplog.at_level(logging.INFO):
                for _ in range(3):
                    snapshot = inspector.inspect()
                    assert snapshot.management_api_up is False
                    assert [(lv.queue, lv.messages) for lv in snapshot.levels] == [("jobs", 0)]
        finally:
            inspector.close()
    finally:
        delete_user(name)
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert errors[0].endswith(
        f"refused the credentials of user {name!r} (401: wrong password, or the user lacks the "
        "'monitoring' or 'management' tag); using AMQP (no per-priority or unacknowledged counts)"
    )
