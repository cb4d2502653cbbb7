"""What Celery (and this exporter) put on any broker besides task queues: the event exchange,
remote-control (pidbox) and event-receiver queues, server-named reply queues. Discovery on every
transport skips them by the same rules."""

from __future__ import annotations

#: Celery's event exchange (topic on RabbitMQ, fanout over pub/sub on Redis).
EVENT_EXCHANGE = "celeryev"
#: Exchanges whose bindings belong to Celery's machinery, not to task queues.
INTERNAL_EXCHANGES = (EVENT_EXCHANGE,)
#: Queue name prefixes that are Celery's (or this exporter's) machinery, or server-named
#: (amq.gen-*: reply queues), not task queues.
INTERNAL_QUEUE_PREFIXES = (
    f"{EVENT_EXCHANGE}.",
    "celery-queue-exporter.",
    "celery_queue_exporter.",
    "amq.gen-",
)


def is_internal_queue(queue: str, exchange: str = "") -> bool:
    """Event receivers, pidbox (remote control) queues, reply queues and the exporter's own
    queues are not task queues; ``exchange`` is the binding's, where the broker tells it."""
    return (
        not queue
        or queue.startswith(INTERNAL_QUEUE_PREFIXES)
        or queue.endswith(".pidbox")
        or exchange in INTERNAL_EXCHANGES
        or exchange.endswith(".pidbox")
    )
