"""What one alert declares, and how a declaration becomes a rule.

An alert is a function decorated with :func:`alert`, which names it and declares its summary
and the parameters it reads from ``alerts.<name>`` in monitoring/config.yaml (with their
bounds). The function turns the validated settings into the expression and the templated
description. ``for``, ``severity``, ``enabled`` and ``labels`` are common to every alert and
handled here, and so is the optional ``keep_firing_for`` (Prometheus 2.42+); the runbook is
``<runbook_base_url>/<name>.md`` (docs/runbooks/).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from ..promql import REPLICA_LABELS, Exprs, Rule, dur, metrics_in
from ..recording import RecordingNames, recording_names
from ..schema import Param

#: Where a per-queue alert points, in its description.
WHERE = "queue {{ $labels.queue }} on broker {{ $labels.broker }}"
#: The same at the start of a sentence.
WHERE_CAPITAL = WHERE[0].upper() + WHERE[1:]


def runbook_url(config: dict[str, Any], alert: str) -> str:
    """The URL of ``alert``'s runbook under the configured ``runbook_base_url``."""
    return f"{config['runbook_base_url'].rstrip('/')}/{alert}.md"


class Body(NamedTuple):
    """What an alert function returns: the PromQL expression and the templated description."""

    expr: str
    description: str


@dataclass(frozen=True)
class Settings:
    """One alert's validated settings, with the rest of the config it may refer to."""

    config: dict[str, Any]
    name: str

    @property
    def values(self) -> dict[str, Any]:
        return self.config["alerts"][self.name]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def of(self, other: str, key: str) -> Any:
        """A parameter of another alert (e.g. the backlog limit shared by two alerts)."""
        return self.config["alerts"][other][key]

    @property
    def for_text(self) -> str:
        return dur(self.values["for"])

    @cached_property
    def e(self) -> Exprs:
        return Exprs(self.config["selector"])

    @cached_property
    def names(self) -> RecordingNames:
        return recording_names(self.config)


@dataclass(frozen=True)
class AlertDefinition:
    """An alert's name, summary, parameter schema and expression/description builder."""

    name: str
    summary: str
    params: Mapping[str, Param]
    body: Callable[[Settings], Body]
    #: False for an alert about one exporter process itself (CeleryExporterDown): the others
    #: are about a broker, queue, worker or task, and several replicas of the exporter in one
    #: job must make one alert per subject, not one per replica.
    per_subject: bool = True

    def rule(self, config: dict[str, Any]) -> Rule:
        """The alerting rule for a validated ``config``."""
        settings = Settings(config, self.name)
        expr, description = self.body(settings)
        if self.per_subject:
            # One alert per subject whatever the replica count: the replicas' labels go, the
            # worst replica's value stays (each replica sees the same brokers and events).
            indented = "\n".join(f"  {line}" for line in expr.splitlines())
            expr = f"max without ({REPLICA_LABELS}) (\n{indented}\n)"
        for_ = dur(settings["for"])
        keep = dur(settings.values.get("keep_firing_for") or "0s")
        return Rule(
            alert=self.name,
            expr=expr,
            for_=None if for_ == "0s" else for_,
            keep_firing_for=None if keep == "0s" else keep,
            labels={"severity": settings["severity"], **(settings.values.get("labels") or {})},
            annotations={
                "summary": self.summary,
                "description": description,
                "runbook_url": runbook_url(config, self.name),
            },
            metrics=metrics_in(expr),
        )


def alert(
    name: str, *, summary: str, per_subject: bool = True, **params: Param
) -> Callable[[Callable[[Settings], Body]], AlertDefinition]:
    """Declare the decorated function as alert ``name`` with its summary and parameters."""

    def declare(body: Callable[[Settings], Body]) -> AlertDefinition:
        return AlertDefinition(
            name=name, summary=summary, params=params, body=body, per_subject=per_subject
        )

    return declare
