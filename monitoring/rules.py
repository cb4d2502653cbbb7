"""The Prometheus rule files of the mixin: recording rules, then alerts, from one config.

The rules themselves live next to their parameters: recording rules in
monitoring/recording.py, alerts in monitoring/alerts/ (one module per group). This module
assembles them into a plain rule file and a PrometheusRule object, and is the stable import
for the dashboards and tests:

    from monitoring.rules import recording_names
    names = recording_names(config)      # names.wait_p95 == "celery_queue:...:p95_5m"

or, for the committed defaults, the module constants (``WAIT_P95`` ...).
"""

from __future__ import annotations

from typing import Any

from .alerts import alert_rules
from .alerts import group as alert_group
from .config import load
from .promql import Exprs, Rule, known_series, metrics_in
from .recording import LEVEL, RecordingNames, recording_names, recording_rules
from .recording import group as recording_group

__all__ = [
    "LEVEL",
    "Exprs",
    "RecordingNames",
    "Rule",
    "alert_rules",
    "known_series",
    "metrics_in",
    "prometheus_rule",
    "recording_names",
    "recording_rules",
    "rule_file",
    "rule_groups",
]

_DEFAULT_NAMES = recording_names(load())
#: Names for the committed defaults (recording.window 5m); a test keeps them in step.
QUEUE_MESSAGES_SUM = _DEFAULT_NAMES.queue_messages
WAIT_BUCKET_RATE = _DEFAULT_NAMES.wait_bucket_rate
WAIT_P50 = _DEFAULT_NAMES.wait_p50
WAIT_P95 = _DEFAULT_NAMES.wait_p95
WAIT_P95_MOST_URGENT = _DEFAULT_NAMES.wait_p95_most_urgent
WAIT_P95_LEAST_URGENT = _DEFAULT_NAMES.wait_p95_least_urgent
PRIORITY_WAIT_REDUCTION = _DEFAULT_NAMES.priority_wait_reduction


def rule_groups(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``groups:`` of a Prometheus rule file."""
    return [recording_group(config), alert_group(config)]


def rule_file(config: dict[str, Any]) -> dict[str, Any]:
    """A plain Prometheus rule file (``rule_files:`` of prometheus.yml)."""
    return {"groups": rule_groups(config)}


def prometheus_rule(config: dict[str, Any]) -> dict[str, Any]:
    """The same rules as a prometheus-operator PrometheusRule object."""
    obj = config["rule_object"]
    metadata: dict[str, Any] = {"name": obj["name"], "namespace": obj["namespace"]}
    if obj.get("labels"):
        metadata["labels"] = dict(obj["labels"])
    # keep_firing_for is not in the PrometheusRule CRD of the pinned prometheus-operator
    # (v0.65.1; it came in v0.66), which would reject the object: on Kubernetes the two
    # exporter replicas keep the pages through a rollout instead (docs/kubernetes.md).
    groups = rule_groups(config)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("keep_firing_for", None)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": groups},
    }
