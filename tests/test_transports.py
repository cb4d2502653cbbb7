"""Adding a transport touches only its own package plus one registry line.

The dummy transport below is what such a package holds (an inspector, an event consumer, a
URL scheme, one option and its typed options object, its priority semantics); ``register``
stands in for its line in brokers/registry.py. Config parsing, --help, the docs table, the CLI
(--once, in process) and both collectors then pick it up with nothing else changed. An unknown
scheme is an error that names the field, never a fall-through to another broker.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from celery_queue_exporter.brokers import Inspector, Transport, registry
from celery_queue_exporter.cli import Exporter, main
from celery_queue_exporter.config import ConfigError, values
from celery_queue_exporter.config.brokers import new_broker
from celery_queue_exporter.config.docs import render
from celery_queue_exporter.config.load import load_config
from celery_queue_exporter.config.options import Option
from celery_queue_exporter.config.parser import build_parser
from celery_queue_exporter.events.consumer import EventConsumerThread
from celery_queue_exporter.instrumentation import TASK_INFO_EVENT
from celery_queue_exporter.snapshot import BrokerSnapshot, LevelReading, urgency_readings
from testsupport.exposition import parse_exposition, sample_value
from testsupport.waiting import wait_for

SUPPORTED = "amqp, amqps, pyamqp, redis, rediss, sentinel"


class DummyInspector(Inspector):
    """A broker whose one queue holds ``depth`` messages at level "high" and 1 at "low"."""

    def inspect(self) -> BrokerSnapshot:
        snapshot = BrokerSnapshot(reserved_total=2)
        snapshot.levels.append(LevelReading("jobs", "high", self.config.options.depth, 4.5))
        snapshot.levels.append(LevelReading("jobs", "low", 1, 0.0))
        snapshot.urgency.extend(urgency_readings("jobs", ["high", "low"]))
        snapshot.queue("jobs").consumers = 3
        return snapshot


class DummyConsumer(EventConsumerThread):
    """Delivers one task's events once subscribed, then idles until stopped."""

    def _consume(self) -> None:
        self._subscribed()
        self.tracker.handle(
            [
                {"type": TASK_INFO_EVENT, "uuid": "t1", "name": "work", "queue": "jobs",
                 "priority": 7, "enqueued_at": 100.0, "hostname": "w1"},
                {"type": "task-started", "uuid": "t1", "timestamp": 102.0},
            ]
        )  # fmt: skip
        while not self.stopping:
            time.sleep(0.05)


DEPTH = Option(
    "transport_options.depth",
    values.integer(0, 1000),
    7,
    "messages the dummy queue holds",
    "--dummy-depth",
    "DUMMY_DEPTH",
)


@dataclass(frozen=True)
class DummyOptions:
    depth: int = DEPTH.default


DUMMY = Transport(
    name="dummy",
    schemes=frozenset({"dummy"}),
    default_path="0",
    inspector=DummyInspector,
    event_consumer=DummyConsumer,
    priority_levels=lambda broker: lambda priority, _max: "high" if priority >= 5 else "low",
    options=(DEPTH,),
    options_type=DummyOptions,
)


@pytest.fixture
def dummy() -> Iterator[Transport]:
    registry.register(DUMMY)
    try:
        yield DUMMY
    finally:
        registry.unregister(DUMMY.name)


def test_config_help_and_docs_pick_up_a_registered_transport(dummy, tmp_path):
    config_file = tmp_path / "exporter.yaml"
    config_file.write_text(
        textwrap.dedent("""
        brokers:
          - {url: "dummy://box/3", transport_options: {depth: 12}}
          - {name: plain, url: "dummy://box"}
        """)
    )
    first, second = load_config(["--config", str(config_file)], environ={}).brokers
    assert (first.name, first.transport, first.options) == ("dummy-box-3", DUMMY, DummyOptions(12))
    assert (second.name, second.transport, second.options) == ("plain", DUMMY, DummyOptions(7))
    flagged = load_config(["--broker-url", "dummy://box/1"], {"CELERY_EXPORTER_DUMMY_DEPTH": "9"})
    assert [(b.name, b.options.depth) for b in flagged.brokers] == [("dummy-box-1", 9)]
    assert new_broker("direct", "dummy://h/0", depth=4).options == DummyOptions(4)

    config_file.write_text('brokers:\n  - {url: "dummy://box", transport_options: {depth: 5000}}\n')
    with pytest.raises(ConfigError) as error:
        load_config(["--config", str(config_file)], environ={})
    assert str(error.value) == (
        "brokers[0].transport_options.depth: must be between 0 and 1000, got 5000"
    )

    help_text = build_parser().format_help()
    assert "--dummy-depth DUMMY_DEPTH" in help_text
    assert "dummy brokers:" in help_text
    assert (
        "| `brokers[].transport_options.depth` | `--dummy-depth` | `CELERY_EXPORTER_DUMMY_DEPTH` "
        "| integer 0..1000 | `7` | messages the dummy queue holds |"
    ) in render()


def test_the_cli_scrapes_a_registered_transport(dummy, capsys):
    assert main(["--broker-url", "dummy://box/0", "--dummy-depth", "5", "--once"]) == 0
    text = capsys.readouterr().out
    lines = set(text.splitlines())
    broker = 'broker="dummy-box-0"'
    jobs = f'{broker},queue="jobs"'
    assert {
        f'celery_queue_messages{{{jobs},priority="high"}} 5.0',
        f'celery_queue_messages{{{jobs},priority="low"}} 1.0',
        f'celery_queue_oldest_message_age_seconds{{{jobs},priority="high"}} 4.5',
        f'celery_queue_priority_urgency_rank{{{jobs},priority="high",urgency="most"}} 0.0',
        f'celery_queue_priority_urgency_rank{{{jobs},priority="low",urgency="least"}} 1.0',
        f"celery_queue_consumers{{{jobs}}} 3.0",
        f"celery_broker_reserved_messages{{{broker}}} 2.0",
        f"celery_broker_up{{{broker}}} 1.0",
        f'celery_broker_info{{{broker},transport="dummy",url="dummy://box/0"}} 1.0',
    } <= lines
    assert sorted(line for line in lines if line.startswith("celery_queue_messages{")) == [
        f'celery_queue_messages{{{jobs},priority="high"}} 5.0',
        f'celery_queue_messages{{{jobs},priority="low"}} 1.0',
    ]


def test_the_event_collector_runs_a_registered_transports_consumer(dummy):
    exporter = Exporter(load_config(["--broker-url", "dummy://box/0", "--events"], environ={}))
    try:
        assert exporter.events is not None
        (consumer,) = exporter.events.consumers
        assert isinstance(consumer, DummyConsumer)
        consumer.subscribed.wait(10)

        def samples() -> dict:
            return parse_exposition(exporter.scrape_once()[0].decode())

        where = {"broker": "dummy-box-0", "queue": "jobs", "priority": "high"}
        wait_for(
            lambda: sample_value(samples(), "celery_queue_wait_seconds_count", **where),
            timeout=10,
            what="the dummy consumer's events",
        )
        scraped = samples()
        assert sample_value(scraped, "celery_queue_wait_seconds_count", **where) == 1.0
        assert sample_value(scraped, "celery_queue_wait_seconds_sum", **where) == 2.0
        assert sample_value(scraped, "celery_event_consumer_up", broker="dummy-box-0") == 1.0
        assert sample_value(scraped, "celery_queue_messages", **where) == 7.0
    finally:
        exporter.close()
    assert not consumer.subscribed.is_set()


@pytest.mark.subprocess
def test_an_unknown_scheme_is_an_error_naming_the_field(tmp_path):
    """No fall-through to Redis or RabbitMQ: in process, from a file, and as the command line
    (exit 2) sees it; a transport that was never registered is just as unknown."""
    with pytest.raises(ConfigError) as error:
        load_config(["--broker-url", "dummy://box/0"], environ={})
    assert str(error.value) == (
        f"--broker-url[0].url: unsupported scheme 'dummy' in 'dummy://box/0' "
        f"(supported: {SUPPORTED})"
    )
    config_file = tmp_path / "exporter.yaml"
    config_file.write_text("brokers:\n  - {url: 'kafka://u:secret@k:9092/0'}\n")
    with pytest.raises(ConfigError) as error:
        load_config(["--config", str(config_file)], environ={})
    assert str(error.value) == (
        f"brokers[0].url: unsupported scheme 'kafka' in 'kafka://k:9092/0' (supported: {SUPPORTED})"
    )
    with pytest.raises(ConfigError) as error:
        new_broker("direct", "nats://n:4222")
    assert str(error.value).startswith("brokers[direct].url: unsupported scheme 'nats'")

    result = subprocess.run(
        [sys.executable, "-m", "celery_queue_exporter", "--broker-url", "sqs://q/0", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "celery-queue-exporter: configuration error: --broker-url[0].url: unsupported scheme "
        f"'sqs' in 'sqs://q/0' (supported: {SUPPORTED})\n"
    )


def test_registering_a_taken_scheme_is_refused(dummy):
    with pytest.raises(ValueError, match="'dummy': name or scheme already registered"):
        registry.register(DUMMY)
    clash = Transport(**{**vars(DUMMY), "name": "other", "schemes": frozenset({"redis"})})
    with pytest.raises(ValueError, match="'other': name or scheme already registered"):
        registry.register(clash)


def test_a_typed_options_class_must_match_the_declarations():
    """Declared once: the options type may not add, drop or change a default."""

    @dataclass(frozen=True)
    class OtherDefault:
        depth: int = 8

    @dataclass(frozen=True)
    class Extra:
        depth: int = 7
        width: int = 1

    for wrong in (OtherDefault, Extra):
        with pytest.raises(ValueError, match="transport 'dummy': .* does not match OPTIONS"):
            Transport(**{**vars(DUMMY), "options_type": wrong})
