"""The Markdown report and its PNG plots, computed from the raw data alone.

Machine-readable anchors (HTML comments) precede every table so tests can find them:
``<!-- loadtest:summary -->``, ``<!-- loadtest:setup NAME -->``, ``<!-- loadtest:verdicts -->``,
``<!-- loadtest:starvation -->``.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from . import analysis as an
from .workload import CLASSES, LEAST, RABBITMQ_PRIORITY, REDIS_PRIORITY, SHARES, URGENT

CRITERIA = {
    "latency-cut": "priority queues cut high-priority latency by more than 50 %",
    "in-flight": "the system handles 100+ concurrent evaluations",
    "start-within-5s": "high-priority tasks start within 5 s",
}
TARGETS = {
    "latency-cut": "> 50 % lower urgent p95 wait than the same broker's FIFO baseline",
    "in-flight": ">= 100 tasks in flight (published, not finished), all completed once",
    "start-within-5s": "every urgent task starts <= 5 s after publish",
}
COLORS = {"urgent": "#d62728", "high": "#ff7f0e", "normal": "#2ca02c", "low": "#1f77b4"}


def _pass(value: bool | None) -> str:
    return "n/a" if value is None else ("PASS" if value else "FAIL")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def verdict_cells(
    verdict: an.Verdict, summary: an.RunSummary, run: dict[str, Any]
) -> tuple[str, str]:
    """(tasks' own timings, exporter) cells of the verdict table."""
    if verdict.criterion == "latency-cut":
        return _percent(verdict.raw), _percent(verdict.exporter)
    if verdict.criterion == "in-flight":
        done = f"{summary.completed}/{summary.tasks} completed"
        return f"{summary.in_flight} in flight, {done}", "n/a"
    urgent = an.row(summary, URGENT)
    raw = f"max {an.fmt(verdict.raw)} s"
    if urgent is None or urgent.exporter_within_target is None:
        return raw, "n/a"
    level = f"level {urgent.level}"
    histogram = an.final_histogram(run, urgent.level)
    if histogram is None:
        return raw, "n/a"
    bounds, cum = histogram
    within = int(cum[bounds.index(an.TARGET_START_SECONDS)])
    return raw, f"{within}/{int(cum[-1])} of {level} <= 5 s"


def _machine(data: dict[str, Any], context: str | None) -> list[str]:
    meta, plan = data["meta"], data["plan"]
    started = dt.datetime.fromtimestamp(meta["started"], dt.timezone.utc)
    lines = [
        f"* Run: {started:%Y-%m-%d %H:%M} UTC, {meta['seconds'] / 60:.1f} minutes"
        f"{' (--quick)' if plan['quick'] else ''}; Python {meta['python']}, "
        f"{meta['platform']}.",
        f"* Machine: **{meta['cores']} cores**, shared; load average (1, 5, 15 min) "
        f"{_load(meta['load_before'])} before and {_load(meta['load_after'])} after the run.",
    ]
    if context:
        lines.append(f"* Also running on the machine: {context}")
    lines += [
        f"* Workers: {plan['workers']} Celery workers x prefork concurrency "
        f"{plan['concurrency']} = {plan['workers'] * plan['concurrency']} slots; every task "
        f"sleeps {plan['duration']:g} s, so capacity is at most **{plan['capacity']:g} tasks/s**.",
        "* Brokers: a private redis-server on a spare port (started and stopped by the run), and "
        f"the machine's RabbitMQ ({meta['rabbitmq_url']}) with queues and exchanges named "
        "`cqe-loadtest-<run id>-...`, deleted afterwards.",
        "* Exporter: one `python -m celery_queue_exporter` process with Celery events on, "
        "watching every queue of the run on both brokers; scraped every "
        f"{plan['scrape_interval']:g} s. `celery_queue_wait_seconds` buckets (s): "
        f"{', '.join(f'{b:g}' for b in meta['wait_buckets'])}.",
    ]
    return lines


def _load(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _phases(phases: list[list[float]], capacity: float) -> str:
    parts = [
        f"{seconds:g} s at {factor:g}x capacity ({factor * capacity:g} tasks/s)"
        for seconds, factor in phases
    ]
    return ", then ".join(parts)


def render(
    data: dict[str, Any],
    img_dir: Path,
    report_path: Path,
    command: str,
    context: str | None = None,
) -> str:
    """The Markdown report; writes the plots into img_dir."""
    plan = data["plan"]
    mixed_runs = [r for r in data["runs"] if r["scenario"] == "mixed"]
    starving_runs = [r for r in data["runs"] if r["scenario"] == "starvation"]
    summaries = [an.summarize(r) for r in mixed_runs]
    by_setup = {s.setup: s for s in summaries}
    run_of = {r["setup"]["name"]: r for r in mixed_runs}
    verdicts = an.verdicts(summaries)
    starvation = [an.starvation(r) for r in starving_runs]
    countdown_runs = [r for r in data["runs"] if r["scenario"] == "countdown"]
    images = write_plots(data, img_dir)
    rel = _relative(img_dir, report_path.parent)

    out: list[str] = [
        "# Priority load test: does true priority queuing pay off? Redis versus RabbitMQ",
        "",
        "<!-- Generated by `python -m bench.loadtest`; edit the generator, not this file. -->",
        "",
        "Real Celery workers against a private Redis (kombu's emulated priorities) and RabbitMQ "
        "(`x-max-priority`), with a mixed-priority workload from below saturation to well beyond "
        "it, a starvation scenario and a countdown-heavy one. Waits per priority level are read "
        "from the exporter's "
        "`celery_queue_wait_seconds` histogram and checked against every task's own start time.",
        "",
        "Reproduce (from the repository root, with RabbitMQ and `redis-server` installed, see "
        "`scripts/bootstrap.sh`):",
        "",
        "```sh",
        command,
        "```",
        "",
        "## Answer",
        "",
    ]
    out += _answer(summaries, verdicts, plan)
    out += ["", "<!-- loadtest:verdicts -->"]
    out += [
        "| criterion | setup | target | tasks' own timings | exporter | verdict (timings) "
        "| verdict (exporter) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for verdict in verdicts:
        raw, exporter = verdict_cells(verdict, by_setup[verdict.setup], run_of[verdict.setup])
        out.append(
            f"| {verdict.criterion} | {verdict.setup} | {TARGETS[verdict.criterion]} | {raw} "
            f"| {exporter} | {_pass(verdict.passed)} | {_pass(verdict.exporter_passed)} |"
        )
    out += [
        "",
        "Criteria from the planning document: "
        + "; ".join(f"`{k}`: {v}" for k, v in CRITERIA.items())
        + ". The verdict is taken on the tasks' own timings; the exporter column is the same "
        "figure read through the exporter (bucketed, so it can differ near a threshold).",
        "",
        "## Machine and scale",
        "",
    ]
    out += _machine(data, context)
    out += [
        "",
        "This is a **scaled-down** test for a 2-core machine: tasks sleep instead of running "
        "evaluations, and there are 8 slots. Without preemption an urgent task still waits for "
        "a slot to free: with true priorities its wait is about the time until the next running "
        "task ends (task duration / slots on average when every slot is busy), plus whatever "
        "the workers prefetched. With evaluations lasting minutes, scale the urgent waits below "
        "by (evaluation duration / task duration here) x (slots here / your slots) before "
        "comparing them with the 5 s target.",
        "",
        "## Workload",
        "",
        "Urgency classes (broker-neutral), their share of the mixed workload, and the Celery "
        "`priority` published on each broker (Redis serves 0 first, RabbitMQ the highest "
        "number):",
        "",
        "| class | share | Redis priority | RabbitMQ priority |",
        "| --- | ---: | ---: | ---: |",
    ]
    for cls, share in zip(CLASSES, SHARES, strict=True):
        out.append(
            f"| {cls} | {share * 100:.0f} % | {REDIS_PRIORITY[cls]} | {RABBITMQ_PRIORITY[cls]} |"
        )
    out += [
        "",
        "With kombu's default `priority_steps` [0, 3, 6, 9] Redis folds priority 2 into step 0, "
        "so urgent and high share one list (first in, first out between them); the 10-step "
        "variant keeps them apart. FIFO baselines publish the same tasks without a priority (a "
        "plain queue on RabbitMQ).",
        "",
        f"* Mixed: {_phases(plan['mixed_phases'], plan['capacity'])}; arrivals evenly spaced, "
        f"classes drawn with seed {plan['seed']} (the same sequence for every setup).",
        f"* Starvation: urgent tasks only, {_phases(plan['starvation_phases'], plan['capacity'])}"
        f"; {plan['starved_tasks']} least-urgent (`low`) tasks published once the workers are "
        "busy.",
        *_countdown_plan(plan),
        "",
        "## Mixed workload",
        "",
        "<!-- loadtest:summary -->",
        "| setup | broker | settings | tasks | completed | throughput tasks/s | max in flight "
        "| exporter waits counted | max bucket disagreement |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:
        counted = "n/a" if s.exporter_observed is None else str(s.exporter_observed)
        disagreement = "n/a" if s.bucket_disagreement is None else str(s.bucket_disagreement)
        out.append(
            f"| {s.setup} | {s.broker} | {s.description} | {s.tasks} | {s.completed} "
            f"| {an.fmt(s.throughput)} | {s.in_flight} | {counted} | {disagreement} |"
        )
    out += [
        "",
        "*Exporter waits counted* is the `_count` of `celery_queue_wait_seconds` for the queue, "
        "all levels; *max bucket disagreement* is the largest difference, over every level and "
        "bucket, between the exporter's cumulative bucket counts and the same buckets filled from "
        "the tasks' own waits (the exporter measures from the `task-started` event and the "
        "publish stamp, the tasks from their first line and the producer's clock: a few "
        "milliseconds apart, which moves a task across a bucket bound now and then).",
        "",
    ]
    for broker in ("redis", "rabbitmq"):
        of_broker = [s for s in summaries if s.broker == broker]
        if not of_broker:
            continue
        out += [f"### {'Redis' if broker == 'redis' else 'RabbitMQ'}", ""]
        if broker in images:
            out += [f"![wait by priority over time, {broker}]({rel}/{images[broker].name})", ""]
        for s in of_broker:
            out += [
                f"#### {s.setup}",
                "",
                f"{s.description}. Throughput {an.fmt(s.throughput)} tasks/s, at most "
                f"{s.in_flight} tasks in flight, {s.completed}/{s.tasks} completed.",
                "",
                f"<!-- loadtest:setup {s.setup} -->",
                "| class | priority | exporter level | tasks | p50 wait s | p95 wait s "
                "| max wait s | exporter p50 s | exporter p95 s |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for r in s.rows:
                priority = "none" if r.priority is None else str(r.priority)
                out.append(
                    f"| {r.cls} | {priority} | {r.level} | {r.tasks} | {an.fmt(r.p50)} "
                    f"| {an.fmt(r.p95)} | {an.fmt(r.max)} | {an.fmt(r.exporter_p50)} "
                    f"| {an.fmt(r.exporter_p95)} |"
                )
            out.append("")
        out += [
            "The exporter's figures are per priority *level*: classes that share a level (all of "
            "them in a FIFO baseline, urgent and high with Redis' default steps) show the same "
            "level figures.",
            "",
        ]
    out += ["## Starvation", ""]
    if starvation:
        if "starvation" in images:
            out += [f"![starvation]({rel}/{images['starvation'].name})", ""]
        out += [
            "<!-- loadtest:starvation -->",
            "| setup | urgent stream s | low tasks | started after the stream ended "
            "| low p50 wait s | low max wait s | urgent p95 wait s "
            "| exporter oldest low message age s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for st in starvation:
            out.append(
                f"| {st.setup} | {an.fmt(st.stream_end)} | {st.starved} "
                f"| {st.started_after_stream} | {an.fmt(st.least_p50)} | {an.fmt(st.least_max)} "
                f"| {an.fmt(st.urgent_p95)} | {an.fmt(st.exporter_oldest_age)} |"
            )
        out += ["", *_starvation_text(starvation), ""]
    else:
        out += ["Not run.", ""]
    out += _countdown_section(countdown_runs)
    out += [
        "## How the numbers are computed",
        "",
        "* wait = the task's own start time (`time.time()`, first line of the task body) minus "
        "the time the producer noted just before `send_task`, plus the task's countdown if it "
        "had one (the time it became due); every task records its start, "
        "finish and the exporter's publish stamp in a Redis list of the private redis-server.",
        "* p50/p95 of the tasks' own waits: linear interpolation between closest ranks "
        "(numpy's default); max: the largest wait.",
        "* exporter p50/p95: Prometheus' `histogram_quantile` over the final "
        "`celery_queue_wait_seconds` buckets of the queue and level (linear within a bucket).",
        "* tasks in flight: published and not finished, maximum over the run; throughput: "
        "completed tasks / (last finish - first publish).",
        "* latency cut: 1 - (urgent p95 wait with priorities) / (urgent p95 wait of the same "
        "broker's FIFO baseline, same workload).",
        "* The raw data (every task's times, every scrape) is written next to the report; "
        "`tests/test_loadtest.py` recomputes this report's numbers and verdicts from it.",
    ]
    notes = data["meta"].get("notes") or []
    if notes:
        out += ["", "## Notes from the run", ""] + [f"* {note}" for note in notes]
    return "\n".join(out) + "\n"


def _countdown_plan(plan: dict[str, Any]) -> list[str]:
    if "countdown_phases" not in plan:  # raw data from before the countdown scenario
        return []
    low, high = plan["countdown_range"]
    phases = _phases(plan["countdown_phases"], plan["capacity"])
    return [
        f"* Countdown-heavy: the mixed classes, {phases}"
        f"; {plan['countdown_share'] * 100:.0f} % of the tasks published with `countdown` drawn "
        f"uniformly from {low:g}-{high:g} s.",
    ]


def _countdown_section(runs: list[dict[str, Any]]) -> list[str]:
    """Exporter vs the tasks' own waits when most tasks are scheduled with a countdown."""
    if not runs:
        return []
    out = [
        "## Countdown-heavy workload",
        "",
        "Most tasks are published with a `countdown`, so they are delivered at once and held by "
        "the worker until due. Their queue wait is measured from when they became due (publish "
        "+ countdown), by the tasks themselves and by the exporter (`celery_queue_wait_seconds`: "
        "start minus the later of publish and ETA); the end-to-end delay, publish to start with "
        "the countdown, is `celery_task_publish_to_start_seconds`.",
        "",
        "<!-- loadtest:countdown -->",
        "| setup | tasks | with countdown | completed | exporter waits counted "
        "| max bucket disagreement | mean publish-to-start s | exporter mean publish-to-start s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    details: list[str] = []
    for run in runs:
        summary = an.summarize(run)
        tasks = run["tasks"]
        delayed = sum(1 for t in tasks if an.countdown_of(t) > 0)
        own = [t[an.T_STARTED] - t[an.T_PUBLISHED] for t in tasks if t[an.T_STARTED] is not None]
        scrapes = run.get("scrapes") or []
        e2e = (scrapes[-1].get("end_to_end") if scrapes else None) or {}
        exporter_mean = e2e["sum"] / e2e["count"] if e2e.get("count") else None
        counted = "n/a" if summary.exporter_observed is None else str(summary.exporter_observed)
        disagreement = (
            "n/a" if summary.bucket_disagreement is None else str(summary.bucket_disagreement)
        )
        out.append(
            f"| {summary.setup} | {summary.tasks} | {delayed} | {summary.completed} | {counted} "
            f"| {disagreement} | {an.fmt(sum(own) / len(own) if own else None)} "
            f"| {an.fmt(exporter_mean)} |"
        )
        details += [
            f"<!-- loadtest:countdown {summary.setup} -->",
            "| class | exporter level | tasks | p50 wait s | p95 wait s | max wait s "
            "| exporter p50 s | exporter p95 s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in summary.rows:
            details.append(
                f"| {r.cls} | {r.level} | {r.tasks} | {an.fmt(r.p50)} | {an.fmt(r.p95)} "
                f"| {an.fmt(r.max)} | {an.fmt(r.exporter_p50)} | {an.fmt(r.exporter_p95)} |"
            )
        details.append("")
    out += ["", *details]
    return out


def _answer(
    summaries: list[an.RunSummary], verdicts: list[an.Verdict], plan: dict[str, Any]
) -> list[str]:
    by_setup = {s.setup: s for s in summaries}
    lines: list[str] = []
    gonogo: list[str] = []
    fifo = {s.broker: s for s in summaries if not s.priorities}
    for s in summaries:
        if not s.priorities:
            continue
        mine = {v.criterion: v for v in verdicts if v.setup == s.setup}
        urgent = an.row(s, URGENT)
        base = an.row(fifo[s.broker], URGENT) if s.broker in fifo else None
        passed = [mine[c].passed for c in CRITERIA if c in mine]
        overall = (
            "meets all three targets"
            if all(passed)
            else "misses "
            + ", ".join(f"`{c}`" for c in CRITERIA if c in mine and mine[c].passed is False)
        )
        base_text = f" vs {an.fmt(base.p95)} s without priorities" if base else ""
        p95 = an.fmt(urgent.p95 if urgent else None)
        lines.append(
            f"* **{s.setup}** ({s.description}): urgent p95 wait {p95} s"
            f"{base_text}, worst {an.fmt(urgent.max if urgent else None)} s; "
            f"{s.in_flight} tasks in flight at most: {overall}."
        )
    redis_best = by_setup.get("redis-steps4")
    rabbit = by_setup.get("rabbitmq-priority")
    if redis_best and rabbit:
        redis_ok = all(v.passed for v in verdicts if v.setup == redis_best.setup)
        rabbit_ok = all(v.passed for v in verdicts if v.setup == rabbit.setup)
        r_u, q_u = an.row(redis_best, URGENT), an.row(rabbit, URGENT)
        comparison = (
            f"urgent p95 {an.fmt(r_u.p95 if r_u else None)} s on Redis vs "
            f"{an.fmt(q_u.p95 if q_u else None)} s on RabbitMQ"
        )
        if redis_ok and rabbit_ok:
            gonogo += [
                f"**Go/no-go at this scale: Redis' emulated priorities (kombu's default steps, "
                f"prefetch 1, late acks) already meet all three targets** ({comparison}). "
                "RabbitMQ's true priorities meet them too: at this scale moving to RabbitMQ buys "
                "nothing the targets ask for.",
            ]
        elif rabbit_ok and not redis_ok:
            gonogo += [
                f"**Go/no-go at this scale: RabbitMQ meets all three targets and Redis' emulated "
                f"priorities do not** ({comparison}).",
            ]
        elif redis_ok and not rabbit_ok:
            gonogo += [
                f"**Go/no-go at this scale: Redis meets all three targets and RabbitMQ does "
                f"not** ({comparison}): moving would not help.",
            ]
        else:
            gonogo += [
                f"**Go/no-go at this scale: neither broker meets all three targets** "
                f"({comparison}).",
            ]
    steps10 = by_setup.get("redis-steps10")
    if redis_best and steps10:
        four, ten = an.row(redis_best, "high"), an.row(steps10, "high")
        u4, u10 = an.row(redis_best, URGENT), an.row(steps10, URGENT)
        if four and ten and u4 and u10:
            lines.append(
                "* What kombu's default steps cost: priority 2 (`high`) shares step 0 with the "
                f"urgent tasks, first in, first out; urgent p95 {an.fmt(u4.p95)} s with 4 steps "
                f"vs {an.fmt(u10.p95)} s with 10 steps (`priority_steps` 0..9)."
            )
    ratios = []
    for s in summaries:
        urgent = an.row(s, URGENT)
        if s.priorities and urgent is not None and urgent.max:
            ratio = urgent.max / plan["duration"]
            limit = an.TARGET_START_SECONDS / ratio
            ratios.append(f"{s.setup} {ratio:.2f} (tasks up to ~{limit:.0f} s)")
    if ratios:
        slots = plan["workers"] * plan["concurrency"]
        lines.append(
            "* Task length matters more than the broker: no broker preempts a running task, so "
            "an urgent task waits for a slot to free. Worst urgent wait in units of the task "
            f"duration ({slots} slots), and the task length up to which the 5 s target would "
            f"still hold at that ratio: {'; '.join(ratios)}."
        )
    if plan["quick"]:
        gonogo += [
            "",
            "*This is a `--quick` smoke run: its load phases are too short to put 100 tasks in "
            "flight, so the `in-flight` verdicts say nothing about the brokers.*",
        ]
    defaults = [s for s in summaries if s.priorities and not s.recommended]
    for s in defaults:
        urgent = an.row(s, URGENT)
        lines.append(
            f"* With Celery's **default** settings ({s.setup}) the urgent p95 wait is "
            f"{an.fmt(urgent.p95 if urgent else None)} s: prefetched tasks are taken out of the "
            "broker's priority order."
        )
    return [*gonogo, "", *lines] if gonogo else lines


def _starvation_text(rows: list[an.StarvationSummary]) -> list[str]:
    out = []
    for st in rows:
        if st.starved and st.started_after_stream == st.starved:
            verdict = (
                f"all {st.starved} low tasks waited until the urgent stream stopped "
                f"(strict priority starves the least urgent level)"
            )
        else:
            verdict = (
                f"{st.starved - st.started_after_stream} of {st.starved} low tasks ran while "
                "urgent tasks were still arriving"
            )
        out.append(f"* {st.setup}: {verdict}; low tasks waited up to {an.fmt(st.least_max)} s.")
    out.append(
        "* Neither broker ages priorities: with urgent work arriving at or above capacity, "
        "least-urgent tasks wait for as long as it lasts. On Redis the exporter's "
        "`celery_queue_oldest_message_age_seconds` of the least urgent level shows the wait "
        "growing (the starvation alert's signal); on RabbitMQ it cannot: "
        "`head_message_timestamp` covers only the next message to be delivered, the head of "
        "the most urgent non-empty level (see docs/rabbitmq.md), so a starving lower level has "
        "no age series (n/a above)."
    )
    return out


def _relative(target: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


# --- plots ------------------------------------------------------------------------------------


def _interval_p95(run: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Per level: (scrape time, p95 of the waits observed since the previous scrape)."""
    out: dict[str, list[tuple[float, float]]] = {}
    previous: dict[str, list[int]] = {}
    for scrape in run.get("scrapes", []):
        for level, entry in scrape["wait"].items():
            cum = entry["cum"]
            before = previous.get(level, [0] * len(cum))
            delta = [a - b for a, b in zip(cum, before, strict=True)]
            previous[level] = cum
            if delta[-1] >= 1:
                value = an.histogram_quantile(0.95, entry["le"], delta)
                if not math.isnan(value):
                    out.setdefault(level, []).append((scrape["t"], value))
    return out


def write_plots(data: dict[str, Any], img_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    plan = data["plan"]
    for broker in ("redis", "rabbitmq"):
        runs = [
            r for r in data["runs"] if r["scenario"] == "mixed" and r["setup"]["broker"] == broker
        ]
        if not runs:
            continue
        fig, axes = plt.subplots(
            len(runs), 1, figsize=(10, 2.9 * len(runs)), sharex=True, squeeze=False
        )
        for ax, run in zip(axes[:, 0], runs, strict=True):
            _plot_run(ax, run, plan)
        axes[-1, 0].set_xlabel("seconds since the first publish (time the task started)")
        fig.suptitle(
            f"{'Redis' if broker == 'redis' else 'RabbitMQ'}: wait by priority over time "
            "(dots: each task's own wait; lines: exporter p95 per scrape interval and level)",
            fontsize=10,
        )
        fig.tight_layout()
        path = img_dir / f"loadtest-{broker}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written[broker] = path
    runs = [r for r in data["runs"] if r["scenario"] == "starvation"]
    if runs:
        fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.9 * len(runs)), squeeze=False)
        for ax, run in zip(axes[:, 0], runs, strict=True):
            _plot_run(ax, run, plan, starvation=True)
            ax.set_xlabel("seconds since the first publish")
        fig.suptitle(
            "Starvation: urgent stream above capacity, a few low tasks waiting", fontsize=10
        )
        fig.tight_layout()
        path = img_dir / "loadtest-starvation.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written["starvation"] = path
    return written


def _break_gaps(series: list[tuple[float, float]], gap: float) -> tuple[list[float], list[float]]:
    """Points of a line, with NaN where no wait was observed for longer than ``gap`` (so the
    plot does not draw a line through intervals without data)."""
    xs: list[float] = []
    ys: list[float] = []
    for x, y in series:
        if xs and x - xs[-1] > gap:
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(x)
        ys.append(y)
    return xs, ys


def _plot_run(ax: Any, run: dict[str, Any], plan: dict[str, Any], starvation: bool = False) -> None:
    t0 = run["t0"]
    for cls in CLASSES:
        points = [
            (t[an.T_STARTED] - t0, t[an.T_STARTED] - t[an.T_PUBLISHED])
            for t in run["tasks"]
            if t[an.T_CLASS] == cls and t[an.T_STARTED] is not None
        ]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        big = starvation and cls == LEAST
        ax.scatter(
            xs, ys, s=30 if big else 6, color=COLORS[cls],
            label=f"{cls} (level {run['levels'][cls]})",
            alpha=0.9 if big else 0.5, marker="D" if big else "o", linewidths=0,
        )  # fmt: skip
    levels_by_class = run["levels"]
    for level, series in sorted(_interval_p95(run).items()):
        classes = [c for c in CLASSES if levels_by_class[c] == level]
        color = COLORS[classes[0]] if len(classes) == 1 else "#555555"
        xs, ys = _break_gaps(series, 2.5 * plan["scrape_interval"])
        ax.plot(xs, ys, color=color, linewidth=1, linestyle="--", marker=".", markersize=4)
    if starvation:
        level = levels_by_class[LEAST]
        ages = [
            (s["t"], s["oldest"][level])
            for s in run.get("scrapes", [])
            if level in s.get("oldest", {})
        ]
        if ages:
            xs, ys = zip(*ages, strict=True)
            ax.plot(xs, ys, color=COLORS[LEAST], linewidth=1, label="exporter: oldest low age")
    ax.axhline(an.TARGET_START_SECONDS, color="black", linewidth=0.6, linestyle=":")
    if not starvation:
        start = 0.0
        for seconds, factor in plan["mixed_phases"]:
            ax.axvspan(start, start + seconds, color="#000000", alpha=0.03 * factor, linewidth=0)
            ax.text(start + 0.2, 0.98, f"{factor:g}x", transform=ax.get_xaxis_transform(),
                    fontsize=7, va="top")  # fmt: skip
            start += seconds
    ax.set_ylabel("wait s")
    ax.set_title(f"{run['setup']['name']}: {run['setup']['description']}", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_ylim(bottom=0)
