"""Runs a load-test plan against real brokers and real workers; writes the raw data.

For each (scenario, setup): start the workers (prefork subprocesses), publish the scenario's
schedule from a producer thread, scrape the exporter once per ``scrape_interval`` while the
tasks drain, then read every task's own record. One exporter process
(``python -m celery_queue_exporter`` with ``--events``-equivalent YAML) watches all the load
test's queues on both brokers, as it would in production.

Raw data (JSON, gzip when the name ends in .gz)::

    {"version": 1, "meta": {...}, "plan": {...}, "runs": [
        {"scenario": "mixed", "setup": {...}, "queue": "...", "exporter_broker": "...",
         "levels": {class: exporter priority label}, "exporter_events": true,
         "tasks": [[id, class, priority, published, stamp, started, finished, worker], ...],
         "duplicates": 0,
         "scrapes": [{"t": s from the first publish, "wait": {level: {"le": [...],
                      "cum": [...], "sum": s}}, "messages": {level: n}, "oldest": {level: s},
                      "reserved": n}, ...],
         "final_wait": {level: {"le": [...], "cum": [...], "sum": s}}}]}

Times are epoch seconds of this machine (producer, workers and exporter share its clock).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import platform
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from celery_queue_exporter.config import redact_url
from testsupport.rabbitmq import delete_rabbitmq_objects
from testsupport.redis_server import RedisServer

from . import services
from .app import TASK_NAME, AppSettings, make_app
from .progress import Progress
from .workload import (
    CLASSES,
    RABBITMQ_MAX_PRIORITY,
    Plan,
    Scenario,
    Setup,
    schedule,
)

#: Finer than the exporter's default wait buckets, with 5 s (the target) as a bound.
WAIT_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12.5, 15, 20, 25, 30, 40, 50, 60,
    90, 120, 180, 300, 600,
)  # fmt: skip


def _level_entry(buckets: dict[float, float], total_sum: float) -> dict[str, Any]:
    bounds = sorted(b for b in buckets if b != float("inf"))
    cum = [buckets[b] for b in bounds] + [buckets.get(float("inf"), 0.0)]
    return {"le": bounds, "cum": [int(c) for c in cum], "sum": total_sum}


def parse_scrape(text: str, broker: str, queue: str) -> dict[str, Any]:
    """The load test's queue from one /metrics text: waits, depth, oldest age per level."""
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    messages: dict[str, float] = {}
    oldest: dict[str, float] = {}
    reserved = None
    end_to_end = {"sum": 0.0, "count": 0.0}  # first publish to start, countdowns included
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("queue") != queue or labels.get("broker") != broker:
                continue
            level = labels.get("priority", "")
            if sample.name == "celery_queue_wait_seconds_bucket":
                buckets.setdefault(level, {})[float(labels["le"])] = sample.value
            elif sample.name == "celery_queue_wait_seconds_sum":
                sums[level] = sample.value
            elif sample.name == "celery_queue_messages":
                messages[level] = sample.value
            elif sample.name == "celery_queue_oldest_message_age_seconds":
                oldest[level] = sample.value
            elif sample.name == "celery_queue_reserved_messages":
                reserved = sample.value
            elif sample.name == "celery_task_publish_to_start_seconds_sum":
                end_to_end["sum"] += sample.value
            elif sample.name == "celery_task_publish_to_start_seconds_count":
                end_to_end["count"] += sample.value
    wait = {level: _level_entry(b, sums.get(level, 0.0)) for level, b in buckets.items()}
    return {
        "wait": wait,
        "messages": messages,
        "oldest": oldest,
        "reserved": reserved,
        "end_to_end": end_to_end,
    }


def waits_observed(scrape: dict[str, Any]) -> int:
    return sum(entry["cum"][-1] for entry in scrape["wait"].values())


class Producer(threading.Thread):
    """Publishes a schedule at its own pace; notes (id, class, priority, published)."""

    def __init__(self, app: Any, setup: Setup, offers: list[Any], duration: float) -> None:
        super().__init__(name="loadtest-producer", daemon=True)
        self.app = app
        self.setup = setup
        self.offers = offers
        self.duration = duration
        self.sent: list[list[Any]] = []
        self.t0: float | None = None
        self.error: BaseException | None = None
        self.lag = 0.0  # worst lateness against the schedule, seconds

    def run(self) -> None:
        try:
            self.t0 = time.time()
            for offer in self.offers:
                due = self.t0 + offer.at
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                else:
                    self.lag = max(self.lag, -delay)
                priority = self.setup.priority(offer.cls)
                published = time.time()
                result = self.app.send_task(
                    TASK_NAME,
                    args=[self.duration, offer.cls],
                    priority=priority,
                    countdown=offer.countdown or None,
                )
                self.sent.append([result.id, offer.cls, priority, published, offer.countdown])
        except BaseException as exc:  # noqa: BLE001 - reported by the runner
            self.error = exc


def queue_name(run_id: str, scenario: Scenario, setup: Setup) -> str:
    return f"cqe-loadtest-{run_id}-{scenario.name}-{setup.name}"


def exporter_broker_name(setup: Setup) -> str:
    if setup.broker == "rabbitmq":
        return "rabbitmq"
    return f"redis-steps{len(setup.steps)}"


class Runner:
    def __init__(
        self,
        plan: Plan,
        rabbitmq_url: str,
        work_dir: Path,
        progress: Progress | None = None,
        log: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
    ) -> None:
        self.plan = plan
        self.rabbitmq_url = rabbitmq_url
        self.work_dir = work_dir
        self.log = log
        self.run_id = uuid.uuid4().hex[:8]
        self.entries: list[tuple[Scenario, Setup]] = (
            [(plan.mixed, s) for s in plan.setups]
            + [(plan.starvation, s) for s in plan.starvation_setups]
            + [(plan.countdown, s) for s in plan.starvation_setups]
        )
        self.schedules = {
            scenario.name: schedule(scenario, plan.capacity, plan.seed)
            for scenario in (plan.mixed, plan.starvation, plan.countdown)
        }
        total = sum(len(self.schedules[scenario.name]) for scenario, _ in self.entries)
        self.progress = progress or Progress(total)
        self.redis: RedisServer | None = None
        self.exporters: list[services.ExporterProcess] = []
        self.created_rabbitmq: list[str] = []
        self.notes: list[str] = []

    # --- set-up -----------------------------------------------------------------------------

    def _exporter_brokers(self, transports: set[str]) -> list[dict[str, Any]]:
        assert self.redis is not None
        brokers: dict[str, dict[str, Any]] = {}
        for scenario, setup in self.entries:
            if setup.broker not in transports:
                continue
            name = exporter_broker_name(setup)
            entry = brokers.get(name)
            if entry is None:
                if setup.broker == "redis":
                    entry = {
                        "name": name,
                        "url": self.redis.url,
                        "transport_options": {"priority_steps": list(setup.steps)},
                    }
                else:
                    entry = {"name": name, "url": self.rabbitmq_url}
                entry["queues"] = []
                entry["discover_queues"] = False
                brokers[name] = entry
            entry["queues"].append(queue_name(self.run_id, scenario, setup))
        return list(brokers.values())

    def _exporter_for(self, setup: Setup) -> services.ExporterProcess:
        name = exporter_broker_name(setup)
        for exporter in self.exporters:
            if any(b["name"] == name for b in exporter.brokers):
                return exporter
        raise KeyError(name)

    def start(self) -> None:
        self.redis = RedisServer().start()
        transports = {setup.broker for _, setup in self.entries}
        with_events = {t for t in transports if services.events_supported(t)}
        without = transports - with_events
        for missing in sorted(without):
            self.notes.append(
                f"This checkout's exporter has no Celery event consumer for {missing} "
                f"(celery_queue_exporter/events/{missing}_consumer.py is missing): "
                f"the {missing} waits come "
                "from the tasks' own timings only, not from celery_queue_wait_seconds."
            )
        for group, events in ((with_events, True), (without, False)):
            if not group:
                continue
            exporter = services.ExporterProcess(
                self._exporter_brokers(group), events, WAIT_BUCKETS, self.work_dir
            )
            self.exporters.append(exporter.start())
            self.exporter_events = events

    def stop(self) -> None:
        for exporter in self.exporters:
            exporter.stop()
        self.exporters = []
        if self.created_rabbitmq:
            errors = delete_rabbitmq_objects(
                self.rabbitmq_url, self.created_rabbitmq, self.created_rabbitmq
            )
            for error in errors:
                self.log(f"loadtest: clean-up: {error}")
            self.created_rabbitmq = []
        if self.redis is not None:
            self.redis.close()
            self.redis = None

    # --- one (scenario, setup) --------------------------------------------------------------

    def settings(self, scenario: Scenario, setup: Setup) -> AppSettings:
        assert self.redis is not None
        queue = queue_name(self.run_id, scenario, setup)
        broker_url = self.redis.url if setup.broker == "redis" else self.rabbitmq_url
        return AppSettings(
            broker_url=broker_url,
            queue=queue,
            record_url=self.redis.db_url(1),
            record_key=f"{queue}-records",
            max_priority=RABBITMQ_MAX_PRIORITY
            if setup.broker == "rabbitmq" and setup.priorities
            else None,
            priority_steps=setup.steps,
            prefetch_multiplier=setup.prefetch_multiplier,
            acks_late=setup.acks_late,
        )

    def run_one(self, scenario: Scenario, setup: Setup, index: int) -> dict[str, Any]:
        plan = self.plan
        settings = self.settings(scenario, setup)
        exporter = self._exporter_for(setup)
        broker_label = exporter_broker_name(setup)
        if setup.broker == "rabbitmq":
            self.created_rabbitmq.append(settings.queue)
        offers = self.schedules[scenario.name]
        self.progress.stage(f"{index}/{len(self.entries)} {scenario.name} {setup.name}: starting")
        host = socket.gethostname()
        workers = [
            services.WorkerProcess(
                f"lt{n}-{self.run_id}-{setup.name}@{host}",
                settings.env(),
                settings.queue,
                plan.concurrency,
                self.work_dir,
            )
            for n in range(plan.workers)
        ]
        app = make_app(settings)
        records = redis.Redis.from_url(settings.record_url)
        scrapes: list[dict[str, Any]] = []
        producer = None
        try:
            for worker in workers:
                worker.start()
            services.wait_for(
                lambda: all(w.ready() for w in workers), 90, f"{setup.name} workers", 0.2
            )
            with app.connection_for_write() as connection:  # declare before publishing
                connection.ensure_connection(max_retries=3)
            producer = Producer(app, setup, offers, plan.duration)
            self.progress.stage(f"{index}/{len(self.entries)} {scenario.name} {setup.name}")
            producer.start()
            expected = len(offers)
            last_offer = offers[-1].at if offers else 0.0
            backlog_drain = expected / plan.capacity
            deadline = time.monotonic() + last_offer + backlog_drain * 3 + 60
            next_scrape = time.monotonic()
            while True:
                finished = records.llen(settings.record_key)
                published = len(producer.sent)
                self.progress.update(finished, published - finished)
                if time.monotonic() >= next_scrape and producer.t0 is not None:
                    with contextlib.suppress(Exception):
                        scrape = parse_scrape(exporter.scrape(), broker_label, settings.queue)
                        scrape["t"] = time.time() - producer.t0
                        scrapes.append(scrape)
                    next_scrape += plan.scrape_interval
                if producer.error is not None:
                    raise RuntimeError(f"publishing failed: {producer.error!r}")
                if not producer.is_alive() and finished >= expected:
                    break
                if time.monotonic() > deadline:
                    self.notes.append(
                        f"{scenario.name}/{setup.name}: stopped waiting with "
                        f"{expected - finished} of {expected} tasks unfinished"
                    )
                    break
                time.sleep(0.1)
            # The exporter sees a task-started event a moment after the task's own record.
            final = None
            if exporter.events:

                def converged() -> dict[str, Any] | None:
                    scrape = parse_scrape(exporter.scrape(), broker_label, settings.queue)
                    return scrape if waits_observed(scrape) >= expected else None

                try:
                    final = services.wait_for(converged, 20, "the exporter's wait counts", 0.5)
                except services.ServiceError:
                    final = parse_scrape(exporter.scrape(), broker_label, settings.queue)
                    self.notes.append(
                        f"{scenario.name}/{setup.name}: the exporter counted "
                        f"{waits_observed(final)} waits of {expected} tasks after 20 s"
                    )
                assert producer.t0 is not None
                final["t"] = time.time() - producer.t0
                scrapes.append(final)
        finally:
            for worker in workers:  # all at once: warm shutdowns run in parallel
                worker.terminate()
            for worker in workers:
                worker.stop()
            with contextlib.suppress(Exception):
                app.close()
        if producer.lag > 0.5:
            self.notes.append(
                f"{scenario.name}/{setup.name}: the producer fell up to {producer.lag:.2f} s "
                "behind its schedule (machine busy)"
            )
        own = [json.loads(line) for line in records.lrange(settings.record_key, 0, -1)]
        records.delete(settings.record_key)
        records.close()
        by_id: dict[str, dict[str, Any]] = {}
        duplicates = 0
        for record in own:
            if record["id"] in by_id:
                duplicates += 1  # ran twice (redelivery); keep the first run
                continue
            by_id[record["id"]] = record
        tasks = []
        for task_id, cls, priority, published, countdown in producer.sent:
            record = by_id.get(task_id, {})
            tasks.append(
                [
                    task_id,
                    cls,
                    priority,
                    published,
                    record.get("stamp"),
                    record.get("started"),
                    record.get("finished"),
                    record.get("worker"),
                    countdown,
                ]
            )
        setup_data = asdict(setup)
        setup_data["steps"] = list(setup.steps)
        setup_data["description"] = setup.description
        return {
            "scenario": scenario.name,
            "setup": setup_data,
            "queue": settings.queue,
            "exporter_broker": broker_label,
            "exporter_events": exporter.events,
            "levels": {cls: setup.level(cls) for cls in CLASSES},
            "t0": producer.t0,
            "producer_lag": producer.lag,
            "tasks": tasks,
            "duplicates": duplicates,
            "scrapes": scrapes,
            "final_wait": final["wait"] if final else None,
        }

    def run(self) -> dict[str, Any]:
        started = time.time()
        load_before = os.getloadavg()
        runs = []
        try:
            self.start()
            for index, (scenario, setup) in enumerate(self.entries, start=1):
                runs.append(self.run_one(scenario, setup, index))
                self.progress.finish_stage(len(self.schedules[scenario.name]))
        finally:
            self.stop()
            self.progress.close()
        plan = self.plan
        return {
            "version": 1,
            "meta": {
                "started": started,
                "seconds": time.time() - started,
                "cores": os.cpu_count(),
                "load_before": load_before,
                "load_after": os.getloadavg(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "rabbitmq_url": redact_url(self.rabbitmq_url),
                "wait_buckets": list(WAIT_BUCKETS),
                "notes": self.notes,
            },
            "plan": {
                "quick": plan.quick,
                "workers": plan.workers,
                "concurrency": plan.concurrency,
                "duration": plan.duration,
                "capacity": plan.capacity,
                "seed": plan.seed,
                "scrape_interval": plan.scrape_interval,
                "mixed_phases": [list(p) for p in plan.mixed.phases],
                "starvation_phases": [list(p) for p in plan.starvation.phases],
                "starved_tasks": plan.starvation.starved_tasks,
                "starved_at": plan.starvation.starved_at,
                "countdown_phases": [list(p) for p in plan.countdown.phases],
                "countdown_share": plan.countdown.countdown_share,
                "countdown_range": list(plan.countdown.countdown_range),
            },
            "runs": runs,
        }


def write_raw(data: dict[str, Any], path: Path) -> None:
    text = json.dumps(data, separators=(",", ":"))
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def read_raw(path: Path) -> dict[str, Any]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    return json.loads(path.read_text(encoding="utf-8"))
