"""Arithmetic of the load-test report: quantiles, histogram quantiles, tasks in flight, verdicts.

Pure functions over the raw data file the runner writes (see runner.py for its layout), so the
report can be recomputed from that file alone (tests/test_loadtest.py does exactly that).

Definitions:

* wait = the task's own start time (``time.time()`` in the worker's pool process, first thing
  in the task body) minus the publish time the producer noted just before ``send_task``;
* raw quantiles: linear interpolation between closest ranks (numpy's default, "type 7");
* exporter quantiles: Prometheus' ``histogram_quantile`` over ``celery_queue_wait_seconds``
  buckets (linear within the bucket, 0 as the lower edge of the first bucket, the highest
  finite bound when the rank falls in +Inf);
* tasks in flight = published and not finished; its maximum is taken over the run;
* throughput = completed tasks / (last finish - first publish).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .workload import CLASSES, LEAST, URGENT

#: The planning document's targets.
TARGET_CUT = 0.50  # priority queues cut high-priority latency by more than 50 %
TARGET_IN_FLIGHT = 100  # the system handles 100+ concurrent evaluations
TARGET_START_SECONDS = 5.0  # high-priority tasks start within 5 s

# Column indexes of a task row in the raw file.
T_ID, T_CLASS, T_PRIORITY, T_PUBLISHED, T_STAMP, T_STARTED, T_FINISHED, T_WORKER = range(8)
#: Countdown the task was published with (seconds; absent in raw data from before issue 14).
T_COUNTDOWN = 8


def countdown_of(task: list[Any]) -> float:
    return float(task[T_COUNTDOWN] or 0.0) if len(task) > T_COUNTDOWN else 0.0


def quantile(values: Sequence[float], q: float) -> float:
    """Type-7 quantile (linear between closest ranks) of a non-empty sample."""
    if not values:
        raise ValueError("quantile of an empty sample")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float:
    """Prometheus' histogram_quantile: ``bounds`` are the finite ``le`` values in order,
    ``cumulative`` the bucket counts including the final +Inf bucket."""
    if len(cumulative) != len(bounds) + 1:
        raise ValueError("cumulative needs one count per bound plus +Inf")
    total = cumulative[-1]
    if total <= 0:
        return math.nan
    rank = q * total
    index = next(i for i, count in enumerate(cumulative) if count >= rank)
    if index == len(bounds):  # the rank falls in +Inf: Prometheus answers the last finite bound
        return float(bounds[-1])
    upper = float(bounds[index])
    lower = 0.0 if index == 0 else float(bounds[index - 1])
    below = 0.0 if index == 0 else cumulative[index - 1]
    in_bucket = cumulative[index] - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


def bucket_counts(values: Sequence[float], bounds: Sequence[float]) -> list[int]:
    """Cumulative counts of ``values`` over ``le`` bounds (+Inf last), as Prometheus keeps them."""
    out = [sum(1 for v in values if v <= bound) for bound in bounds]
    out.append(len(values))
    return out


def max_in_flight(published: Sequence[float], finished: Sequence[float | None]) -> int:
    """Most tasks published and not yet finished at any instant (a finish at the same instant
    as a publish is applied first; unfinished tasks stay in flight to the end)."""
    events = [(t, 1) for t in published] + [(t, -1) for t in finished if t is not None]
    events.sort(key=lambda item: (item[0], item[1]))
    current = best = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def fmt(value: float | None) -> str:
    """Seconds and ratios as the report prints them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.2f}"


@dataclass
class ClassRow:
    cls: str
    priority: int | None
    level: str
    tasks: int
    started: int
    p50: float | None
    p95: float | None
    max: float | None
    exporter_p50: float | None
    exporter_p95: float | None
    exporter_within_target: float | None  # share of the level's waits <= 5 s (exact: a bound)


@dataclass
class RunSummary:
    scenario: str
    setup: str
    broker: str
    priorities: bool
    recommended: bool
    description: str
    tasks: int
    completed: int
    duplicates: int
    throughput: float | None
    in_flight: int
    rows: list[ClassRow]
    exporter_events: bool
    exporter_observed: int | None  # waits the exporter counted for the queue
    bucket_disagreement: int | None  # max |exporter - raw| over cumulative buckets, per level
    waits: dict[str, list[float]] = field(default_factory=dict)  # class -> raw waits


def task_waits(run: dict[str, Any]) -> dict[str, list[float]]:
    waits: dict[str, list[float]] = {cls: [] for cls in CLASSES}
    for task in run["tasks"]:
        if task[T_STARTED] is not None:
            # Queue wait: from when the task was due (publish + countdown), as the exporter has it.
            due = task[T_PUBLISHED] + countdown_of(task)
            waits[task[T_CLASS]].append(task[T_STARTED] - due)
    return waits


def final_histogram(run: dict[str, Any], level: str) -> tuple[list[float], list[float]] | None:
    final = run.get("final_wait") or {}
    entry = final.get(level)
    if not entry:
        return None
    return entry["le"], entry["cum"]


def summarize(run: dict[str, Any]) -> RunSummary:
    setup = run["setup"]
    tasks = run["tasks"]
    waits = task_waits(run)
    published = [t[T_PUBLISHED] for t in tasks]
    finished = [t[T_FINISHED] for t in tasks]
    done = [f for f in finished if f is not None]
    completed = len(done)
    throughput = None
    if done:
        span = max(done) - min(published)
        throughput = completed / span if span > 0 else None
    rows: list[ClassRow] = []
    for cls in CLASSES:
        of_class = [t for t in tasks if t[T_CLASS] == cls]
        if not of_class:
            continue
        values = waits[cls]
        level = run["levels"][cls]
        histogram = final_histogram(run, level)
        e50 = e95 = within = None
        if histogram is not None and histogram[1][-1] > 0:
            bounds, cum = histogram
            e50 = histogram_quantile(0.5, bounds, cum)
            e95 = histogram_quantile(0.95, bounds, cum)
            if TARGET_START_SECONDS in bounds:
                within = cum[bounds.index(TARGET_START_SECONDS)] / cum[-1]
        rows.append(
            ClassRow(
                cls=cls,
                priority=of_class[0][T_PRIORITY],
                level=level,
                tasks=len(of_class),
                started=len(values),
                p50=quantile(values, 0.5) if values else None,
                p95=quantile(values, 0.95) if values else None,
                max=max(values) if values else None,
                exporter_p50=e50,
                exporter_p95=e95,
                exporter_within_target=within,
            )
        )
    observed = disagreement = None
    if run.get("exporter_events"):
        observed = 0
        disagreement = 0
        by_level: dict[str, list[float]] = {}
        for cls, values in waits.items():
            if values:
                by_level.setdefault(run["levels"][cls], []).extend(values)
        for level, values in by_level.items():
            histogram = final_histogram(run, level)
            if histogram is None:
                disagreement = max(disagreement, len(values))
                continue
            bounds, cum = histogram
            observed += int(cum[-1])
            raw = bucket_counts(values, bounds)
            disagreement = max(disagreement, max(abs(a - b) for a, b in zip(raw, cum, strict=True)))
    return RunSummary(
        scenario=run["scenario"],
        setup=setup["name"],
        broker=setup["broker"],
        priorities=setup["priorities"],
        recommended=setup["recommended"],
        description=setup["description"],
        tasks=len(tasks),
        completed=completed,
        duplicates=run.get("duplicates", 0),
        throughput=throughput,
        in_flight=max_in_flight(published, finished),
        rows=rows,
        exporter_events=bool(run.get("exporter_events")),
        exporter_observed=observed,
        bucket_disagreement=disagreement,
        waits=waits,
    )


def row(summary: RunSummary, cls: str) -> ClassRow | None:
    return next((r for r in summary.rows if r.cls == cls), None)


@dataclass
class Verdict:
    criterion: str  # "latency-cut", "in-flight", "start-within-5s"
    setup: str
    raw: float | None  # the measured figure from the tasks' own timings
    exporter: float | None  # the same figure from the exporter's metrics (None: unavailable)
    passed: bool | None  # on the raw figure; None when it cannot be decided
    exporter_passed: bool | None


def cut(priority_p95: float | None, fifo_p95: float | None) -> float | None:
    """Fractional reduction of the urgent class' p95 wait against the FIFO baseline."""
    if priority_p95 is None or fifo_p95 is None or fifo_p95 <= 0:
        return None
    return 1.0 - priority_p95 / fifo_p95


def verdicts(summaries: list[RunSummary]) -> list[Verdict]:
    """The planning document's three criteria, for every setup of the mixed scenario."""
    mixed = [s for s in summaries if s.scenario == "mixed"]
    fifo = {s.broker: s for s in mixed if not s.priorities}
    out: list[Verdict] = []
    for s in mixed:
        if not s.priorities:
            continue
        urgent, base = row(s, URGENT), fifo.get(s.broker)
        base_row = row(base, URGENT) if base else None
        raw_cut = cut(urgent and urgent.p95, base_row and base_row.p95)
        exp_cut = cut(urgent and urgent.exporter_p95, base_row and base_row.exporter_p95)
        out.append(
            Verdict(
                "latency-cut",
                s.setup,
                raw_cut,
                exp_cut,
                None if raw_cut is None else raw_cut > TARGET_CUT,
                None if exp_cut is None else exp_cut > TARGET_CUT,
            )
        )
    for s in mixed:
        ok = s.in_flight >= TARGET_IN_FLIGHT and s.completed == s.tasks and s.duplicates == 0
        out.append(Verdict("in-flight", s.setup, float(s.in_flight), None, ok, None))
    for s in mixed:
        if not s.priorities:
            continue
        urgent = row(s, URGENT)
        worst = urgent.max if urgent else None
        share = urgent.exporter_within_target if urgent else None
        out.append(
            Verdict(
                "start-within-5s",
                s.setup,
                worst,
                share,
                None if worst is None else worst <= TARGET_START_SECONDS,
                None if share is None else share >= 1.0,
            )
        )
    return out


@dataclass
class StarvationSummary:
    setup: str
    broker: str
    stream_end: float  # seconds from the first publish to the last urgent publish
    starved: int  # least-urgent tasks
    started_after_stream: int  # ... that started only after the urgent stream had ended
    least_p50: float | None
    least_max: float | None
    urgent_p95: float | None
    exporter_oldest_age: float | None  # highest oldest-message age the exporter showed


def starvation(run: dict[str, Any]) -> StarvationSummary:
    tasks = run["tasks"]
    first = min(t[T_PUBLISHED] for t in tasks)
    urgent_pub = [t[T_PUBLISHED] for t in tasks if t[T_CLASS] == URGENT]
    stream_end = max(urgent_pub)
    least = [t for t in tasks if t[T_CLASS] == LEAST]
    waits = task_waits(run)
    after = sum(1 for t in least if t[T_STARTED] is not None and t[T_STARTED] > stream_end)
    level = run["levels"][LEAST]
    ages = [s["oldest"].get(level) for s in run.get("scrapes", []) if s.get("oldest")]
    ages = [a for a in ages if a is not None]
    return StarvationSummary(
        setup=run["setup"]["name"],
        broker=run["setup"]["broker"],
        stream_end=stream_end - first,
        starved=len(least),
        started_after_stream=after,
        least_p50=quantile(waits[LEAST], 0.5) if waits[LEAST] else None,
        least_max=max(waits[LEAST]) if waits[LEAST] else None,
        urgent_p95=quantile(waits[URGENT], 0.95) if waits[URGENT] else None,
        exporter_oldest_age=max(ages) if ages else None,
    )
