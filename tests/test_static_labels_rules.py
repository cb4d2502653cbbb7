"""Static labels leave the alerts working (issue 16): every promtool unit test of
alerts/tests/ is run again with ``env="prod"`` on every exporter series (as
``--static-label env=prod`` puts it there) and ``env: prod`` expected on every alert. The only
differences promtool may report are alerts whose rule aggregates the label away: the same
alerts fire at the same times with the same other labels and annotations.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from test_alerts import run_promtool

from testsupport.paths import ROOT

STATIC = ("env", "prod")


def with_static_label(selector: str) -> str:
    """``name{a="b"}`` -> ``name{env="prod", a="b"}``; ``name`` -> ``name{env="prod"}``."""
    label = f'{STATIC[0]}="{STATIC[1]}"'
    if "{" in selector:
        return selector.replace("{", "{" + label + ", ", 1)
    return selector + "{" + label + "}"


def labelled_copy(source: Path, target: Path) -> None:
    test_file = yaml.safe_load(source.read_text())
    for test in test_file["tests"]:
        for series in test.get("input_series", []):
            if series["series"].startswith("celery_"):  # not Prometheus' own `up`
                series["series"] = with_static_label(series["series"])
        for case in test.get("alert_rule_test", []):
            for alert in case.get("exp_alerts", []):
                alert.setdefault("exp_labels", {})[STATIC[0]] = STATIC[1]
        for case in test.get("promql_expr_test", []):
            for sample in case.get("exp_samples", []):
                sample["labels"] = with_static_label(sample.get("labels", ""))
    target.write_text(yaml.safe_dump(test_file, sort_keys=False))


def reported(block: str) -> list[str]:
    """The Labels/Annotations lines of one side of a promtool failure, in order."""
    return re.findall(r"^\s+(Labels:\{.*\}|Annotations:\{.*\})$", block, re.M)


def without_static(line: str) -> str:
    return line.replace(f'{STATIC[0]}="{STATIC[1]}", ', "")


@pytest.mark.prometheus
@pytest.mark.slow
def test_alerts_fire_alike_with_a_static_label_on_every_series(tmp_path):
    shutil.copy(ROOT / "alerts" / "celery-queue-exporter.rules.yaml", tmp_path)
    # the unit tests' own rule file (defaults plus an urgent task name), used by priorities.yaml
    shutil.copytree(ROOT / "alerts" / "tests" / "rules", tmp_path / "tests" / "rules")
    sources = sorted((ROOT / "alerts" / "tests").glob("*.yaml"))
    for source in sources:
        labelled_copy(source, tmp_path / "tests" / source.name)
    result = run_promtool("test", "rules", *[str(tmp_path / "tests" / s.name) for s in sources])
    output = result.stdout + result.stderr
    failures = re.split(r"^\s+alertname: ", output, flags=re.M)[1:]
    for failure in failures:
        assert "exp:[" in failure and "got:[" in failure, failure
        expected, got = failure.split("got:[", 1)
        assert [without_static(line) for line in reported(expected)] == reported(got), failure
    # Anything else promtool might report (a rule error, a recording-rule sample) is a failure.
    assert "promql_expr" not in output and "error" not in output.lower(), output
    # Every file ran: each either succeeded or failed only in the ways compared above.
    assert output.count("Unit Testing:") == len(sources), output
    assert output.count("SUCCESS") + output.count("FAILED:") == len(sources), output
