"""RabbitMQ counts from the rabbitmq_prometheus plugin (issue 25), against a real private node.

The machine's brokers never get a plugin enabled here: each test module starts its own node
with rabbitmq_management and rabbitmq_prometheus (testsupport/rabbitmq_node.py), and each test
a vhost of its own on it. The values the plugin path exports must be those the management path
exports for the same queues; the management API's /api/queues is read only when needed
(celery_rabbitmq_management_queue_reads_total counts it); a closed plugin port falls back to
the API without failing the broker.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pika
import pytest

from celery_queue_exporter.brokers.rabbitmq.nodes import PLUGIN_NODES_MAX_AGE_SECONDS
from celery_queue_exporter.brokers.rabbitmq.prometheus_plugin import (
    joined_entries,
    named_as_the_api,
    needs_management,
    parse_detailed,
)
from monitoring.config import load as load_monitoring
from monitoring.config import parse_duration
from testsupport.exporter import build_exporter, scrape, scrape_until
from testsupport.exposition import sample_value
from testsupport.net import free_port
from testsupport.rabbitmq import create_vhost, delete_vhost
from testsupport.rabbitmq_node import RabbitMQNode, running_node

#: A queue name with every character the text format escapes (and braces).
ODD_NAME = 'odd "name" \\ with {braces}'
#: The figures each test compares between the two paths.
COUNTS = ("celery_queue_messages", "celery_queue_reserved_messages", "celery_queue_consumers")


@pytest.fixture(scope="module")
def plugin_node() -> Iterator[RabbitMQNode]:
    """A private node with the management API and rabbitmq_prometheus (one per module: a node
    takes seconds to start)."""
    with running_node(prometheus=True) as node:
        yield node


@pytest.fixture
def node_vhost(plugin_node: RabbitMQNode) -> Iterator[str]:
    """A vhost of its own on the private node, guest allowed."""
    api = f"{plugin_node.management_url}/api"
    name = create_vhost(f"cqe-test-{uuid.uuid4().hex[:10]}", api)
    try:
        yield name
    finally:
        delete_vhost(name, api)


def _amqp_url(node: RabbitMQNode, vhost: str) -> str:
    return f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/{quote(vhost, safe='')}"


def _exporter(node: RabbitMQNode, vhost: str, queues: list[str], *extra: str):
    args = ["--broker-url", f"rmq={_amqp_url(node, vhost)}"]
    for queue in queues:
        args += ["--queue", queue]
    return build_exporter(*args, "--management-url", node.management_url, *extra)


def _counts(samples: dict, queues: list[str]) -> dict[tuple[str, str, str | None], float | None]:
    """The compared figures of ``queues``: (metric, queue, priority) -> value."""
    found: dict[tuple[str, str, str | None], float | None] = {}
    for (name, labels), value in samples.items():
        labels = dict(labels)
        if name in COUNTS and labels.get("queue") in queues:
            found[(name, labels["queue"], labels.get("priority"))] = value
    return found


#: Series from a queue's facts alone (quorum.queue_samples), kept between facts reads.
FACTS = (
    "celery_queue_type_info",
    "celery_queue_dead_letter_configured",
    "celery_queue_redelivered_total",
    "celery_queue_delivery_limit",
)


def _facts(samples: dict, queues: list[str]) -> dict[tuple[str, str, str | None], float | None]:
    """The fact series of ``queues``: (metric, queue, type) -> value."""
    found: dict[tuple[str, str, str | None], float | None] = {}
    for (name, labels), value in samples.items():
        labels = dict(labels)
        if name in FACTS and labels.get("queue") in queues:
            found[(name, labels["queue"], labels.get("type"))] = value
    return found


def _reads(samples: dict) -> float | None:
    return sample_value(samples, "celery_rabbitmq_management_queue_reads_total", broker="rmq")


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_plugin_counts_equal_the_management_api_and_spare_its_reads(plugin_node, node_vhost):
    """Two classic queues (one with a consumer holding 2 unacknowledged messages, one with an
    odd name): ready, unacknowledged and consumer counts through the plugin equal the
    management path's, and once the API's facts are read, scrapes do not call /api/queues."""
    busy, idle = "busy", ODD_NAME
    connection = pika.BlockingConnection(pika.URLParameters(_amqp_url(plugin_node, node_vhost)))
    try:
        channel = connection.channel()
        for queue in (busy, idle):
            channel.queue_declare(queue, durable=True)
        for _ in range(4):
            channel.basic_publish("", busy, b"x")
        for _ in range(3):
            channel.basic_publish("", idle, b"x")
        consumer = connection.channel()
        consumer.basic_qos(prefetch_count=2)
        consumer.basic_consume(busy, lambda *args: None)  # never acks: 2 stay unacknowledged
        connection.process_data_events(time_limit=0.5)
        expected = {
            ("celery_queue_messages", busy, None): 2.0,
            ("celery_queue_reserved_messages", busy, None): 2.0,
            ("celery_queue_consumers", busy, None): 1.0,
            ("celery_queue_messages", idle, None): 3.0,
            ("celery_queue_reserved_messages", idle, None): 0.0,
            ("celery_queue_consumers", idle, None): 0.0,
        }
        queues = [busy, idle]
        api_only = _exporter(plugin_node, node_vhost, queues)
        with_plugin = _exporter(
            plugin_node, node_vhost, queues, "--prometheus-url", plugin_node.prometheus_url
        )
        try:
            by_api = scrape_until(
                api_only,
                lambda s: _counts(s, queues) == expected,
                what="the management path's counts",
                show=lambda s: _counts(s, queues),
            )
            by_plugin = scrape_until(
                with_plugin,
                lambda s: _counts(s, queues) == expected,
                what="the plugin path's counts",
                show=lambda s: _counts(s, queues),
            )
            assert _counts(by_plugin, queues) == _counts(by_api, queues) == expected
            assert sample_value(by_plugin, "celery_rabbitmq_prometheus_plugin_up", broker="rmq")
            assert (
                sample_value(
                    by_plugin, "celery_rabbitmq_prometheus_plugin_failures_total", broker="rmq"
                )
                == 0
            )
            # The management path has no plugin series at all.
            plugin_up = "celery_rabbitmq_prometheus_plugin_up"
            assert sample_value(by_api, plugin_up, broker="rmq") is None
            # Facts read once (at the first scrape); the steady state reads the plugin only.
            reads = _reads(by_plugin)
            again = scrape(with_plugin)
            assert _counts(again, queues) == expected
            assert _reads(again) == reads
            # The queues' facts (type, dead-lettering, redeliveries), kept between facts reads,
            # are those of the management path: classic, none, none redelivered.
            cached = scrape(with_plugin)  # the second steady scrape: from the cache
            assert _reads(cached) == reads
            assert (
                _facts(cached, queues)
                == _facts(again, queues)
                == _facts(by_api, queues)
                == {
                    ("celery_queue_type_info", busy, "classic"): 1.0,
                    ("celery_queue_type_info", idle, "classic"): 1.0,
                    ("celery_queue_dead_letter_configured", busy, None): 0.0,
                    ("celery_queue_dead_letter_configured", idle, None): 0.0,
                    ("celery_queue_redelivered_total", busy, None): 0.0,
                    ("celery_queue_redelivered_total", idle, None): 0.0,
                }
            )
            assert _reads(scrape(with_plugin)) == reads
            # A new queue in the vhost: the plugin lists it, the facts do not: read once more.
            channel.queue_declare("late", durable=True)
            scrape_until(
                with_plugin,
                lambda s: _reads(s) > reads,
                what="one more /api/queues read after a queue was declared",
                show=_reads,
            )
        finally:
            api_only.close()
            with_plugin.close()
    finally:
        connection.close()


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_per_priority_counts_still_come_from_the_management_api(plugin_node, node_vhost):
    """RabbitMQ 3.10 reports a classic priority queue's per-level counts only in /api/queues:
    with the plugin configured, every scrape still reads it (and only it: its answer carries
    the counts too), and the exported figures (levels, unacknowledged, consumers) are the
    management path's."""
    queue = "prioritised"
    connection = pika.BlockingConnection(pika.URLParameters(_amqp_url(plugin_node, node_vhost)))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True, arguments={"x-max-priority": 9})
        for priority in (0, 3, 9, 9):
            channel.basic_publish("", queue, b"x", pika.BasicProperties(priority=priority))
        levels = {
            ("celery_queue_messages", queue, str(level)): float(count)
            for level, count in enumerate([1, 0, 0, 1, 0, 0, 0, 0, 0, 2])
        }
        expected = {
            **levels,
            ("celery_queue_reserved_messages", queue, None): 0.0,
            ("celery_queue_consumers", queue, None): 0.0,
        }
        api_only = _exporter(plugin_node, node_vhost, [queue])
        with_plugin = _exporter(
            plugin_node, node_vhost, [queue], "--prometheus-url", plugin_node.prometheus_url
        )
        try:
            by_api = scrape_until(
                api_only,
                lambda s: _counts(s, [queue]) == expected,
                what="per-level counts by the management path",
                show=lambda s: _counts(s, [queue]),
            )
            by_plugin = scrape_until(
                with_plugin,
                lambda s: _counts(s, [queue]) == expected,
                what="per-level counts with the plugin",
                show=lambda s: _counts(s, [queue]),
            )
            assert _counts(by_plugin, [queue]) == _counts(by_api, [queue])
            reads = _reads(by_plugin)
            assert _reads(scrape(with_plugin)) == reads + 1
            last = scrape(with_plugin)
            assert _reads(last) == reads + 2
            # The plugin answered at the first scrape and was not asked since: still up.
            assert sample_value(last, "celery_rabbitmq_prometheus_plugin_up", broker="rmq") == 1
        finally:
            api_only.close()
            with_plugin.close()
    finally:
        connection.close()


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_a_closed_plugin_port_falls_back_to_the_management_api(plugin_node, node_vhost):
    """prometheus_url pointing at a closed port: the broker stays up with the management
    API's exact counts, celery_rabbitmq_prometheus_plugin_up is 0 and every scrape is counted
    as a plugin failure."""
    queue = "fallback"
    connection = pika.BlockingConnection(pika.URLParameters(_amqp_url(plugin_node, node_vhost)))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        for _ in range(5):
            channel.basic_publish("", queue, b"x")
        closed = f"http://127.0.0.1:{free_port()}"
        exporter = _exporter(plugin_node, node_vhost, [queue], "--prometheus-url", closed)
        try:
            first = scrape_until(
                exporter,
                lambda s: sample_value(s, "celery_queue_messages", broker="rmq", queue=queue) == 5,
                what="5 ready messages by the management API",
            )
            failures = sample_value(
                first, "celery_rabbitmq_prometheus_plugin_failures_total", broker="rmq"
            )
            assert failures is not None and failures >= 1
            assert sample_value(first, "celery_rabbitmq_prometheus_plugin_up", broker="rmq") == 0
            assert sample_value(first, "celery_broker_up", broker="rmq") == 1
            assert sample_value(first, "celery_rabbitmq_management_api_up", broker="rmq") == 1
            # Every scrape tries the plugin once, fails, and reads the API.
            reads = _reads(first)
            second = scrape(exporter)
            assert (
                sample_value(
                    second, "celery_rabbitmq_prometheus_plugin_failures_total", broker="rmq"
                )
                == failures + 1
            )
            assert _reads(second) == reads + 1
            assert sample_value(second, "celery_queue_messages", broker="rmq", queue=queue) == 5
        finally:
            exporter.close()
    finally:
        connection.close()


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_a_plugin_that_accepts_and_never_answers_falls_back_to_the_management_api(
    plugin_node, node_vhost
):
    """A hung plugin (a socket that accepts connections and never answers): the scrape gives
    up on it within its share of the scrape timeout, so the management API still answers in
    the same scrape (were the plugin to take the API's share, the scrape would fall back to
    AMQP: management_api_up 0) and its exact counts are exported; the broker stays up."""
    queue = "hung"
    connection = pika.BlockingConnection(pika.URLParameters(_amqp_url(plugin_node, node_vhost)))
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # the kernel completes the handshakes; nothing is ever read or written
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        for _ in range(2):
            channel.basic_publish("", queue, b"x")
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        exporter = _exporter(
            plugin_node, node_vhost, [queue], "--prometheus-url", url, "--scrape-timeout", "4"
        )
        try:
            samples = scrape_until(
                exporter,
                lambda s: sample_value(s, "celery_queue_messages", broker="rmq", queue=queue) == 2,
                what="2 ready messages by the management API",
            )
            assert sample_value(samples, "celery_rabbitmq_prometheus_plugin_up", broker="rmq") == 0
            assert sample_value(samples, "celery_broker_up", broker="rmq") == 1
            assert sample_value(samples, "celery_rabbitmq_management_api_up", broker="rmq") == 1
        finally:
            exporter.close()
    finally:
        hung.close()
        connection.close()


# --- pure logic, beside the real-node tests above ------------------------------------------


def test_parse_detailed_reads_its_vhost_names_as_written_and_skips_nan_heads():
    """The plugin (3.10) writes label values unescaped: a name is taken as written."""
    odd = 'a"b\\c {d}'
    text = "\n".join(
        [
            "# TYPE rabbitmq_detailed_queue_messages_ready gauge",
            f'rabbitmq_detailed_queue_messages_ready{{vhost="v",queue="{odd}"}} 7',
            'rabbitmq_detailed_queue_messages_ready{vhost="other",queue="x"} 9',
            'rabbitmq_detailed_queue_messages_ready{vhost="v2",queue="y"} 9',
            'rabbitmq_detailed_queue_messages_unacked{vhost="v",queue="q"} 2',
            'rabbitmq_detailed_queue_consumers{vhost="v",queue="q"} 1',
            'rabbitmq_detailed_queue_head_message_timestamp{vhost="v",queue="q"} NaN',
            f'rabbitmq_detailed_queue_head_message_timestamp{{vhost="v",queue="{odd}"}} 17',
            'rabbitmq_detailed_queue_process_reductions_total{vhost="v",queue="q"} 5',
            'rabbitmq_detailed_queue_consumers{vhost="v",queue="q"} not-a-number',
            'rabbitmq_detailed_queue_consumers{queue="q",vhost="v"} 4',
        ]
    )
    assert parse_detailed(text, "v") == {
        odd: {"name": odd, "messages_ready": 7, "head_message_timestamp": 17.0},
        "q": {"name": "q", "messages_unacknowledged": 2, "consumers": 1},
    }


def test_joined_entries_keep_the_facts_and_take_the_plugins_counts():
    facts = {
        "a": {"name": "a", "type": "classic", "messages_ready": 1, "head_message_timestamp": 5},
        "b": {"name": "b", "type": "classic", "messages_ready": 4},
    }
    plugin = {"a": {"name": "a", "messages_ready": 3}}
    assert joined_entries(facts, plugin) == [
        {"name": "a", "type": "classic", "messages_ready": 3},  # an old head is unknown now
        {"name": "b", "type": "classic", "messages_ready": 4},  # not listed: the API's
    ]
    # Facts read in the same scrape: what the plugin does not give keeps the API's value.
    assert joined_entries(facts, plugin, fresh=True)[0] == {
        "name": "a",
        "type": "classic",
        "messages_ready": 3,
        "head_message_timestamp": 5,
    }


def test_needs_management_only_for_what_the_api_alone_gives():
    facts = {
        "plain": {"name": "plain", "type": "classic"},
        "levels": {"name": "levels", "backing_queue_status": {"priority_lengths": {"0": 1}}},
        "quorum": {"name": "quorum", "type": "quorum"},
    }
    assert needs_management(facts, ["plain"]) is False
    assert needs_management(facts, ["plain", "levels"]) is True
    assert needs_management(facts, ["quorum"]) is True
    assert needs_management({**facts, "celery_delayed_3": {"type": "quorum"}}, ["plain"]) is True


def test_escaped_names_from_a_4_0_plugin_are_read_back_to_the_apis_names():
    """RabbitMQ 4.0.5's plugin escapes label values (seen on a real 4.0.5 node), 3.10's does
    not (the real-node test above): both end up under the API's name."""
    odd = 'odd "n" \\ x'
    escaped = 'odd \\"n\\" \\\\ x'
    facts = {odd: {"name": odd}, "plain": {"name": "plain"}}
    plugin = {escaped: {"name": escaped, "consumers": 1}, "plain": {"name": "plain"}}
    assert named_as_the_api(plugin, facts) == {
        odd: {"name": odd, "consumers": 1},
        "plain": {"name": "plain"},
    }
    unescaped = {odd: {"name": odd}, "plain": {"name": "plain"}}
    assert named_as_the_api(unescaped, facts) is unescaped
    # A name the API does not know either way stays as it is: the lists differ.
    stranger = {"new\\\\q": {"name": "new\\\\q"}}
    assert named_as_the_api(stranger, facts) == stranger


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_with_the_plugin_node_health_is_read_at_most_once_per_max_age(plugin_node, node_vhost):
    """/api/nodes costs about as much as the exporter's share of a plugin scrape: with the
    plugin it is read once per PLUGIN_NODES_MAX_AGE_SECONDS and its answer exported in between
    (the node series stay in every scrape); once that age has passed, read again. The lag is
    shorter than the node alerts' ``for:`` (CeleryRabbitMQResourceAlarm's is 1m)."""
    connection = pika.BlockingConnection(pika.URLParameters(_amqp_url(plugin_node, node_vhost)))
    try:
        connection.channel().queue_declare("celery", durable=True)
    finally:
        connection.close()
    exporter = _exporter(plugin_node, node_vhost, ["celery"], "--prometheus-url",
                         plugin_node.prometheus_url)  # fmt: skip
    try:
        (inspector,) = [state.inspector for state in exporter.queues._brokers]
        nodes = inspector.nodes
        now = [1000.0]
        nodes.clock = lambda: now[0]
        running = "celery_rabbitmq_node_running"
        for _ in range(3):
            samples = scrape(exporter)
            assert sample_value(samples, running, broker="rmq", node=plugin_node.nodename) == 1.0
        assert nodes.reads == 1
        now[0] += PLUGIN_NODES_MAX_AGE_SECONDS
        samples = scrape(exporter)
        assert sample_value(samples, running, broker="rmq", node=plugin_node.nodename) == 1.0
        assert nodes.reads == 2
    finally:
        exporter.close()
    # Every alert on the node series waits longer than the lag: it fires (and resolves) at
    # most PLUGIN_NODES_MAX_AGE_SECONDS late, never on a reading older than its own for:.
    alerts = load_monitoring()["alerts"]
    node_alerts = ("CeleryRabbitMQResourceAlarm", "CeleryRabbitMQPartitioned",
                   "CeleryRabbitMQNodeDown", "CeleryRabbitMQNodeNearLimit")  # fmt: skip
    for name in node_alerts:
        assert parse_duration(alerts[name]["for"]) > PLUGIN_NODES_MAX_AGE_SECONDS, name


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_without_the_plugin_node_health_is_read_every_scrape(plugin_node, node_vhost):
    """The management path keeps reading /api/nodes on every scrape (max age 0)."""
    exporter = _exporter(plugin_node, node_vhost, ["celery"])
    try:
        (inspector,) = [state.inspector for state in exporter.queues._brokers]
        for _ in range(3):
            samples = scrape(exporter)
            running = "celery_rabbitmq_node_running"
            assert sample_value(samples, running, broker="rmq", node=plugin_node.nodename) == 1.0
        assert inspector.nodes.max_age == 0.0
        assert inspector.nodes.reads == 3
    finally:
        exporter.close()


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_broker_specific_lines_are_byte_identical_to_rendering_their_samples(
    plugin_node, node_vhost
):
    """The broker-specific families (per-queue facts, the plugin's and the API's counters) are
    rendered from lines kept across scrapes: the same bytes as rendering their samples one by
    one, on a first scrape and on later ones (from the facts cache), with a queue name that
    needs escaping, gauges and counters (``_total``) alike."""
    from prometheus_client.metrics_core import Metric

    from celery_queue_exporter.exposition import render_text

    connection = pika.BlockingConnection(pika.URLParameters(_amqp_url(plugin_node, node_vhost)))
    try:
        connection.channel().queue_declare(ODD_NAME, durable=True)
    finally:
        connection.close()
    exporter = _exporter(plugin_node, node_vhost, [ODD_NAME], "--prometheus-url",
                         plugin_node.prometheus_url)  # fmt: skip
    collector = exporter.queues

    def plain(family: Metric) -> Metric:
        copy = Metric(family.name, family.documentation, family.type)
        copy.samples = list(family.samples)
        return copy

    escaped = 'queue="odd \\"name\\" \\\\ with {braces}"'
    try:
        for _ in range(3):
            families = list(collector.families(collector.inspect_all()))
            fast = render_text(families)
            assert fast == render_text([plain(family) for family in families])
            text = fast.decode()
            assert f'celery_queue_type_info{{broker="rmq",{escaped},type="classic"}} 1.0\n' in text
            assert f'celery_queue_redelivered_total{{broker="rmq",{escaped}}} 0.0\n' in text
            assert "# TYPE celery_queue_redelivered_total counter\n" in text
            assert 'celery_rabbitmq_prometheus_plugin_failures_total{broker="rmq"} 0.0\n' in text
    finally:
        exporter.close()
