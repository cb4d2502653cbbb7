"""TLS to Redis with a private CA and client certificates (issue 16): a TLS-only redis-server
(``--port 0 --tls-port``, ``--tls-auth-clients yes``) with certificates made by openssl in the
test. Inspection and events work with the right CA and client certificate, taken from the
Celery app's ``broker_use_ssl``; with a wrong CA the broker is down with an error naming the
TLS problem and never the password.
"""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid

import pytest
from apps.harness import Exporter

from celery_queue_exporter.cli import make_inspector
from celery_queue_exporter.collector import QueueCollector
from celery_queue_exporter.config import ConfigError
from celery_queue_exporter.config.brokers import broker_from_celery_app, broker_from_mapping
from celery_queue_exporter.exposition import render_text
from celery_queue_exporter.static_labels import StaticLabelRegistry
from testsupport.exposition import parse_exposition, sample_value
from testsupport.redis_topologies import make_pki, tls_redis
from testsupport.waiting import wait_for

pytestmark = [pytest.mark.redis]

PASSWORD = "s3cret-tls-password"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def scrape(collector: QueueCollector) -> dict:
    registry = StaticLabelRegistry()
    registry.register(collector)
    return parse_exposition(render_text(registry.collect()).decode())


def write_app(directory, url: str, pki, queue: str) -> str:
    """A Celery app module as a user writes it: rediss:// plus broker_use_ssl."""
    module = f"cqe_tls_app_{uuid.uuid4().hex[:8]}"
    (directory / f"{module}.py").write_text(
        textwrap.dedent(f"""
        import ssl
        from celery import Celery
        app = Celery("cqe_tls", broker={url!r}, set_as_current=False)
        app.conf.update(
            task_default_queue={queue!r},
            task_send_sent_event=True,
            broker_use_ssl={{
                "ssl_cert_reqs": ssl.CERT_REQUIRED,
                "ssl_ca_certs": {pki.path("ca.pem")!r},
                "ssl_certfile": {pki.path("client.pem")!r},
                "ssl_keyfile": {pki.path("client.key")!r},
            }},
        )
        """)
    )
    return module


def test_inspection_and_events_over_tls_with_the_celery_apps_certificates(
    pki, tmp_path, monkeypatch, unique_name
):
    queue = unique_name
    with tls_redis(pki, PASSWORD) as port:
        url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"
        module = write_app(tmp_path, url, pki, queue)
        monkeypatch.chdir(tmp_path)
        broker = broker_from_celery_app(f"{module}:app")
        assert broker.tls.ca_file == pki.path("ca.pem")
        assert broker.tls.cert_file == pki.path("client.pem")
        assert broker.tls.verify == "required"
        events = Exporter(broker).start()
        collector = QueueCollector([make_inspector(broker, 5.0)], 5.0)
        try:
            wait_for(events.consumer.subscribed.is_set, 15, what="event subscription over TLS")
            app = sys.modules[module].app
            for priority in (0, 0, 3, 9):
                app.send_task("cqe.tls", queue=queue, priority=priority)
            app.close()
            samples = scrape(collector)
            assert sample_value(samples, "celery_broker_up", broker=broker.name) == 1.0
            depths = {
                priority: sample_value(
                    samples,
                    "celery_queue_messages",
                    broker=broker.name,
                    queue=queue,
                    priority=priority,
                )  # fmt: skip
                for priority in ("0", "3", "6", "9")
            }
            # Step 6 is empty: no series (absent means 0, issue 25).
            assert depths == {"0": 2.0, "3": 1.0, "6": None, "9": 1.0}
            wait_for(
                lambda: events.value("celery_task_sent_total", queue=queue, task="cqe.tls") == 4,
                10,
                what="4 sent events over TLS",
            )
        finally:
            events.close()
            collector.close()


def test_a_wrong_ca_is_a_clear_tls_error_without_the_password(pki, caplog, unique_name):
    caplog.set_level(logging.DEBUG)
    with tls_redis(pki, PASSWORD) as port:
        broker = broker_from_mapping(
            "test",
            {
                "name": "tls-wrong-ca",
                "url": f"rediss://127.0.0.1:{port}/0",
                "password": PASSWORD,
                "queues": [unique_name],
                "ssl": {
                    "ca_file": pki.path("other-ca.pem"),
                    "cert_file": pki.path("client.pem"),
                    "key_file": pki.path("client.key"),
                },
            },
        )
        events = Exporter(broker).start()
        collector = QueueCollector([make_inspector(broker, 5.0)], 5.0)
        try:
            samples = scrape(collector)
            assert sample_value(samples, "celery_broker_up", broker="tls-wrong-ca") == 0.0
            error = collector.last_results[0].error or ""
            assert "CERTIFICATE_VERIFY_FAILED" in error
            assert PASSWORD not in error
            wait_for(
                lambda: "CERTIFICATE_VERIFY_FAILED" in caplog.text,
                10,
                what="the event consumer's TLS failure logged",
            )
            assert not events.consumer.subscribed.is_set()
            assert events.value("celery_event_consumer_up") == 0.0
            assert PASSWORD not in caplog.text
        finally:
            events.close()
            collector.close()


@pytest.mark.parametrize(
    ("url", "ssl", "message"),
    [
        ("redis://127.0.0.1:6379/0", {"ca_file": "ca.pem"},
         "brokers[0].ssl: the URL is redis://; use rediss:// for TLS"),
        ("rediss://127.0.0.1:6379/0", {"ca_file": "missing.pem"},
         "brokers[0].ssl.ca_file: no such file "),
        ("rediss://127.0.0.1:6379/0", {"key_file": "client.key"},
         "brokers[0].ssl.key_file: needs cert_file too"),
        ("rediss://127.0.0.1:6379/0", {"server_name": "redis.internal"},
         "brokers[0].ssl.server_name: not supported for Redis"),
        ("amqp://127.0.0.1:5672//", {"ca_file": "ca.pem"},
         "brokers[0].ssl: the broker is reached without TLS; use amqps://"),
    ],
)  # fmt: skip
def test_ssl_settings_are_checked_at_start(pki, url, ssl, message):
    settings = {key: pki.path(value) if value.endswith((".pem", ".key")) else value
                for key, value in ssl.items()}  # fmt: skip
    broker = broker_from_mapping("brokers[0]", {"url": url, "ssl": settings})
    with pytest.raises(ConfigError) as error:
        broker.transport.check_broker("brokers[0]", broker)
    assert str(error.value).startswith(message)
