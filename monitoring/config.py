"""Load monitoring/config.yaml, the one tuning file of the monitoring mixin.

``load()`` returns the plain dict (the dashboards read their own ``dashboards:`` section from
it) after validating everything the rules depend on, so a typo in a user's copy stops the
generator with the path of the offending field instead of producing broken rules. The allowed
alert names and parameters come from the alert declarations (monitoring/alerts/), those of
``recording:`` from monitoring/recording.py: nothing here repeats them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from . import recording
from .alerts import ALERTS
from .alerts.base import runbook_url
from .schema import (
    MonitoringConfigError,
    Number,
    Param,
    Ratio,
    check_params,
    check_section,
    duration_seconds,
    format_duration,
    mapping,
    parse_duration,
)

__all__ = [
    "DEFAULT_PATH",
    "SEVERITIES",
    "TOP_LEVEL_KEYS",
    "MonitoringConfigError",
    "duration_seconds",
    "format_duration",
    "load",
    "parse_duration",
    "runbook_url",
    "validate",
]

DEFAULT_PATH = Path(__file__).resolve().parent / "config.yaml"

TOP_LEVEL_KEYS = (
    "selector",
    "runbook_base_url",
    "rule_object",
    "recording",
    "goals",
    "exporter",
    "workload",
    "urgent_tasks",
    "alerts",
    "dashboards",
)
SEVERITIES = ("critical", "warning", "info")

#: ``goals:``: the platform goals the priority alerts and panels compare against.
GOALS: dict[str, Param] = {
    "most_urgent_start_seconds": Number(),
    "min_priority_wait_reduction": Ratio(),
}
#: ``exporter:``: the exporter's event settings the worker alerts depend on.
EXPORTER: dict[str, Param] = {
    "worker_heartbeat_timeout_seconds": Number(),
    "worker_retention_seconds": Number(),
    "worker_offline_grace_seconds": Number(),
}
#: ``workload:``: what the platform's tasks may legitimately do (CeleryReservationsOrphaned).
WORKLOAD: dict[str, Param] = {
    "longest_countdown_seconds": Number(),
    "hard_time_limit_seconds": Number(),
    "prefetch_multiplier": Number(),
}
#: Settings every alert takes besides the parameters it declares.
COMMON_ALERT_KEYS = frozenset({"for", "keep_firing_for", "severity", "enabled", "labels"})
#: Labels an alert's extra ``labels:`` may not set (Prometheus and the generator set them).
RESERVED_ALERT_LABELS = frozenset({"severity", "alertname"})


def validate(config: dict[str, Any]) -> None:
    """Check everything the rule generator reads; raise MonitoringConfigError on the first
    problem. The ``dashboards`` section belongs to the dashboard generator."""
    missing = [key for key in TOP_LEVEL_KEYS if key not in config]
    if missing:
        raise MonitoringConfigError(f"{missing[0]}: missing top-level key")
    unknown = sorted(set(config) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise MonitoringConfigError(f"{unknown[0]}: unknown top-level key")
    if not isinstance(config["selector"], str) or not config["selector"].strip():
        raise MonitoringConfigError("selector: expected PromQL label matchers as a string")
    url = config["runbook_base_url"]
    if not isinstance(url, str) or not re.match(r"^https?://", url):
        raise MonitoringConfigError(f"runbook_base_url: expected an http(s) URL, got {url!r}")
    rule_object = mapping("rule_object", config["rule_object"])
    for key in ("name", "namespace"):
        if not isinstance(rule_object.get(key), str) or not rule_object[key]:
            raise MonitoringConfigError(f"rule_object.{key}: expected a non-empty string")
    _check_labels("rule_object.labels", rule_object.get("labels"))
    check_section("recording", config["recording"], recording.PARAMETERS)
    check_section("goals", config["goals"], GOALS)
    check_section("exporter", config["exporter"], EXPORTER)
    check_section("workload", config["workload"], WORKLOAD)
    _check_task_names("urgent_tasks", config["urgent_tasks"])
    _validate_alerts(mapping("alerts", config["alerts"]))


def _check_labels(where: str, labels: Any, reserved: frozenset[str] = frozenset()) -> None:
    for key, value in mapping(where, labels or {}).items():
        if key in reserved or not isinstance(value, str):
            raise MonitoringConfigError(f"{where}.{key}: expected a string label")


def _check_task_names(where: str, names: Any) -> None:
    if not isinstance(names, list):
        raise MonitoringConfigError(f"{where}: expected a list of task names, got {names!r}")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise MonitoringConfigError(f"{where}[{index}]: expected a task name, got {name!r}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise MonitoringConfigError(f"{where}: {duplicates[0]!r} listed twice")


def _validate_alerts(alerts: dict[str, Any]) -> None:
    for name in ALERTS:
        if name not in alerts:
            raise MonitoringConfigError(
                f"alerts.{name}: missing (set `enabled: false` to switch an alert off)"
            )
    for name, settings in alerts.items():
        where = f"alerts.{name}"
        if name not in ALERTS:
            raise MonitoringConfigError(f"{where}: unknown alert (known: {', '.join(ALERTS)})")
        settings = mapping(where, settings)
        params = ALERTS[name].params
        unknown = sorted(set(settings) - COMMON_ALERT_KEYS - set(params))
        if unknown:
            raise MonitoringConfigError(f"{where}.{unknown[0]}: unknown setting")
        if settings.get("severity") not in SEVERITIES:
            raise MonitoringConfigError(
                f"{where}.severity: expected one of {', '.join(SEVERITIES)}, "
                f"got {settings.get('severity')!r}"
            )
        if "for" not in settings:
            raise MonitoringConfigError(f"{where}.for: missing")
        if str(settings["for"]).strip() not in {"0", "0s"}:
            parse_duration(settings["for"], f"{where}.for")
        keep = settings.get("keep_firing_for")
        if keep is not None and str(keep).strip() not in {"0", "0s"}:
            parse_duration(keep, f"{where}.keep_firing_for")
        if not isinstance(settings.get("enabled", True), bool):
            raise MonitoringConfigError(f"{where}.enabled: expected true or false")
        _check_labels(f"{where}.labels", settings.get("labels"), RESERVED_ALERT_LABELS)
        check_params(where, settings, params)


def load(path: str | Path | None = None) -> dict[str, Any]:
    """The monitoring config as a dict, validated; ``path`` defaults to the committed defaults."""
    where = path or DEFAULT_PATH
    try:
        with open(where, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise MonitoringConfigError(f"cannot read {where}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MonitoringConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MonitoringConfigError(f"{where}: expected a mapping")
    validate(data)
    return data
