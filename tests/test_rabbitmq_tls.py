"""TLS to RabbitMQ with a private CA and client certificates (issue 16): a private node with an
AMQPS listener and the management API over HTTPS, both requiring client certificates. The
management API path, the AMQP path and the event consumer all work with the private CA given
once in the broker's ``ssl:`` settings; a wrong CA is a clear TLS error.
"""

from __future__ import annotations

import ssl

import pika
import pytest
from apps.harness import Exporter
from celery import Celery
from kombu import Exchange

from celery_queue_exporter.brokers.rabbitmq.inspector import RabbitMQInspector
from celery_queue_exporter.config.brokers import broker_from_mapping
from testsupport.rabbitmq_node import NodeTLS, running_node
from testsupport.redis_topologies import make_pki
from testsupport.waiting import wait_for

# The TLS node is module-scoped: its tests share one xdist worker, so it starts once.
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.xdist_group("rabbitmq-tls")]


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    files = NodeTLS(
        pki.path("ca.pem"), pki.path("server.pem"), pki.path("server.key"),
        pki.path("client.pem"), pki.path("client.key"),
    )  # fmt: skip
    with running_node(tls=files) as node:
        yield node, pki


def ssl_settings(pki, ca: str = "ca.pem") -> dict:
    return {
        "ca_file": pki.path(ca),
        "cert_file": pki.path("client.pem"),
        "key_file": pki.path("client.key"),
    }


def publish(node, pki, queue: str, priorities: list[int]) -> None:
    """A producer over AMQPS (pika with the client certificate)."""
    context = ssl.create_default_context(cafile=pki.path("ca.pem"))
    context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    parameters = pika.ConnectionParameters(
        "127.0.0.1",
        node.amqps_port,
        "/",
        pika.PlainCredentials(node.user, node.password),
        ssl_options=pika.SSLOptions(context, server_hostname="127.0.0.1"),
    )
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        channel.queue_declare(queue, arguments={"x-max-priority": 9, "x-expires": 600_000})
        for priority in priorities:
            channel.basic_publish(
                "", queue, b"{}", pika.BasicProperties(priority=priority, delivery_mode=1)
            )
    finally:
        connection.close()


def broker_for(node, pki, queue: str, management: str, ca: str = "ca.pem"):
    return broker_from_mapping(
        "test",
        {
            "name": f"rabbit-tls-{management}",
            "url": node.amqps_url,
            "queues": [queue],
            "management": management,
            "management_url": node.management_url,
            "ssl": ssl_settings(pki, ca),
        },
    )


#: Published priorities 0, 5, 5, 9 on an x-max-priority 9 classic queue.
EXPECTED_API_LEVELS = {str(p): {0: 1, 5: 2, 9: 1}.get(p, 0) for p in range(10)}


def ready_levels(snapshot) -> dict[str | None, int]:
    return {level.priority: level.messages for level in snapshot.levels}


def test_management_api_and_amqp_both_work_with_the_private_ca(tls_node, unique_name):
    node, pki = tls_node
    publish(node, pki, unique_name, [0, 5, 5, 9])

    api = RabbitMQInspector(broker_for(node, pki, unique_name, "always"), timeout_seconds=10)
    try:
        # The management API's message counts lag behind by its statistics interval (5 s).
        snapshot = wait_for(
            lambda: (found := api.inspect()).levels and found, 20, what="counts in the API"
        )
    finally:
        api.close()
    assert snapshot.management_api_up is True
    assert ready_levels(snapshot) == EXPECTED_API_LEVELS

    amqp = RabbitMQInspector(broker_for(node, pki, unique_name, "never"), timeout_seconds=10)
    try:
        snapshot = amqp.inspect()
    finally:
        amqp.close()
    assert snapshot.management_api_up is False
    assert ready_levels(snapshot) == {None: 4}  # AMQP: all priorities together


def test_events_over_amqps_with_the_celery_apps_broker_use_ssl(tls_node, unique_name):
    node, pki = tls_node
    app = Celery("cqe_tls_events", broker=node.amqps_url, set_as_current=False)
    app.conf.update(
        task_send_sent_event=True,
        broker_use_ssl={
            "ca_certs": pki.path("ca.pem"),
            "certfile": pki.path("client.pem"),
            "keyfile": pki.path("client.key"),
            "cert_reqs": ssl.CERT_REQUIRED,
        },
    )
    with app.connection_for_write() as conn:  # a worker declares celeryev; so does this
        Exchange("celeryev", type="topic")(conn.default_channel).declare()
    broker = broker_for(node, pki, unique_name, "auto")
    events = Exporter(broker).start()
    try:
        wait_for(events.consumer.subscribed.is_set, 20, what="event subscription over AMQPS")
        with (
            app.connection_for_write() as conn,
            app.events.Dispatcher(conn, hostname="cqe-tls@host", enabled=True) as dispatcher,
        ):
            for number in range(3):
                dispatcher.send(
                    "task-sent", uuid=f"tls-{number}", name="cqe.tls", queue=unique_name
                )
        wait_for(
            lambda: events.value("celery_task_sent_total", queue=unique_name, task="cqe.tls") == 3,
            15,
            what="3 sent events over AMQPS",
        )
    finally:
        events.close()
        app.close()


def test_a_wrong_ca_fails_both_paths_naming_the_tls_problem(tls_node, unique_name):
    node, pki = tls_node
    inspector = RabbitMQInspector(
        broker_for(node, pki, unique_name, "auto", ca="other-ca.pem"), timeout_seconds=10
    )
    try:
        with pytest.raises(Exception) as error:
            inspector.inspect()
    finally:
        inspector.close()
    text = str(error.value)
    assert "AMQP failed (SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]" in text
    assert "guest:guest" not in text
