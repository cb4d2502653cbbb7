"""The alerting rules: one small declaration per alert, one module per group.

Each group module (exporter_broker, queues, workers, tasks, priorities, broker_pressure, clock: the
same split as the promtool unit tests in alerts/tests/) declares its alerts with
``@alert(...)``; this package collects them into :data:`ALERTS`, from which the config
validator takes the allowed alert names and parameters, and renders the enabled ones in the
config's order.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..promql import Rule
from . import (
    broker_pressure,
    clock,
    exporter_broker,
    priorities,
    queues,
    redeliveries,
    tasks,
    workers,
)
from .base import AlertDefinition, runbook_url

__all__ = ["ALERTS", "GROUP", "AlertDefinition", "alert_rules", "group", "runbook_url"]

GROUP = "celery-queue-exporter.alerts"
MODULES: tuple[ModuleType, ...] = (
    exporter_broker,
    queues,
    workers,
    tasks,
    priorities,
    redeliveries,
    broker_pressure,
    clock,
)


def _collect(modules: tuple[ModuleType, ...]) -> dict[str, AlertDefinition]:
    found: dict[str, AlertDefinition] = {}
    for module in modules:
        for definition in vars(module).values():
            if not isinstance(definition, AlertDefinition):
                continue
            if found.setdefault(definition.name, definition) is not definition:
                raise ValueError(f"{definition.name} is declared twice")
    return found


#: Every alert by name: the one list of alert names and their parameters.
ALERTS: dict[str, AlertDefinition] = _collect(MODULES)


def alert_rules(config: dict[str, Any]) -> list[Rule]:
    """One rule per enabled alert in a validated ``config['alerts']``, in the config's order."""
    return [
        ALERTS[name].rule(config)
        for name, settings in config["alerts"].items()
        if settings.get("enabled", True)
    ]


def group(config: dict[str, Any]) -> dict[str, Any]:
    """The alerting rule group of a Prometheus rule file."""
    return {"name": GROUP, "rules": [rule.as_dict() for rule in alert_rules(config)]}
