"""Optional app-side instrumentation: ``install(app)`` in the code that publishes tasks.

Celery messages carry no enqueue time, so the exporter can only bound how long a message has
waited. ``install(app)`` stamps every published task with the publish time:

* a message header (``ENQUEUED_AT_HEADER``, float epoch seconds), read by the Redis inspector
  and by the worker-side hooks;
* the AMQP ``timestamp`` property (whole epoch seconds), which RabbitMQ's management API
  reports as ``head_message_timestamp``.

Epoch seconds are time-zone free, so producers and exporter in different zones agree.
Both stamps are set only when absent, so a retried task keeps its original header.
"""

from __future__ import annotations

import time
from typing import Any

from celery import signals

#: Header holding the publish time in epoch seconds (float).
ENQUEUED_AT_HEADER = "celery_queue_exporter_enqueued_at"

_PUBLISH_UID = "celery_queue_exporter.instrumentation.stamp_enqueue_time"


def stamp_enqueue_time(
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """before_task_publish handler: record when the message was published."""
    now = time.time()
    if headers is not None:
        headers.setdefault(ENQUEUED_AT_HEADER, now)
    if properties is not None and properties.get("timestamp") is None:
        properties["timestamp"] = int(now)


def install(app: Any) -> None:
    """Stamp the publish time on every task ``app`` sends. Safe to call more than once.

    Celery's publish signal is process-wide, so the stamp applies to every app in the process;
    ``app`` is taken to make the call site explicit and for future per-app hooks.
    """
    del app
    signals.before_task_publish.connect(stamp_enqueue_time, weak=False, dispatch_uid=_PUBLISH_UID)


def uninstall() -> None:
    """Undo install(); for tests and for apps that want to switch it off at run time."""
    signals.before_task_publish.disconnect(dispatch_uid=_PUBLISH_UID)


def enqueued_at(headers: dict[str, Any] | None) -> float | None:
    """The publish stamp from a message's headers, or None when absent or not a number."""
    if not headers:
        return None
    value = headers.get(ENQUEUED_AT_HEADER)
    if isinstance(value, bool):
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
