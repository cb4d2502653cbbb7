"""Pure logic of the RabbitMQ 4 readings (brokers/rabbitmq/delayed.py and quorum.py), beside
the real-broker tests of the same paths in tests/test_rabbitmq4.py: names and routing keys
Celery and kombu produce, and API documents a faulty or other-version broker could send."""

from __future__ import annotations

import pytest
from kombu.transport.native_delayed_delivery import calculate_routing_key, level_name

from celery_queue_exporter import catalogue as cat
from celery_queue_exporter.brokers.rabbitmq.delayed import (
    delayed_level,
    is_delayed_delivery_name,
    scheduled_sample,
    scheduled_samples,
    statistics_pending,
    strip_delay_prefix,
)
from celery_queue_exporter.brokers.rabbitmq.quorum import queue_samples, redelivery_facts


@pytest.mark.parametrize("prefix", ["", "app1"])
def test_every_kombu_level_name_is_recognised_and_nothing_else(prefix):
    for level in range(28):
        assert delayed_level(level_name(level, prefix or None), prefix) == level
    for name in ("celery_delayed_28", "celery_delayed_03", "celery_delayed_", "celery", "x"):
        assert delayed_level(f"{prefix}_{name}" if prefix else name, prefix) is None
    # Another prefix (or none where one is configured) is not ours.
    assert delayed_level("other_celery_delayed_3", prefix) is None
    if prefix:
        assert delayed_level("celery_delayed_3", prefix) is None
    final = f"{prefix}_celery_delayed_delivery" if prefix else "celery_delayed_delivery"
    assert is_delayed_delivery_name(final, prefix)


@pytest.mark.parametrize("countdown", [1, 900, 86400, 2**28 - 1])
def test_celery_routing_keys_give_back_the_original_key(countdown):
    assert strip_delay_prefix(calculate_routing_key(countdown, "renders.high")) == "renders.high"


def test_keys_without_the_full_binary_prefix_are_left_alone():
    assert strip_delay_prefix("1.0.1.celery") == "1.0.1.celery"
    assert strip_delay_prefix("2." * 28 + "celery") == "2." * 28 + "celery"
    assert strip_delay_prefix("celery") == "celery"


def test_scheduled_samples_skip_queues_without_statistics_and_bad_counts():
    entries = {
        "celery_delayed_9": {"messages_ready": 20, "messages_unacknowledged": 1},
        "celery_delayed_8": {},  # just declared
        "celery_delayed_7": {"messages_ready": True},  # not a count
        "renders": {"messages_ready": 5},
    }
    samples = scheduled_samples(entries)
    assert [(s.spec, s.labels, s.value) for s in samples] == [
        (cat.SCHEDULED_MESSAGES, ("512",), 21.0)
    ]


def test_delay_queues_without_statistics_are_pending_and_counted_by_name():
    entries = {
        "celery_delayed_9": {"messages_ready": 20},
        "celery_delayed_8": {},  # just declared
        "celery_delayed_7": {"messages_ready": True},  # not a count
        "renders": {},  # a work queue: the work queues' own bridge reads it
    }
    assert statistics_pending(entries) == ["celery_delayed_7", "celery_delayed_8"]
    assert statistics_pending({"app1_celery_delayed_3": {}}, "app1") == ["app1_celery_delayed_3"]
    sample = scheduled_sample("celery_delayed_8", 4)
    assert sample is not None and (sample.spec, sample.labels, sample.value) == (
        cat.SCHEDULED_MESSAGES,
        ("256",),
        4.0,
    )
    assert scheduled_sample("renders", 4) is None


def test_redelivery_facts_from_each_kind_of_document():
    assert redelivery_facts({}) == redelivery_facts({"message_stats": {}})
    facts = redelivery_facts(
        {
            "messages_ready_returned": 3,
            "message_stats": {"redeliver": 7},
            "delivery_limit": 20,
            "arguments": {"x-queue-type": "quorum"},
        }
    )
    assert (facts.returned, facts.redelivered_total, facts.delivery_limit) == (3, 7, 20)
    assert not facts.dead_letter_exchange
    # 3.x: only the argument says; -1 / "unlimited" / garbage: no limit.
    assert redelivery_facts({"arguments": {"x-delivery-limit": 5}}).delivery_limit == 5
    for value in (-1, "unlimited", None, True, float("nan")):
        assert redelivery_facts({"delivery_limit": value}).delivery_limit is None
    assert redelivery_facts(
        {"effective_policy_definition": {"dead-letter-exchange": "d"}}
    ).dead_letter_exchange
    assert redelivery_facts({"message_stats": "nonsense"}).redelivered_total == 0


def test_queue_type_label_is_bounded():
    kinds = {
        s.labels[1]
        for kind in ("quorum", "classic", "stream", "x" * 1000, 7, None)
        for s in queue_samples("q", {"type": kind})
        if s.spec is cat.QUEUE_TYPE
    }
    assert kinds == {"quorum", "classic", "stream"}
