"""Load monitoring/config.yaml, the shared source of truth for alerts and dashboards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent / "config.yaml"


def load(path: str | Path | None = None) -> dict[str, Any]:
    """The monitoring config as a dict; ``path`` defaults to the committed defaults."""
    with open(path or DEFAULT_PATH, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path or DEFAULT_PATH}: expected a mapping")
    return data


def runbook_url(config: dict[str, Any], alert: str) -> str:
    return f"{config['runbook_base_url'].rstrip('/')}/{alert}.md"
