"""The priority load test (bench/loadtest): its report agrees with the raw data it recorded.

* ``test_quick_run_report_matches_its_raw_data``: a real ``python -m bench.loadtest --quick``
  run (private redis-server, the machine's RabbitMQ, real prefork workers, the real exporter);
  every number of the report is recomputed here from the raw data file, with this file's own
  arithmetic, and every verdict is re-derived from the numbers printed in the report. No
  assertion on speed.
* ``test_committed_report_matches_its_raw_data``: the same for the committed
  docs/priority-loadtest.md (a default run), plus: it is a default run, every mixed setup had
  100+ tasks in flight, and re-rendering its raw data gives the committed text.
* Pure-logic tests of the arithmetic and the workload with exact values.
"""

from __future__ import annotations

import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadtest import analysis as an
from bench.loadtest.report import render
from bench.loadtest.runner import read_raw
from bench.loadtest.workload import (
    RABBITMQ_PRIORITY,
    REDIS_PRIORITY,
    TEN_STEPS,
    Scenario,
    Setup,
    make_plan,
    schedule,
)
from testsupport.net import port_open
from testsupport.paths import ROOT
from testsupport.services import missing_service

DOC = ROOT / "docs" / "priority-loadtest.md"
DOC_RAW = ROOT / "docs" / "data" / "priority-loadtest.json.gz"
CLASSES = ("urgent", "high", "normal", "low")

# --- this file's own arithmetic (independent of bench.loadtest.analysis) ----------------------


def my_quantile(values: list[float], q: float) -> float:
    """numpy's default quantile via the standard library: 'inclusive' = linear, type 7."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    if q == 0.5:
        return statistics.median(values)
    return cuts[round(q * 100) - 1]


def my_histogram_quantile(q: float, bounds: list[float], cum: list[int]) -> float:
    total = cum[-1]
    rank = q * total
    previous_bound, previous_count = 0.0, 0
    for bound, count in zip([*bounds, math.inf], cum, strict=True):
        if count >= rank:
            if bound == math.inf:
                return bounds[-1]
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    raise AssertionError("rank beyond the +Inf bucket")


def my_in_flight(tasks: list[list]) -> int:
    """Step through time; at equal instants finishes before publishes."""
    times = sorted({t[3] for t in tasks} | {t[6] for t in tasks if t[6] is not None})
    best = 0
    for moment in times:
        published = sum(1 for t in tasks if t[3] <= moment)
        finished = sum(1 for t in tasks if t[6] is not None and t[6] <= moment)
        best = max(best, published - finished)
    return best


def two(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def urgent_p95(run: dict) -> float:
    return my_quantile([t[5] - t[3] for t in run["tasks"] if t[1] == "urgent"], 0.95)


def urgent_exporter_p95(run: dict) -> float:
    final = run["final_wait"][run["levels"]["urgent"]]
    return my_histogram_quantile(0.95, final["le"], final["cum"])


def cut_range(with_priorities: str, without: str) -> tuple[float, float]:
    """Range of 100 * (1 - a / b) over the values that print as these two rounded figures."""
    a, b = float(with_priorities), float(without)
    return (
        100 * (1 - (a + 0.005) / max(b - 0.005, 1e-9)),
        100 * (1 - max(a - 0.005, 0.0) / (b + 0.005)),
    )


# --- reading the report -------------------------------------------------------------------------


def table_after(text: str, anchor: str) -> list[list[str]]:
    """Body rows of the Markdown table right after ``<!-- anchor -->``."""
    lines = text.split("\n")
    start = lines.index(f"<!-- {anchor} -->")
    rows = []
    for line in lines[start + 3 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    assert rows, f"table {anchor} is empty"
    return rows


def check_report(text: str, data: dict) -> None:
    """Every number of the report recomputed from ``data``; every verdict from the numbers."""
    mixed = {r["setup"]["name"]: r for r in data["runs"] if r["scenario"] == "mixed"}
    assert mixed, "no mixed-workload runs"

    for run in data["runs"]:
        assert run["exporter_events"], f"{run['queue']}: the exporter consumed no events"
    # Per-setup tables: waits per class from the tasks' own times, exporter per level.
    for name, run in mixed.items():
        rows = {row[0]: row for row in table_after(text, f"loadtest:setup {name}")}
        assert sorted(rows) == sorted(CLASSES)
        for cls in CLASSES:
            tasks = [t for t in run["tasks"] if t[1] == cls]
            waits = [t[5] - t[3] for t in tasks if t[5] is not None]
            level = run["levels"][cls]
            final = run["final_wait"][level]
            bounds, cum = final["le"], final["cum"]
            priority = tasks[0][2]
            expected = [
                cls,
                "none" if priority is None else str(priority),
                level,
                str(len(tasks)),
                two(my_quantile(waits, 0.5)),
                two(my_quantile(waits, 0.95)),
                two(max(waits)),
                two(my_histogram_quantile(0.5, bounds, cum)),
                two(my_histogram_quantile(0.95, bounds, cum)),
            ]
            assert rows[cls] == expected, (name, cls)

    # Summary table: tasks, completed, throughput, in flight, exporter counts and agreement.
    summary = {row[0]: row for row in table_after(text, "loadtest:summary")}
    assert sorted(summary) == sorted(mixed)
    for name, run in mixed.items():
        tasks = run["tasks"]
        finished = [t[6] for t in tasks if t[6] is not None]
        started = [t for t in tasks if t[5] is not None]
        throughput = len(finished) / (max(finished) - min(t[3] for t in tasks))
        counted = sum(entry["cum"][-1] for entry in run["final_wait"].values())
        disagreement = 0
        for level in set(run["levels"].values()):
            waits = [t[5] - t[3] for t in started if run["levels"][t[1]] == level]
            entry = run["final_wait"][level]
            mine = [sum(1 for w in waits if w <= b) for b in entry["le"]] + [len(waits)]
            disagreement = max(
                disagreement, *(abs(a - b) for a, b in zip(mine, entry["cum"], strict=True))
            )
        row = summary[name]
        assert row[3:] == [
            str(len(tasks)),
            str(len(finished)),
            two(throughput),
            str(my_in_flight(tasks)),
            str(counted),
            str(disagreement),
        ], name
        # The exporter against the tasks' own start times: it counted every task that
        # started, and put (nearly) every one in the same bucket. Both measure the same
        # instants from two vantage points (task-started event vs. the task's first line),
        # milliseconds apart, so a few tasks near a bucket bound may land one bucket over.
        assert counted == len(started), name
        assert disagreement <= max(2, len(tasks) // 10), name

    # Verdicts follow from the report's own numbers.
    setup_rows = {
        name: {row[0]: row for row in table_after(text, f"loadtest:setup {name}")} for name in mixed
    }
    verdicts = table_after(text, "loadtest:verdicts")
    seen = set()
    for criterion, setup, _target, raw, exporter, verdict, exporter_verdict in verdicts:
        seen.add((criterion, setup))
        if criterion == "latency-cut":
            broker = mixed[setup]["setup"]["broker"]
            fifo = next(n for n, r in mixed.items() if r["setup"]["broker"] == broker
                        and not r["setup"]["priorities"])  # fmt: skip
            # Exact, from the raw data ...
            assert raw == percent(1 - urgent_p95(mixed[setup]) / urgent_p95(mixed[fifo]))
            assert exporter == percent(
                1 - urgent_exporter_p95(mixed[setup]) / urgent_exporter_p95(mixed[fifo])
            )
            # ... consistent with the rounded p95s the report prints ...
            for column, shown in ((5, raw), (8, exporter)):
                low, high = cut_range(
                    setup_rows[setup]["urgent"][column], setup_rows[fifo]["urgent"][column]
                )
                assert low - 0.05 <= float(shown.rstrip(" %")) <= high + 0.05
            # ... and the verdict follows from the printed figure.
            assert verdict == ("PASS" if float(raw.rstrip(" %")) > 50.0 else "FAIL")
            assert exporter_verdict == ("PASS" if float(exporter.rstrip(" %")) > 50.0 else "FAIL")
        elif criterion == "in-flight":
            match = re.fullmatch(r"(\d+) in flight, (\d+)/(\d+) completed", raw)
            assert match, raw
            in_flight, done, total = map(int, match.groups())
            assert [str(in_flight), str(done), str(total)] == [
                summary[setup][6], summary[setup][4], summary[setup][3]
            ]  # fmt: skip
            assert verdict == ("PASS" if in_flight >= 100 and done == total else "FAIL")
            assert (exporter, exporter_verdict) == ("n/a", "n/a")
        else:
            assert criterion == "start-within-5s"
            worst = re.fullmatch(r"max (\d+\.\d\d) s", raw)
            assert worst and worst.group(1) == setup_rows[setup]["urgent"][6]
            assert verdict == ("PASS" if float(worst.group(1)) <= 5.0 else "FAIL")
            match = re.fullmatch(r"(\d+)/(\d+) of level (\w+) <= 5 s", exporter)
            assert match, exporter
            within, total, level = match.groups()
            run = mixed[setup]
            final = run["final_wait"][level]
            assert level == run["levels"]["urgent"]
            assert int(within) == final["cum"][final["le"].index(5.0)]
            assert int(total) == final["cum"][-1]
            assert exporter_verdict == ("PASS" if within == total else "FAIL")
    priority_setups = [n for n, r in mixed.items() if r["setup"]["priorities"]]
    expected_rows = (
        {("latency-cut", n) for n in priority_setups}
        | {("in-flight", n) for n in mixed}
        | {("start-within-5s", n) for n in priority_setups}
    )
    assert seen == expected_rows

    # The answer's one-line summary per setup agrees with the verdict table.
    for name in priority_setups:
        mine = {c: v for c, s, _t, _r, _e, v, _ev in verdicts if s == name}
        line = next(x for x in text.split("\n") if x.startswith(f"* **{name}**"))
        if all(v == "PASS" for v in mine.values()):
            assert line.endswith("meets all three targets.")
        else:
            failed = [
                c for c in ("latency-cut", "in-flight", "start-within-5s") if mine.get(c) == "FAIL"
            ]
            assert line.endswith("misses " + ", ".join(f"`{c}`" for c in failed) + ".")

    # Starvation table.
    starving = [r for r in data["runs"] if r["scenario"] == "starvation"]
    rows = {row[0]: row for row in table_after(text, "loadtest:starvation")}
    assert sorted(rows) == sorted(r["setup"]["name"] for r in starving)
    for run in starving:
        tasks = run["tasks"]
        urgent = [t for t in tasks if t[1] == "urgent"]
        low = [t for t in tasks if t[1] == "low"]
        stream_end = max(t[3] for t in urgent)
        low_waits = [t[5] - t[3] for t in low]
        assert rows[run["setup"]["name"]][1:7] == [
            two(stream_end - min(t[3] for t in tasks)),
            str(len(low)),
            str(sum(1 for t in low if t[5] > stream_end)),
            two(my_quantile(low_waits, 0.5)),
            two(max(low_waits)),
            two(my_quantile([t[5] - t[3] for t in urgent], 0.95)),
        ]

    check_countdown(text, data)


def due_wait(task: list) -> float:
    """Queue wait of a task from when it became due: start - (publish + countdown)."""
    countdown = task[8] if len(task) > 8 and task[8] else 0.0
    return task[5] - (task[3] + countdown)


def check_countdown(text: str, data: dict) -> None:
    """The countdown-heavy section: the exporter's waits (start minus the later of publish and
    ETA) agree with the tasks' own waits since they became due, and its end-to-end mean with
    the tasks' own publish-to-start mean."""
    runs = [r for r in data["runs"] if r["scenario"] == "countdown"]
    if "countdown_phases" not in data["plan"]:
        assert not runs
        return
    assert runs, "no countdown-heavy runs"
    summary = {row[0]: row for row in table_after(text, "loadtest:countdown")}
    assert sorted(summary) == sorted(r["setup"]["name"] for r in runs)
    for run in runs:
        name = run["setup"]["name"]
        tasks = run["tasks"]
        started = [t for t in tasks if t[5] is not None]
        delayed = sum(1 for t in tasks if t[8])
        assert delayed >= len(tasks) // 2, name  # countdown-heavy indeed
        counted = sum(entry["cum"][-1] for entry in run["final_wait"].values())
        disagreement = 0
        for level in set(run["levels"].values()):
            waits = [due_wait(t) for t in started if run["levels"][t[1]] == level]
            entry = run["final_wait"][level]
            mine = [sum(1 for w in waits if w <= b) for b in entry["le"]] + [len(waits)]
            disagreement = max(
                disagreement, *(abs(a - b) for a, b in zip(mine, entry["cum"], strict=True))
            )
        own_mean = sum(t[5] - t[3] for t in started) / len(started)
        e2e = run["scrapes"][-1]["end_to_end"]
        exporter_mean = e2e["sum"] / e2e["count"]
        assert summary[name][1:] == [
            str(len(tasks)),
            str(delayed),
            str(sum(1 for t in tasks if t[6] is not None)),
            str(counted),
            str(disagreement),
            two(own_mean),
            two(exporter_mean),
        ], name
        assert counted == len(started), name
        assert disagreement <= max(2, len(tasks) // 10), name
        assert e2e["count"] == len(started), name
        assert abs(own_mean - exporter_mean) < 0.1, name
        rows = {row[0]: row for row in table_after(text, f"loadtest:countdown {name}")}
        assert sorted(rows) == sorted(CLASSES)
        for cls in CLASSES:
            waits = [due_wait(t) for t in started if t[1] == cls]
            level = run["levels"][cls]
            final = run["final_wait"][level]
            assert rows[cls] == [
                cls,
                level,
                str(sum(1 for t in tasks if t[1] == cls)),
                two(my_quantile(waits, 0.5)),
                two(my_quantile(waits, 0.95)),
                two(max(waits)),
                two(my_histogram_quantile(0.5, final["le"], final["cum"])),
                two(my_histogram_quantile(0.95, final["le"], final["cum"])),
            ], (name, cls)


# --- the real quick run ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.rabbitmq
def test_quick_run_report_matches_its_raw_data(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed")
    if not port_open(5672):
        missing_service("RabbitMQ is not answering on 127.0.0.1:5672")
    result = subprocess.run(
        [sys.executable, "-m", "bench.loadtest", "--quick", "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "%" in result.stderr  # the progress bar was drawn
    text = (tmp_path / "report.md").read_text()
    data = read_raw(tmp_path / "raw.json.gz")

    plan = data["plan"]
    assert plan["quick"] is True
    assert [r["setup"]["name"] for r in data["runs"]] == [
        "redis-fifo", "redis-steps4", "rabbitmq-fifo", "rabbitmq-priority",
        "redis-steps4", "rabbitmq-priority", "redis-steps4", "rabbitmq-priority",
    ]  # fmt: skip
    # Every scheduled task was published and its own record came back exactly once.
    offers = {
        "mixed": schedule(
            Scenario("mixed", "mixed", tuple(map(tuple, plan["mixed_phases"]))),
            plan["capacity"], plan["seed"],
        ),
        "starvation": schedule(
            Scenario("starvation", "starvation", tuple(map(tuple, plan["starvation_phases"])),
                     starved_tasks=plan["starved_tasks"], starved_at=plan["starved_at"]),
            plan["capacity"], plan["seed"],
        ),
        "countdown": schedule(
            Scenario("countdown", "countdown", tuple(map(tuple, plan["countdown_phases"])),
                     countdown_share=plan["countdown_share"],
                     countdown_range=tuple(plan["countdown_range"])),
            plan["capacity"], plan["seed"],
        ),
    }  # fmt: skip
    for run in data["runs"]:
        tasks = run["tasks"]
        assert [t[1] for t in tasks] == [o.cls for o in offers[run["scenario"]]]
        assert [t[8] for t in tasks] == [o.countdown for o in offers[run["scenario"]]]
        assert all(t[5] is not None and t[6] is not None for t in tasks)
        assert run["duplicates"] == 0
        assert len({t[0] for t in tasks}) == len(tasks)
        setup = run["setup"]
        for t in tasks:  # the broker delivered the priority the producer sent
            assert t[2] == (
                None if not setup["priorities"]
                else (REDIS_PRIORITY if setup["broker"] == "redis" else RABBITMQ_PRIORITY)[t[1]]
            )  # fmt: skip
            assert t[4] is not None and t[3] <= t[4] <= t[5] <= t[6]  # publish stamp in order
    check_report(text, data)
    for name in ("loadtest-redis.png", "loadtest-rabbitmq.png", "loadtest-starvation.png"):
        assert (tmp_path / "img" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Nothing left behind on the shared RabbitMQ.
    import requests

    names = [q["name"] for q in requests.get(
        "http://127.0.0.1:15672/api/queues?columns=name", auth=("guest", "guest"), timeout=10
    ).json()]  # fmt: skip
    queues = {r["queue"] for r in data["runs"]}
    assert not queues & set(names)


# --- the committed report -------------------------------------------------------------------


def test_committed_report_matches_its_raw_data(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    data = read_raw(DOC_RAW)
    assert data["plan"]["quick"] is False
    check_report(text, data)
    mixed = [r for r in data["runs"] if r["scenario"] == "mixed"]
    assert {r["setup"]["broker"] for r in mixed} == {"redis", "rabbitmq"}
    for run in mixed:  # the default scenario reaches 100+ tasks in flight on every setup
        assert my_in_flight(run["tasks"]) >= 100, run["setup"]["name"]
    for name in ("loadtest-redis.png", "loadtest-rabbitmq.png", "loadtest-starvation.png"):
        assert (ROOT / "docs" / "img" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The committed text is exactly what the generator makes of the committed raw data.
    report = tmp_path / "docs" / "priority-loadtest.md"
    rendered = render(
        data, tmp_path / "docs" / "img", report, data["meta"]["command"], data["meta"]["context"]
    )
    assert rendered == text
    assert data["meta"]["command"] in text


# --- pure logic -------------------------------------------------------------------------------


def test_quantile_is_linear_between_ranks() -> None:
    values = [10.0, 1.0, 3.0, 2.0, 4.0]
    assert an.quantile(values, 0.5) == 3.0
    assert an.quantile(values, 0.95) == pytest.approx(8.8)  # 4 + 0.8 * (10 - 4)
    assert an.quantile(values, 1.0) == 10.0
    assert an.quantile([7.0], 0.95) == 7.0
    assert an.quantile(values, 0.95) == pytest.approx(my_quantile(values, 0.95))


def test_histogram_quantile_follows_prometheus() -> None:
    bounds, cum = [1.0, 2.0, 5.0], [2, 6, 8, 10]
    assert an.histogram_quantile(0.5, bounds, cum) == 1.75  # rank 5 in (1, 2]: 1 + 3/4
    assert an.histogram_quantile(0.1, bounds, cum) == 0.5  # rank 1 in (0, 1]
    assert an.histogram_quantile(0.95, bounds, cum) == 5.0  # rank 9.5 in +Inf: last bound
    assert math.isnan(an.histogram_quantile(0.5, bounds, [0, 0, 0, 0]))
    assert an.histogram_quantile(0.7, bounds, cum) == my_histogram_quantile(0.7, bounds, cum)


def test_bucket_counts_and_in_flight() -> None:
    assert an.bucket_counts([0.5, 1.0, 1.5, 7.0], [1.0, 5.0]) == [2, 3, 4]
    # published 0, 0.5, 1.0; finished 2.0, 1.0, never: at t=1.0 one finishes, one arrives.
    assert an.max_in_flight([0.0, 0.5, 1.0], [2.0, 1.0, None]) == 2
    tasks = [["a", "x", None, 0.0, 0, 0, 2.0, ""], ["b", "x", None, 0.5, 0, 0, 1.0, ""],
             ["c", "x", None, 1.0, 0, 0, None, ""]]  # fmt: skip
    assert my_in_flight(tasks) == 2


def test_levels_follow_each_brokers_priority_order() -> None:
    steps4 = Setup("r4", "redis", priorities=True, recommended=True)
    steps10 = Setup("r10", "redis", True, True, TEN_STEPS)
    rabbit = Setup("q", "rabbitmq", priorities=True, recommended=True)
    fifo = Setup("f", "rabbitmq", priorities=False, recommended=True)
    assert [steps4.level(c) for c in CLASSES] == ["0", "0", "3", "9"]
    assert [steps10.level(c) for c in CLASSES] == ["0", "2", "5", "9"]
    assert [rabbit.level(c) for c in CLASSES] == ["9", "7", "4", "0"]
    assert [fifo.level(c) for c in CLASSES] == ["0", "0", "0", "0"]
    assert [fifo.priority(c) for c in CLASSES] == [None] * 4
    assert (steps4.prefetch_multiplier, steps4.acks_late) == (1, True)
    defaults = Setup("d", "redis", priorities=True, recommended=False)
    assert (defaults.prefetch_multiplier, defaults.acks_late) == (4, False)


def test_schedule_offers_each_phase_at_its_rate() -> None:
    offers = schedule(Scenario("m", "mixed", ((2.0, 0.5), (2.0, 1.0))), 16.0, seed=8)
    assert len(offers) == 16 + 32
    assert [o.at for o in offers[:3]] == [0.0, 0.125, 0.25]
    assert offers[16].at == 2.0
    assert offers == schedule(Scenario("m", "mixed", ((2.0, 0.5), (2.0, 1.0))), 16.0, seed=8)
    starving = schedule(
        Scenario("s", "starvation", ((5.0, 1.1),), starved_tasks=3, starved_at=2.0), 16.0, 8
    )
    assert sum(1 for o in starving if o.cls == "low") == 3
    assert sum(1 for o in starving if o.cls == "urgent") == 88
    assert [o.at for o in starving] == sorted(o.at for o in starving)


def test_default_plan_reaches_100_in_flight_on_paper() -> None:
    """Offered minus capacity over the overload phases leaves 100+ tasks waiting."""
    plan = make_plan()
    assert plan.capacity == 16.0
    backlog = sum(s * plan.capacity * max(0.0, f - 1.0) for s, f in plan.mixed.phases)
    assert backlog + plan.slots >= 100
    quick = make_plan(quick=True)
    assert [s.name for s in quick.setups] == [
        "redis-fifo", "redis-steps4", "rabbitmq-fifo", "rabbitmq-priority"
    ]  # fmt: skip


def test_verdicts_follow_the_figures() -> None:
    def summary(setup: str, broker: str, priorities: bool, p95: float, worst: float,
                in_flight: int) -> an.RunSummary:  # fmt: skip
        row = an.ClassRow("urgent", 0, "0", 10, 10, p95 / 2, p95, worst, None, None, None)
        return an.RunSummary("mixed", setup, broker, priorities, True, "", 10, 10, 0, 1.0,
                             in_flight, [row], False, None, None)  # fmt: skip

    found = an.verdicts([
        summary("fifo", "redis", False, 10.0, 12.0, 150),
        summary("good", "redis", True, 4.0, 5.0, 150),
        summary("half", "redis", True, 5.0, 5.01, 99),
    ])  # fmt: skip
    table = {(v.criterion, v.setup): v.passed for v in found}
    assert table == {
        ("latency-cut", "good"): True,  # 60 % lower
        ("latency-cut", "half"): False,  # exactly 50 % is not "more than 50 %"
        ("in-flight", "fifo"): True,
        ("in-flight", "good"): True,
        ("in-flight", "half"): False,
        ("start-within-5s", "good"): True,  # 5.0 s is within 5 s
        ("start-within-5s", "half"): False,
    }
