"""The Celery app of the load test: one sleeping task that records its own timings.

The same module serves the producer (the load-test process) and the workers (``celery -A
bench.loadtest.app worker`` subprocesses). Workers are configured from the environment
(``LT_*``, see :func:`settings_from_env`), the producer calls :func:`make_app` directly.

Both call ``celery_queue_exporter.instrumentation.install(app)``: producers stamp the publish
time in a header, workers announce each task's queue and priority to the exporter (``--events``).

The task records, when it finishes, one JSON line in a Redis list (``LT_RECORD_URL``,
``LT_RECORD_KEY``): its id, its own start and finish time (``time.time()`` in the worker's pool
process), the publish stamp it received, the delivery priority, worker and pid. The load test
joins those records with what the producer noted at publish time.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from celery_queue_exporter.instrumentation import ENQUEUED_AT_HEADER, install

TASK_NAME = "loadtest.work"


@dataclass(frozen=True)
class AppSettings:
    """Everything that differs between the configurations a load test compares."""

    broker_url: str
    queue: str
    record_url: str
    record_key: str
    #: RabbitMQ: the queue's x-max-priority (None: a plain FIFO queue).
    max_priority: int | None = None
    #: Redis: kombu's priority_steps transport option.
    priority_steps: tuple[int, ...] = (0, 3, 6, 9)
    #: Celery's worker_prefetch_multiplier (Celery's default is 4).
    prefetch_multiplier: int = 1
    #: Celery's task_acks_late (Celery's default is False).
    acks_late: bool = True

    def env(self) -> dict[str, str]:
        """The environment that makes a worker process build the same app."""
        return {
            "LT_BROKER_URL": self.broker_url,
            "LT_QUEUE": self.queue,
            "LT_RECORD_URL": self.record_url,
            "LT_RECORD_KEY": self.record_key,
            "LT_MAX_PRIORITY": "" if self.max_priority is None else str(self.max_priority),
            "LT_PRIORITY_STEPS": ",".join(str(s) for s in self.priority_steps),
            "LT_PREFETCH": str(self.prefetch_multiplier),
            "LT_ACKS_LATE": "1" if self.acks_late else "0",
        }


def settings_from_env(env: dict[str, str] | None = None) -> AppSettings:
    env = dict(os.environ if env is None else env)
    max_priority = env.get("LT_MAX_PRIORITY", "")
    steps = env.get("LT_PRIORITY_STEPS", "0,3,6,9")
    return AppSettings(
        broker_url=env.get("LT_BROKER_URL", "redis://127.0.0.1:6379/0"),
        queue=env.get("LT_QUEUE", "cqe-loadtest"),
        record_url=env.get("LT_RECORD_URL", "redis://127.0.0.1:6379/1"),
        record_key=env.get("LT_RECORD_KEY", "cqe-loadtest-records"),
        max_priority=int(max_priority) if max_priority else None,
        priority_steps=tuple(int(s) for s in steps.split(",") if s.strip()),
        prefetch_multiplier=int(env.get("LT_PREFETCH", "1")),
        acks_late=env.get("LT_ACKS_LATE", "1") == "1",
    )


def make_queue(settings: AppSettings) -> Queue:
    """The load test's queue: with x-max-priority on RabbitMQ when asked, its own exchange."""
    arguments = {}
    if settings.max_priority is not None and not settings.broker_url.startswith("redis"):
        arguments["x-max-priority"] = settings.max_priority
    return Queue(
        settings.queue,
        Exchange(settings.queue, type="direct"),
        routing_key=settings.queue,
        queue_arguments=arguments or None,
    )


def make_app(settings: AppSettings) -> Celery:
    app = Celery("cqe_loadtest", broker=settings.broker_url, set_as_current=False)
    transport_options: dict[str, Any] = {}
    if settings.broker_url.startswith("redis"):
        transport_options["priority_steps"] = list(settings.priority_steps)
    app.conf.update(
        task_default_queue=settings.queue,
        task_queues=[make_queue(settings)],
        broker_transport_options=transport_options,
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        task_acks_late=settings.acks_late,
        worker_send_task_events=True,
        task_ignore_result=True,
        worker_enable_remote_control=False,  # no pidbox queues on the shared RabbitMQ
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    install(app)
    settings_holder["settings"] = settings
    return app


settings_holder: dict[str, AppSettings] = {}
_recorder: dict[str, Any] = {}


def _record(line: str) -> None:
    import redis

    settings = settings_holder["settings"]
    client = _recorder.get("client")
    if client is None or _recorder.get("pid") != os.getpid():  # one connection per process
        client = _recorder["client"] = redis.Redis.from_url(settings.record_url)
        _recorder["pid"] = os.getpid()
    client.rpush(settings.record_key, line)


app = make_app(settings_from_env())


@app.task(name=TASK_NAME, bind=True)
def work(self: Any, duration: float, level: str) -> None:
    """Sleep ``duration`` seconds (an evaluation stand-in) and record when it ran."""
    started = time.time()
    time.sleep(duration)
    finished = time.time()
    request = self.request
    stamp = getattr(request, ENQUEUED_AT_HEADER, None)
    info = request.delivery_info or {}
    _record(
        json.dumps(
            {
                "id": request.id,
                "level": level,
                "started": started,
                "finished": finished,
                "stamp": stamp,
                "delivery_priority": info.get("priority"),
                "worker": request.hostname or socket.gethostname(),
                "pid": os.getpid(),
            }
        )
    )
