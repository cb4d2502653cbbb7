"""A Celery app whose task kills its pool process (as an OOM kill or a segfault would), for the
crash-loop test (tests/test_rabbitmq4_crashloop.py): a quorum queue, acks_late and
task_reject_on_worker_lost, so every death requeues the message and RabbitMQ redelivers it.

Run by ``celery -A apps.crash_app worker`` with CQE_BROKER_URL and CQE_QUEUE set; the file
TASK_RUNS_FILE (CQE_RUNS_FILE) gets one line per run, the ground truth of how many runs
happened before RabbitMQ dropped the message.
"""

from __future__ import annotations

import os
import time

from celery import Celery
from kombu import Queue

QUEUE = os.environ.get("CQE_QUEUE", "poison")
RUNS_FILE = os.environ.get("CQE_RUNS_FILE", "/dev/null")

app = Celery("cqe_crash", broker=os.environ.get("CQE_BROKER_URL"), set_as_current=False)
app.conf.update(
    task_queues=[Queue(QUEUE, routing_key=QUEUE, queue_arguments={"x-queue-type": "quorum"})],
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="crash.die")
def die() -> None:
    """Half a second of work, then the process dies without a word (os._exit)."""
    with open(RUNS_FILE, "a") as runs:
        runs.write(f"{die.request.delivery_info.get('redelivered')}\n")
    time.sleep(0.5)
    os._exit(1)
