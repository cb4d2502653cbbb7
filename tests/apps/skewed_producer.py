"""A producer on a "machine" whose clock is off: run by testsupport.clock_skew under
libfaketime (``faketime -f +300s``), so ``time.time()`` here (publish stamps, task-sent
``timestamp``) is off by the skew, and with a host name of its own (``CQE_HOSTNAME``), so its
clock is not confused with the workers' (in production a skewed producer is another machine).

Usage: ``python tests/apps/skewed_producer.py URL QUEUE COUNT EVERY TASK_SECONDS``: publishes
COUNT ``events.sleep(TASK_SECONDS)`` tasks (0: until killed), one every EVERY seconds, with
``install(app)``, and task-sent events unless ``CQE_SENT_EVENT=0``; prints ``sent N`` after
each and ``done`` at the end.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import time

# Before Celery is imported: celery.utils.nodenames memoizes socket.gethostname.
_HOST = os.environ["CQE_HOSTNAME"]
socket.gethostname = lambda: _HOST  # type: ignore[assignment]

from apps.events_app import make_app  # noqa: E402 - after the host name is set
from celery_queue_exporter.instrumentation import install  # noqa: E402


def main(url: str, queue: str, count: int, every: float, task_seconds: float) -> None:
    app = make_app(url, queue, sent_event=os.environ.get("CQE_SENT_EVENT", "1") == "1")
    install(app)
    numbers = range(1, count + 1) if count else itertools.count(1)
    for number in numbers:
        app.send_task("events.sleep", args=(task_seconds,), queue=queue)
        print(f"sent {number}", flush=True)
        if every:
            time.sleep(every)
    print("done", flush=True)
    app.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
