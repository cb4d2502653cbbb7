"""What RabbitMQ 4's management API says about redeliveries and what becomes of a message
redelivered too often: read from one ``/api/queues`` entry, broker-version tolerant.

* ``messages_ready_returned`` (quorum queues, 4.0+): messages requeued after a reject, a nack
  or a dead consumer (a worker killed with ``acks_late``). They are counted in neither
  ``messages_ready_high`` nor ``messages_ready_normal`` and RabbitMQ delivers them before
  both, so the exporter reports them as their own level ``returned`` of celery_queue_messages.
* ``message_stats.redeliver``: deliveries flagged redelivered since the queue was created (a
  counter; every queue type; a queue without message_stats has redelivered nothing).
* ``delivery_limit`` (quorum): deliveries after which a message is dropped, or dead-lettered
  when the queue has a dead-letter exchange. 4.0 made it 20 by default; -1 or absent: none.
* The dead-letter set-up: ``x-dead-letter-exchange`` among the queue's arguments, or
  ``dead-letter-exchange`` in its effective policy (user or operator policy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ... import catalogue as cat
from ...snapshot import ExtraSample

#: The level label of returned (requeued) messages on a quorum queue.
RETURNED_LEVEL = "returned"
#: RabbitMQ's queue types (a bounded label: anything else from a faulty API is not exported).
QUEUE_TYPES = frozenset({"classic", "quorum", "stream"})


@dataclass(frozen=True)
class RedeliveryFacts:
    """Per-queue facts about redeliveries; None: the broker does not say."""

    returned: int | None
    redelivered_total: int | None
    delivery_limit: int | None
    dead_letter_exchange: bool


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return None


def delivery_limit(entry: dict[str, Any]) -> int | None:
    """The queue's delivery limit: the broker's ``delivery_limit`` (4.0+), else its
    ``x-delivery-limit`` argument; None when unlimited (``-1``, ``"unlimited"``) or unknown."""
    value = entry.get("delivery_limit")
    if value is None:
        arguments = entry.get("arguments")
        if isinstance(arguments, dict):
            value = arguments.get("x-delivery-limit")
    return _count(value)


def has_dead_letter_exchange(entry: dict[str, Any]) -> bool:
    """Whether messages the queue drops (delivery limit, TTL, overflow) go to a DLX."""
    arguments = entry.get("arguments")
    if isinstance(arguments, dict) and arguments.get("x-dead-letter-exchange") is not None:
        return True
    policy = entry.get("effective_policy_definition")
    return isinstance(policy, dict) and policy.get("dead-letter-exchange") is not None


def redelivery_facts(entry: dict[str, Any]) -> RedeliveryFacts:
    """The redelivery facts of one management API queue entry."""
    # No message_stats (or no "redeliver" in it) on a listed queue: nothing redelivered yet.
    stats = entry.get("message_stats")
    redelivered = _count(stats.get("redeliver", 0)) if isinstance(stats, dict) else 0
    return RedeliveryFacts(
        returned=_count(entry.get("messages_ready_returned")),
        redelivered_total=redelivered,
        delivery_limit=delivery_limit(entry),
        dead_letter_exchange=has_dead_letter_exchange(entry),
    )


def queue_samples(queue: str, entry: dict[str, Any]) -> list[ExtraSample]:
    """The redelivery, delivery-limit, dead-letter and type samples of one watched queue."""
    facts = redelivery_facts(entry)
    samples = [
        ExtraSample(
            cat.QUEUE_DEAD_LETTER_CONFIGURED, (queue,), 1.0 if facts.dead_letter_exchange else 0.0
        )
    ]
    if facts.redelivered_total is not None:
        samples.append(ExtraSample(cat.QUEUE_REDELIVERED, (queue,), facts.redelivered_total))
    if facts.delivery_limit is not None:
        samples.append(ExtraSample(cat.QUEUE_DELIVERY_LIMIT, (queue,), facts.delivery_limit))
    kind = entry.get("type")
    if isinstance(kind, str) and kind in QUEUE_TYPES:
        samples.append(ExtraSample(cat.QUEUE_TYPE, (queue, kind), 1.0))
    return samples
