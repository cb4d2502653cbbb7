"""RabbitMQ inspection against real RabbitMQ nodes (management API and AMQP).

The broker-facing tests run on each generation (``rabbitmq_generation``: the machine's 3.10
and the Debian 13 root's 4.0.5, testsupport/brokers.py), each in a vhost of its own
(``generation_vhost``, deleted with all it holds); where a generation reports something else,
the test states what each one reports in a dict keyed by generation name. The URL-form and
credential tests work in the default vhost with queues of unique names they delete. The
management API refreshes queue statistics every 5 s (collect_statistics_interval), so tests
wait for the expected figures with wait_for instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pika
import pytest
import requests
from celery import Celery
from kombu import Exchange, Queue

from celery_queue_exporter import instrumentation
from celery_queue_exporter.brokers.celery_layout import is_internal_queue
from celery_queue_exporter.brokers.rabbitmq.inspector import RabbitMQInspector, queue_levels
from celery_queue_exporter.brokers.rabbitmq.url import parse_amqp_url
from celery_queue_exporter.config.brokers import new_broker
from testsupport.brokers import RabbitMQGeneration
from testsupport.exporter import build_exporter, scrape, scrape_text, scrape_until
from testsupport.exposition import sample_value, samples_named
from testsupport.net import free_port
from testsupport.paths import ROOT
from testsupport.rabbitmq import GUEST

#: Messages published at each priority 0..10: distinct counts, so a mix-up of levels shows.
COUNTS = {priority: priority % 4 + 1 for priority in range(11)}


# --- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def amqp(url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A channel on the test broker, for setting up and deleting the test's own queues."""
    params = pika.URLParameters(url[:-1] + "%2F" if url.endswith("//") else url)
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        connection.close()


def delete_queues(url: str, *names: str) -> None:
    """Delete the test's queues and the direct exchanges Celery declared for them (RabbitMQ
    answers delete-ok for an exchange that does not exist)."""
    with amqp(url) as channel:
        for name in names:
            channel.queue_delete(name)
            channel.exchange_delete(name)


def queue_exists(url: str, name: str) -> bool:
    with amqp(url) as channel:
        try:
            channel.queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            assert exc.reply_code == 404
            return False
    return True


def management_queue(generation: RabbitMQGeneration, vhost: str, name: str) -> requests.Response:
    return requests.get(f"{generation.management_api}/queues/{vhost}/{name}", auth=GUEST, timeout=5)


def exporter_for(generation: RabbitMQGeneration, vhost: str, *args: str):
    """An exporter watching broker ``rmq``: ``vhost`` on ``generation``, read through that
    node's management API (the exporter's default, port 15672, is the 3.10 node's)."""
    return build_exporter(
        "--broker-url", f"rmq={generation.url(vhost)}",
        "--management-url", generation.management_url,
        *args,
    )  # fmt: skip


def depth_by_level(samples: dict, queue: str) -> dict[str | None, float]:
    """{priority label (None: no label): depth} of ``queue``."""
    return {
        dict(labels).get("priority"): value
        for labels, value in samples_named(samples, "celery_queue_messages").items()
        if dict(labels)["queue"] == queue
    }


def celery_app(url: str, queue: str) -> tuple[Celery, object]:
    """A real Celery app whose queue is a classic priority queue with x-max-priority 10."""
    app = Celery(f"cqe-{queue}", broker=url, set_as_current=False)
    app.conf.task_queues = [
        Queue(queue, Exchange(queue), routing_key=queue, queue_arguments={"x-max-priority": 10})
    ]
    app.conf.task_default_queue = queue

    @app.task(name="cqe.noop", shared=False)
    def noop() -> None:
        return None

    return app, noop


def publish_levels(url: str, queue: str) -> None:
    app, noop = celery_app(url, queue)
    try:
        for priority, count in COUNTS.items():
            for _ in range(count):
                noop.apply_async(queue=queue, priority=priority)
    finally:
        app.close()


# --- per-priority counts, totals, urgency, head age ---------------------------------------


#: What each generation's management API gives for a classic x-max-priority 10 queue holding
#: COUNTS: depths by priority label (None: no label), and the level the head age is on.
PRIORITY_LEVELS_EXPECTED = {
    # 3.10: per-level counts (backing_queue_status); the head age on level 10, served first.
    "rabbitmq-3": ({str(p): float(n) for p, n in COUNTS.items()}, "10"),
    # 4.0: no backing_queue_status: one total, and the age without a priority label.
    "rabbitmq-4": ({None: float(sum(COUNTS.values()))}, None),
}


@pytest.mark.rabbitmq
def test_priority_levels_exact_from_management_totals_from_amqp(
    rabbitmq_generation, generation_vhost, unique_name
):
    queue = unique_name
    url = rabbitmq_generation.url(generation_vhost)
    levels, age_level = PRIORITY_LEVELS_EXPECTED[rabbitmq_generation.name]
    instrumentation.install(None)  # stamps the AMQP timestamp property
    try:
        published_at = time.time()
        publish_levels(url, queue)
    finally:
        instrumentation.uninstall()
    total = sum(COUNTS.values())
    exporter = exporter_for(rabbitmq_generation, generation_vhost, "--queue", queue)
    try:
        # The first statistics of a new queue come in pieces: its total (messages_ready)
        # can come a scrape before its per-level counts (backing_queue_status), and those
        # before its unacked count: wait for the per-level counts and the unacked count.
        samples = scrape_until(
            exporter,
            lambda s: (
                depth_by_level(s, queue) == levels
                and any(
                    ("queue", queue) in labels
                    for labels in samples_named(s, "celery_queue_reserved_messages")
                )
            ),
            what=f"management statistics of the new queue: {levels}",
            show=lambda s: depth_by_level(s, queue),
        )
    finally:
        exporter.close()
    assert depth_by_level(samples, queue) == levels
    assert sample_value(samples, "celery_rabbitmq_management_api_up", broker="rmq") == 1
    assert sample_value(samples, "celery_broker_up", broker="rmq") == 1
    assert sample_value(samples, "celery_queue_max_priority", broker="rmq", queue=queue) == 10
    assert sample_value(samples, "celery_queue_missing", broker="rmq", queue=queue) == 0
    assert sample_value(samples, "celery_queue_consumers", broker="rmq", queue=queue) == 0
    assert sample_value(samples, "celery_queue_reserved_messages", broker="rmq", queue=queue) == 0
    assert sample_value(samples, "celery_broker_reserved_messages", broker="rmq") == 0
    # On RabbitMQ the highest number is served first: 10 is the most urgent level (every level
    # holds messages here, so the levels in use are the declared extremes on both generations).
    ranks = {
        (dict(labels)["priority"], dict(labels)["urgency"]): value
        for labels, value in samples_named(samples, "celery_queue_priority_urgency_rank").items()
        if ("queue", queue) in labels
    }
    assert ranks == {("10", "most"): 0.0, ("0", "least"): 10.0}
    # head_message_timestamp is the head of the most urgent non-empty level (10) only.
    ages = {
        dict(labels).get("priority"): value
        for labels, value in samples_named(
            samples, "celery_queue_oldest_message_age_seconds"
        ).items()
        if ("queue", queue) in labels
    }
    assert set(ages) == {age_level}
    assert 0 <= ages[age_level] <= time.time() - int(published_at) + 1

    # AMQP alone: exact total, no priority label, no invented per-level zeros.
    amqp_only = exporter_for(
        rabbitmq_generation, generation_vhost, "--queue", queue, "--management-api", "never"
    )
    try:
        samples = scrape(amqp_only)
    finally:
        amqp_only.close()
    assert samples_named(samples, "celery_queue_messages") == {
        frozenset({("broker", "rmq"), ("queue", queue)}): float(total)
    }
    assert sample_value(samples, "celery_rabbitmq_management_api_up", broker="rmq") == 0
    assert sample_value(samples, "celery_queue_consumers", broker="rmq", queue=queue) == 0
    assert not samples_named(samples, "celery_queue_priority_urgency_rank")
    assert not samples_named(samples, "celery_queue_oldest_message_age_seconds")
    assert not samples_named(samples, "celery_queue_reserved_messages")


@pytest.mark.rabbitmq
def test_queue_without_stamps_or_priorities_has_one_unlabelled_series(
    rabbitmq_generation, generation_vhost, unique_name
):
    queue = unique_name
    with amqp(rabbitmq_generation.url(generation_vhost)) as channel:
        channel.queue_declare(queue)
        for _ in range(3):
            channel.basic_publish("", queue, b"{}")
    exporter = exporter_for(rabbitmq_generation, generation_vhost, "--queue", queue)
    try:
        samples = scrape_until(
            exporter,
            lambda s: sample_value(s, "celery_queue_messages", broker="rmq", queue=queue) == 3,
            what="3 ready messages",
        )
    finally:
        exporter.close()
    assert [dict(labels) for labels in samples_named(samples, "celery_queue_messages")] == [
        {"broker": "rmq", "queue": queue}
    ]
    assert sample_value(samples, "celery_queue_max_priority", broker="rmq", queue=queue) is None
    assert not samples_named(samples, "celery_queue_oldest_message_age_seconds")
    assert not samples_named(samples, "celery_queue_priority_urgency_rank")


# --- reserved work and consumers ----------------------------------------------------------

WORKER_APP = textwrap.dedent(
    """
    import os, time
    from celery import Celery
    from kombu import Exchange, Queue

    QUEUE = os.environ["CQE_QUEUE"]
    app = Celery("cqe_rmq_worker", broker=os.environ["CQE_BROKER"])
    app.conf.task_queues = [
        Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE, queue_arguments={"x-max-priority": 10})
    ]
    app.conf.task_default_queue = QUEUE
    app.conf.task_acks_late = True
    app.conf.worker_prefetch_multiplier = 2
    app.conf.broker_connection_retry_on_startup = True

    @app.task(name="cqe.block")
    def block(release_file):
        while not os.path.exists(release_file):
            time.sleep(0.05)
    """
)


@pytest.mark.rabbitmq
def test_consumer_holding_unacked_messages(
    rabbitmq_generation, generation_vhost, unique_name, tmp_path
):
    """A real worker (solo pool, prefetch 2, acks late) runs one blocking task and holds a
    second: 2 unacknowledged, 1 consumer, the rest ready."""
    queue = unique_name
    url = rabbitmq_generation.url(generation_vhost)
    (tmp_path / "cqe_rmq_worker.py").write_text(WORKER_APP)
    release = tmp_path / "release"
    env = dict(os.environ, CQE_QUEUE=queue, CQE_BROKER=url, PYTHONPATH=str(tmp_path))
    app, _ = celery_app(url, queue)
    try:
        for _ in range(5):
            app.send_task("cqe.block", args=[str(release)], queue=queue)
    finally:
        app.close()
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "cqe_rmq_worker", "worker",
            "--pool", "solo", "-c", "1", "-Q", queue, "-n", f"{queue}@localhost",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    exporter = exporter_for(rabbitmq_generation, generation_vhost, "--queue", queue)
    try:
        samples = scrape_until(
            exporter,
            lambda s: (
                sample_value(s, "celery_queue_reserved_messages", broker="rmq", queue=queue) == 2
                and sample_value(s, "celery_queue_consumers", broker="rmq", queue=queue) == 1
            ),
            what="the worker holding 2 unacked messages",
            timeout=40,
        )
        assert sample_value(samples, "celery_broker_reserved_messages", broker="rmq") == 2
        ready = sum(
            value
            for labels, value in samples_named(samples, "celery_queue_messages").items()
            if ("queue", queue) in labels
        )
        assert ready == 3
        utilisation = sample_value(
            samples, "celery_queue_consumer_utilisation_ratio", broker="rmq", queue=queue
        )
        assert utilisation is not None and 0.0 <= utilisation <= 1.0
    finally:
        exporter.close()
        release.write_text("go")
        worker.terminate()
        worker.wait(timeout=30)


# --- management API unreachable -----------------------------------------------------------


@pytest.mark.rabbitmq
def test_management_unreachable_falls_back_to_amqp(
    rabbitmq_generation, generation_vhost, unique_name, caplog
):
    queue = unique_name
    url = rabbitmq_generation.url(generation_vhost)
    with amqp(url) as channel:
        channel.queue_declare(queue, arguments={"x-max-priority": 10})
        for priority in (0, 9, 9):
            channel.basic_publish("", queue, b"{}", pika.BasicProperties(priority=priority))
    closed = f"http://127.0.0.1:{free_port()}"
    exporter = build_exporter(
        "--broker-url", f"rmq={url}", "--queue", queue, "--management-url", closed
    )
    try:
        samples = scrape(exporter)
    finally:
        exporter.close()
    assert sample_value(samples, "celery_broker_up", broker="rmq") == 1
    assert sample_value(samples, "celery_rabbitmq_management_api_up", broker="rmq") == 0
    assert samples_named(samples, "celery_queue_messages") == {
        frozenset({("broker", "rmq"), ("queue", queue)}): 3.0
    }
    assert sample_value(samples, "celery_queue_consumers", broker="rmq", queue=queue) == 0
    assert sample_value(samples, "celery_queue_missing", broker="rmq", queue=queue) == 0
    assert f"management API {closed} unreachable" in caplog.text

    # management: always means no fallback: the broker is reported down.
    strict = build_exporter(
        "--broker-url", f"rmq={url}", "--queue", queue,
        "--management-url", closed, "--management-api", "always",
    )  # fmt: skip
    try:
        samples = scrape(strict)
    finally:
        strict.close()
    assert sample_value(samples, "celery_broker_up", broker="rmq") == 0
    assert not samples_named(samples, "celery_queue_messages")


# --- missing queue ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "never"])
@pytest.mark.rabbitmq
def test_missing_queue_reported_and_never_created(
    rabbitmq_generation, generation_vhost, unique_name, mode
):
    queue = f"{unique_name}-absent"
    present = unique_name
    url = rabbitmq_generation.url(generation_vhost)
    with amqp(url) as channel:
        channel.queue_declare(present)
    exporter = exporter_for(
        rabbitmq_generation, generation_vhost, "--queue", f"{queue},{present}",
        "--management-api", mode,
    )  # fmt: skip
    try:
        # Twice: after the 404 closed the channel, the next scrape still works.
        scrape(exporter)
        samples = scrape(exporter)
    finally:
        exporter.close()
    assert sample_value(samples, "celery_broker_up", broker="rmq") == 1
    assert sample_value(samples, "celery_queue_missing", broker="rmq", queue=queue) == 1
    assert sample_value(samples, "celery_queue_missing", broker="rmq", queue=present) == 0
    assert not [
        labels
        for labels in samples_named(samples, "celery_queue_messages")
        if ("queue", queue) in labels
    ]
    # The queue after the present one was still inspected (channel reopened after 404).
    assert not queue_exists(url, queue)
    assert management_queue(rabbitmq_generation, generation_vhost, queue).status_code == 404


# --- discovery ----------------------------------------------------------------------------


@pytest.mark.rabbitmq
def test_discovery_lists_vhost_queues_without_celery_internals(
    rabbitmq_generation, generation_vhost, unique_name
):
    task_queue = unique_name
    internal = [f"celeryev.{unique_name}", f"{unique_name}.celery.pidbox"]
    with amqp(rabbitmq_generation.url(generation_vhost)) as channel:
        for name in [task_queue, *internal]:
            channel.queue_declare(name, auto_delete=False)
        channel.basic_publish("", task_queue, b"{}")
    exporter = exporter_for(rabbitmq_generation, generation_vhost, "--discover-queues")
    try:
        samples = scrape_until(
            exporter,
            lambda s: sample_value(s, "celery_queue_messages", broker="rmq", queue=task_queue) == 1,
            what="the discovered queue with 1 message",
        )
    finally:
        exporter.close()
    watched = {dict(labels)["queue"] for labels in samples_named(samples, "celery_queue_missing")}
    # The vhost is the test's own: the task queue is all there is to watch.
    assert watched == {task_queue}
    assert not any(is_internal_queue(name) for name in watched)


# --- credentials --------------------------------------------------------------------------


@pytest.mark.rabbitmq
def test_wrong_credentials_name_the_broker_and_hide_the_password(rabbitmq_generation, tmp_path):
    password = "Wr0ng-s3cret-" + os.urandom(4).hex()
    port = rabbitmq_generation.amqp_port
    config = tmp_path / "exporter.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            brokers:
              - name: rmq-wrong
                url: "amqp://guest@127.0.0.1:{port}//"
                management_url: "{rabbitmq_generation.management_url}"
                password_env: CQE_TEST_RMQ_PASSWORD
                queues: [celery]
              - name: rmq-inline
                url: "amqp://guest:{password}@127.0.0.1:{port}/%2F"
                management: never
                queues: [celery]
            """
        )
    )
    env = dict(os.environ, CQE_TEST_RMQ_PASSWORD=password)
    result = subprocess.run(
        [sys.executable, "-m", "celery_queue_exporter", "--config", str(config), "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert password not in result.stdout
    assert password not in result.stderr
    for name in ("rmq-wrong", "rmq-inline"):
        assert f'celery_broker_up{{broker="{name}"}} 0.0' in result.stdout
        assert f"broker {name}: inspection failed: " in result.stderr
    # auto mode: the management API refuses (401), then AMQP refuses the login.
    assert "login refused for user 'guest' (wrong user name or password)" in result.stderr
    assert f"RabbitMQ broker rmq-wrong (amqp://127.0.0.1:{port}//)" in result.stderr
    assert "Traceback" not in result.stderr


# --- URL forms ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/", "//", "/%2F"])
@pytest.mark.rabbitmq
def test_default_vhost_url_forms_reach_the_broker(rabbitmq_generation, unique_name, path):
    """The default vhost, however the URL spells it (the queue's name is unique there)."""
    queue = unique_name
    rabbitmq_url = rabbitmq_generation.url("/")
    with amqp(rabbitmq_url) as channel:
        channel.queue_declare(queue)
        channel.basic_publish("", queue, b"{}")
    try:
        config = new_broker(
            name="rmq",
            url=f"pyamqp://guest:guest@127.0.0.1:{rabbitmq_generation.amqp_port}{path}",
            queues=[queue],
            discover_queues=False,
            management="never",
        )
        inspector = RabbitMQInspector(config, timeout_seconds=5)
        try:
            snapshot = inspector.inspect()
        finally:
            inspector.close()
        assert [(level.queue, level.priority, level.messages) for level in snapshot.levels] == [
            (queue, None, 1)
        ]
    finally:
        delete_queues(rabbitmq_url, queue)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://u:p@h:5673/vh", (False, "h", 5673, "u", "p", "vh")),
        ("amqp://h", (False, "h", 5672, "guest", "guest", "/")),
        ("amqp://u:p@h//", (False, "h", 5672, "u", "p", "/")),
        ("amqp://u:p@h/%2F", (False, "h", 5672, "u", "p", "/")),
        ("amqp://u:p%40ss@h/a%2Fb", (False, "h", 5672, "u", "p@ss", "a/b")),
        ("amqps://u:p@h/vh", (True, "h", 5671, "u", "p", "vh")),
        ("pyamqp://u:p@[::1]:5670/", (False, "::1", 5670, "u", "p", "/")),
    ],
)
def test_parse_amqp_url(url, expected):
    target = parse_amqp_url(url)
    assert (target.tls, target.host, target.port, target.user, target.password, target.vhost) == (
        expected
    )
    assert "s3cret" not in repr(parse_amqp_url("amqp://u:s3cret@h/"))


def test_password_from_config_replaces_the_url_password():
    config = new_broker(name="r", url="amqps://svc@rabbit.internal/prod", password="s3cr:t/")
    target = parse_amqp_url(config.connect_url())
    assert (target.user, target.password, target.vhost, target.port) == (
        "svc",
        "s3cr:t/",
        "prod",
        5671,
    )
    inspector = RabbitMQInspector(config, timeout_seconds=1)
    assert inspector.management_url == "https://rabbit.internal:15671"
    assert "s3cr" not in repr(config) and "s3cr" not in inspector.where


# --- per-level parsing of management entries (pure logic; the classic-queue path is also
# --- covered against the real broker above) -----------------------------------------------


def test_queue_levels_from_each_broker_generation():
    classic = {"backing_queue_status": {"priority_lengths": {"0": 4, "2": 1, "1": 0}}}
    assert queue_levels(classic) == ([("0", 4), ("1", 0), ("2", 1)], ["2", "1", "0"])
    quorum_40 = {"messages_ready_high": 2, "messages_ready_normal": 7}
    assert queue_levels(quorum_40) == ([("high", 2), ("normal", 7)], ["high", "normal"])
    quorum_43 = {"messages_by_priority": {"0": 3, "31": 1}, "messages_ready_high": 1}
    assert queue_levels(quorum_43) == ([("0", 3), ("31", 1)], ["31", "0"])
    # 3.12.7+ classic queues: no per-priority data; malformed data is not guessed at.
    assert queue_levels({"backing_queue_status": {"len": 5}, "messages_ready": 5}) is None
    assert queue_levels({"backing_queue_status": {"priority_lengths": {"x": 1}}}) is None
    assert queue_levels({"messages_ready_high": 2}) is None


@pytest.mark.rabbitmq
def test_text_exposition_of_a_rabbitmq_scrape_has_no_credentials(rabbitmq_generation, unique_name):
    port = rabbitmq_generation.amqp_port
    exporter = build_exporter(
        "--broker-url", f"rmq=amqp://guest:guest@127.0.0.1:{port}//", "--queue", unique_name,
        "--management-api", "never",
    )  # fmt: skip
    try:
        text = scrape_text(exporter)
    finally:
        exporter.close()
    assert (
        'celery_broker_info{broker="rmq",transport="rabbitmq",'
        f'url="amqp://127.0.0.1:{port}//"}}' in text
    )
    assert "guest" not in text


def test_newer_rabbitmq_without_priority_lengths_keeps_levels_selectable():
    """RabbitMQ 3.12.7+/3.13 classic queues report no per-level counts: one series without the
    priority label, but the most/least urgent levels still come from x-max-priority. Discovery
    skips server-named, exclusive and auto-delete queues (reply and rpc-result queues)."""
    inspector = RabbitMQInspector(
        new_broker(name="r313", url="amqp://guest:guest@127.0.0.1:5672//")
    )
    entries = [
        {
            "name": "evals",
            "arguments": {"x-max-priority": 10},
            "messages_ready": 7,
            "messages_unacknowledged": 2,
            "consumers": 1,
        },
        {"name": "plain", "arguments": {}, "messages_ready": 3},
        {"name": "amq.gen-Xy1", "arguments": {}, "messages_ready": 0},
        {"name": "4b1d0c2e-rpc", "exclusive": True, "arguments": {}, "messages_ready": 0},
        {"name": "reply.tmp", "auto_delete": True, "arguments": {}, "messages_ready": 0},
    ]
    snapshot = inspector.management.snapshot_from_entries(entries)
    assert [(lv.queue, lv.priority, lv.messages) for lv in snapshot.levels] == [
        ("evals", None, 7),
        ("plain", None, 3),
    ]
    assert [(u.queue, u.priority, u.rank, u.urgency) for u in snapshot.urgency] == [
        ("evals", "10", 0, "most"),
        ("evals", "0", 10, "least"),
    ]
    assert snapshot.queues["evals"].max_priority == 10
    inspector.close()


# --- urgency from the levels in use, unstamped heads (issue 13) ----------------------------


def urgency_marks(samples: dict, queue: str) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["priority"], dict(labels)["urgency"]): value
        for labels, value in samples_named(samples, "celery_queue_priority_urgency_rank").items()
        if ("queue", queue) in labels
    }


def unstamped_series(samples: dict, queue: str) -> dict[str | None, float]:
    return {
        dict(labels).get("priority"): value
        for labels, value in samples_named(samples, "celery_queue_oldest_message_unstamped").items()
        if ("queue", queue) in labels
    }


def publish_at(url: str, queue: str, priorities: dict[int, int]) -> None:
    app, noop = celery_app(url, queue)
    try:
        for priority, count in priorities.items():
            for _ in range(count):
                noop.apply_async(queue=queue, priority=priority)
    finally:
        app.close()


def classic_levels(counts: dict[int, int]) -> dict[str | None, float]:
    """The depths 3.10 reports for a classic x-max-priority 10 queue holding ``counts``."""
    return {str(level): float(counts.get(level, 0)) for level in range(11)}


#: Messages at 9 (2) and 0 (3) of an x-max-priority 10 queue: its depths, and the levels marked
#: most and least urgent without a config.
URGENCY_EXPECTED = {
    # 3.10: the per-level counts show which levels are in use.
    "rabbitmq-3": (classic_levels({9: 2, 0: 3}), {("9", "most"): 1.0, ("0", "least"): 10.0}),
    # 4.0: one total, nothing tells the levels in use apart: the declared extremes are marked.
    "rabbitmq-4": ({None: 5.0}, {("10", "most"): 0.0, ("0", "least"): 10.0}),
}


@pytest.mark.rabbitmq
def test_urgency_marks_the_levels_in_use_not_x_max_priority(
    rabbitmq_generation, generation_vhost, unique_name, tmp_path
):
    """x-max-priority 10, messages at 9 and 0 only: 9 is the most urgent level in use (rank 1:
    10 would be served first, nobody publishes there), 0 the least, where the broker reports
    the levels (3.10). A fresh empty queue keeps the declared extremes; the config's
    priority_levels wins over what was seen, on every generation."""
    queue, fresh = unique_name, unique_name + "-fresh"
    url = rabbitmq_generation.url(generation_vhost)
    depths, marks = URGENCY_EXPECTED[rabbitmq_generation.name]
    publish_at(url, queue, {9: 2, 0: 3})
    app, _ = celery_app(url, fresh)
    try:
        with app.connection_for_write() as connection:
            app.amqp.queues[fresh](connection.default_channel).declare()
    finally:
        app.close()
    exporter = exporter_for(rabbitmq_generation, generation_vhost, "--queue", f"{queue},{fresh}")
    try:
        samples = scrape_until(
            exporter,
            lambda s: depth_by_level(s, queue) == depths,
            what=f"5 ready messages at 9 and 0: {depths}",
            show=lambda s: depth_by_level(s, queue),
        )
    finally:
        exporter.close()
    assert urgency_marks(samples, queue) == marks
    assert urgency_marks(samples, fresh) == {("10", "most"): 0.0, ("0", "least"): 10.0}
    assert sample_value(samples, "celery_queue_max_priority", broker="rmq", queue=fresh) == 10

    config = tmp_path / "config.yaml"
    config.write_text(
        f"brokers:\n  - name: rmq\n    url: {url}\n"
        f"    management_url: {rabbitmq_generation.management_url}\n"
        f"    queues: [{queue}, {fresh}]\n"
        f"    priority_levels: {{{queue}: {{most: 5, least: 1}}, {fresh}: {{most: 9}}}}\n"
    )
    exporter = build_exporter("--config", str(config))
    try:
        samples = scrape_until(
            exporter, lambda s: depth_by_level(s, queue) == depths, what=f"depths {depths}"
        )
    finally:
        exporter.close()
    assert urgency_marks(samples, queue) == {("5", "most"): 5.0, ("1", "least"): 9.0}
    assert urgency_marks(samples, fresh) == {("9", "most"): 1.0, ("0", "least"): 10.0}


#: A queue whose head at 7 was published without install(app), 2 more at 2 with it, and one
#: stamped throughout (7: 1, 2: 2): each queue's depths, and the level of its head's series.
UNSTAMPED_EXPECTED = {
    # 3.10: per-level counts; the head is level 7's, the most urgent non-empty level.
    "rabbitmq-3": (classic_levels({7: 1, 2: 2}), "7"),
    # 4.0: one total; the same head (RabbitMQ serves 7 first), without a priority label.
    "rabbitmq-4": ({None: 3.0}, None),
}


@pytest.mark.rabbitmq
def test_unstamped_head_of_the_most_urgent_non_empty_level(
    rabbitmq_generation, generation_vhost, unique_name
):
    """head_message_timestamp belongs to the most urgent non-empty level: its head published
    without install(app) reads 1, with it 0; no other level of the queue gets the series."""
    bare, stamped = unique_name + "-bare", unique_name + "-stamped"
    url = rabbitmq_generation.url(generation_vhost)
    depths, head_level = UNSTAMPED_EXPECTED[rabbitmq_generation.name]
    publish_at(url, bare, {7: 1})
    instrumentation.install(None)  # stamps the AMQP timestamp property
    try:
        publish_at(url, bare, {2: 2})  # less urgent than 7: not at the head
        publish_at(url, stamped, {7: 1, 2: 2})
    finally:
        instrumentation.uninstall()
    exporter = exporter_for(rabbitmq_generation, generation_vhost, "--queue", f"{bare},{stamped}")
    try:
        samples = scrape_until(
            exporter,
            lambda s: (
                depth_by_level(s, bare) == depths
                and depth_by_level(s, stamped) == depths
                and unstamped_series(s, stamped) == {head_level: 0.0}
                # the head's timestamp can come a scrape after the per-level counts
                and unstamped_series(s, bare) != {}
            ),
            what=f"{depths} in each queue and both heads",
            show=lambda s: (unstamped_series(s, bare), unstamped_series(s, stamped)),
        )
    finally:
        exporter.close()
    assert unstamped_series(samples, bare) == {head_level: 1.0}
    assert unstamped_series(samples, stamped) == {head_level: 0.0}


#: One message in a quorum queue: its depths on each generation.
QUORUM_DEPTH_EXPECTED = {
    # 3.10: one ready count.
    "rabbitmq-3": {None: 1.0},
    # 4.0: the levels the queue serves (published without a priority: normal), and the
    # requeued messages apart (none here).
    "rabbitmq-4": {"high": 0.0, "normal": 1.0, "returned": 0.0},
}


@pytest.mark.rabbitmq
def test_quorum_queue_gets_no_unstamped_series(rabbitmq_generation, generation_vhost, unique_name):
    """RabbitMQ reports no head_message_timestamp for quorum (and stream) queues at all: its
    absence does not blame the producers, so a quorum queue gets no unstamped series while its
    depth is exported. A classic queue beside it, unstamped too, reads 1 in the same scrape."""
    quorum, classic = unique_name + "-quorum", unique_name + "-classic"
    depths = QUORUM_DEPTH_EXPECTED[rabbitmq_generation.name]
    with amqp(rabbitmq_generation.url(generation_vhost)) as channel:
        channel.confirm_delivery()  # a quorum queue holds a message once it is confirmed
        channel.queue_declare(quorum, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_declare(classic)
        channel.basic_publish("", quorum, b"{}")
        channel.basic_publish("", classic, b"{}")
    exporter = exporter_for(rabbitmq_generation, generation_vhost, "--queue", f"{quorum},{classic}")
    try:
        samples = scrape_until(
            exporter,
            lambda s: (
                depth_by_level(s, quorum) == depths and unstamped_series(s, classic) == {None: 1.0}
            ),
            what=f"the quorum queue's message {depths} and the classic queue's head",
            show=lambda s: (depth_by_level(s, quorum), unstamped_series(s, classic)),
            timeout=60.0,
        )
    finally:
        exporter.close()
    assert depth_by_level(samples, quorum) == depths
    assert unstamped_series(samples, quorum) == {}


@pytest.mark.rabbitmq
def test_unstamped_head_of_a_queue_without_priorities(
    rabbitmq_generation, generation_vhost, unique_name
):
    """No per-level counts: the series without the priority label; an empty queue has none."""
    bare, stamped, empty = (unique_name + suffix for suffix in ("-bare", "-stamped", "-empty"))
    with amqp(rabbitmq_generation.url(generation_vhost)) as channel:
        for name in (bare, stamped, empty):
            channel.queue_declare(name)
        channel.basic_publish("", bare, b"{}")
        channel.basic_publish("", stamped, b"{}", pika.BasicProperties(timestamp=int(time.time())))
    exporter = exporter_for(
        rabbitmq_generation, generation_vhost, "--queue", f"{bare},{stamped},{empty}"
    )
    try:
        samples = scrape_until(
            exporter,
            lambda s: (
                unstamped_series(s, bare) == {None: 1.0}
                and unstamped_series(s, stamped) == {None: 0.0}
            ),
            what="both heads in the statistics",
        )
    finally:
        exporter.close()
    assert sample_value(samples, "celery_queue_messages", broker="rmq", queue=empty) == 0
    assert unstamped_series(samples, empty) == {}
