"""Optional app-side instrumentation: ``install(app)`` in the code that publishes tasks.

Celery messages carry no enqueue time, so the exporter can only bound how long a message has
waited. ``install(app)`` stamps every published task with the publish time:

* a message header (``ENQUEUED_AT_HEADER``, float epoch seconds), read by the Redis inspector
  and by the worker-side hooks;
* the AMQP ``timestamp`` property (whole epoch seconds), which RabbitMQ's management API
  reports as ``head_message_timestamp``.

Epoch seconds are time-zone free, so producers and exporter in different zones agree. Clocks
that disagree are another matter: a third header, ``PRODUCER_HEADER``, names the publishing
host (the machine part Celery uses in its node names, ``gethostname()``), overwritten with the
attempt stamp on every publish; the exporter corrects a stamp by that host's clock offset,
which it estimates from the host's Celery events (events/clock.py).
Both stamps are set only when absent, so a retried task keeps its original header: that is the
*first* publish, for the end-to-end measure. A second header, ``ATTEMPT_AT_HEADER``, is
overwritten on every publish, so a retry (Celery republishes it with the same task id and the
request's headers) carries its own republish time: the queue wait of each attempt starts there.

On workers (the same ``install(app)`` call, made where the app is defined, before the worker
starts) it adds two custom Celery events, sent through the worker's own event dispatcher in
the worker's main process, and only when task events are on (``-E`` /
``worker_send_task_events``); the dispatcher drops them otherwise:

* ``TASK_INFO_EVENT`` for every task the worker receives: task name, queue, message priority,
  the queue's x-max-priority (when the app declares it), the first-publish and attempt stamps
  and the ETA (epoch seconds). With the task-started event that follows, the exporter measures
  the wait per queue and priority: start minus the later of the attempt's publish and its ETA.
* ``WORKER_QUEUES_EVENT`` with every heartbeat: the queues the worker consumes from and its
  pool (size, type, prefetch multiplier), for the capacity and utilisation metrics.

Their group is ``queueexporter`` (not ``task``/``worker``), so Flower and celery.events.State
ignore them. They are published at once, not batched with task events.

On producers the same call adds the message's ``priority`` to Celery's own ``task-sent`` event
(sent only when the producer has ``task_send_sent_event`` on): no event of our own, one field
more on the one Celery already publishes. With it the exporter counts per queue and level the
tasks published and not yet received, the per-level depth of RabbitMQ classic priority queues
whose broker no longer reports one (3.12.7+, 4.x; docs/rabbitmq.md). The field is present
(``None`` for a message without priority, served at 0) only from producers with this hook: its
absence tells the exporter the level is unknown. Celery's signals do not reach the event, so the
hook wraps the app's task message builders (``app.amqp.task_protocols``), per app.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from typing import Any

from celery import signals
from celery.utils.nodenames import gethostname

#: Header holding the first publish time in epoch seconds (float); kept by retries.
ENQUEUED_AT_HEADER = "celery_queue_exporter_enqueued_at"
#: Header holding this attempt's publish time (float epoch seconds); reset by every publish.
ATTEMPT_AT_HEADER = "celery_queue_exporter_attempt_at"
#: Header naming the host whose clock took the attempt stamp (for the clock-offset correction).
PRODUCER_HEADER = "celery_queue_exporter_host"

_PUBLISH_UID = "celery_queue_exporter.instrumentation.stamp_enqueue_time"
_RECEIVED_UID = "celery_queue_exporter.instrumentation.announce_task"
_READY_UID = "celery_queue_exporter.instrumentation.remember_consumer"
_HEARTBEAT_UID = "celery_queue_exporter.instrumentation.announce_queues"

#: Custom event a worker sends for each task it receives (queue, priority, enqueue stamp).
TASK_INFO_EVENT = "queueexporter-task"
#: Custom event a worker sends before each heartbeat: the queues it consumes from.
WORKER_QUEUES_EVENT = "queueexporter-worker"
#: Field install(app) adds to task-sent: the message's priority (None: none, served at 0).
SENT_PRIORITY_FIELD = "priority"
#: Set on an app's AMQP object once its task message builders are wrapped.
_SENT_PRIORITY_MARK = "_celery_queue_exporter_sent_priority"
_installed = False

log = logging.getLogger(__name__)
_consumer: Any = None  # weakref to the worker's Consumer, set at worker_ready


def stamp_enqueue_time(
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """before_task_publish handler: record when the message was published."""
    now = time.time()
    if headers is not None:
        headers.setdefault(ENQUEUED_AT_HEADER, now)
        headers[ATTEMPT_AT_HEADER] = now  # a retry's own republish, not the first publish
        headers[PRODUCER_HEADER] = gethostname()  # whose clock took the attempt stamp
    if properties is not None and properties.get("timestamp") is None:
        properties["timestamp"] = int(now)


def install(app: Any) -> None:
    """Stamp the publish time on every task ``app`` sends. Safe to call more than once.

    Celery's publish signal is process-wide, so the stamp applies to every app in the process;
    the priority in task-sent is added for ``app`` (its message builders are per app).
    """
    global _installed
    _installed = True
    add_priority_to_task_sent(app)
    signals.before_task_publish.connect(stamp_enqueue_time, weak=False, dispatch_uid=_PUBLISH_UID)
    signals.task_received.connect(announce_task, weak=False, dispatch_uid=_RECEIVED_UID)
    signals.worker_ready.connect(remember_consumer, weak=False, dispatch_uid=_READY_UID)
    signals.heartbeat_sent.connect(announce_queues, weak=False, dispatch_uid=_HEARTBEAT_UID)


def uninstall() -> None:
    """Undo install(); for tests and for apps that want to switch it off at run time (the
    wrapped message builders stay, adding nothing while uninstalled)."""
    global _installed
    _installed = False
    signals.before_task_publish.disconnect(dispatch_uid=_PUBLISH_UID)
    signals.task_received.disconnect(dispatch_uid=_RECEIVED_UID)
    signals.worker_ready.disconnect(dispatch_uid=_READY_UID)
    signals.heartbeat_sent.disconnect(dispatch_uid=_HEARTBEAT_UID)


def add_priority_to_task_sent(app: Any) -> None:
    """Make ``app``'s task-sent events carry the message's priority. Celery builds the event's
    fields with the message (``amqp.create_task_message``, from ``task_protocols``) and gets
    the priority in the same options; no signal sees both. Only the builders are wrapped, so
    the app's configuration is not read here (install(app) may run before it is complete).
    Never raises: an app without these internals simply sends task-sent without priority."""
    try:
        amqp = app.amqp
        if getattr(amqp, _SENT_PRIORITY_MARK, False):
            return
        protocols = amqp.task_protocols
        for version, build in list(protocols.items()):
            protocols[version] = _with_sent_priority(build)
        built = vars(amqp).get("create_task_message")  # cached when a task was sent before
        if built is not None:
            amqp.create_task_message = _with_sent_priority(built)
        setattr(amqp, _SENT_PRIORITY_MARK, True)
    except Exception:  # noqa: BLE001 - monitoring must not break the app
        log.debug("celery-queue-exporter: cannot add priority to task-sent", exc_info=True)


def _with_sent_priority(build: Any) -> Any:
    """A task message builder whose task-sent fields (``sent_event``, None when task-sent is
    off) also hold the priority the message is published with."""

    def build_with_priority(*args: Any, **options: Any) -> Any:
        message = build(*args, **options)
        sent = getattr(message, "sent_event", None)
        if _installed and isinstance(sent, dict):
            priority = options.get("priority")
            sent[SENT_PRIORITY_FIELD] = priority if isinstance(priority, int) else None
        return message

    return build_with_priority


def _task_queues(consumer: Any) -> list[Any]:
    task_consumer = getattr(consumer, "task_consumer", None)
    return list(getattr(task_consumer, "queues", None) or ())


def queue_of(consumer: Any, exchange: Any, routing_key: Any) -> tuple[str | None, int | None]:
    """The queue a delivered message came from and its x-max-priority, from the worker's
    consumed queues (delivery_info has exchange and routing key, not the queue)."""
    queues = _task_queues(consumer)
    found = None
    for queue in queues:
        if queue.routing_key == routing_key and getattr(queue.exchange, "name", None) in (
            exchange,
            None,
            "",
        ):
            found = queue
            break
    if found is None:
        found = next((queue for queue in queues if queue.name == routing_key), None)
    if found is None:
        return (routing_key if isinstance(routing_key, str) else None), None
    max_priority = (found.queue_arguments or {}).get("x-max-priority")
    if max_priority is None:
        max_priority = getattr(found, "max_priority", None)
    return found.name, max_priority if isinstance(max_priority, int) else None


def announce_task(sender: Any = None, request: Any = None, **_: Any) -> None:
    """task_received handler (worker main process): tell the exporter the task's queue,
    priority and enqueue stamp. Never raises: monitoring must not break the worker."""
    dispatcher = getattr(sender, "event_dispatcher", None)
    if dispatcher is None or not dispatcher.enabled or request is None:
        return
    try:
        info = request.delivery_info or {}
        queue, max_priority = queue_of(sender, info.get("exchange"), info.get("routing_key"))
        eta = request.eta
        dispatcher.send(
            TASK_INFO_EVENT,
            uuid=request.id,
            name=request.name,
            queue=queue,
            priority=info.get("priority"),
            max_priority=max_priority,
            enqueued_at=enqueued_at(request.request_dict),
            attempt_at=enqueued_at(request.request_dict, ATTEMPT_AT_HEADER),
            producer=producer_of(request.request_dict),
            retries=request.request_dict.get("retries", 0),
            # Celery makes the ETA time-zone aware (UTC or the worker's zone) before this.
            eta=eta.timestamp() if eta is not None else None,
        )
    except Exception:  # noqa: BLE001 - never let monitoring break task delivery
        log.debug("celery-queue-exporter: cannot send %s", TASK_INFO_EVENT, exc_info=True)


def remember_consumer(sender: Any = None, **_: Any) -> None:
    """worker_ready handler: keep (weakly) the consumer whose queues the heartbeat announces."""
    global _consumer
    if sender is not None:
        _consumer = weakref.ref(sender)


def announce_queues(sender: Any = None, **_: Any) -> None:
    """heartbeat_sent handler: send the queues this worker consumes from."""
    consumer = _consumer() if _consumer is not None else None
    eventer = getattr(sender, "eventer", None)
    if consumer is None or eventer is None or not eventer.enabled:
        return
    try:
        names = sorted({queue.name for queue in _task_queues(consumer)})
        eventer.send(WORKER_QUEUES_EVENT, queues=names, **pool_of(consumer))
    except Exception:  # noqa: BLE001 - never let monitoring break the heartbeat
        log.debug("celery-queue-exporter: cannot send %s", WORKER_QUEUES_EVENT, exc_info=True)


def pool_of(consumer: Any) -> dict[str, Any]:
    """The worker's pool as announced to the exporter: processes/threads (the current size,
    so autoscaling shows), the pool type ('prefork', 'solo', 'thread', ...) and the prefetch
    multiplier. Missing parts are left out: the exporter then exports no pool size."""
    out: dict[str, Any] = {}
    pool = getattr(consumer, "pool", None)
    if pool is not None:
        size = getattr(pool, "num_processes", None)
        if isinstance(size, int) and not isinstance(size, bool):
            out["pool_size"] = size
        out["pool"] = type(pool).__module__.rsplit(".", 1)[-1]
    multiplier = getattr(consumer, "prefetch_multiplier", None)
    if isinstance(multiplier, int) and not isinstance(multiplier, bool):
        out["prefetch_multiplier"] = multiplier
    return out


def enqueued_at(headers: dict[str, Any] | None, header: str = ENQUEUED_AT_HEADER) -> float | None:
    """A publish stamp (``header``, the first publish by default) from a message's headers, or
    None when absent or not a number."""
    if not headers:
        return None
    value = headers.get(header)
    if isinstance(value, bool):
        return None
    try:
        stamp = float(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond a double
        return None
    return stamp if stamp is None or math.isfinite(stamp) else None


def published_at(headers: dict[str, Any] | None) -> float | None:
    """When this message was published: the attempt stamp (a retry's own republish), else the
    first-publish stamp of older producers, else None. A retried message at the head of a
    queue has waited since its republish, not since the task was first sent."""
    stamp = enqueued_at(headers, ATTEMPT_AT_HEADER)
    return stamp if stamp is not None else enqueued_at(headers)


def producer_of(headers: dict[str, Any] | None) -> str | None:
    """The host that took the attempt stamp (``PRODUCER_HEADER``), or None when absent or not
    a non-empty string (a producer without this version of install(app))."""
    value = headers.get(PRODUCER_HEADER) if headers else None
    return value if isinstance(value, str) and value else None
