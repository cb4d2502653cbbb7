"""The Grafana dashboards of the monitoring mixin, built from monitoring/config.yaml.

``files(config)`` is what the mixin's one generator (``python -m monitoring.generate``) writes:
``dashboards/<slug>.json`` relative to the repository root. ``build_all(config)`` gives the
dashboards as dicts, for tests. Each dashboard module (queues, workers, priorities) composes
its rows, one function per row, from the shared panel library in panels.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import priorities, queues, workers
from .board import render
from .settings import DASHBOARDS, Settings

#: Where the dashboards go, relative to the repository root.
OUT_DIR = Path("dashboards")

#: The builder of each dashboard, by slug (the file name of its JSON).
BUILDERS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "priorities": priorities.build,
    "queues": queues.build,
    "workers": workers.build,
}

__all__ = ["BUILDERS", "DASHBOARDS", "OUT_DIR", "Settings", "build_all", "files", "render"]


def build_all(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Dashboard JSON (as dicts) by slug."""
    settings = Settings(config)
    return {slug: build(settings) for slug, build in BUILDERS.items()}


def files(config: dict[str, Any]) -> dict[Path, str]:
    """For ``python -m monitoring.generate``: dashboards/<slug>.json, relative to the repo."""
    return {OUT_DIR / f"{slug}.json": render(board) for slug, board in build_all(config).items()}
