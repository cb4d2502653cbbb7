"""Celery's native delayed delivery on RabbitMQ (Celery >= 5.5, kombu
``transport/native_delayed_delivery.py``): recognising its queues and routing keys.

With quorum queues on AMQP, a countdown or ETA task is published to the topic exchange
``celery_delayed_27`` with a routing key made of the delay's 28 binary digits, dot-separated,
then the original routing key. Queue ``celery_delayed_N`` holds a message up to 2^N s
(``x-message-ttl``) and dead-letters it to level N-1; level 0 dead-letters to the exchange
``celery_delayed_delivery``, bound to the app queues' exchanges. kombu >= 5.7 can prefix every
name (``{prefix}_celery_delayed_N``). These queues hold *scheduled* messages: they never have a
consumer and a message waits there by design, so they are exported as scheduled messages
(per delay band), never as work queues.
"""

from __future__ import annotations

from typing import Any

from ... import catalogue as cat
from ...delayed_delivery import (
    DELAY_BITS,
    MAX_LEVEL,
    band_label,
    delayed_level,
    is_delayed_delivery_name,
    strip_delay_prefix,
    work_queues,
)
from ...snapshot import ExtraSample

__all__ = [
    "DELAY_BITS",
    "MAX_LEVEL",
    "band_label",
    "delayed_level",
    "is_delayed_delivery_name",
    "scheduled_samples",
    "scheduled_sample",
    "statistics_pending",
    "strip_delay_prefix",
    "work_queues",
]


def scheduled_samples(entries: dict[str, dict[str, Any]], prefix: str = "") -> list[ExtraSample]:
    """One celery_scheduled_messages sample per delay queue the vhost has (ready plus
    unacknowledged: at-least-once dead-lettering holds a message unacked while it moves)."""
    samples = []
    for name, entry in entries.items():
        level = delayed_level(name, prefix)
        if level is None:
            continue
        ready = entry.get("messages_ready")
        unacked = entry.get("messages_unacknowledged")
        if not isinstance(ready, int) or isinstance(ready, bool):
            continue  # statistics not in yet (just declared)
        if isinstance(unacked, int) and not isinstance(unacked, bool):
            ready += unacked
        held = ready
        samples.append(ExtraSample(cat.SCHEDULED_MESSAGES, (band_label(level),), float(held)))
    return samples


def scheduled_sample(name: str, held: int, prefix: str = "") -> ExtraSample | None:
    """The celery_scheduled_messages sample of delay queue ``name`` holding ``held``
    messages; None when ``name`` is no delay queue."""
    level = delayed_level(name, prefix)
    if level is None:
        return None
    return ExtraSample(cat.SCHEDULED_MESSAGES, (band_label(level),), float(held))


def statistics_pending(entries: dict[str, dict[str, Any]], prefix: str = "") -> list[str]:
    """The delay queues the API lists without statistics yet (the first seconds of a quorum
    queue): the inspector counts them by a passive declare, so that no band goes missing."""
    return sorted(
        name
        for name, entry in entries.items()
        if delayed_level(name, prefix) is not None and not _is_count(entry.get("messages_ready"))
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
