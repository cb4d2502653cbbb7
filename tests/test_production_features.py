"""Static labels, queue include/exclude patterns and transport-option pass-through (issue 16),
on a private Redis and the shared RabbitMQ (the test's own uniquely named queues)."""

from __future__ import annotations

import shutil
import subprocess

import pika
import pytest
from kombu import Connection, Exchange, Queue
from kombu.transport.redis import SentinelChannel

from celery_queue_exporter.brokers.redis.options import KOMBU_OPTIONS, OPTIONS
from celery_queue_exporter.config import ConfigError
from celery_queue_exporter.config.load import load_config
from testsupport.exporter import build_exporter, scrape_text
from testsupport.exposition import parse_exposition, sample_value
from testsupport.services import missing_service

STATIC = ["--static-label", "env=prod", "--static-label", "region=eu,west"]


def declare_redis_queues(url: str, names: list[str]) -> None:
    """Queues as kombu declares them on Redis (binding sets), one message each."""
    with Connection(url) as conn:
        exchange = Exchange("cqe-patterns", type="direct")
        for name in names:
            queue = Queue(name, exchange, routing_key=name)
            producer = conn.Producer()
            producer.publish({"n": name}, exchange=exchange, routing_key=name, declare=[queue])


# --- static labels -----------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.rabbitmq
@pytest.mark.prometheus
def test_static_labels_on_every_series_of_a_full_scrape(redis_server, rabbitmq_url, unique_name):
    declare_redis_queues(redis_server.url, [unique_name])
    exporter = build_exporter(
        "--broker-url", f"r={redis_server.url}", "--broker-url", f"q={rabbitmq_url}",
        "--queue", unique_name, "--no-discover-queues", "--events", *STATIC,
    )  # fmt: skip
    try:
        text = scrape_text(exporter)
    finally:
        exporter.close()
    samples = parse_exposition(text)
    names = {name for name, _ in samples}
    # Queue, event, exporter, process and build series are all there ...
    expected = {
        "celery_queue_messages", "celery_broker_up", "celery_event_consumer_up",
        "celery_exporter_build_info", "process_cpu_seconds_total", "python_info",
    }  # fmt: skip
    assert expected <= names
    # ... and every one carries both static labels, values as given.
    for name, labels in samples:
        found = dict(labels)
        assert (found.get("env"), found.get("region")) == ("prod", "eu,west"), name
    assert sample_value(samples, "celery_queue_messages", broker="r", queue=unique_name,
                        priority="0", env="prod", region="eu,west") == 1  # fmt: skip
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_service("promtool is not installed (Debian package prometheus)")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("queue=x", "static_labels.queue: clashes with a label the exporter already sets"),
        ("le=1", "static_labels.le: clashes with a label the exporter already sets"),
        ("instance=a", "static_labels.instance: clashes with a label the exporter already sets"),
        ("2env=x", "static_labels.2env: not a Prometheus label name"),
        ("__x=y", "static_labels.__x: not a Prometheus label name"),
        ("env", "static_labels: expected key=value"),
    ],
)
def test_static_labels_are_checked(label, message):
    with pytest.raises(ConfigError) as error:
        load_config(["--static-label", label], environ={})
    assert str(error.value).startswith(message)


def test_static_labels_from_the_file_and_the_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("static_labels: {env: staging, team: data}\n")
    assert load_config(["--config", str(path)], environ={}).static_labels == {
        "env": "staging",
        "team": "data",
    }
    environ = {"CELERY_EXPORTER_STATIC_LABELS": "env=prod,team=web"}
    assert load_config([], environ=environ).static_labels == {"env": "prod", "team": "web"}


# --- queue patterns ----------------------------------------------------------------------


def watched(samples: dict, broker: str) -> set[str]:
    """Queues with series: depths (Redis at once; RabbitMQ once its statistics are in) or the
    missing flag (every queue the RabbitMQ management path watches)."""
    return {
        dict(labels)["queue"]
        for (name, labels), _ in samples.items()
        if name in {"celery_queue_messages", "celery_queue_missing"}
        and dict(labels)["broker"] == broker
    }


def redis_scrape(url: str, *args: str) -> dict:
    exporter = build_exporter("--broker-url", f"r={url}", *args)
    try:
        return parse_exposition(scrape_text(exporter))
    finally:
        exporter.close()


@pytest.mark.redis
def test_queue_patterns_on_redis(redis_server):
    url = redis_server.url
    declare_redis_queues(url, ["orders.high", "orders.low", "reports", "tmp.1"])
    everything = redis_scrape(url)
    assert watched(everything, "r") == {"orders.high", "orders.low", "reports", "tmp.1"}

    samples = redis_scrape(url, "--queue-include", r"orders\..*", "--queue-exclude", r".*\.low")
    assert watched(samples, "r") == {"orders.high"}
    # Full match: "orders" alone matches no queue; a listed queue is watched regardless.
    samples = redis_scrape(url, "--queue-include", "orders", "--queue", "tmp.1",
                           "--discover-queues")  # fmt: skip
    assert watched(samples, "r") == {"tmp.1"}
    assert sample_value(samples, "celery_exporter_queues_over_limit", broker="r") == 0
    # A pattern matching nothing: no queue, nothing counted over the limit.
    samples = redis_scrape(url, "--queue-include", "nothing-.*")
    assert watched(samples, "r") == set()
    assert sample_value(samples, "celery_exporter_queues_over_limit", broker="r") == 0


@pytest.mark.redis
def test_max_queues_counts_after_filtering_on_redis(redis_server, tmp_path):
    declare_redis_queues(redis_server.url, ["a1", "a2", "a3", "b1", "b2"])
    path = tmp_path / "c.yaml"
    path.write_text(
        f"brokers:\n  - name: r\n    url: {redis_server.url}\n    max_queues: 2\n"
        "    queue_include: ['a.*']\n"
    )
    exporter = build_exporter("--config", str(path))
    try:
        samples = parse_exposition(scrape_text(exporter))
    finally:
        exporter.close()
    assert watched(samples, "r") == {"a1", "a2"}
    assert (
        sample_value(samples, "celery_exporter_queues_over_limit", broker="r") == 1
    )  # a3; b* unwanted


@pytest.mark.rabbitmq
def test_queue_patterns_on_rabbitmq(rabbitmq_url, unique_name):
    names = [f"{unique_name}.high", f"{unique_name}.low", f"{unique_name}.mid"]
    params = pika.URLParameters(rabbitmq_url[:-1] + "%2F")
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    try:
        for name in names:
            channel.queue_declare(name)
        prefix = unique_name.replace("-", r"\-")

        def scrape(*args: str) -> dict:
            exporter = build_exporter("--broker-url", f"q={rabbitmq_url}", *args)
            try:
                return parse_exposition(scrape_text(exporter))
            finally:
                exporter.close()

        samples = scrape("--queue-include", rf"{prefix}\..*", "--queue-exclude", r".*\.low")
        assert sample_value(samples, "celery_rabbitmq_management_api_up", broker="q") == 1
        assert watched(samples, "q") == {f"{unique_name}.high", f"{unique_name}.mid"}
        samples = scrape("--queue-include", rf"{prefix}-nothing")
        assert watched(samples, "q") == set()
        assert sample_value(samples, "celery_exporter_queues_over_limit", broker="q") == 0
    finally:
        for name in names:
            channel.queue_delete(name)
        connection.close()


# --- transport options -------------------------------------------------------------------


def test_transport_options_checked_where_interpreted_and_kept_otherwise(tmp_path):
    config = load_config(
        ["--broker-url", "redis://h:6379/0",
         "--broker-transport-option", "visibility_timeout=7200",
         "--broker-transport-option", "health_check_interval=15",
         "--broker-transport-option", "polling_interval=0.5",
         "--broker-transport-option", "fanout_prefix=true"],
        environ={},
    )  # fmt: skip
    broker = config.brokers[0]
    assert broker.options.visibility_timeout == 7200.0
    assert broker.options.health_check_interval == 15
    assert broker.extra_transport_options == {"polling_interval": 0.5, "fanout_prefix": True}
    with pytest.raises(ConfigError) as error:
        load_config(["--broker-url", "redis://h/0", "--broker-transport-option",
                     "visibility_timeout=soon"], environ={})  # fmt: skip
    assert str(error.value).startswith("transport_options.visibility_timeout: expected a number")
    with pytest.raises(ConfigError) as error:
        load_config(["--broker-url", "redis://h/0", "--broker-transport-option", "vis=1"],
                    environ={})  # fmt: skip
    assert str(error.value).startswith("transport_options.vis: unknown field")
    # RabbitMQ: kombu hands every option to the AMQP client, so any name is kept.
    path = tmp_path / "c.yaml"
    path.write_text(
        "brokers:\n  - url: amqp://guest:guest@h:5672//\n"
        "    transport_options: {confirm_publish: true, read_timeout: 4}\n"
    )
    broker = load_config(["--config", str(path)], environ={}).brokers[0]
    assert broker.extra_transport_options == {"confirm_publish": True, "read_timeout": 4}


def test_the_redis_option_list_is_kombus():
    declared = {option.attr for option in OPTIONS if option.key.startswith("transport_options.")}
    read_by_kombu = set(SentinelChannel.from_transport_options)
    assert read_by_kombu - declared <= KOMBU_OPTIONS


# --- Sentinel configuration ----------------------------------------------------------------


def test_a_sentinel_celery_app_is_one_broker(tmp_path, monkeypatch):
    (tmp_path / "cqe_sentinel_app.py").write_text(
        "from celery import Celery\n"
        "app = Celery('x', broker='sentinel://:pw@s1:26379/2;sentinel://:pw@s2:26380/2',\n"
        "             set_as_current=False)\n"
        "app.conf.broker_transport_options = {'master_name': 'mymaster',\n"
        "    'sentinel_kwargs': {'password': 'sentinel-pw'}, 'polling_interval': 1}\n"
    )
    monkeypatch.chdir(tmp_path)
    broker = load_config(["--celery-app", "cqe_sentinel_app:app"], environ={}).brokers[-1]
    assert broker.transport.name == "redis"
    assert broker.safe_url == "sentinel://s1:26379/2;sentinel://s2:26380/2"
    assert broker.name == "redis-s1-26379-2"
    assert (broker.options.master_name, broker.options.sentinel_kwargs) == (
        "mymaster",
        {"password": "sentinel-pw"},
    )
    assert broker.extra_transport_options == {"polling_interval": 1}
    assert "pw" not in repr(broker)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker-url", "sentinel://s1:26379/0;sentinel://s2:26379/0"],
         "brokers[redis-s1-26379-0].transport_options.master_name: required with sentinel://"),
        (["--broker-url", "amqp://a:5672//;amqp://b:5672//"],
         "--broker-url[0].url: a ';'-separated URL list is one rabbitmq broker never"),
        (["--broker-url", "sentinel://s1:26379/0;redis://r:6379/0",
          "--broker-transport-option", "master_name=m"],
         "--broker-url[0].url: a ';'-separated URL list is one redis broker only when every URL is sentinel://"),
    ],
)  # fmt: skip
def test_url_lists_are_checked(args, message):
    with pytest.raises(ConfigError) as error:
        load_config(args, environ={})
    assert str(error.value).startswith(message)
