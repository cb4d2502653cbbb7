"""Issue 13's acceptance test: the situations real Celery teams live through, each reproduced
end to end and ending with the EXACT set of alerts an on-call engineer would see.

Every scenario gets a fresh, isolated stack (tests/oncall_stack.py): its own exporter process
(``--events``), its own Prometheus (own tsdb, scrape and evaluation every second, rules rendered
by the real generator with ``for: 2s``), a private redis-server and/or a private RabbitMQ vhost,
real Celery workers (tests/apps/events_app.py) and a producer in this process. So the alerts a
scenario sees are its own: at its end it asserts what fires (nothing else may) and what must
not even be pending. The table in docs/alerts.md names these tests.

Scenarios 1, 2, 3 and 8 (priorities, install(app)) and 4, 5, 6, 7, 9, 10, 11 (workers,
brokers, noise) share the harness; the quiet run (11) takes three minutes, the others well
under one each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from conftest import wait_until
from oncall_stack import RABBIT, REDIS, OncallStack, alert, stacks

pytestmark = [pytest.mark.redis, pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture
def make_stack() -> Iterator[Callable[..., OncallStack]]:
    """``make_stack(**knobs)``: a started :class:`OncallStack`, closed after the test."""
    with stacks() as make:
        yield make


# --- scenarios 1, 2, 3: priorities and install(app) -----------------------------------------


# --- scenario 4 ---------------------------------------------------------------------------------


# --- scenario 5 ---------------------------------------------------------------------------------


# --- scenario 6 ---------------------------------------------------------------------------------


# --- scenario 7 ---------------------------------------------------------------------------------


# --- scenario 8: without install(app) ------------------------------------------------------------


# --- scenario 9 ---------------------------------------------------------------------------------


# --- scenario 10 --------------------------------------------------------------------------------


# --- scenario 11 --------------------------------------------------------------------------------


# --- priorities and install(app) (scenarios 1, 2, 3, 8) ---

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
    return wait_until(
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


def test_rabbitmq_urgent_backlog_pages_at_the_level_in_use(make_stack):
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

    def __init__(self, stack: OncallStack, role: str = "work", seconds: float = 0.4) -> None:
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
        url = f"amqp://guest:guest@127.0.0.1:5672/{self.stack.vhost}"
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


def test_migration_mistake_pages_as_wrong_priority_and_starved_task(make_stack):
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
    """
    stack = make_stack(
        queues={RABBIT: ["work"]},
        max_priority=10,
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
    # Until its first heartbeat announces its queues, a worker with install(app) counts as one
    # whose queues are unknown (CeleryInstrumentationMissing pending for an evaluation): start
    # once Prometheus has seen it announced for a few evaluations.
    unknown = f'max_over_time(celery_workers_queues_unknown{{broker="{RABBIT}"}}[3s])'
    stack.wait_value(unknown, 0, what="the worker's queues announced")
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
        stack.wait_alerts(
            {wrong, starved, level},
            must_be_silent=[
                "CeleryQueueMostUrgentWaitingTooLong",
                alert("CeleryTaskStarved", task=BATCH),
                "CeleryPrioritiesIneffective",
                "CeleryQueueNoConsumers",
                "CeleryInstrumentationMissing",
            ],
            timeout=60,
        )
        texts = {
            name: _description(stack, name, queue=queue)
            for name in (wrong[0], starved[0], level[0])
        }
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
    assert "priority 0, the least urgent level in use" in texts[level[0]]
    marks = {
        s["urgency"]: s["priority"]
        for s in _series(stack, f"celery_queue_priority_urgency_rank{{{q}}}")
    }
    assert marks == {"most": "9", "least": "0"}
    assert ever == {wrong, starved, level}


def test_without_install_urgent_backlog_gives_only_the_info_alert(make_stack):
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


def test_without_install_busy_worker_does_not_page_no_consumers(make_stack):
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
    assert _series(stack, f'celery_task_received_total{{queue="{queue_b}"}}') == []
    assert stack.alerts_ever(start) == {missing}
    stack.kill_worker("shared")  # the 45 s task: no need to wait for a warm shutdown
