"""The exporter exports the task counter label sets it knows at 0 (issue 21).

Pure logic (a tracker fed events, rendered by the collector's ``families``); the same path with
real workers, exporter and Prometheus is tests/test_oncall_scenarios.py::
test_failure_burst_of_a_new_task_pages_once_naming_its_exceptions."""

from __future__ import annotations

from celery_queue_exporter.brokers.redis.priority import step_levels
from celery_queue_exporter.config import EventSettings
from celery_queue_exporter.events.collector import families
from celery_queue_exporter.events.tracker import EventTracker


def samples(tracker: EventTracker) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in families([("b", tracker, tracker.snapshot())]):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def task_samples(found: dict, task: str) -> dict[str, float]:
    """{sample name[limit/exception]: value} of one task's counters."""
    out = {}
    for (name, labels), value in found.items():
        labels = dict(labels)
        if labels.get("task") != task or not name.endswith("_total"):
            continue
        extra = labels.get("limit") or labels.get("exception")
        out[f"{name}[{extra}]" if extra else name] = value
    return out


def test_a_seen_task_has_every_outcome_series_at_zero_but_unknown_exceptions():
    t = EventTracker("b", EventSettings(), priority_level=step_levels(), clock=lambda: 1000.0)
    t.handle(
        [
            {"type": "task-received", "uuid": "a", "name": "n", "queue": "q", "timestamp": 1.0},
            {"type": "task-started", "uuid": "a", "timestamp": 2.0},
            {"type": "task-succeeded", "uuid": "a", "runtime": 0.5, "timestamp": 3.0},
        ]
    )
    assert task_samples(samples(t), "n") == {
        "celery_task_sent_total": 0.0,
        "celery_task_received_total": 1.0,
        "celery_task_started_total": 1.0,
        "celery_task_succeeded_total": 1.0,
        "celery_task_retried_total": 0.0,
        "celery_task_rejected_total": 0.0,
        "celery_task_revoked_total": 0.0,
        "celery_task_time_limit_exceeded_total[hard]": 0.0,
        "celery_task_time_limit_exceeded_total[soft]": 0.0,
    }
    # A failure adds its exception's series (unknown before) and leaves the zeros in place.
    t.handle(
        [
            {"type": "task-received", "uuid": "b", "name": "n", "queue": "q", "timestamp": 4.0},
            {"type": "task-failed", "uuid": "b", "exception": "KeyError('x')", "timestamp": 5.0},
        ]
    )
    found = task_samples(samples(t), "n")
    assert found["celery_task_failed_total[KeyError]"] == 1.0
    assert found["celery_task_retried_total"] == 0.0
    assert found["celery_task_received_total"] == 2.0


def test_nothing_is_exported_for_a_task_never_seen():
    t = EventTracker("b", EventSettings(), priority_level=step_levels(), clock=lambda: 1000.0)
    assert [key for key in samples(t) if key[0].startswith("celery_task_")] == []


def test_zero_series_take_their_place_in_the_series_budget():
    """A task whose sends fold into '(other)' gets no outcome series at 0 anywhere (a 0 there
    would hide where its counts are), and the zero series of the admitted tasks are bounded by
    the same budget as counted ones: at most ``max_series_per_family`` per family."""
    settings = EventSettings(max_series_per_family=3)
    t = EventTracker("b", settings, priority_level=step_levels(), clock=lambda: 1000.0)
    t.handle(
        [{"type": "task-sent", "uuid": f"u{i}", "name": f"t{i}", "queue": "q"} for i in range(5)]
    )
    found = samples(t)
    assert task_samples(found, "t3") == {} and task_samples(found, "t4") == {}
    assert task_samples(found, "(other)") == {"celery_task_sent_total": 2.0}
    for name in ("celery_task_sent_total", "celery_task_retried_total"):
        tasks = {dict(labels)["task"] for sample, labels in found if sample == name}
        assert tasks == ({"t0", "t1", "t2", "(other)"} if "sent" in name else {"t0", "t1", "t2"})
    limits = {
        (dict(labels)["task"], dict(labels)["limit"])
        for sample, labels in found
        if sample == "celery_task_time_limit_exceeded_total"
    }
    assert limits == {("t0", "hard"), ("t0", "soft"), ("t1", "hard")}
