"""Alerting and recording rules: generation, promtool, unit-test coverage, config relations.

The rule files are generated from monitoring/config.yaml (python -m monitoring.generate);
alerts/tests/*.yaml are promtool unit tests written against the defaults.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from celery_queue_exporter import catalogue as cat
from celery_queue_exporter.config import EventSettings
from monitoring import config as mconfig
from monitoring import generate, rules
from monitoring.alerts import ALERTS, MODULES
from testsupport.paths import ROOT
from testsupport.services import missing_service

RULE_FILE = ROOT / generate.RULE_FILE
PROMETHEUS_RULE_FILE = ROOT / generate.PROMETHEUS_RULE_FILE
UNIT_TESTS = sorted((ROOT / "alerts" / "tests").glob("*.yaml"))


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        missing_service("promtool is not installed (Debian package prometheus)")
    return binary


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # The timeout only guards against a hang: the unit tests of every rule file took over 120 s
    # on a 2-core machine at load 10 (the fresh-Debian check beside other work).
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=900, cwd=ROOT
    )


@pytest.fixture(scope="module")
def config() -> dict:
    return mconfig.load()


@pytest.fixture(scope="module")
def rule_doc() -> dict:
    return yaml.safe_load(RULE_FILE.read_text(encoding="utf-8"))


def alert_rules_of(doc: dict) -> dict[str, dict]:
    return {
        rule["alert"]: rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule
    }


def recording_rules_of(doc: dict) -> dict[str, dict]:
    return {
        rule["record"]: rule
        for group in doc["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


# --- generation -------------------------------------------------------------------------------


def test_committed_rule_files_equal_a_fresh_generation_from_the_defaults(config):
    for relative, text in generate.rule_files(config).items():
        committed = (ROOT / relative).read_text(encoding="utf-8")
        assert committed == text, f"{relative} drifted: run python -m monitoring.generate"


def test_unit_tests_rule_file_is_the_defaults_plus_an_urgent_task(config, rule_doc):
    """alerts/tests/ runs against the defaults plus UNIT_TEST_OVERRIDES (the defaults name no
    urgent task, so CeleryUrgentTaskAtWrongPriority could not fire); nothing else differs."""
    files = generate.unit_test_rule_files(config)
    assert list(files) == [generate.UNIT_TEST_RULE_FILE]
    committed = (ROOT / generate.UNIT_TEST_RULE_FILE).read_text(encoding="utf-8")
    assert committed == files[generate.UNIT_TEST_RULE_FILE], "run python -m monitoring.generate"
    assert config["urgent_tasks"] == []
    assert generate.UNIT_TEST_OVERRIDES == {"urgent_tasks": ["evaluations.score_urgent"]}
    tested = alert_rules_of(yaml.safe_load(committed))
    defaults = alert_rules_of(rule_doc)
    assert list(tested) == list(defaults)
    differing = [name for name in defaults if tested[name] != defaults[name]]
    assert differing == ["CeleryQueueWaitObjectiveMissed", "CeleryUrgentTaskAtWrongPriority"]
    assert 'task=~"evaluations\\\\.score_urgent"' in tested[differing[1]]["expr"]
    assert 'task=~""' in defaults[differing[1]]["expr"]
    assert generate.UNIT_TEST_WAIT_OBJECTIVES == {"checkout": 10, "reports": 1800}
    assert config["alerts"][differing[0]]["queues"] == {}
    assert 'queue="checkout"}' in tested[differing[0]]["expr"]
    assert "queue=" not in defaults[differing[0]]["expr"]
    assert recording_rules_of(yaml.safe_load(committed)) == recording_rules_of(rule_doc)
    # a user's own config (--config) does not write it: only the repository's unit tests use it
    for path in UNIT_TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        expected = (
            ["rules/celery-queue-exporter.rules.yaml"]
            if path.name in ("priorities.yaml", "queues.yaml")
            else ["../celery-queue-exporter.rules.yaml"]
        )
        assert doc["rule_files"] == expected, path.name


#: The alerts built on the broker inspection, which CeleryBrokerDown makes meaningless; the
#: event-stream alerts (workers, task outcomes, urgent levels) stay: they have their own guard.
INSPECTION_ALERTS = [
    "CeleryInstrumentationMissing",
    "CeleryQueueBacklogHigh",
    "CeleryQueueBacklogGrowing",
    "CeleryQueueMostUrgentWaitingTooLong",
    "CeleryQueueMessageWaitingTooLong",
    "CeleryQueueWaitObjectiveMissed",
    "CeleryQueueNoConsumers",
    "CeleryPriorityStarvation",
    "CeleryReservedNearVisibilityTimeout",
    "CeleryReservationsOrphaned",
    "CeleryTaskRedeliveredRepeatedly",
    "CeleryDeliveryLimitWithoutDeadLetter",
    # broker pressure: the same inspection reads them (a broker down has none of them)
    "CeleryRedisEvictionPolicyRisky",
    "CeleryRedisKeysEvicted",
    "CeleryRedisOutOfMemory",
    "CeleryRedisMessagesLost",
    "CeleryRabbitMQResourceAlarm",
    "CeleryRabbitMQPartitioned",
    "CeleryRabbitMQNodeDown",
    "CeleryRabbitMQNodeNearLimit",
]


def test_inhibition_rules_exporter_down_per_instance_broker_down_for_inspection_alerts(config):
    doc = yaml.safe_load((ROOT / generate.INHIBIT_RULES_FILE).read_text(encoding="utf-8"))
    others = [name for name in config["alerts"] if name != "CeleryExporterDown"]
    assert set(INSPECTION_ALERTS) < set(others)
    inspection = [name for name in config["alerts"] if name in INSPECTION_ALERTS]
    assert doc == {
        "inhibit_rules": [
            {
                "source_matchers": ['alertname="CeleryExporterDown"'],
                "target_matchers": [f'alertname=~"{"|".join(others)}"'],
                "equal": ["job", "instance"],
            },
            {
                "source_matchers": ['alertname="CeleryBrokerDown"'],
                "target_matchers": [f'alertname=~"{"|".join(inspection)}"'],
                "equal": ["job", "broker"],
            },
        ]
    }
    assert len(others) == len(ALERTS) - 1 == 32
    custom = copy.deepcopy(config)
    custom["alerts"]["CeleryQueueBacklogHigh"]["enabled"] = False
    custom["alerts"]["CeleryExporterDown"]["enabled"] = False
    rules_ = generate.inhibit_rules(custom)
    assert [rule["source_matchers"] for rule in rules_] == [['alertname="CeleryBrokerDown"']]
    assert "CeleryQueueBacklogHigh" not in rules_[0]["target_matchers"][0]
    assert "CeleryQueueBacklogGrowing" in rules_[0]["target_matchers"][0]


def test_prometheus_rule_object_holds_the_same_rules_with_the_configured_metadata(config):
    plain = yaml.safe_load(RULE_FILE.read_text(encoding="utf-8"))
    obj = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text(encoding="utf-8"))
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["kind"] == "PrometheusRule"
    assert obj["metadata"] == {
        "name": "celery-queue-exporter",
        "namespace": "monitoring",
        "labels": {"release": "kube-prometheus-stack"},
    }
    # the same rules but keep_firing_for, unknown to the pinned operator's CRD (v0.65.1)
    kept = [r for g in plain["groups"] for r in g["rules"] if r.pop("keep_firing_for", None)]
    assert len(kept) == len(config["alerts"]) - 1  # all but CeleryExporterDown
    assert obj["spec"] == plain


def test_every_configured_alert_is_generated_once_and_nothing_else(config, rule_doc):
    generated = [
        rule["alert"] for group in rule_doc["groups"] for rule in group["rules"] if "alert" in rule
    ]
    assert generated == list(config["alerts"])
    assert set(generated) == set(ALERTS)


def test_alerts_carry_severity_static_summary_templated_description_and_runbook(config, rule_doc):
    for name, rule in alert_rules_of(rule_doc).items():
        settings = config["alerts"][name]
        assert rule["labels"] == {"severity": settings["severity"]}, name
        assert rule["for"] == mconfig.format_duration(mconfig.parse_duration(settings["for"]))
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "{{" not in annotations["summary"], f"{name}: summary must be static"
        assert "$labels." in annotations["description"], f"{name}: description names no label"
        assert annotations["runbook_url"] == (
            "https://github.com/celery-queue-exporter/celery-queue-exporter/blob/main/docs/"
            f"runbooks/{name}.md"
        )


def test_recording_rule_names_follow_the_convention_and_match_the_module_constants(
    config, rule_doc
):
    names = rules.recording_names(config)
    assert list(recording_rules_of(rule_doc)) == list(names.all())
    for name in names.all():
        level, metric, operations = name.split(":")
        assert level == "celery_queue" and metric.startswith("celery_queue_") and operations
    assert names.all() == (
        rules.QUEUE_MESSAGES_SUM,
        rules.WAIT_BUCKET_RATE,
        rules.WAIT_P50,
        rules.WAIT_P95,
        rules.WAIT_P95_MOST_URGENT,
        rules.WAIT_P95_LEAST_URGENT,
        rules.PRIORITY_WAIT_REDUCTION,
    )
    assert rules.WAIT_P95 == "celery_queue:celery_queue_wait_seconds:p95_5m"


def _write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "monitoring.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.subprocess
@pytest.mark.prometheus
@pytest.mark.slow
def test_generator_command_renders_a_users_thresholds_and_check_mode_detects_drift(
    config, tmp_path
):
    custom = copy.deepcopy(config)
    custom["selector"] = 'job="celery", namespace="prod"'
    custom["runbook_base_url"] = "https://runbooks.example.com/celery/"
    custom["rule_object"] = {"name": "celery", "namespace": "prod", "labels": {"release": "kps"}}
    custom["recording"]["window"] = "10m"
    custom["alerts"]["CeleryQueueBacklogHigh"].update(messages=50, **{"for": "90s"})
    custom["alerts"]["CeleryQueueBacklogHigh"]["labels"] = {"team": "evaluations"}
    custom["alerts"]["CeleryWorkerDown"]["enabled"] = False
    path = _write_config(tmp_path, custom)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monitoring.generate", "--config", str(path), "--out"]
    done = subprocess.run([*command, str(out)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr

    doc = yaml.safe_load((out / generate.RULE_FILE).read_text(encoding="utf-8"))
    alerts = alert_rules_of(doc)
    assert "CeleryWorkerDown" not in alerts
    backlog = alerts["CeleryQueueBacklogHigh"]
    assert backlog["expr"] == (
        "max without (instance, pod) (\n  celery_queue:celery_queue_messages:sum > 50\n)"
    )
    assert backlog["for"] == "1m30s"
    assert backlog["labels"] == {"severity": "warning", "team": "evaluations"}
    assert backlog["annotations"]["runbook_url"] == (
        "https://runbooks.example.com/celery/CeleryQueueBacklogHigh.md"
    )
    recording = recording_rules_of(doc)
    assert recording["celery_queue:celery_queue_messages:sum"]["expr"] == (
        'sum without (priority) (celery_queue_messages{job="celery", namespace="prod"})'
    )
    assert "celery_queue:celery_queue_wait_seconds:p95_10m" in recording
    obj = yaml.safe_load((out / generate.PROMETHEUS_RULE_FILE).read_text(encoding="utf-8"))
    assert obj["metadata"] == {"name": "celery", "namespace": "prod", "labels": {"release": "kps"}}
    assert backlog["keep_firing_for"] == "5m"
    for group in doc["groups"]:  # the CRD of the pinned operator has no keep_firing_for
        for rule in group["rules"]:
            rule.pop("keep_firing_for", None)
    assert obj["spec"] == doc
    check = run_promtool("check", "rules", str(out / generate.RULE_FILE))
    assert check.returncode == 0, check.stdout + check.stderr

    checked = subprocess.run(
        [*command, str(out), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert checked.returncode == 0, checked.stderr
    (out / generate.RULE_FILE).write_text("groups: []\n", encoding="utf-8")
    checked = subprocess.run(
        [*command, str(out), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert checked.returncode == 1
    assert str(generate.RULE_FILE) in checked.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("selector"), "selector: missing top-level key"),
        (lambda c: c["alerts"].pop("CeleryWorkerDown"), "alerts.CeleryWorkerDown: missing"),
        (
            lambda c: c["alerts"]["CeleryQueueBacklogHigh"].update(severity="page"),
            "alerts.CeleryQueueBacklogHigh.severity: expected one of critical, warning, info",
        ),
        (
            lambda c: c["alerts"]["CeleryQueueBacklogHigh"].update(messages="many"),
            "alerts.CeleryQueueBacklogHigh.messages: expected a number",
        ),
        (
            lambda c: c["alerts"]["CeleryWorkerDown"].update({"for": "2 minutes"}),
            "alerts.CeleryWorkerDown.for: expected a duration",
        ),
        (
            lambda c: c["alerts"]["CeleryQueueWorkersDropped"].update(ratio=1.5),
            "alerts.CeleryQueueWorkersDropped.ratio: must be between 0 and 1",
        ),
        (lambda c: c["alerts"].update(CeleryTypo={}), "alerts.CeleryTypo: unknown alert"),
        (
            lambda c: c["alerts"]["CeleryBrokerDown"].update(threshold=3),
            "alerts.CeleryBrokerDown.threshold: unknown setting",
        ),
        (
            lambda c: c["alerts"]["CeleryQueueBacklogGrowing"].pop("window"),
            "alerts.CeleryQueueBacklogGrowing.window: missing",
        ),
        (
            lambda c: c["alerts"]["CeleryQueueBacklogGrowing"].update(window="0s"),
            "alerts.CeleryQueueBacklogGrowing.window: must be at least 1s",
        ),
        (
            lambda c: c["alerts"]["CeleryQueueBacklogHigh"].update(messages=-1),
            "alerts.CeleryQueueBacklogHigh.messages: must be 0 or more",
        ),
        (lambda c: c["recording"].update(window="0s"), "recording.window: must be at least 1s"),
        (lambda c: c["goals"].update(most_urgent=5), "goals.most_urgent: unknown setting"),
        (
            lambda c: c["exporter"].pop("worker_retention_seconds"),
            "exporter.worker_retention_seconds: missing",
        ),
        (
            lambda c: c["exporter"].update(worker_offline_grace_seconds="2m"),
            "exporter.worker_offline_grace_seconds: expected a number",
        ),
        (lambda c: c.pop("workload"), "workload: missing top-level key"),
        (
            lambda c: c["workload"].pop("hard_time_limit_seconds"),
            "workload.hard_time_limit_seconds: missing",
        ),
        (
            lambda c: c.update(urgent_tasks="evaluations.score_urgent"),
            "urgent_tasks: expected a list of task names",
        ),
        (lambda c: c.update(urgent_tasks=["a", ""]), "urgent_tasks[1]: expected a task name"),
        (lambda c: c.update(urgent_tasks=["a", "a"]), "urgent_tasks: 'a' listed twice"),
        (
            lambda c: c["alerts"]["CeleryTaskFailureRatioHigh"].update(min_runs=0),
            "alerts.CeleryTaskFailureRatioHigh.min_runs: must be 1 or more",
        ),
    ],
)
@pytest.mark.subprocess
def test_generator_rejects_a_bad_config_naming_the_field(config, tmp_path, change, message):
    broken = copy.deepcopy(config)
    change(broken)
    path = _write_config(tmp_path, broken)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitoring.generate",
            "--config",
            str(path),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / generate.RULE_FILE).exists()


def test_the_alert_declarations_are_the_configs_schema(config):
    """Each alert declares its parameters once; the committed config holds exactly those."""
    for name, definition in ALERTS.items():
        assert definition.name == name
        declared = set(definition.params) | {"for", "severity"}
        restart_proof = set() if name == "CeleryExporterDown" else {"keep_firing_for"}
        assert set(config["alerts"][name]) == declared | restart_proof, name


def test_each_alert_module_has_the_promtool_unit_tests_of_its_alerts():
    """monitoring/alerts/<group>.py and alerts/tests/<group>.yaml hold the same alerts."""
    for module in MODULES:
        group = module.__name__.rsplit(".", 1)[1]
        declared = {d.name for d in ALERTS.values() if d.body.__module__ == module.__name__}
        doc = yaml.safe_load((ROOT / "alerts" / "tests" / f"{group}.yaml").read_text())
        tested = {
            case["alertname"] for block in doc["tests"] for case in block.get("alert_rule_test", [])
        }
        assert declared and tested == declared, group
    assert len(UNIT_TESTS) == len(MODULES)


def test_durations_parse_and_format_like_prometheus():
    assert mconfig.parse_duration("1h30m") == 5400
    assert mconfig.parse_duration("90s") == 90
    assert mconfig.parse_duration("1d") == 86400
    assert mconfig.format_duration(5400) == "1h30m"
    assert mconfig.format_duration(90) == "1m30s"
    for bad in ("", "5", "5 m", "1ms", "m"):
        with pytest.raises(mconfig.MonitoringConfigError):
            mconfig.parse_duration(bad)


# --- promtool ---------------------------------------------------------------------------------


@pytest.mark.prometheus
def test_promtool_check_rules_accepts_the_plain_rule_file():
    done = run_promtool("check", "rules", str(RULE_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 40 rules found" in done.stdout


@pytest.mark.prometheus
def test_promtool_check_rules_accepts_the_prometheusrule_spec(tmp_path):
    obj = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text(encoding="utf-8"))
    spec = tmp_path / "spec.rules.yaml"
    spec.write_text(yaml.safe_dump(obj["spec"], sort_keys=False), encoding="utf-8")
    done = run_promtool("check", "rules", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 40 rules found" in done.stdout


@pytest.mark.prometheus
@pytest.mark.slow
def test_promtool_unit_tests_pass():
    assert UNIT_TESTS, "alerts/tests/*.yaml missing"
    done = run_promtool("test", "rules", *map(str, UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(UNIT_TESTS), done.stdout


@pytest.mark.prometheus
def test_promtool_unit_tests_fail_when_an_expected_annotation_is_wrong(tmp_path):
    """The unit tests compare annotations exactly (they cannot pass by accident)."""
    source = (ROOT / "alerts" / "tests" / "queues.yaml").read_text(encoding="utf-8")
    assert "waiting 2m 6s" in source
    broken = tmp_path / "queues.yaml"
    broken.write_text(
        source.replace("waiting 2m 6s", "waiting 2m 7s").replace(
            "../celery-queue-exporter.rules.yaml", str(RULE_FILE)
        ),
        encoding="utf-8",
    )
    done = run_promtool("test", "rules", str(broken))
    assert done.returncode == 1
    assert "CeleryQueueMostUrgentWaitingTooLong" in done.stdout + done.stderr


def _unit_cases() -> list[tuple[str, dict]]:
    cases = []
    for path in UNIT_TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.append(("alert", case))
            for case in group.get("promql_expr_test", []):
                cases.append(("expr", case))
    return cases


def test_every_alert_has_unit_cases_that_fire_and_that_must_not(rule_doc):
    cases = [case for kind, case in _unit_cases() if kind == "alert"]
    for name, rule in alert_rules_of(rule_doc).items():
        firing = [c for c in cases if c["alertname"] == name and c.get("exp_alerts")]
        silent = [c for c in cases if c["alertname"] == name and not c.get("exp_alerts")]
        assert firing, f"{name}: no unit case where it fires"
        assert silent, f"{name}: no unit case where it must not fire"
        for case in firing:
            for alert in case["exp_alerts"]:
                assert alert["exp_annotations"]["runbook_url"] == rule["annotations"]["runbook_url"]
                assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
        # "just short of for:": a silent case one evaluation before a firing one
        fire_times = {mconfig.parse_duration(c["eval_time"]) for c in firing}
        silent_times = {mconfig.parse_duration(c["eval_time"]) for c in silent}
        assert any(t - 60 in silent_times for t in fire_times), (
            f"{name}: no silent case one minute before a firing one"
        )


def test_every_recording_rule_value_is_unit_tested(rule_doc):
    exprs = " ".join(case["expr"] for kind, case in _unit_cases() if kind == "expr")
    for record in recording_rules_of(rule_doc):
        assert re.search(re.escape(record) + r"(?![\w:])", exprs), f"{record}: no value test"


# --- relations the alerts depend on -----------------------------------------------------------


def test_monitoring_config_matches_the_exporters_event_defaults(config):
    defaults = EventSettings()
    assert config["exporter"] == {
        "worker_heartbeat_timeout_seconds": defaults.heartbeat_timeout_seconds,
        "worker_retention_seconds": defaults.worker_retention_seconds,
        "worker_offline_grace_seconds": defaults.worker_offline_grace_seconds,
    }


def test_worker_down_fires_before_the_exporter_drops_the_worker(config):
    """celery_worker_up stays 0 for worker_retention_seconds after the heartbeat timeout; the
    alert needs timeout + for: + one evaluation and one scrape interval (at most the recording
    interval each, generously) inside that span, with room for a page to go out."""
    exporter = config["exporter"]
    evaluation = mconfig.parse_duration(config["recording"]["interval"])
    worker_for = mconfig.parse_duration(config["alerts"]["CeleryWorkerDown"]["for"])
    fires_after = worker_for + 2 * evaluation
    assert (
        exporter["worker_heartbeat_timeout_seconds"] + fires_after
        < (exporter["worker_retention_seconds"])
    )
    # CeleryAllWorkersDown needs those series too (a broker that never had workers does not
    # page, alerts/tests/workers.yaml redis-empty); after the retention, CeleryQueueNoConsumers
    # still pages for anything waiting there.


def test_windowed_alerts_can_fire_inside_their_window(config):
    """max_over_time(x[window]) forgets a drop after `window`: `for:` must be shorter."""
    alerts = config["alerts"]
    dropped = alerts["CeleryQueueWorkersDropped"]
    assert mconfig.parse_duration(dropped["for"]) < mconfig.parse_duration(dropped["window"])


def test_most_urgent_default_is_the_platform_goal(config):
    assert (
        config["alerts"]["CeleryQueueMostUrgentWaitingTooLong"]["seconds"]
        == config["goals"]["most_urgent_start_seconds"]
        == 5
    )
    assert config["goals"]["min_priority_wait_reduction"] == 0.5


def test_every_metric_a_rule_reads_is_in_the_catalogue(config):
    known = {series for spec in cat.all_metrics() for series in cat.exposed_series_names(spec)}
    used = set()
    for rule in rules.recording_rules(config) + rules.alert_rules(config):
        used |= rule.metrics
    assert used - {"up"} <= known
    # every name found in the text is a catalogue metric, a recording rule or a function
    names = set(rules.recording_names(config).all())
    text = RULE_FILE.read_text(encoding="utf-8")
    for doc_rule in (r for g in yaml.safe_load(text)["groups"] for r in g["rules"]):
        for token in re.findall(r"[a-zA-Z_:][\w:]*(?=\{)", doc_rule["expr"]):
            assert token in known | {"up"} | names, token


def test_metric_helper_refuses_names_outside_the_catalogue():
    with pytest.raises(KeyError, match="celery_queue_lenght"):
        rules.Exprs('job="x"').metric("celery_queue_lenght")
