"""A Celery app with tasks of known outcomes, for the event tests.

Configured from the environment so one module serves every test and broker:
``CQE_BROKER_URL``, ``CQE_QUEUE`` (the test's unique queue), ``CQE_EXTRA_QUEUES`` (more queues
the app declares, comma-separated), ``CQE_MAX_PRIORITY`` (their x-max-priority, default 9),
``CQE_INSTALL`` (``0`` leaves out ``celery_queue_exporter.instrumentation.install(app)``),
``CQE_SENT_EVENT`` (``0`` turns task-sent off).
"""

from __future__ import annotations

import os
import sys
import time

from celery import Celery
from kombu import Queue

from celery_queue_exporter.instrumentation import install

QUEUE = os.environ.get("CQE_QUEUE", "cqe-events")


def make_app(
    broker_url: str,
    queue: str,
    *,
    sent_event: bool = True,
    extra_queues: tuple[str, ...] = (),
    max_priority: int = 9,
) -> Celery:
    """An app publishing to and consuming from ``queue`` (a priority queue, 0..max_priority),
    declaring ``extra_queues`` the same way (a worker may consume several)."""
    app = Celery("cqe_events", broker=broker_url, set_as_current=False)
    arguments = {"x-max-priority": max_priority}
    app.conf.update(
        task_default_queue=queue,
        task_queues=[
            Queue(name, routing_key=name, queue_arguments=arguments)
            for name in (queue, *extra_queues)
        ],
        task_send_sent_event=sent_event,
        worker_send_task_events=True,
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(
    os.environ.get("CQE_BROKER_URL", "redis://127.0.0.1:6379/0"),
    QUEUE,
    sent_event=os.environ.get("CQE_SENT_EVENT", "1") == "1",
    extra_queues=tuple(q for q in os.environ.get("CQE_EXTRA_QUEUES", "").split(",") if q),
    max_priority=int(os.environ.get("CQE_MAX_PRIORITY", "9")),
)
# In a worker or producer process of its own. Not in the pytest process that imports this
# module for make_app(): install(app) connects process-wide signals, which would stamp every
# later test's "unstamped" publishes on that xdist worker; tests there install explicitly.
if os.environ.get("CQE_INSTALL", "1") == "1" and "_pytest" not in sys.modules:
    install(app)


@app.task(name="events.ok")
def ok(value: int = 0) -> int:
    return value


@app.task(name="events.boom")
def boom() -> None:
    raise ValueError("boom")


@app.task(name="events.retry_once", bind=True, max_retries=3)
def retry_once(self) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "done"


@app.task(name="events.soft_limit", soft_time_limit=0.3)
def soft_limit() -> None:
    time.sleep(3)  # SoftTimeLimitExceeded is raised in here and not caught


@app.task(name="events.hard_limit", time_limit=0.5)
def hard_limit() -> None:
    time.sleep(5)  # the pool kills the process: TimeLimitExceeded


@app.task(name="events.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)


@app.task(name="events.maybe_fail")
def maybe_fail(fail: bool = False) -> None:
    """One task name with both outcomes (a failure ratio below 1)."""
    if fail:
        raise ValueError("asked to fail")


def _record(path: str, **fields: object) -> None:
    """Append one JSON line: what the task itself saw (its own clock), the test's truth."""
    import json

    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(fields) + "\n")


@app.task(name="events.timed", bind=True)
def timed(self, path: str) -> None:
    _record(path, id=self.request.id, start=time.time(), retries=self.request.retries)


@app.task(name="events.retry_timed", bind=True, max_retries=3)
def retry_timed(self, path: str, countdown: float) -> None:
    start = time.time()
    _record(path, id=self.request.id, start=start, retries=self.request.retries)
    if self.request.retries < 3:
        raise self.retry(countdown=countdown)


class AppError(Exception):
    """An exception class of the app's own (its label is the class name)."""


_EXCEPTIONS = {
    "ValueError": ValueError,
    "KeyError": KeyError,
    "ZeroDivisionError": ZeroDivisionError,
    "LookupError": LookupError,
    "AppError": AppError,
}


@app.task(name="events.raise")
def raise_(kind: str) -> None:
    raise _EXCEPTIONS[kind](kind)


@app.task(name="events.urgent")
def urgent(seconds: float = 0.05) -> None:
    """The on-call scenarios' urgent task (monitoring's urgent_tasks names it)."""
    time.sleep(seconds)


@app.task(name="events.batch")
def batch(seconds: float = 0.05) -> None:
    """The on-call scenarios' batch task, sharing a queue with events.urgent."""
    time.sleep(seconds)
