"""Load monitoring/config.yaml, the shared source of truth for alerts and dashboards.

``load()`` returns the plain dict (dashboards read their own ``dashboards:`` section from it)
after validating everything the rule generator depends on, so a typo in a user's copy stops
the generator with the path of the offending field instead of producing broken rules.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent / "config.yaml"

TOP_LEVEL_KEYS = (
    "selector",
    "runbook_base_url",
    "rule_object",
    "recording",
    "goals",
    "exporter",
    "alerts",
    "dashboards",
)
SEVERITIES = ("critical", "warning", "info")

#: Parameters each alert takes besides for/severity/enabled/labels, with their kinds.
ALERT_PARAMETERS: dict[str, dict[str, str]] = {
    "CeleryExporterDown": {},
    "CeleryBrokerDown": {},
    "CeleryQueueBacklogHigh": {"messages": "number"},
    "CeleryQueueBacklogGrowing": {"horizon": "duration", "window": "duration"},
    "CeleryQueueMostUrgentWaitingTooLong": {
        "seconds": "number",
        "priority_usage_window": "duration",
    },
    "CeleryQueueMessageWaitingTooLong": {"seconds": "number"},
    "CeleryQueueNoConsumers": {},
    "CeleryWorkerDown": {},
    "CeleryQueueWorkersDropped": {"ratio": "ratio", "window": "duration"},
    "CeleryAllWorkersDown": {},
    "CeleryTaskFailureRatioHigh": {
        "ratio": "ratio",
        "min_tasks_per_second": "number",
        "window": "duration",
    },
    "CeleryTaskTimeLimitKillsHigh": {
        "ratio": "ratio",
        "min_tasks_per_second": "number",
        "window": "duration",
    },
    "CeleryPriorityStarvation": {"seconds": "number", "window": "duration"},
    "CeleryPrioritiesIneffective": {},
    "CeleryReservedNearVisibilityTimeout": {"ratio": "ratio"},
}
_COMMON_ALERT_KEYS = {"for", "severity", "enabled", "labels"}

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?$")


class MonitoringConfigError(ValueError):
    """A problem in the monitoring config, with the path of the field in the message."""


def parse_duration(text: Any, where: str = "duration") -> int:
    """Seconds in a Prometheus duration such as ``90s``, ``5m`` or ``1h30m`` (whole seconds)."""
    match = _DURATION.match(str(text).strip()) if text is not None else None
    if not match or not any(match.groups()):
        raise MonitoringConfigError(
            f"{where}: expected a duration like 30s, 5m or 1h, got {text!r}"
        )
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def format_duration(seconds: int) -> str:
    """The shortest Prometheus duration for ``seconds``: 3600 -> ``1h``, 90 -> ``1m30s``."""
    if seconds <= 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


def _number(where: str, value: Any, *, ratio: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MonitoringConfigError(f"{where}: expected a number, got {value!r}")
    if value < 0 or (ratio and value > 1):
        bounds = "between 0 and 1" if ratio else "0 or more"
        raise MonitoringConfigError(f"{where}: must be {bounds}, got {value!r}")
    return value


def _mapping(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MonitoringConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


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
    rule_object = _mapping("rule_object", config["rule_object"])
    for key in ("name", "namespace"):
        if not isinstance(rule_object.get(key), str) or not rule_object[key]:
            raise MonitoringConfigError(f"rule_object.{key}: expected a non-empty string")
    labels = _mapping("rule_object.labels", rule_object.get("labels") or {})
    for key, value in labels.items():
        if not isinstance(value, str):
            raise MonitoringConfigError(f"rule_object.labels.{key}: expected a string")

    recording = _mapping("recording", config["recording"])
    parse_duration(recording.get("interval"), "recording.interval")
    parse_duration(recording.get("window"), "recording.window")
    _number("recording.backlog_min_messages", recording.get("backlog_min_messages"))

    goals = _mapping("goals", config["goals"])
    _number("goals.most_urgent_start_seconds", goals.get("most_urgent_start_seconds"))
    _number(
        "goals.min_priority_wait_reduction", goals.get("min_priority_wait_reduction"), ratio=True
    )
    exporter = _mapping("exporter", config["exporter"])
    for key in ("worker_heartbeat_timeout_seconds", "worker_retention_seconds"):
        _number(f"exporter.{key}", exporter.get(key))

    alerts = _mapping("alerts", config["alerts"])
    for name in ALERT_PARAMETERS:
        if name not in alerts:
            raise MonitoringConfigError(
                f"alerts.{name}: missing (set `enabled: false` to switch an alert off)"
            )
    for name, settings in alerts.items():
        where = f"alerts.{name}"
        if name not in ALERT_PARAMETERS:
            raise MonitoringConfigError(
                f"{where}: unknown alert (known: {', '.join(ALERT_PARAMETERS)})"
            )
        settings = _mapping(where, settings)
        parameters = ALERT_PARAMETERS[name]
        unknown = sorted(set(settings) - _COMMON_ALERT_KEYS - set(parameters))
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
        if not isinstance(settings.get("enabled", True), bool):
            raise MonitoringConfigError(f"{where}.enabled: expected true or false")
        for key, value in _mapping(f"{where}.labels", settings.get("labels") or {}).items():
            if key in {"severity", "alertname"} or not isinstance(value, str):
                raise MonitoringConfigError(f"{where}.labels.{key}: expected a string label")
        for key, kind in parameters.items():
            if key not in settings:
                raise MonitoringConfigError(f"{where}.{key}: missing")
            if kind == "duration":
                parse_duration(settings[key], f"{where}.{key}")
            else:
                _number(f"{where}.{key}", settings[key], ratio=kind == "ratio")


def duration_seconds(value: Any) -> int:
    """Seconds of an already validated duration (``0``/``0s`` allowed)."""
    return 0 if str(value).strip() in {"0", "0s"} else parse_duration(value)


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


def runbook_url(config: dict[str, Any], alert: str) -> str:
    return f"{config['runbook_base_url'].rstrip('/')}/{alert}.md"
