"""A task that kills its worker on every run, on a RabbitMQ 4 quorum queue (issue 23): RabbitMQ
redelivers it 20 times, then drops it (delivery limit 20, no dead-letter exchange). A real
prefork worker, the exporter served over HTTP and a real Prometheus evaluating the generated
rules: CeleryTaskRedeliveredRepeatedly fires before the message is dropped (the worker's own
run log is the ground truth of how many runs had happened), and the drop shows as exactly 20
redeliveries, an empty queue, and CeleryDeliveryLimitWithoutDeadLetter's condition.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from celery import Celery
from kombu import Queue

from testsupport.exporter import serve_exporter
from testsupport.paths import ROOT
from testsupport.processes import stop_process
from testsupport.prometheus import PROMETHEUS, RULES, Prometheus, render_monitoring
from testsupport.services import missing_service
from testsupport.waiting import wait_for

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.prometheus,
    pytest.mark.subprocess,
    pytest.mark.slow,
]

QUEUE = "poison"
#: Seconds, not minutes: Prometheus scrapes and evaluates every second here.
OVERRIDES = {
    "alerts": {
        "CeleryTaskRedeliveredRepeatedly": {"window": "2m", "for": "1s"},
        "CeleryDeliveryLimitWithoutDeadLetter": {"for": "1s"},
    }
}


def test_crash_loop_fires_the_redelivery_alert_before_the_message_is_dropped(rabbitmq4, tmp_path):
    if not PROMETHEUS.exists():
        missing_service("/usr/bin/prometheus is not installed (Debian package prometheus)")
    vhost = rabbitmq4.create_vhost(f"cqe-test-crash-{os.getpid()}")
    url = rabbitmq4.url(vhost)
    runs = tmp_path / "runs"
    runs.touch()
    render_monitoring(tmp_path, OVERRIDES)
    exporter, server = serve_exporter(
        "--broker-url", f"rmq4={url}", "--management-url", rabbitmq4.management_url,
        "--queue", QUEUE,
    )  # fmt: skip
    prometheus = Prometheus(
        tmp_path,
        job="celery-queue-exporter",
        target=f"127.0.0.1:{server.port}",
        rule_file=tmp_path / "generated" / RULES,
    ).start()
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'tests'}{os.pathsep}{ROOT}",
               CQE_BROKER_URL=url, CQE_QUEUE=QUEUE, CQE_RUNS_FILE=str(runs))  # fmt: skip
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "apps.crash_app", "worker", "-P", "prefork",
         "-c", "1", "-Q", QUEUE, "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
    )  # fmt: skip
    try:
        producer = Celery("cqe_crash", broker=url, set_as_current=False)
        producer.conf.task_queues = [
            Queue(QUEUE, routing_key=QUEUE, queue_arguments={"x-queue-type": "quorum"})
        ]
        wait_for(
            lambda: prometheus.value(f'celery_queue_consumers{{queue="{QUEUE}"}}') == 1,
            timeout=60,
            what="the worker consuming the quorum queue",
        )
        producer.send_task("crash.die", queue=QUEUE)

        def firing_runs() -> int | None:
            if prometheus.firing("CeleryTaskRedeliveredRepeatedly", queue=QUEUE):
                return len(runs.read_text().splitlines()) or None
            return None

        runs_when_firing = wait_for(
            firing_runs, timeout=120, what="CeleryTaskRedeliveredRepeatedly firing"
        )
        # 21 runs (1 delivery + 20 redeliveries) happen before the drop: fewer had run.
        assert runs_when_firing < 21, runs_when_firing
        wait_for(
            lambda: (
                prometheus.value(f'celery_queue_redelivered_total{{queue="{QUEUE}"}}') == 20
                and prometheus.value(
                    f'sum(celery_queue_messages{{queue="{QUEUE}"}}) '
                    f'+ sum(celery_queue_reserved_messages{{queue="{QUEUE}"}})'
                )
                == 0
            ),
            timeout=120,
            what="20 redeliveries and the message dropped",
        )
        assert len(runs.read_text().splitlines()) == 21
        assert prometheus.value(f'celery_queue_delivery_limit{{queue="{QUEUE}"}}') == 20
        wait_for(
            lambda: prometheus.firing("CeleryDeliveryLimitWithoutDeadLetter", queue=QUEUE),
            timeout=30,
            what="CeleryDeliveryLimitWithoutDeadLetter firing",
        )
    finally:
        stop_process(worker, group=True)
        log.close()
        prometheus.close()
        server.stop()
        exporter.close()
        rabbitmq4.delete_vhost(vhost)
