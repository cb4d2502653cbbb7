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

import re
from typing import Any

from ... import catalogue as cat
from ...snapshot import ExtraSample

#: kombu's MAX_NUMBER_OF_BITS_TO_USE: levels 0..27.
DELAY_BITS = 28
MAX_LEVEL = DELAY_BITS - 1
#: The binary delay prefix Celery puts before the original routing key.
_DELAY_PREFIX = re.compile(rf"^(?:[01]\.){{{DELAY_BITS}}}")
_LEVEL = re.compile(r"celery_delayed_(0|[1-9][0-9]?)")


def delayed_level(name: str, prefix: str = "") -> int | None:
    """The delay level of a native delayed delivery queue or exchange named ``name`` (with
    kombu's optional ``prefix``), or None when ``name`` is no such queue."""
    if prefix:
        head = f"{prefix}_"
        if not name.startswith(head):
            return None
        name = name[len(head) :]
    match = _LEVEL.fullmatch(name)
    if match is None:
        return None
    level = int(match.group(1))
    return level if level <= MAX_LEVEL else None


def is_delayed_delivery_name(name: str, prefix: str = "") -> bool:
    """Whether ``name`` is one of the delayed-delivery queues/exchanges (levels or the final
    ``celery_delayed_delivery`` exchange)."""
    final = f"{prefix}_celery_delayed_delivery" if prefix else "celery_delayed_delivery"
    return name == final or delayed_level(name, prefix) is not None


def strip_delay_prefix(routing_key: str) -> str:
    """The original routing key of a delayed task (task-sent events carry the prefixed one):
    ``"0.0. ... .1.celery"`` -> ``"celery"``. Other keys come back unchanged."""
    match = _DELAY_PREFIX.match(routing_key)
    return routing_key[match.end() :] if match else routing_key


def band_label(level: int) -> str:
    """The ``band`` label of a level: the longest delay its queue holds, in seconds (2^N)."""
    return str(2**level)


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
