"""What the dashboards read from monitoring/config.yaml, in one place.

Everything an operator tunes comes from the mixin's config (``monitoring.config.load()``), the
same file the alerts are generated from: the series selector, the alert thresholds (so a panel
turns red where the alert fires), the platform goals and the dashboard settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitoring import config as monitoring_config

#: Dashboards by slug: title and one-line purpose (used for links and the docs).
DASHBOARDS: dict[str, tuple[str, str]] = {
    "queues": ("Celery / Queues", "depth, age, reserved work, consumers, broker health"),
    "workers": ("Celery / Workers", "workers, throughput, runtimes, failures, time limits"),
    "priorities": ("Celery / Priorities", "per-level depth and waits, priority effectiveness"),
}


@dataclass(frozen=True)
class Settings:
    """The monitoring config, with the accessors the dashboards need."""

    config: dict[str, Any] = field(default_factory=monitoring_config.load)

    @property
    def selector(self) -> str:
        return str(self.config["selector"]).strip()

    @property
    def board(self) -> dict[str, Any]:
        return self.config["dashboards"]

    def uid(self, slug: str) -> str:
        """Stable dashboard uid (Grafana allows at most 40 characters)."""
        return f"{self.board['uid_prefix']}-{slug}"

    def alert(self, name: str) -> dict[str, Any]:
        return self.config["alerts"][name]

    def threshold(self, alert: str, key: str) -> float:
        return float(self.alert(alert)[key])

    def goal(self, key: str) -> float:
        return float(self.config["goals"][key])

    def runbook_url(self, alert: str) -> str:
        return monitoring_config.runbook_url(self.config, alert)

    @property
    def window(self) -> str:
        """The recording rules' window, for panels that must agree with rules and alerts."""
        return str(self.config["recording"]["window"])
