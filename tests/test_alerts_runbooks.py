"""Runbooks: one per alert, with the four sections, broker commands, and a correct index."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import yaml

from monitoring import config as mconfig
from monitoring import generate
from testsupport.paths import ROOT

RUNBOOKS = ROOT / "docs" / "runbooks"
SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation")
PLACEHOLDERS = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b|lorem ipsum|<[a-z][a-z ]*>", re.IGNORECASE)


def generated_alerts() -> dict[str, dict]:
    doc = yaml.safe_load((ROOT / generate.RULE_FILE).read_text(encoding="utf-8"))
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


ALERTS = generated_alerts()


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_alert_has_a_runbook_with_the_four_sections(alert):
    path = RUNBOOKS / f"{alert}.md"
    assert path.is_file(), f"{alert}: no runbook at {path.relative_to(ROOT)}"
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# {alert}\n")
    found = sections(text)
    assert list(found)[: len(SECTIONS)] == list(SECTIONS), f"{alert}: sections {list(found)}"
    for name in SECTIONS:
        assert len(found[name].split()) >= 15, f"{alert}: section {name} is nearly empty"
    assert not PLACEHOLDERS.search(text), f"{alert}: placeholder {PLACEHOLDERS.search(text)[0]}"
    severity = ALERTS[alert]["labels"]["severity"]
    assert f"Severity: **{severity}**" in text
    # PromQL to look deeper, and commands to act
    assert "```promql" in found["Diagnosis"], f"{alert}: no PromQL in Diagnosis"
    assert "```sh" in found["Diagnosis"], f"{alert}: no commands in Diagnosis"


def test_every_runbook_belongs_to_an_alert():
    pages = {path.stem for path in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == set(ALERTS)


def test_runbook_urls_resolve_to_the_runbook_files():
    config = mconfig.load()
    base = config["runbook_base_url"].rstrip("/")
    # https://github.com/<owner>/<repo>/blob/<branch>/<path in the repository>
    path = urlsplit(base).path.split("/")
    assert path[3] == "blob", base
    in_repo = "/".join(path[5:])
    assert (ROOT / in_repo).resolve() == RUNBOOKS.resolve()
    for alert, rule in ALERTS.items():
        url = rule["annotations"]["runbook_url"]
        assert url == f"{base}/{alert}.md"
        assert (ROOT / in_repo / url.rsplit("/", 1)[1]).is_file(), url


def test_index_lists_every_alert_with_its_severity_and_link():
    text = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \[(\w+)\]\((\w+)\.md\) \| (\w+) \|", text, flags=re.MULTILINE)
    listed = {name: severity for name, link, severity in rows if name == link}
    assert listed == {alert: rule["labels"]["severity"] for alert, rule in ALERTS.items()}
    assert len(rows) == len(ALERTS)


def test_runbooks_give_commands_for_both_brokers_and_celery():
    """Across the runbooks: redis-cli with priority-step keys, rabbitmqctl, celery inspect."""
    texts = {path.stem: path.read_text(encoding="utf-8") for path in RUNBOOKS.glob("*.md")}
    every = "\n".join(texts.values())
    assert "$'\\x06\\x16'" in every  # shell form of kombu's step separator
    assert 'LLEN "evaluations\\x06\\x169"' in texts["README"]  # redis-cli prompt form
    assert (
        'rabbitmqctl list_queues -p "$VHOST" name messages_ready messages_unacknowledged '
        "consumers arguments" in every
    )
    for command in ("inspect active ", "inspect reserved", "inspect active_queues"):
        assert f'celery -A "$APP" {command}' in every, command
    queue_alerts = [a for a in ALERTS if a.startswith("CeleryQueue") or "Priorit" in a]
    for alert in queue_alerts:
        text = texts[alert]
        assert "redis-cli" in text and "rabbitmqctl" in text, f"{alert}: needs both brokers"
