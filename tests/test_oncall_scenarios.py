"""The on-call acceptance tests: the situations real Celery teams live through, each reproduced
end to end and ending with the EXACT set of alerts an on-call engineer would see.

Every scenario gets a fresh, isolated stack (testsupport/oncall_stack.py): its own exporter process
(``--events``), its own Prometheus (own tsdb, scrape and evaluation every second, rules rendered
by the real generator with ``for: 2s`` unless a scenario asks for the shipped timings), a private
redis-server and/or a private RabbitMQ vhost, real Celery workers (tests/apps/events_app.py)
and a producer in this process. So the alerts a scenario sees are its own: at its end it asserts
what fires (nothing else may) and what must not even be pending. The table in docs/alerts.md
names these tests.

Sections:

* Issue 13, first round: scenarios 1, 2, 3 and 8 (priorities, install(app)) and 4, 5, 6, 7, 9,
  10, 11 (workers, brokers, noise); the quiet run (11) takes three minutes, the others well
  under one each.
* Issue 21, second round (testsupport/oncall_replicas.py: several exporter replicas in one job
  and, where pages are counted, a real Alertmanager notifying a webhook of the test): a failure
  burst of a new task, a plain queue's wait objective, an exporter crash and restart with the
  shipped timings, two replicas and a lost worker.
* Issue 21, clock skew: a producer 5 minutes ahead or behind (a real process under
  libfaketime, testsupport/clock_skew.py, with a host name of its own) publishing to real
  workers, on Redis (the offset-corrected ages) and on RabbitMQ (the ages bounded by what the
  exporter saw, headbounds.py).

Broker generations (issue 23), through conftest's fixtures, never copies: the scenarios whose
subject is the broker's behaviour run on both generations of that broker, RabbitMQ 3.10 and 4.0
(``rabbitmq_generation``: scenarios 1, 2 and 9, the producer behind) or Redis 7.0 and 8.0
(``redis_generation``: scenarios 3, 4, 5 and 8, the backlog behind a skewed producer); a
per-generation difference in the pages is stated in a dict keyed by generation (MIGRATION_PAGES,
LEVELS_SOURCE). The others stay on 3.10 / 7.0: their subject is workers, events, replicas or
the rules' timings, read the same way on every generation, and each would add 20-190 s to a
suite held under 8 minutes (issue 20).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
import requests
from test_dashboards import all_targets, committed, concrete

from celery_queue_exporter.brokers.rabbitmq.management import STATS_SLACK_SECONDS
from celery_queue_exporter.instrumentation import ATTEMPT_AT_HEADER
from monitoring import config as monitoring_config
from testsupport.clock_skew import skewed_producer
from testsupport.exposition import parse_exposition
from testsupport.oncall_replicas import ReplicaStack, replica_stacks
from testsupport.oncall_stack import (
    JOB,
    LEAST_URGENT,
    MOST_URGENT,
    RABBIT,
    REDIS,
    OncallStack,
    Send,
    alert,
    epoch,
    stacks,
)
from testsupport.processes import stop_process
from testsupport.waiting import wait_for

#: Each test also carries the markers of the brokers it watches (redis, rabbitmq).
pytestmark = [pytest.mark.prometheus, pytest.mark.subprocess, pytest.mark.slow]


@pytest.fixture
def make_stack() -> Iterator[Callable[..., OncallStack]]:
    """``make_stack(**knobs)``: a started :class:`OncallStack`, closed after the test."""
    with stacks() as make:
        yield make


# === issue 13: the first on-call round ==========================================================


# --- scenario 4 ---------------------------------------------------------------------------------


#: The workload the monitoring config declares for scenario 4 (monitoring/config.yaml
#: ``workload``): no task waits for a countdown longer than this, none runs longer than the
#: hard time limit, so no live worker holds a reservation longer than their sum.
LONGEST_COUNTDOWN_SECONDS, HARD_TIME_LIMIT_SECONDS = 2, 10
#: The workers' worker_prefetch_multiplier (tests/apps/events_app.py): a reserved message waits
#: behind at most one run of its slot, then runs itself.
PREFETCH_MULTIPLIER = 1
#: CeleryReservationsOrphaned's threshold for that workload.
ORPHAN_AFTER_SECONDS = (
    LONGEST_COUNTDOWN_SECONDS + (PREFETCH_MULTIPLIER + 1) * HARD_TIME_LIMIT_SECONDS
)
#: The task the crashing worker is running: well within the hard time limit.
TASK_SECONDS = 8.0


@pytest.mark.redis
def test_crashed_worker_reservation_on_redis_pages_as_orphaned(make_stack, redis_generation):
    """Situation: on Redis (prefetch 1, late acks) a worker is SIGKILLed (an OOM kill) in the
    middle of a task; another worker of the same queue keeps running. The message stays in
    kombu's ``unacked`` hash, and Redis gives it to a worker again only after
    visibility_timeout (3600 s).

    Expected: CeleryReservationsOrphaned for the broker once the reservation is older than
    ``longest_countdown_seconds + (prefetch_multiplier + 1) * hard_time_limit_seconds`` of the
    monitoring config's ``workload`` (no live worker can still be holding it), and
    CeleryWorkerDown for the killed worker (lost: heartbeats stopped without worker-offline).
    Silent: CeleryReservedNearVisibilityTimeout (0.8 x 3600 s is far), CeleryAllWorkersDown
    and CeleryQueueNoConsumers (a live worker remains), CeleryQueueWorkersDropped (two workers
    down to one is not below half). Why: issue 13 item 4, a crashed worker's reservation raised
    nothing for ~50 minutes.
    """
    stack = make_stack(
        queues={REDIS: ["work"]},
        redis_generation=redis_generation,  # Redis 7.0 and 8.0 (conftest's fixture)
        monitoring={
            "workload": {
                "longest_countdown_seconds": LONGEST_COUNTDOWN_SECONDS,
                "hard_time_limit_seconds": HARD_TIME_LIMIT_SECONDS,
                "prefetch_multiplier": PREFETCH_MULTIPLIER,
            }
        },
    )
    client = stack.redis.client()
    stack.start_worker("crashing", REDIS)
    stack.wait_quiet()
    stack.send(REDIS, "work", "events.sleep", args=(TASK_SECONDS,))
    wait_for(
        lambda: client.hlen("unacked") == 1 and stack.depth(REDIS, "work") == 0,
        what="the task reserved by the crashing worker",
    )
    # Its colleague comes up now (it could have taken the task before); the task runs on.
    stack.start_worker("healthy", REDIS)
    assert client.hlen("unacked") == 1
    stack.kill_worker("crashing", signal.SIGKILL)

    crashed = stack.worker_name("crashing")
    stack.wait_alerts(
        {
            alert("CeleryReservationsOrphaned", broker=REDIS),
            alert("CeleryWorkerDown", broker=REDIS, worker=crashed),
        },
        [
            "CeleryReservedNearVisibilityTimeout",
            "CeleryAllWorkersDown",
            "CeleryQueueNoConsumers",
            "CeleryQueueWorkersDropped",
            "CeleryExporterDown",
            "CeleryBrokerDown",
        ],
    )
    # Still reserved, by nobody: only visibility_timeout would bring it back.
    assert client.hlen("unacked") == 1
    assert stack.depth(REDIS, "work") == 0
    age = stack.value(f'celery_broker_reserved_oldest_age_seconds{{broker="{REDIS}"}}')
    assert age is not None
    assert ORPHAN_AFTER_SECONDS < age < 0.8 * 3600
    healthy = stack.worker_name("healthy")
    assert stack.value(f'celery_worker_up{{worker="{healthy}"}}') == 1.0


# --- scenario 5 ---------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.rabbitmq
def test_hung_broker_is_down_and_other_broker_untouched(make_stack, redis_generation):
    """Situation: one exporter watches a Redis and a RabbitMQ broker; the Redis server hangs
    (SIGSTOP: connections stay open, nothing answers). On RabbitMQ a worker runs a steady
    workload, and a second queue holds 3 messages no one consumes (there from the start), so
    CeleryQueueNoConsumers is already firing there when Redis hangs.

    Expected at the end of the hang: exactly CeleryBrokerDown for Redis, and RabbitMQ's
    CeleryQueueNoConsumers still firing, never resolved (the same activeAt as before the
    hang). Meanwhile Prometheus kept scraping: ``up`` stayed 1, every scrape finished within
    the scrape timeout, and RabbitMQ's celery_queue_messages kept fresh samples. Silent:
    CeleryExporterDown, CeleryBrokerDown for RabbitMQ, and every other RabbitMQ alert. After
    SIGCONT the Redis alert clears. Why: issue 13 item 5, one hung broker made every scrape
    time out, the whole target went down and every alert resolved (a false all-clear) while
    CeleryBrokerDown never fired.
    """
    stack = make_stack(
        queues={REDIS: ["work"], RABBIT: ["work", "orphan"]},
        preload=[Send(RABBIT, "orphan", "events.ok", args=(1,), count=3)],
        # The hung broker's generation, Redis 7.0 and 8.0 (conftest's fixture); RabbitMQ, the
        # untouched bystander, stays 3.10: one more generation there would double the run for
        # no broker-specific behaviour.
        redis_generation=redis_generation,
    )
    stack.start_worker("rabbit", RABBIT)
    stack.workload([Send(RABBIT, "work", args=(0.01,))], period=0.5)
    orphan = alert("CeleryQueueNoConsumers", broker=RABBIT, queue=stack.queue(RABBIT, "orphan"))
    before = stack.wait_firing(orphan)
    stack.wait_alerts({orphan}, ["CeleryBrokerDown", "CeleryExporterDown"])

    stack.pause_redis()
    hung_at = time.time()
    down = alert("CeleryBrokerDown", broker=REDIS)
    fired = stack.wait_firing(down)
    rabbit_silent = [key for key in stack.every_alert(broker=RABBIT) if key[0] != orphan[0]]
    stack.wait_alerts({down, orphan}, ["CeleryExporterDown", *rabbit_silent])
    (after,) = stack.prometheus.firing(orphan[0], broker=RABBIT)
    assert after["activeAt"] == before["activeAt"]  # never resolved during the hang

    # Prometheus' own view of the hang: the target stayed up, each scrape answered in time.
    hung = f"{max(int(time.time() - hung_at), 2)}s"
    assert stack.value(f'min_over_time(up{{job="{JOB}"}}[{hung}])') == 1.0
    slowest = stack.value(f'max_over_time(scrape_duration_seconds{{job="{JOB}"}}[{hung}])')
    # up stayed 1 (above): Prometheus would have failed a scrape past its 1 s timeout. Its
    # scrape_duration_seconds adds its own processing (1.0075 s with up 1 at load 8), so the
    # bound here only tells a deadline kept from a wait for the exporter's own timeout.
    assert slowest is not None and slowest < 2.0
    # RabbitMQ's series kept coming: samples newer than the moment Redis' alert fired.
    fired_at = epoch(fired["activeAt"])
    queue = stack.queue(RABBIT, "work")
    newest = stack.value(
        f'max(timestamp(celery_queue_messages{{broker="{RABBIT}", queue="{queue}"}}))'
    )
    assert newest is not None and newest > fired_at
    assert stack.value(f'celery_broker_up{{broker="{RABBIT}"}}') == 1.0
    worker = stack.worker_name("rabbit")
    assert stack.value(f'celery_worker_up{{broker="{RABBIT}", worker="{worker}"}}') == 1.0

    stack.resume_redis()
    stack.wait_alerts({orphan}, ["CeleryBrokerDown", "CeleryExporterDown"])


# --- scenario 6 ---------------------------------------------------------------------------------


@pytest.mark.redis
def test_lost_worker_is_still_down_after_exporter_restart(make_stack):
    """Situation: a worker is SIGKILLed (lost: no worker-offline) while another keeps
    running; CeleryWorkerDown fires. Then the exporter is restarted (a deploy of the exporter,
    a rescheduled pod) with ``events.state_file`` set.

    Expected: the new exporter knows the lost worker from the state file and reports it down
    at its very first scrape (it cannot hear from a dead worker); CeleryWorkerDown for it fires
    again, and only it. The running worker is up again from its next heartbeat. Silent:
    CeleryAllWorkersDown, CeleryExporterDown once the exporter is back, CeleryWorkerDown for the
    running worker. Why: issue 13 item 6, after a restart crashed workers were forgotten and
    their alert never came back.
    """
    stack = make_stack(queues={REDIS: ["work"]}, state_file=True)
    stack.start_worker("lost", REDIS)
    stack.start_worker("steady", REDIS)
    stack.wait_quiet()
    lost, steady = stack.worker_name("lost"), stack.worker_name("steady")
    stack.kill_worker("lost", signal.SIGKILL)
    down = alert("CeleryWorkerDown", broker=REDIS, worker=lost)
    silent = ["CeleryAllWorkersDown", alert("CeleryWorkerDown", worker=steady)]
    stack.wait_alerts({down}, silent)

    stack.restart_exporter()
    assert stack.state_path.exists()
    # The first scrape of the new process: the lost worker, restored from the file, is down.
    first = {
        dict(labels)["worker"]: value for labels, value in stack.series("celery_worker_up").items()
    }
    assert first.get(lost) == 0.0, first
    stack.wait_value(f'celery_worker_up{{worker="{steady}"}}', 1.0)
    stack.wait_alerts({down}, [*silent, "CeleryExporterDown"])
    assert stack.value(f'celery_worker_up{{worker="{lost}"}}') == 0.0


# --- scenario 7 ---------------------------------------------------------------------------------


#: events.worker_offline_grace_seconds (exporter) = exporter.worker_offline_grace_seconds
#: (monitoring config), short so the scenario sees the series go.
OFFLINE_GRACE_SECONDS = 5


@pytest.mark.redis
def test_graceful_deploy_pages_nothing(make_stack):
    """Situation: a deploy. Worker "old" serves a queue with tasks flowing; worker "new" (the
    next release: a new hostname, like a new pod) starts on the same queue, then "old" gets
    SIGTERM (Celery's warm shutdown: it finishes its task and sends worker-offline).

    Expected: no alert at all, pending included, during the whole deploy and after it: "old"
    is reported offline (celery_worker_offline 1, celery_worker_up 0) during the grace period
    and then every series of it is gone, from the exporter and from Prometheus. Silent:
    everything, CeleryWorkerDown above all. Why: issue 13 item 7, every graceful deploy raised
    CeleryWorkerDown for each replaced worker, for an hour.
    """
    grace = OFFLINE_GRACE_SECONDS
    stack = make_stack(
        queues={REDIS: ["work"]},
        exporter={"events": {"worker_offline_grace_seconds": grace}},
        monitoring={"exporter": {"worker_offline_grace_seconds": grace}},
    )
    stack.start_worker("old", REDIS)
    workload = stack.workload([Send(REDIS, "work", args=(0.05,))], period=0.5)
    stack.wait_quiet()
    started = time.time()
    old, new = stack.worker_name("old"), stack.worker_name("new")

    stack.start_worker("new", REDIS)
    stack.stop_worker("old")
    wait_for(
        lambda: list(stack.series("celery_worker_offline", worker=old).values()) == [1.0],
        timeout=10,
        what="old reported offline",
    )
    assert list(stack.series("celery_worker_up", worker=old).values()) == [0.0]

    def old_series() -> list:
        return [key for key in stack.metrics() if ("worker", old) in key[1]]

    stack.watch_silence(grace + 2, interval=1.0)
    wait_for(lambda: not old_series(), timeout=grace + 10, what="old's series dropped")
    stack.watch_silence(4, interval=1.0)
    assert stack.query(f'celery_worker_up{{worker="{old}"}}')["data"]["result"] == []
    assert stack.value(f'celery_worker_up{{worker="{new}"}}') == 1.0
    assert stack.alerts_ever(started) == set()
    stack.assert_alerts(set(), [name for name, _ in stack.every_alert()])
    # The work flowed throughout, through the new worker at the end.
    assert workload.errors == []
    succeeded = f'sum(celery_task_succeeded_total{{broker="{REDIS}"}})'
    before = stack.value(succeeded)
    wait_for(lambda: (stack.value(succeeded) or 0) > (before or 0), what="tasks still run")


# --- scenario 9 ---------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.rabbitmq
def test_broker_without_workers_does_not_page_all_workers_down(make_stack, rabbitmq_generation):
    """Situation: events are consumed on two brokers (the exporter turns them on for all at
    once); workers run on Redis only, RabbitMQ never had any.

    Expected: first nothing at all (RabbitMQ has no worker series, so "all its workers are
    down" is not a thing); then, as the control, the Redis worker is SIGKILLed: its broker had
    workers and has none up, so CeleryAllWorkersDown and CeleryWorkerDown fire for Redis, and
    CeleryQueueWorkersDropped for its queue (its live workers fell from 1 to 0).
    Silent: every alert about RabbitMQ (CeleryAllWorkersDown above all). Why: issue 13 item 9,
    a critical page for a broker that never had workers.
    """
    stack = make_stack(
        queues={REDIS: ["work"], RABBIT: ["work"]},
        # The broker without workers, RabbitMQ 3.10 and 4.0 (conftest's fixture), is the
        # subject; the Redis control stays 7.0 (its worker's loss is not generation-specific).
        rabbitmq=rabbitmq_generation,
    )
    stack.start_worker("only", REDIS)
    workload = stack.workload([Send(REDIS, "work", args=(0.01,))], period=1.0)
    stack.wait_quiet()
    started = time.time()
    stack.watch_silence(8)
    assert stack.alerts_ever(started) == set()

    workload.stop()
    wait_for(lambda: stack.depth(REDIS, "work") == 0, what="the Redis queue drained")
    stack.kill_worker("only", signal.SIGKILL)
    worker = stack.worker_name("only")
    stack.wait_alerts(
        {
            alert("CeleryWorkerDown", broker=REDIS, worker=worker),
            alert("CeleryAllWorkersDown", broker=REDIS),
            alert("CeleryQueueWorkersDropped", broker=REDIS, queue=stack.queue(REDIS, "work")),
        },
        must_be_silent=stack.every_alert(broker=RABBIT),
    )
    assert stack.value(f'celery_event_consumer_up{{job="{JOB}", broker="{RABBIT}"}}') == 1.0


# --- scenario 10 --------------------------------------------------------------------------------


#: Scenario 10's thresholds: a backlog "growing" when its 1 min trend crosses 200 within 1 min.
BACKLOG_MESSAGES = 200
#: Where the backlog stops growing (under BACKLOG_MESSAGES: CeleryQueueBacklogHigh stays off).
BACKLOG_PEAK = 120
#: A few rule evaluations (1 s each): how soon CeleryQueueBacklogGrowing must resolve once
#: Prometheus sees the queue empty.
RESOLVE_EVALUATIONS = 3


@pytest.mark.redis
def test_cleared_backlog_and_rare_failures_do_not_page(make_stack):
    """Situation: (a) on a Redis queue a backlog grows (tasks published faster than the worker
    runs them) until CeleryQueueBacklogGrowing fires, then extra workers drain it; (b) on
    another queue one task name fails 1 run in 9.

    Expected: CeleryQueueBacklogGrowing fires while the backlog grows and is resolved within
    RESOLVE_EVALUATIONS evaluations of Prometheus seeing the queue empty (read from
    Prometheus' own ALERTS series); it is the only alert ever active during the scenario.
    Silent all along: CeleryTaskFailureRatioHigh (1 failure in 9 runs is far below the
    ``min_runs`` volume gate: not even pending), CeleryQueueBacklogHigh (the depth stays under
    200), and everything else. Why: issue 13 item 10, the growing alert fired 45 s after the
    backlog had cleared, and the failure-ratio alert went pending at 1 failure in 9 tasks
    (its 0.01 tasks/s gate let 9 runs in 10 minutes through).
    """
    stack = make_stack(
        queues={REDIS: ["work", "runs"]},
        monitoring={
            "alerts": {
                "CeleryQueueBacklogHigh": {"messages": BACKLOG_MESSAGES},
                "CeleryQueueBacklogGrowing": {
                    "horizon": "5m",
                    "window": "2m",
                    "growth_window": "10s",
                },
            }
        },
    )
    stack.start_worker("slow", REDIS, ["work"])
    stack.start_worker("runner", REDIS, ["runs"])
    stack.wait_quiet()
    started = time.time()

    # (b) One task name, both outcomes. A counter's first sample is no increase to rate(), so
    # one run of each outcome first (Prometheus sees both series), then 8 successes and 1
    # failure: the windowed ratio is exactly 1/9 over 9 runs.
    task = 'task="events.maybe_fail"'
    succeeded = f"sum(celery_task_succeeded_total{{{task}}})"
    failed = f"sum(celery_task_failed_total{{{task}}})"
    stack.send(REDIS, "runs", "events.maybe_fail", args=(True,))
    stack.send(REDIS, "runs", "events.maybe_fail", args=(False,))
    stack.wait_value(succeeded, 1.0)
    stack.wait_value(failed, 1.0)
    for fail in [False] * 4 + [True] + [False] * 4:
        stack.send(REDIS, "runs", "events.maybe_fail", args=(fail,))
    stack.wait_value(succeeded, 9.0)
    stack.wait_value(failed, 2.0)

    # (a) 8 tasks/s of 0.25 s for one solo worker (at most 4/s): the backlog grows.
    queue = stack.queue(REDIS, "work")
    producer = stack.workload([Send(REDIS, "work", args=(0.25,), count=4)], period=0.5)
    growing = alert("CeleryQueueBacklogGrowing", broker=REDIS, queue=queue)
    stack.wait_firing(growing, timeout=90)
    # Growing for a while (the trend of the window is all growth), then drained at once.
    wait_for(lambda: stack.depth(REDIS, "work") >= BACKLOG_PEAK, timeout=90, what="the peak")
    producer.stop()
    assert stack.depth(REDIS, "work") < BACKLOG_MESSAGES
    stack.start_worker("drain", REDIS, ["work"], pool="prefork", concurrency=10)
    depth = f'sum(celery_queue_messages{{broker="{REDIS}", queue="{queue}"}})'
    stack.wait_value(depth, 0.0, timeout=90)
    stack.wait_alerts(set(), [name for name, _ in stack.every_alert()], timeout=60)

    # Prometheus' own timeline, once it covers a few evaluations after the empty queue.
    def emptied_a_while_ago() -> float | None:
        now = time.time()
        emptied = _first_zero_after_peak(stack.prometheus.query_range(depth, started, now))
        return emptied if emptied is not None and now - emptied > RESOLVE_EVALUATIONS + 1 else None

    emptied = wait_for(emptied_a_while_ago, timeout=30, interval=0.5, what="the empty queue")
    end = time.time()
    history = stack.prometheus.query_range(
        f'ALERTS{{alertname="CeleryQueueBacklogGrowing", queue="{queue}"}}', started, end
    )
    last_active = max(float(t) for series in history for t, _ in series["values"])
    assert last_active - emptied <= RESOLVE_EVALUATIONS, (last_active, emptied)
    assert stack.alerts_ever(started) == {growing}


def _first_zero_after_peak(result: list[dict]) -> float | None:
    """The first time a single-series range result is 0 after its highest value (None: not
    yet)."""
    (series,) = result
    values = [(float(t), float(v)) for t, v in series["values"]]
    peak = max(range(len(values)), key=lambda i: values[i][1])
    return next((t for t, v in values[peak:] if v == 0), None)


# --- scenario 11 --------------------------------------------------------------------------------


#: The quiet run's length (issue 13: at least 3 minutes) and how often it looks.
QUIET_SECONDS, QUIET_POLL_SECONDS = 180, 3


@pytest.mark.redis
@pytest.mark.rabbitmq
def test_quiet_run_fires_nothing_on_both_brokers(make_stack):
    """Situation: a healthy service on both brokers, as the issue's team runs it: an
    ``evaluations`` queue with urgent, normal and batch tasks and a ``reports`` queue with a
    retried task and countdown (ETA) tasks; RabbitMQ queues declared with x-max-priority 10
    (0..9 used), install(app) in the producer and the workers, one prefork worker per broker
    keeping up with a steady mixed workload, for three minutes.

    Expected: zero alerts, firing or pending, at any evaluation of the whole run (polled every
    few seconds, failing on the first; then Prometheus' ALERTS series checked for the whole
    run, so a blip between two polls counts too). Silent: everything. Why: issue 13's
    acceptance, a quiet run on both brokers must fire nothing; the features added for the
    other scenarios must not make noise in normal operation.
    """
    roles = ["evaluations", "reports"]
    stack = make_stack(queues={REDIS: roles, RABBIT: roles}, max_priority=10)
    sends = []
    for broker, name in ((REDIS, "redis"), (RABBIT, "rabbit")):
        stack.start_worker(name, broker, roles, pool="prefork", concurrency=2)
        sends += [
            Send(broker, "evaluations", args=(0.02,), priority=MOST_URGENT[broker]),
            Send(broker, "evaluations", args=(0.05,), priority=LEAST_URGENT[broker], count=2),
            Send(broker, "evaluations", "events.ok", args=(1,), priority=5, every=2),
            Send(broker, "reports", "events.retry_once", args=(), every=5),
            Send(broker, "reports", "events.ok", args=(2,), countdown=3, every=4),
        ]
    stack.wait_quiet()
    started = time.time()
    workload = stack.workload(sends, period=1.0)
    stack.watch_silence(QUIET_SECONDS, interval=QUIET_POLL_SECONDS)
    workload.stop()
    assert stack.alerts_ever(started) == set()
    assert workload.errors == []
    # It was a real run: every kind of task ran on both brokers.
    for broker in (REDIS, RABBIT):
        for task, least in (
            ("events.sleep", 100),
            ("events.ok", 40),
            ("events.retry_once", 20),
        ):
            ran = stack.value(
                f'sum(celery_task_succeeded_total{{broker="{broker}", task="{task}"}})'
            )
            assert ran is not None and ran >= least, (broker, task, ran)


# --- scenarios 1, 2, 3, 8: priorities and install(app) ----------------------------------------

URGENT, BATCH = "events.urgent", "events.batch"

#: CeleryQueueBacklogGrowing scaled like the recording window (5m -> 30s, i.e. 1/60): a stack
#: a minute old has a minute of data, and the shipped 30m trend with a 1h horizon reads any
#: step of a few messages in that minute as "1000 within the hour". These scenarios are about
#: ages and levels, not trends: a backlog that grew in one burst and then held or drained is
#: not growing, and with these proportions the alert agrees.
TREND_SCALED: dict[str, Any] = {
    "CeleryQueueBacklogGrowing": {"window": "30s", "growth_window": "5s", "horizon": "1m"}
}


def _series(stack: OncallStack, expr: str) -> list[dict[str, str]]:
    """The label sets of an instant query's result (Prometheus' view, not the exporter's)."""
    answer = stack.query(expr)
    assert answer["status"] == "success", answer
    return [item["metric"] for item in answer["data"]["result"]]


def _wait_above(stack: OncallStack, expr: str, limit: float, timeout: float = 60) -> float:
    """Wait until the one-series query ``expr`` is above ``limit``; return its value."""
    return wait_for(
        lambda: (value := stack.value(expr)) is not None and value > limit and value,
        timeout=timeout,
        interval=0.5,
        what=f"{expr} > {limit}",
    )


def _quiet_start(stack: OncallStack) -> float:
    """Wait for the healthy baseline (no alert active: one pending while the stack started
    has resolved, and its ALERTS series is stale-marked), and return when the scenario starts:
    what alerts_ever() reads from."""
    stack.wait_quiet()
    return time.time()


def _send_seen(stack: OncallStack, broker: str, role: str, task: str, **options: Any) -> None:
    """Publish one task and wait until Prometheus has scraped its task-sent: a counter series
    that first appears at 2 has an increase() of 0 for those 2, and the starvation and
    wrong-priority alerts are increase()s."""
    queue = stack.queue(broker, role)
    expr = f'sum(celery_task_sent_total{{queue="{queue}", task="{task}"}})'
    before = stack.value(expr) or 0.0
    stack.send(broker, role, task, **options)
    stack.wait_value(expr, before + 1, what=f"{task} sent seen by Prometheus")


def _description(stack: OncallStack, name: str, **labels: str) -> str:
    assert stack.prometheus is not None
    (found,) = stack.prometheus.firing(name, **labels)
    return found["annotations"]["description"]


#: Where a classic priority queue's per-level depth comes from on each RabbitMQ generation
#: (celery_queue_priority_levels_source_info, docs/rabbitmq.md): 3.10's management API gives the
#: levels (backing_queue_status); 4.0's gives only the total, and the levels come from task-sent
#: events carrying install(app)'s priority. The priority scenarios page the same on both only
#: because of the latter: asserted so that a 4.0 run without levels cannot pass unnoticed.
LEVELS_SOURCE = {"rabbitmq-3": "broker", "rabbitmq-4": "events"}


@pytest.mark.rabbitmq
def test_rabbitmq_urgent_backlog_pages_at_the_level_in_use(make_stack, rabbitmq_generation):
    """Scenario 1 (issue 13, missed page 1). A RabbitMQ queue declared with x-max-priority 10,
    used the way teams use it: urgent work at 9, batch work at 0, nothing at 10. No worker
    consumes it; the producer has install(app), so RabbitMQ reports the head timestamp of the
    most urgent non-empty level (9).

    Fires, exactly:
    * CeleryQueueMostUrgentWaitingTooLong for priority 9: the most urgent level IN USE (the
      exporter marks 9, not the declared 10 nobody publishes to), its head older than the 5 s
      goal, on a queue that also uses another level (0);
    * CeleryQueueNoConsumers: messages wait and RabbitMQ counts no consumer.
    Silent, although their thresholds are short here (5 s, 2 messages): CeleryPriorityStarvation
    and CeleryTaskStarved (both need workers serving the queue's other work, tasks starting or
    received: nothing runs at all, which is NoConsumers' page), CeleryAllWorkersDown (this
    broker never had a worker), CeleryUrgentTaskAtWrongPriority (the urgent task is at the
    right level and nothing was received), CeleryInstrumentationMissing (heads are stamped; no
    worker without install(app)). Nothing else was even pending during the scenario.
    """
    stack = make_stack(
        queues={RABBIT: ["work"]},
        max_priority=10,
        rabbitmq=rabbitmq_generation,  # RabbitMQ 3.10 and 4.0 (conftest's fixture)
        monitoring={
            "urgent_tasks": [URGENT],
            "alerts": {
                **TREND_SCALED,
                "CeleryPriorityStarvation": {"seconds": 5, "window": "30s"},
                "CeleryTaskStarved": {"messages": 2, "window": "1m"},
            },
        },
    )
    start = _quiet_start(stack)
    queue = stack.queue(RABBIT, "work")
    _send_seen(stack, RABBIT, "work", BATCH, priority=0)
    for _ in range(4):
        stack.send(RABBIT, "work", BATCH, priority=0)
    _send_seen(stack, RABBIT, "work", URGENT, priority=9)
    for _ in range(2):
        stack.send(RABBIT, "work", URGENT, priority=9)

    most_urgent = alert(
        "CeleryQueueMostUrgentWaitingTooLong", broker=RABBIT, queue=queue, priority=9
    )
    no_consumers = alert("CeleryQueueNoConsumers", broker=RABBIT, queue=queue)
    stack.wait_alerts(
        {most_urgent, no_consumers},
        must_be_silent=[
            "CeleryPriorityStarvation",
            "CeleryTaskStarved",
            "CeleryAllWorkersDown",
            "CeleryUrgentTaskAtWrongPriority",
            "CeleryInstrumentationMissing",
            "CeleryQueueMessageWaitingTooLong",
        ],
        timeout=60,
    )
    # The level in use, not the declared maximum: 10 exists (x-max-priority 10) and is empty.
    q = f'queue="{queue}"'
    assert stack.value(f"celery_queue_max_priority{{{q}}}") == 10
    assert stack.value(f'celery_queue_messages{{{q}, priority="10"}}') == 0
    marks = {
        s["urgency"]: s["priority"]
        for s in _series(stack, f"celery_queue_priority_urgency_rank{{{q}}}")
    }
    assert marks == {"most": "9", "least": "0"}
    source = LEVELS_SOURCE[rabbitmq_generation.name]
    assert stack.value(f'celery_queue_priority_levels_source_info{{{q}, source="{source}"}}') == 1
    assert stack.value(f'celery_queue_messages{{{q}, priority="9"}}') == 3
    assert stack.value(f'celery_queue_messages{{{q}, priority="0"}}') == 5
    assert "(priority 9)" in _description(stack, "CeleryQueueMostUrgentWaitingTooLong", queue=queue)
    # CeleryTaskStarved's own count is over its limit of 2: only "nothing runs" keeps it silent.
    sent = f"sum(increase(celery_task_sent_total{{{q}, task=~'{BATCH}|{URGENT}'}}[1m]))"
    assert stack.value(sent) > 2
    # Nothing else was active (pending included) at any evaluation since the messages came.
    assert stack.alerts_ever(start) == {most_urgent, no_consumers}


class _BatchAtNine:
    """Keeps one batch task ready at priority 9 on the RabbitMQ queue (RabbitMQ serves it
    before anything at 0), so the worker is never free when a level-0 message could be its
    next: the workers are "busy with batch". Reads the ready count over its own AMQP
    connection; ``urgent_waiting`` is how many ready messages are urgent ones (not batch)."""

    def __init__(self, stack: OncallStack, role: str = "work", seconds: float = 0.8) -> None:
        self.stack, self.role, self.seconds = stack, role, seconds
        self.urgent_waiting = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-at-9", daemon=True)

    def __enter__(self) -> _BatchAtNine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        url = self.stack.url(RABBIT)
        queue = self.stack.queue(RABBIT, self.role)
        try:
            connection = pika.BlockingConnection(pika.URLParameters(url))
            try:
                channel = connection.channel()
                while not self._stop.wait(0.05):
                    ready = channel.queue_declare(queue, passive=True).method.message_count
                    if ready - self.urgent_waiting < 1:
                        self.stack.send(RABBIT, self.role, BATCH, args=(self.seconds,), priority=9)
            finally:
                connection.close()
        except Exception as exc:  # noqa: BLE001 - the scenario asserts there were none
            self.errors.append(exc)


#: Scenario 2's pages on each RabbitMQ generation: the same three. 4.0 reports no per-level depth
#: for a classic priority queue (no backing_queue_status), but with --events and the producer's
#: install(app) (task-sent carries the priority) the exporter places the waiting messages at
#: their levels (docs/rabbitmq.md, source="events": here 8 at 0, 1 at 9, unknown 0, exact), so
#: CeleryPriorityStarvation fires on 4.0 as on 3.10. Without the priority in task-sent (a
#: producer without install(app)) every message is "unknown" and it stays silent on 4.0.
MIGRATION_PAGES = {
    "rabbitmq-3": {
        "CeleryUrgentTaskAtWrongPriority",
        "CeleryTaskStarved",
        "CeleryPriorityStarvation",
    },
    "rabbitmq-4": {
        "CeleryUrgentTaskAtWrongPriority",
        "CeleryTaskStarved",
        "CeleryPriorityStarvation",
    },
}


@pytest.mark.rabbitmq
def test_migration_mistake_pages_as_wrong_priority_and_starved_task(
    make_stack, rabbitmq_generation
):
    """Scenario 2 (issue 13, missed page 2): the Redis -> RabbitMQ migration mistake. The
    queue is declared with x-max-priority 10 and producers still publish as on Redis: the
    urgent task (monitoring's urgent_tasks) at 0, the batch task at 9. RabbitMQ serves 9
    first. While the queue is idle the urgent task runs at once (received at 0: two runs);
    then batch work keeps the one worker (install(app), prefetch 1, late acks) busy, and the
    next 8 urgent tasks are never received. The scenario starts once the worker is up and has
    announced its queues.

    Fires, exactly (the urgent task's labels):
    * CeleryUrgentTaskAtWrongPriority (critical) for events.urgent at priority 0: received at
      0 while the queue's most urgent level in use is 9; its text names both levels;
    * CeleryTaskStarved for events.urgent: 8 sent and not received (limit 5 here), about a
      tenth of its runs received while the worker received nearly every batch run (under the
      0.5 served_ratio); its text names priority 0 as the least urgent level in use, which
      the broker serves last;
    * CeleryPriorityStarvation for priority 0: the rules make it fire too, and rightly: level
      0 is the least urgent level in use, its messages have waited past the limit (5 s here)
      with no level-0 start in that limit, while the queue's worker kept starting tasks. RabbitMQ
      reports no age for a level below the head, so it is the rule's second branch (waiting the
      whole limit, per-level starts known from install(app)); its text says "priority 0, the
      least urgent level in use", not "low-priority tasks".
    Silent: CeleryQueueMostUrgentWaitingTooLong (level 9's batch head starts within a second or
    two; limit 15 s here against the management API's 5 s statistics lag),
    CeleryTaskStarved for events.batch (one or two ready at a time, served better than the
    urgent task), CeleryPrioritiesIneffective
    (never 10 messages waiting: no "under backlog" ratio), CeleryQueueNoConsumers,
    CeleryInstrumentationMissing (install(app) on both sides).
    Run on RabbitMQ 3.10 and 4.0, the same pages on both (MIGRATION_PAGES: on 4.0 the levels
    come from the events).
    """
    stack = make_stack(
        queues={RABBIT: ["work"]},
        max_priority=10,
        rabbitmq=rabbitmq_generation,  # RabbitMQ 3.10 and 4.0 (conftest's fixture)
        monitoring={
            "urgent_tasks": [URGENT],
            "alerts": {
                **TREND_SCALED,
                "CeleryTaskStarved": {"messages": 5, "window": "1m"},
                "CeleryPriorityStarvation": {"seconds": 5, "window": "30s"},
                "CeleryQueueMostUrgentWaitingTooLong": {"seconds": 15},
            },
        },
    )
    queue = stack.queue(RABBIT, "work")
    q = f'queue="{queue}"'
    stack.start_worker("evaluations", RABBIT)
    start = _quiet_start(stack)
    # Idle queue: each urgent task is received at once, at 0 (one at a time, so Prometheus sees
    # the per-level counter grow: a series first seen at 2 has an increase() of 0).
    received_at = f'sum(celery_task_received_by_priority_total{{{q}, task="%s", priority="%s"}})'
    for count in (1, 2):
        stack.send(RABBIT, "work", URGENT, priority=0)
        stack.wait_value(received_at % (URGENT, "0"), count, what="urgent task received at 0")

    with _BatchAtNine(stack) as batch:
        _wait_above(stack, received_at % (BATCH, "9"), 0)
        batch.urgent_waiting = 8
        for _ in range(8):
            stack.send(RABBIT, "work", URGENT, priority=0)
        wrong = alert(
            "CeleryUrgentTaskAtWrongPriority", broker=RABBIT, queue=queue, task=URGENT, priority=0
        )
        starved = alert("CeleryTaskStarved", broker=RABBIT, queue=queue, task=URGENT)
        level = alert("CeleryPriorityStarvation", broker=RABBIT, queue=queue, priority=0)
        names = MIGRATION_PAGES[rabbitmq_generation.name]
        pages = {key for key in (wrong, starved, level) if key[0] in names}
        stack.wait_alerts(
            pages,
            must_be_silent=[
                "CeleryQueueMostUrgentWaitingTooLong",
                alert("CeleryTaskStarved", task=BATCH),
                "CeleryPrioritiesIneffective",
                "CeleryQueueNoConsumers",
                "CeleryInstrumentationMissing",
                *({wrong, starved, level} - pages),
            ],
            timeout=60,
        )
        texts = {name: _description(stack, name, queue=queue) for name in names}
        # Still the situation asserted: none of the 8 ran, batch kept running.
        assert stack.value(received_at % (URGENT, "0")) == 2
        assert batch.errors == []
        ever = stack.alerts_ever(start)
    assert "at priority 0 of" in texts[wrong[0]]
    assert "whose most urgent level is priority 9" in texts[wrong[0]]
    assert (
        "priority 0, the least urgent level in use, which the broker serves last"
        in (texts[starved[0]])
    )
    if level in pages:
        assert "priority 0, the least urgent level in use" in texts[level[0]]
    marks = {
        s["urgency"]: s["priority"]
        for s in _series(stack, f"celery_queue_priority_urgency_rank{{{q}}}")
    }
    assert marks == {"most": "9", "least": "0"}
    source = LEVELS_SOURCE[rabbitmq_generation.name]
    assert stack.value(f'celery_queue_priority_levels_source_info{{{q}, source="{source}"}}') == 1
    assert ever == pages


@pytest.mark.redis
def test_without_install_urgent_backlog_gives_only_the_info_alert(make_stack, redis_generation):
    """Scenario 3 (issue 13, missed page 3): Redis, no install(app) on the producer nor on the
    worker. Six urgent tasks (level 0, served first on Redis; 4 s each) and two batch tasks
    (level 9) wait; one worker (prefork: a solo worker sends no heartbeat while it runs a 4 s
    task, and with the 3 s heartbeat timeout here it would count as lost) drains the urgent
    ones slowly. Without the publish stamp the
    exporter knows only head-tracking's lower bounds: level 0's resets each time the worker
    takes the head (it never exceeds one task's run, while the real oldest wait grows to ~20 s),
    level 9's grows while nobody takes it.

    Fires, exactly: CeleryInstrumentationMissing (info) for the broker, its text naming both
    sides (producers: heads without the stamp; workers: queues not announced).
    Silent, although the exported lower bounds pass their limits (shortened here: 2 s, 8 s, 8 s;
    asserted below): CeleryQueueMostUrgentWaitingTooLong, CeleryQueueMessageWaitingTooLong,
    CeleryPriorityStarvation (an age alert never judges a lower bound); CeleryQueueNoConsumers
    (a live worker did not announce its queues); CeleryUrgentTaskAtWrongPriority (the level a
    task is received at needs install(app) on workers: unknown, which the info alert says).
    """
    stack = make_stack(
        queues={REDIS: ["work"]},
        producer_install=False,
        redis_generation=redis_generation,  # Redis 7.0 and 8.0 (conftest's fixture)
        monitoring={
            "urgent_tasks": [URGENT],
            "alerts": {
                **TREND_SCALED,
                "CeleryQueueMostUrgentWaitingTooLong": {"seconds": 2},
                "CeleryQueueMessageWaitingTooLong": {"seconds": 8},
                "CeleryPriorityStarvation": {"seconds": 8, "window": "30s"},
            },
        },
    )
    queue = stack.queue(REDIS, "work")
    q = f'queue="{queue}"'
    start = _quiet_start(stack)
    stack.start_worker("evaluations", REDIS, install=False, pool="prefork")
    for _ in range(6):
        stack.send(REDIS, "work", URGENT, args=(4.0,), priority=0)
    for _ in range(2):
        stack.send(REDIS, "work", BATCH, priority=9)
    missing = alert("CeleryInstrumentationMissing", broker=REDIS)
    stack.wait_firing(missing)
    # Level 9's lower bound past MessageWaitingTooLong's and PriorityStarvation's 8 s plus
    # their for: and two evaluations: without the unstamped guard both would fire by now.
    _wait_above(stack, f'celery_queue_oldest_message_age_seconds{{{q}, priority="9"}}', 12)
    stack.assert_alerts(
        {missing},
        must_be_silent=[
            "CeleryQueueMostUrgentWaitingTooLong",
            "CeleryQueueMessageWaitingTooLong",
            "CeleryPriorityStarvation",
            "CeleryQueueNoConsumers",
            "CeleryUrgentTaskAtWrongPriority",
        ],
    )
    assert stack.alerts_ever(start) == {missing}
    # Still an urgent backlog: the worker has run at most half of it.
    assert stack.redis is not None and stack.redis.client().llen(queue) >= 2
    # What the age alerts leave alone: lower bounds over their limits, flagged unstamped.
    assert (
        stack.value(
            f'max_over_time(celery_queue_oldest_message_age_seconds{{{q}, priority="0"}}[1m])'
        )
        > 2
    )
    flags = {
        s["priority"] for s in _series(stack, f"celery_queue_oldest_message_unstamped{{{q}}} == 1")
    }
    assert flags == {"0", "9"}
    assert stack.value(f'celery_workers_queues_unknown{{broker="{REDIS}"}}') == 1
    text = _description(stack, "CeleryInstrumentationMissing", broker=REDIS)
    assert "producers lack install(app)" in text
    assert "workers lack install(app)" in text


@pytest.mark.redis
def test_without_install_busy_worker_does_not_page_no_consumers(make_stack, redis_generation):
    """Scenario 8 (issue 13, false page 8): Redis, no install(app) anywhere. One worker
    consumes queues A and B; it runs a long task from A (prefork, prefetch 1, late acks: it
    takes nothing else meanwhile, and heartbeats on) while five tasks wait in B. It never ran
    a task from B, so the events know it only as A's worker (celery_queue_workers has no
    series for B) and celery_workers_queues_unknown is 1.

    Fires, exactly: CeleryInstrumentationMissing (info) for the broker.
    Silent: CeleryQueueNoConsumers (critical; its events branch needs every live worker to have
    announced its queues: a live worker may well be B's, busy elsewhere), checked over the
    whole scenario, not just at its end; CeleryQueueMessageWaitingTooLong (B's head lower bound
    passes the 5 s limit set here, but is unstamped); CeleryTaskStarved for B's task (4 sent and
    not received over a limit of 3, but no other task of B was received: B is not served
    behind other work of its own, its worker is busy on A); CeleryQueueWorkersDropped,
    CeleryWorkerDown,
    CeleryAllWorkersDown (the worker is up).
    """
    stack = make_stack(
        queues={REDIS: ["a", "b"]},
        producer_install=False,
        redis_generation=redis_generation,  # Redis 7.0 and 8.0 (conftest's fixture)
        monitoring={
            "alerts": {
                **TREND_SCALED,
                "CeleryQueueMessageWaitingTooLong": {"seconds": 5},
                "CeleryTaskStarved": {"messages": 3, "window": "1m"},
            },
        },
    )
    queue_a, queue_b = stack.queue(REDIS, "a"), stack.queue(REDIS, "b")
    start = _quiet_start(stack)
    stack.start_worker("shared", REDIS, ("a", "b"), install=False, pool="prefork")
    stack.send(REDIS, "a", "events.sleep", args=(45.0,))
    stack.wait_value(
        f'sum(celery_task_started_total{{queue="{queue_a}"}})', 1, what="A's task running"
    )
    _send_seen(stack, REDIS, "b", "events.ok")
    for _ in range(4):
        stack.send(REDIS, "b", "events.ok")
    # B's five messages have waited 10 s in Prometheus' view: NoConsumers' for: (2 s) several
    # times over.
    b_depth = f'celery_queue_messages{{queue="{queue_b}", priority="0"}}'
    stack.wait_value(f"min_over_time({b_depth}[10s])", 5, timeout=60, what="B waiting 10 s")

    missing = alert("CeleryInstrumentationMissing", broker=REDIS)
    stack.assert_alerts(
        {missing},
        must_be_silent=[
            "CeleryQueueNoConsumers",
            "CeleryQueueMessageWaitingTooLong",
            "CeleryTaskStarved",
            "CeleryQueueWorkersDropped",
            "CeleryWorkerDown",
            "CeleryAllWorkersDown",
        ],
    )
    # The situation that paged before: no worker count for B, one live worker with unknown
    # queues; B's head lower bound over the age limit; the long task still running.
    assert _series(stack, f'celery_queue_workers{{queue="{queue_b}"}}') == []
    assert stack.value(f'celery_queue_workers{{queue="{queue_a}"}}') == 1
    assert stack.value(f'celery_workers_queues_unknown{{broker="{REDIS}"}}') == 1
    assert (
        stack.value(f'celery_queue_oldest_message_age_seconds{{queue="{queue_b}", priority="0"}}')
        > 5
    )
    assert stack.value(f'sum(celery_task_started_total{{queue="{queue_a}"}})') == 1
    # B's sent-not-received count is over CeleryTaskStarved's limit of 3 (nothing received).
    assert stack.value(f'sum(increase(celery_task_sent_total{{queue="{queue_b}"}}[1m]))') > 3
    # B's task is known from its sends, so its received series is exported, at 0 (issue 21).
    received_b = f'celery_task_received_total{{queue="{queue_b}"}}'
    assert [labels["task"] for labels in _series(stack, received_b)] == ["events.ok"]
    assert stack.value(f"sum({received_b})") == 0
    assert stack.alerts_ever(start) == {missing}
    stack.kill_worker("shared")  # the 45 s task: no need to wait for a warm shutdown


# === issue 21: the second on-call round ==========================================================


@pytest.fixture
def make_replica_stack() -> Iterator[Callable[..., ReplicaStack]]:
    """``make_replica_stack(**knobs)``: a started :class:`ReplicaStack` (exporter replicas,
    Alertmanager), closed after the test."""
    with replica_stacks() as make:
        yield make


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    reply = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=15)
    reply.raise_for_status()
    return parse_exposition(reply.text)


def task_series(port: int, name: str, task: str) -> dict[str, float]:
    """{exception or limit or "": value} of one counter of one task, from one replica."""
    out = {}
    for (sample, labels), value in scrape(port).items():
        found = dict(labels)
        if sample == name and found.get("task") == task:
            out[found.get("exception") or found.get("limit") or ""] = value
    return out


# --- a burst of failures of a new task, two replicas ------------------------------------------

#: The burst: events.raise never ran before; 45 ValueError and 15 KeyError (60 finished runs,
#: past min_runs 50) all land between two scrapes. events.boom fails 30 times: under min_runs,
#: unless the two replicas' counts are summed (60).
BURST = {"ValueError": 45, "KeyError": 15}
HALF_BURST = 30


@pytest.mark.redis
def test_failure_burst_of_a_new_task_pages_once_naming_its_exceptions(make_replica_stack):
    """Situation: two exporter replicas in one job. With Prometheus paused (no scrape), a task
    that never failed before fails 60 times (45 ValueError, 15 KeyError) and another 30 times;
    then Prometheus scrapes again: every failure counter first appears at its full value.

    Expected: CeleryTaskFailureRatioHigh for events.raise only, once (one Alertmanager page,
    whatever the replica count), its description naming "ValueError (75%), KeyError (25%)".
    Silent: CeleryTaskFailureRatioHigh for events.boom (30 runs, under the 50-run gate: only
    summing the replicas would pass it) and every other alert. The exporters export the
    outcome counters of a seen task at 0 (retried, hard limit). Why: issue 21 items 3, 4, 5:
    increase() missed a first burst, the page did not name the exception, replicas doubled
    counts.
    """
    stack = make_replica_stack(queues={REDIS: ["work"]}, replicas=2, alertmanager=True)
    stack.start_worker("a", REDIS)
    stack.wait_quiet()
    queue = stack.queue(REDIS, "work")

    stack.pause_prometheus()
    for kind, count in BURST.items():
        for _ in range(count):
            stack.send(REDIS, "work", "events.raise", args=(kind,))
    for _ in range(HALF_BURST):
        stack.send(REDIS, "work", "events.boom", args=())
    for port in stack.ports:  # every replica counted the whole burst while nobody scraped
        wait_for(
            lambda port=port: (
                task_series(port, "celery_task_failed_total", "events.raise")
                == {k: float(v) for k, v in BURST.items()}
                and task_series(port, "celery_task_failed_total", "events.boom")
                == {"ValueError": float(HALF_BURST)}
            ),
            timeout=60,
            interval=0.5,
            what=f"replica on {port} counted the burst",
        )
        # label sets the exporter knows are exported at 0 (not only the failures)
        assert task_series(port, "celery_task_retried_total", "events.raise") == {"": 0.0}
        assert task_series(port, "celery_task_time_limit_exceeded_total", "events.raise") == {
            "hard": 0.0,
            "soft": 0.0,
        }
    stack.resume_prometheus()

    page = alert("CeleryTaskFailureRatioHigh", broker=REDIS, queue=queue, task="events.raise")
    everything_else = [key for key in stack.every_alert() if key[0] != page[0]]
    silent = [*everything_else, alert("CeleryTaskFailureRatioHigh", task="events.boom")]
    stack.wait_alerts({page}, silent, timeout=90)
    fired = stack.wait_firing(page)
    assert "instance" not in fired["labels"], fired["labels"]
    assert fired["annotations"]["description"] == (
        f"100% of the runs of task events.raise from queue {queue} on broker {REDIS} that "
        "finished in the last 10m failed (threshold 10%, judged from 50 finished runs on). "
        "Top exceptions: ValueError (75%), KeyError (25%)."
    )
    # Alertmanager: one page for the task, none for anything else.
    wait_for(lambda: stack.page_keys(), timeout=60, interval=0.5, what="a page")
    stack.watch_silence(5, allowed={page})
    assert stack.page_keys() == [page]
    assert stack.page_log is not None and stack.page_log.resolved() == []


# --- a plain queue misses its wait objective; a short burst does not -------------------------

#: The scenario queue's own objective (monitoring: alerts.CeleryQueueWaitObjectiveMissed.queues);
#: the other queue keeps the default (300 s).
OBJECTIVE_SECONDS = 8
#: The backlog already waiting when the exporter starts: one worker at concurrency 2 needs
#: about 20 s for it, so its head waits far past the objective.
BACKLOG, BACKLOG_TASK_SECONDS = 40, 1.0
#: The later burst: drained in about 4 s, within the objective.
BURST_TASKS, BURST_TASK_SECONDS = 16, 0.5


@pytest.mark.redis
def test_plain_queue_pages_on_its_wait_objective_and_a_short_burst_does_not(make_replica_stack):
    """Situation: a plain queue (one priority level, like most Celery apps) with its own wait
    objective of 8 s, and a second queue on the default objective (300 s). A backlog of 40
    one-second tasks waits in the first and 5 in the second when one worker at concurrency 2
    starts. Later, a burst of 16 half-second tasks drains within about 4 s.

    Expected: CeleryQueueWaitObjectiveMissed for the first queue only ("objective of 8s"),
    nothing else firing; once drained it resolves; the burst that drains within the objective
    raises nothing, not even pending. (CeleryQueueNoConsumers and CeleryQueueBacklogGrowing get
    a longer for: here: the backlog waits a few seconds for the worker and a burst is a jump of
    the depth; their own behaviour is scenario 10 of tests/test_oncall_scenarios.py.) Why:
    issue 21 item 6, a plain queue could not page on waiting short of the 30-minute alert.
    """
    tag = uuid.uuid4().hex[:8]
    probe = ReplicaStack(tag=tag, queues={REDIS: ["work", "other"]})
    work, other = probe.queue(REDIS, "work"), probe.queue(REDIS, "other")
    shutil.rmtree(probe.workdir, ignore_errors=True)
    stack = make_replica_stack(
        tag=tag,
        queues={REDIS: ["work", "other"]},
        monitoring={
            "alerts": {
                "CeleryQueueWaitObjectiveMissed": {"queues": {work: OBJECTIVE_SECONDS}},
                "CeleryQueueNoConsumers": {"for": "1m"},
                "CeleryQueueBacklogGrowing": {"for": "5m"},
            }
        },
        preload=[
            Send(REDIS, "work", args=(BACKLOG_TASK_SECONDS,), count=BACKLOG),
            Send(REDIS, "other", args=(BACKLOG_TASK_SECONDS,), count=5),
        ],
    )
    stack.start_worker("a", REDIS, ("work", "other"), pool="prefork", concurrency=2)
    missed = alert("CeleryQueueWaitObjectiveMissed", broker=REDIS, queue=work)
    silent = [
        key
        for key in stack.every_alert()
        if key[0] not in (missed[0], "CeleryQueueNoConsumers", "CeleryQueueBacklogGrowing")
    ]
    stack.wait_alerts({missed}, [*silent, alert(missed[0], queue=other)], timeout=60)
    description = stack.wait_firing(missed)["annotations"]["description"]
    assert f"over the queue's wait objective of {OBJECTIVE_SECONDS}s, for more than 2s" in (
        description
    ), description

    wait_for(
        lambda: stack.depth(REDIS, "work") == 0 and stack.depth(REDIS, "other") == 0,
        timeout=120,
        interval=0.5,
        what="the backlog drained",
    )
    stack.wait_alerts(set(), [*silent, missed[0]], timeout=60)

    start = time.time()
    for _ in range(BURST_TASKS):
        stack.send(REDIS, "work", args=(BURST_TASK_SECONDS,))
    wait_for(
        lambda: stack.depth(REDIS, "work") == 0, timeout=60, interval=0.5, what="burst drained"
    )
    time.sleep(OBJECTIVE_SECONDS + 4)  # past the objective and for: after the last start
    # Drained: no level has a next message, so no age at all (absent, not 0: issue 25).
    answer = stack.query(f'celery_queue_oldest_message_age_seconds{{queue="{work}"}}')
    assert (answer["status"], answer["data"]["result"]) == ("success", [])
    ever = {key for key in stack.alerts_ever(start) if key[0] == missed[0]}
    assert ever == set(), ever
    stack.assert_alerts(set(), silent)


# --- an exporter restart keeps the page, with the shipped for: and keep_firing_for ------------


def shipped_timings() -> dict[str, dict[str, str]]:
    """Every alert's committed ``for:`` and ``keep_firing_for`` (monitoring/config.yaml)."""
    base = monitoring_config.load()
    return {
        name: {"for": str(s["for"]), "keep_firing_for": str(s.get("keep_firing_for", "0s"))}
        for name, s in base["alerts"].items()
    }


#: How long the killed exporter stays away before it is started again (a crash and a restart,
#: a rescheduled pod), and how long the page is watched after it is back.
RESTART_GAP_SECONDS, AFTER_RESTART_SECONDS = 15, 30


@pytest.mark.redis
def test_exporter_crash_and_restart_keeps_a_page_firing_with_the_shipped_timings(
    make_replica_stack,
):
    """Situation: the shipped ``for:`` (CeleryWorkerDown 2m) and ``keep_firing_for`` (5m) of
    monitoring/config.yaml, unshortened. A worker is SIGKILLed (lost) while another keeps
    running; CeleryWorkerDown fires and Alertmanager pages. Then the exporter is SIGKILLed (no
    state written on the way out), stays away 15 s, and starts again with its state file.

    Expected: the restarted exporter reports the lost worker down at its very first scrape
    (state restored before serving); CeleryWorkerDown fires at every evaluation from the page
    to the end (never resolved in Prometheus), Alertmanager got exactly one firing
    notification for it and no resolved one; nothing else fires (CeleryExporterDown: the
    outage is shorter than its 5m for:). Why: issue 21 item 2, every exporter restart sent a
    resolved and, for: later, a second page.
    """
    stack = make_replica_stack(
        queues={REDIS: ["work"]},
        state_file=True,
        alertmanager=True,
        monitoring={"alerts": shipped_timings()},
    )
    assert stack.monitoring_config["alerts"]["CeleryWorkerDown"]["for"] == "2m"
    assert stack.monitoring_config["alerts"]["CeleryWorkerDown"]["keep_firing_for"] == "5m"
    stack.start_worker("lost", REDIS)
    stack.start_worker("steady", REDIS)
    stack.wait_quiet()
    lost, steady = stack.worker_name("lost"), stack.worker_name("steady")
    stack.kill_worker("lost")
    down = alert("CeleryWorkerDown", broker=REDIS, worker=lost)
    silent = [key for key in stack.every_alert() if key[0] != down[0]]
    silent.append(alert(down[0], worker=steady))
    stack.wait_alerts({down}, silent, timeout=200)
    fired_at = time.time()
    wait_for(lambda: stack.page_keys() == [down], timeout=60, interval=0.5, what="the page")

    stack.kill_exporters()
    time.sleep(RESTART_GAP_SECONDS)
    assert stack.value(f'up{{job="{JOB}"}}') == 0.0  # Prometheus saw the outage
    stack.start_exporter()
    first = {dict(k)["worker"]: v for k, v in stack.series("celery_worker_up").items()}
    assert first.get(lost) == 0.0, first  # restored from the state file before serving
    stack.wait_value(f'celery_worker_up{{worker="{steady}"}}', 1.0)
    # CeleryExporterDown was pending during the outage (never firing: 5m for:); it clears at
    # the first evaluation that sees the exporter up again.
    stack.wait_alerts({down}, silent, timeout=30)
    stack.watch_silence(AFTER_RESTART_SECONDS, allowed={down})
    stack.assert_alerts({down}, silent)

    # Never resolved in Prometheus: firing at every 1 s evaluation since the page.
    assert stack.prometheus is not None
    series = stack.prometheus.query_range(
        f'ALERTS{{alertname="{down[0]}", alertstate="firing", worker="{lost}"}}',
        fired_at,
        time.time(),
        step="1s",
    )
    assert len(series) == 1, series
    stamps = [float(t) for t, _ in series[0]["values"]]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b - a > 1.5]
    assert gaps == [], gaps
    # Alertmanager: one page, no all-clear.
    assert stack.page_keys() == [down]
    assert stack.page_log is not None and stack.page_log.resolved() == []


# --- two replicas, one lost worker: one page per subject ----------------------------------------


@pytest.mark.redis
def test_two_replicas_page_a_lost_worker_once_per_subject(make_replica_stack):
    """Situation: two exporter replicas in one job (the Kubernetes default) watch one Redis
    broker served by one worker, which is SIGKILLed (lost).

    Expected: CeleryWorkerDown for the worker, CeleryAllWorkersDown for the broker and
    CeleryQueueWorkersDropped for its queue (1 worker to 0), each ONE alert without an
    ``instance`` label, and Alertmanager pages each once (three pages, not six). Silent:
    everything else. Why: issue 21 item 5, each replica paged each subject.
    """
    stack = make_replica_stack(queues={REDIS: ["work"]}, replicas=2, alertmanager=True)
    stack.start_worker("a", REDIS)
    stack.wait_quiet()
    queue, worker = stack.queue(REDIS, "work"), stack.worker_name("a")
    # both replicas count the worker on its queue (its announcement arrived) before the kill
    stack.wait_value(f'count(celery_queue_workers{{queue="{queue}"}} == 1)', 2.0)
    stack.kill_worker("a")
    expected = {
        alert("CeleryWorkerDown", broker=REDIS, worker=worker),
        alert("CeleryAllWorkersDown", broker=REDIS),
        alert("CeleryQueueWorkersDropped", broker=REDIS, queue=queue),
    }
    names = {key[0] for key in expected}
    silent = [key for key in stack.every_alert() if key[0] not in names]
    stack.wait_alerts(expected, silent, timeout=90)
    assert stack.prometheus is not None
    for fired in stack.prometheus.active_alerts():
        assert "instance" not in fired["labels"], fired["labels"]
    assert stack.value(f'count(celery_worker_up{{worker="{worker}"}} == 0)') == 2.0  # both saw it
    wait_for(
        lambda: len(stack.page_keys()) >= len(expected), timeout=60, interval=0.5, what="pages"
    )
    stack.watch_silence(5, allowed=expected)
    assert stack.page_keys() == sorted(expected, key=str)

    # Dashboards: every panel query shows one line per subject, not one per replica (only the
    # exporter's own series, up and celery_exporter_*, are per instance).
    values = {"job": JOB, "namespace": ".*", "broker": REDIS, "queue": queue}
    values.update({"worker": ".*", "task": ".*"})
    doubled = []
    for slug, panel, target in all_targets(committed()):
        expr = concrete(target["expr"], values)
        answer = stack.query(expr)
        assert answer["status"] == "success", (expr, answer)
        subjects = [
            frozenset((k, v) for k, v in r["metric"].items() if k not in ("instance", "pod"))
            for r in answer["data"]["result"]
        ]
        per_replica = re.search(r"(?<![\w:])(up|celery_exporter_\w+)\{", expr)
        if len(subjects) != len(set(subjects)) and not per_replica:
            doubled.append(f"{slug}: {panel['title']} [{target['refId']}]: {expr}")
    assert doubled == []


# === issue 21: clock skew between producers and the exporter ===================================
#
# A producer whose clock is 5 minutes ahead or behind (a real process under libfaketime,
# testsupport/clock_skew.py, with a host name of its own) publishing through a private Redis to
# real Celery workers, watched by a real exporter (``--events``) and a real Prometheus with the
# shipped rules (``for: 2s``).
#
# * Draining normally: only CeleryClockSkew fires, naming the producer's host; the exported
#   offset is the skew (within the transit); head ages and queue waits stay near their true
#   values (no 300 s age, no wait clamped).
# * A real backlog behind the skewed producer: the head age equals the true wait (the head
#   message read from Redis, its stamp brought back by the skew) and the age alert pages, beside
#   CeleryClockSkew and nothing else.

OFFSET = "celery_host_clock_offset_seconds"
AGE = "celery_queue_oldest_message_age_seconds"
DEPTH = "celery_queue_messages"
SKEWS = [pytest.param(300, id="ahead-300s"), pytest.param(-300, id="behind-300s")]
#: The estimate is the skew minus the fastest transit of the window: on one machine, well
#: under this.
TRANSIT = 1.0


def one(samples: dict) -> float:
    assert len(samples) == 1, samples
    return next(iter(samples.values()))


def wait_offset(stack: OncallStack, host: str) -> float:
    """The exported offset of ``host`` once the exporter knows it."""
    return one(
        wait_for(
            lambda: stack.series(OFFSET, broker=REDIS, host=host),
            timeout=60,
            interval=0.5,
            what=f"{host}'s clock offset",
        )
    )


@pytest.mark.redis
@pytest.mark.parametrize("sent_event", [True, False], ids=["task-sent", "no-task-sent"])
@pytest.mark.parametrize("skew", SKEWS)
def test_skewed_producer_draining_normally_fires_only_clock_skew(make_stack, skew, sent_event):
    """``no-task-sent``: the producer's offset comes from install(app)'s stamp against the
    worker's receipt alone (the second source of events/clock.py)."""
    stack = make_stack(queues={REDIS: ["work"]})
    stack.start_worker("w1", REDIS)
    stack.wait_quiet()
    host = f"skewed-{stack.tag}"
    queue = stack.queue(REDIS, "work")
    producer = skewed_producer(
        stack.url(REDIS), queue, skew_seconds=skew, host=host, every=0.3, sent_event=sent_event
    )
    try:
        offset = wait_offset(stack, host)
        assert skew - TRANSIT <= offset <= skew, offset
        # The worker shares the exporter's clock: its host reads about 0.
        worker_offset = one(stack.series(OFFSET, broker=REDIS, host="oncall"))
        assert -TRANSIT <= worker_offset <= 0.0, worker_offset
        skew_alert = alert("CeleryClockSkew", broker=REDIS, host=host)
        stack.wait_alerts({skew_alert}, timeout=60)
        fired = stack.prometheus.firing("CeleryClockSkew")
        assert [a["labels"]["host"] for a in fired] == [host]
        assert abs(float(fired[0]["value"]) - skew) <= TRANSIT

        ages: list[float] = []
        looks: list[float] = []

        def ages_stay_true() -> None:
            # The queue's first level always has its depth: proof that the scrape was read.
            looks.extend(stack.series(DEPTH, broker=REDIS, queue=queue, priority="0").values())
            ages.extend(stack.series(AGE, broker=REDIS, queue=queue).values())

        stack.watch_silence(20, allowed={skew_alert}, during=ages_stay_true)
        # Tasks of 0.05 s every 0.3 s: a head waits well under a second (never 300 s). An
        # empty level has no age (issue 25), and the worker takes each message within
        # milliseconds: many looks see none, but every age seen must be true.
        assert looks and max(ages, default=0.0) <= 2.0, (len(looks), ages)
        waits = stack.metrics()
        count = sum(
            v for (name, labels), v in waits.items()
            if name == "celery_queue_wait_seconds_count" and ("queue", queue) in labels
        )  # fmt: skip
        total = sum(
            v for (name, labels), v in waits.items()
            if name == "celery_queue_wait_seconds_sum" and ("queue", queue) in labels
        )  # fmt: skip
        assert count >= 20 and total / count <= 1.0, (count, total)
        print(
            f"skew {skew:+d}s, task-sent {sent_event}: offset {offset:.3f}s, worker "
            f"{worker_offset:.3f}s, max head age {max(ages, default=0.0):.2f}s, mean wait "
            f"{total / count:.3f}s over {count:g} tasks"
        )
        assert one(stack.series("celery_event_clock_skew_clamped_total", broker=REDIS)) == 0
    finally:
        stop_process(producer)


#: The backlog: this many 1 s tasks published at once to one solo worker: the head waits up
#: to ~BACKLOG seconds, the age alert's threshold is AGE_LIMIT.
SKEW_BACKLOG, AGE_LIMIT = 40, 10


@pytest.mark.redis
@pytest.mark.parametrize("skew", SKEWS)
def test_backlog_behind_skewed_producer_still_pages_its_age(make_stack, skew, redis_generation):
    stack = make_stack(
        queues={REDIS: ["work"]},
        redis_generation=redis_generation,  # Redis 7.0 and 8.0 (conftest's fixture)
        monitoring={
            "alerts": {
                "CeleryQueueMessageWaitingTooLong": {"seconds": AGE_LIMIT},
                # The backlog's trend is steep for a few seconds; not what this scenario is
                # about (the age page), and it would page with or without skew.
                "CeleryQueueBacklogGrowing": {"enabled": False},
            }
        },
    )
    stack.start_worker("w1", REDIS)
    stack.wait_quiet()
    host = f"skewed-{stack.tag}"
    queue = stack.queue(REDIS, "work")
    producer = skewed_producer(
        stack.url(REDIS), queue, skew_seconds=skew, host=host, count=SKEW_BACKLOG, every=0.0,
        task_seconds=1.0,
    )  # fmt: skip
    try:
        assert producer.stdout is not None
        assert producer.stdout.read().splitlines()[-1] == "done"
        assert producer.wait(timeout=30) == 0
        offset = wait_offset(stack, host)
        assert skew - TRANSIT <= offset <= skew, offset

        redis = stack.redis.client()  # type: ignore[union-attr]
        checked = []
        while len(checked) < 5:
            found = stack.series(AGE, broker=REDIS, queue=queue, priority="0")
            head = redis.lindex(queue, -1)
            if head is None:
                break
            # The producer is done, so the queue only shrinks: a head now means there was one
            # at the scrape just before, so an age (an empty level has none, issue 25).
            age = one(found)
            stamp = json.loads(head)["headers"][ATTEMPT_AT_HEADER]
            true_age = time.time() - (stamp - skew)
            # Read a moment apart; the head moves once a second: within 1.5 s.
            assert abs(age - true_age) <= 1.5, (age, true_age, stamp)
            checked.append((round(age, 2), round(true_age, 2)))
            time.sleep(1.0)
        assert len(checked) == 5, checked

        expected = {
            alert("CeleryClockSkew", broker=REDIS, host=host),
            alert("CeleryQueueMessageWaitingTooLong", broker=REDIS, queue=queue, priority="0"),
        }
        stack.wait_alerts(expected, timeout=40)
        print(f"skew {skew:+d}s: offset {offset:.3f}s, (age, true age) {checked}")
    finally:
        stop_process(producer)


#: A transient backlog behind the RabbitMQ producer: 40 tasks of 0.4 s, one every 0.3 s, one
#: solo worker: a few messages wait a few seconds, then the queue drains.
RABBIT_TASKS, RABBIT_EVERY, RABBIT_TASK_SECONDS = 40, 0.3, 0.4
#: The age page thresholds of this scenario: far above the true waits, far under the 300 s the
#: stamps of a producer 5 minutes behind say.
RABBIT_AGE_LIMIT = 60
#: How long after the producer started the exporter may have last seen the queue empty at the
#: latest (its inspections come every scrape, 1 s, or sooner; the producer takes longer to boot).
INSPECTION_GAP = 5.0


@pytest.mark.rabbitmq
def test_rabbitmq_producer_behind_fires_only_clock_skew_no_age_page(
    make_stack, rabbitmq_generation
):
    """Situation: on RabbitMQ, a producer whose clock is 5 minutes behind publishes 40 short
    tasks (task-sent events on) to a queue one solo worker drains within seconds. The management
    API's head_message_timestamp (the producer's AMQP timestamp) makes every head 300 s old and
    names no host, so the Redis correction by the host's offset cannot apply.

    Expected: CeleryClockSkew for the producer's host, and nothing else even pending: not
    CeleryQueueMessageWaitingTooLong nor CeleryQueueWaitObjectiveMissed, both at 60 s here. The
    exported head age never passes how long ago the exporter last saw the queue empty (before
    the producer started) plus the statistics' slack: the upper bound of headbounds.py. Why:
    issue 21, a skewed producer must not raise an age page, on RabbitMQ too.
    """
    stack = make_stack(
        queues={RABBIT: ["work"]},
        rabbitmq=rabbitmq_generation,  # RabbitMQ 3.10 and 4.0 (conftest's fixture)
        monitoring={
            "alerts": {
                "CeleryQueueMessageWaitingTooLong": {"seconds": RABBIT_AGE_LIMIT},
                "CeleryQueueWaitObjectiveMissed": {"seconds": RABBIT_AGE_LIMIT},
                # A jump of a few messages for a few seconds: not this scenario's subject.
                "CeleryQueueBacklogGrowing": {"enabled": False},
            }
        },
    )
    stack.start_worker("w1", RABBIT)
    stack.wait_quiet()
    host = f"skewed-{stack.tag}"
    queue = stack.queue(RABBIT, "work")
    assert stack.series("celery_queue_messages", broker=RABBIT, queue=queue, priority="0") != {}
    started = time.time()
    producer = skewed_producer(
        stack.url(RABBIT), queue, skew_seconds=-300, host=host, count=RABBIT_TASKS,
        every=RABBIT_EVERY, task_seconds=RABBIT_TASK_SECONDS,
    )  # fmt: skip
    #: (exporter scrape answered at, head age) of every age exported meanwhile
    ages: list[tuple[float, float]] = []

    def collect() -> None:
        found = stack.series(AGE, broker=RABBIT, queue=queue)
        answered = time.time()
        ages.extend((answered, age) for age in found.values())

    try:
        skew_alert = alert("CeleryClockSkew", broker=RABBIT, host=host)
        stack.watch_silence(30, interval=1.0, allowed={skew_alert}, during=collect)
        assert producer.stdout is not None
        assert producer.stdout.read().splitlines()[-1] == "done"
        assert producer.wait(timeout=30) == 0
        wait_for(lambda: stack.depth(RABBIT, "work") == 0, timeout=60, what="queue drained")
        stack.watch_silence(10, interval=1.0, allowed={skew_alert}, during=collect)
        stack.wait_alerts({skew_alert}, timeout=60)
        fired = stack.prometheus.firing("CeleryClockSkew")  # type: ignore[union-attr]
        assert [a["labels"]["host"] for a in fired] == [host]
        assert abs(float(fired[0]["value"]) + 300) <= TRANSIT
    finally:
        stop_process(producer)
    # Heads were seen waiting, and each age is under the bound (the stamps say 300 s and more).
    assert len(ages) >= 3, ages
    over = [
        (round(at - started, 2), age)
        for at, age in ages
        if age > at - started + INSPECTION_GAP + STATS_SLACK_SECONDS
    ]
    assert over == [], over
    assert max(age for _, age in ages) < RABBIT_AGE_LIMIT
    print(f"ages (s after start, age): {[(round(t - started, 1), a) for t, a in ages]}")
