"""Celery's native delayed delivery names (Celery >= 5.5, kombu
``transport/native_delayed_delivery.py``): which queue and exchange names are its delay levels,
and the original routing key under its binary delay prefix.

Pure vocabulary (no broker I/O), so both the RabbitMQ inspection (brokers/rabbitmq/delayed.py:
scheduled messages, never work queues) and the events tracker (task-sent events attributed to
the app queue, not to one label value per countdown) use it without a layer pointing up.
"""

from __future__ import annotations

import re

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


def work_queues(queues: list[str], prefix: str = "") -> list[str]:
    """``queues`` without the delayed-delivery ones (configured by name or discovered)."""
    return [queue for queue in queues if delayed_level(queue, prefix) is None]


def strip_delay_prefix(routing_key: str) -> str:
    """The original routing key of a delayed task (task-sent events carry the prefixed one):
    ``"0.0. ... .1.celery"`` -> ``"celery"``. Other keys come back unchanged."""
    match = _DELAY_PREFIX.match(routing_key)
    return routing_key[match.end() :] if match else routing_key


def band_label(level: int) -> str:
    """The ``band`` label of a level: the longest delay its queue holds, in seconds (2^N)."""
    return str(2**level)
