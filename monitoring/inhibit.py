"""Alertmanager inhibition rules for the mixin's alerts, from the same config.

Two alerts make others meaningless, and their pages would only repeat the cause:

* CeleryExporterDown: nothing of that job is collected; every other Celery alert of the same
  ``job`` is inhibited (most resolve anyway once their series go stale, which is a false
  all-clear; the ones built on ``absent()`` or windows would not).
* CeleryBrokerDown: the broker's queue metrics are missing and its event stream is down; the
  queue, worker and task alerts of the same ``job`` and ``broker`` are inhibited. Other
  brokers' alerts are untouched.

Alert names come from the declarations (monitoring/alerts/), only enabled ones; the rendered
file is ``alerts/alertmanager-inhibit-rules.yaml`` (merge its ``inhibit_rules:`` into your
alertmanager.yml; tests/test_alertmanager.py checks it against a real Alertmanager).
"""

from __future__ import annotations

from typing import Any

EXPORTER_DOWN = "CeleryExporterDown"
BROKER_DOWN = "CeleryBrokerDown"


def _enabled(config: dict[str, Any]) -> list[str]:
    return [name for name, settings in config["alerts"].items() if settings.get("enabled", True)]


def _one_of(names: list[str]) -> str:
    return f'alertname=~"{"|".join(names)}"'


def inhibit_rules(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``inhibit_rules:`` list for a validated ``config`` (Alertmanager 0.22+ matchers)."""
    enabled = _enabled(config)
    rules: list[dict[str, Any]] = []
    if EXPORTER_DOWN in enabled:
        targets = [name for name in enabled if name != EXPORTER_DOWN]
        rules.append(
            {
                "source_matchers": [f'alertname="{EXPORTER_DOWN}"'],
                "target_matchers": [_one_of(targets)],
                "equal": ["job"],
            }
        )
    if BROKER_DOWN in enabled:
        targets = [name for name in enabled if name not in (EXPORTER_DOWN, BROKER_DOWN)]
        rules.append(
            {
                "source_matchers": [f'alertname="{BROKER_DOWN}"'],
                "target_matchers": [_one_of(targets)],
                "equal": ["job", "broker"],
            }
        )
    return rules
