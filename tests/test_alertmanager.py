"""The generated Alertmanager inhibition rules (alerts/alertmanager-inhibit-rules.yaml), against a
real Alertmanager (Debian's prometheus-alertmanager, 0.25.0 in Debian 12; scripts/bootstrap.sh
installs it for the tests).

``amtool check-config`` accepts a config that embeds them; then a private Alertmanager (free
loopback port, clustering off, temporary storage) receives alerts over its API and reports, per
alert, which ones are inhibited and by which source alert.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from monitoring import generate
from testsupport.net import free_port
from testsupport.paths import ROOT
from testsupport.processes import stop_process
from testsupport.services import missing_service
from testsupport.waiting import wait_for

INHIBIT_RULES = ROOT / generate.INHIBIT_RULES_FILE
JOB = "celery-queue-exporter"
#: A second exporter job: CeleryExporterDown of one job leaves the other job's alerts alone.
OTHER_JOB = "celery-queue-exporter-eu"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing_service(f"{name} is not installed (Debian package prometheus-alertmanager)")
    return found


def write_config(directory: Path, inhibit_rules: str) -> Path:
    """An alertmanager.yml with one receiver that notifies nobody, plus the generated rules."""
    config = {
        "route": {"receiver": "nobody", "group_by": ["alertname"]},
        "receivers": [{"name": "nobody"}],
        **yaml.safe_load(inhibit_rules),
    }
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def amtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("amtool"), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.prometheus
def test_amtool_accepts_a_config_embedding_the_generated_inhibition_rules(tmp_path):
    done = amtool_check(write_config(tmp_path, INHIBIT_RULES.read_text(encoding="utf-8")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    assert " - 2 inhibit rules" in done.stdout, done.stdout


@pytest.mark.prometheus
def test_amtool_refuses_a_broken_inhibition_rule(tmp_path):
    """The check above is a real one: a malformed matcher is refused."""
    broken = INHIBIT_RULES.read_text(encoding="utf-8").replace(
        'alertname="CeleryBrokerDown"', 'alertname=="CeleryBrokerDown'
    )
    done = amtool_check(write_config(tmp_path, broken))
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr


@pytest.fixture
def alertmanager(tmp_path) -> Iterator[str]:
    """A private Alertmanager with the generated rules; yields its API base URL."""
    executable = binary("prometheus-alertmanager")
    config = write_config(tmp_path, INHIBIT_RULES.read_text(encoding="utf-8"))
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [
            executable,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a lone instance on loopback only
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                "alertmanager exited: " + (tmp_path / "alertmanager.log").read_text()
            )
        try:
            return requests.get(f"{base}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(ready, timeout=30, what="alertmanager ready")
        yield f"{base}/api/v2"
    finally:
        stop_process(process)
        log.close()


def alert(name: str, job: str, **labels: str) -> dict:
    return {
        "labels": {"alertname": name, "job": job, "severity": "warning", **labels},
        "annotations": {"summary": name},
    }


def key(labels: dict[str, str]) -> tuple[str, ...]:
    return (
        labels["alertname"],
        labels["job"],
        labels.get("instance", ""),
        labels.get("broker", ""),
    )


@pytest.mark.prometheus
def test_exporter_down_and_broker_down_inhibit_exactly_what_they_make_meaningless(alertmanager):
    a, b, c = "exporter-a:9818", "exporter-b:9818", "exporter-c:9818"
    posted = [
        # broker redis-a cannot be inspected: its backlog alert is inhibited, broker redis-b's
        # is not, nor redis-a's worker alert (built on the event stream, which may be fine)
        alert("CeleryBrokerDown", JOB, broker="redis-a", instance=a),
        alert("CeleryQueueBacklogHigh", JOB, broker="redis-a", queue="evaluations", instance=a),
        alert("CeleryQueueBacklogHigh", JOB, broker="redis-b", queue="evaluations", instance=a),
        alert("CeleryWorkerDown", JOB, broker="redis-a", worker="celery@w0", instance=a),
        # exporter b of the other job is down...
        alert("CeleryExporterDown", OTHER_JOB, instance=b),
        # ...which inhibits every other Celery alert of that exporter, whatever the broker...
        alert("CeleryWorkerDown", OTHER_JOB, broker="redis-eu", worker="celery@w1", instance=b),
        alert("CeleryBrokerDown", OTHER_JOB, broker="rabbitmq-eu", instance=b),
        # ...but not those of its healthy twin c in the same job...
        alert("CeleryQueueNoConsumers", OTHER_JOB, broker="redis-us", queue="q", instance=c),
        # ...nor an alert of the same exporter that is not the mixin's
        alert("HostOutOfMemory", OTHER_JOB, broker="redis-eu", instance=b),
    ]
    response = requests.post(f"{alertmanager}/alerts", json=posted, timeout=10)
    assert response.status_code == 200, response.text

    def statuses() -> dict[tuple[str, ...], dict] | None:
        found = requests.get(f"{alertmanager}/alerts", timeout=10).json()
        # the inhibitor learns source alerts asynchronously: wait until it has both
        inhibited = [a for a in found if a["status"]["inhibitedBy"]]
        if len(found) != len(posted) or len(inhibited) < 3:
            return None
        return {key(a["labels"]): a for a in found}

    got = wait_for(statuses, timeout=30, what="all alerts, with inhibitions applied")
    fingerprint = {name: a["fingerprint"] for name, a in got.items()}
    inhibited_by = {name: a["status"]["inhibitedBy"] for name, a in got.items()}
    states = {name: a["status"]["state"] for name, a in got.items()}
    broker_down = fingerprint[("CeleryBrokerDown", JOB, a, "redis-a")]
    exporter_down = fingerprint[("CeleryExporterDown", OTHER_JOB, b, "")]
    assert inhibited_by == {
        ("CeleryBrokerDown", JOB, a, "redis-a"): [],
        ("CeleryQueueBacklogHigh", JOB, a, "redis-a"): [broker_down],
        ("CeleryQueueBacklogHigh", JOB, a, "redis-b"): [],
        ("CeleryWorkerDown", JOB, a, "redis-a"): [],
        ("CeleryExporterDown", OTHER_JOB, b, ""): [],
        ("CeleryWorkerDown", OTHER_JOB, b, "redis-eu"): [exporter_down],
        ("CeleryBrokerDown", OTHER_JOB, b, "rabbitmq-eu"): [exporter_down],
        ("CeleryQueueNoConsumers", OTHER_JOB, c, "redis-us"): [],
        ("HostOutOfMemory", OTHER_JOB, b, "redis-eu"): [],
    }
    assert states == {name: ("suppressed" if by else "active") for name, by in inhibited_by.items()}
