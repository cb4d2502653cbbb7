"""A dashboard around its rows: variables, links to the other dashboards, grid positions,
panel ids and the settings every dashboard shares.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from celery_queue_exporter import catalogue as cat

from .panels import DATASOURCE, GRID_WIDTH, Json, Row
from .promql import m, selector
from .settings import DASHBOARDS, Settings

#: The dashboard JSON schema version current Grafana (12) writes: the files are in that
#: schema already, so Grafana runs no migration on import.
SCHEMA_VERSION = 42

#: graphTooltip: a crosshair shared across the dashboard's time series.
SHARED_CROSSHAIR = 1
#: Variable ``refresh``: query the values again when the time range changes.
REFRESH_ON_TIME_RANGE_CHANGE = 2
#: Variable ``sort``: alphabetical, ascending.
SORT_ALPHA_ASC = 1


# --- variables ------------------------------------------------------------------------------


def _query_variable(name: str, label: str, query: str, description: str) -> Json:
    """A multi-value Prometheus ``label_values`` variable with "All" (regex ``.*``)."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,  # Grafana shows it as the variable's tooltip
        "datasource": DATASOURCE,
        "query": query,
        "refresh": REFRESH_ON_TIME_RANGE_CHANGE,
        "sort": SORT_ALPHA_ASC,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "hide": 0,
    }


def variables(s: Settings, *extra: str) -> list[Json]:
    """datasource, job, namespace, broker, queue, then ``extra`` (``worker``, ``task``)."""
    base = s.selector
    up = cat.BROKER_UP.name
    templates: list[Json] = [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "description": "Prometheus that scrapes celery-queue-exporter.",
            "query": "prometheus",
            "current": {"text": "default", "value": "default"},
            "options": [],
            "regex": "",
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "refresh": 1,
        },
        _query_variable(
            "job", "Job", f"label_values({up}{{{base}}}, job)", "Prometheus job(s) of the exporter."
        ),
        _query_variable(
            "namespace",
            "Namespace",
            f'label_values({up}{{{base}, job=~"$job"}}, namespace)',
            "Kubernetes namespace of the exporter (empty outside Kubernetes: keep All).",
        ),
        _query_variable(
            "broker",
            "Broker",
            f'label_values({up}{{{base}, job=~"$job", namespace=~"$namespace"}}, broker)',
            "Broker name as configured in the exporter (the broker label).",
        ),
        _query_variable(
            "queue",
            "Queue",
            f"label_values({m(cat.QUEUE_MESSAGES, selector(s))}, queue)",
            "Celery queue(s).",
        ),
    ]
    if "worker" in extra:
        templates.append(
            _query_variable(
                "worker",
                "Worker",
                f"label_values({m(cat.WORKER_UP, selector(s))}, worker)",
                "Celery worker hostname(s), from worker events.",
            )
        )
    if "task" in extra:
        templates.append(
            _query_variable(
                "task",
                "Task",
                f"label_values({m(cat.TASK_RECEIVED, selector(s, queue=True))}, task)",
                "Celery task name(s), from task events.",
            )
        )
    return templates


# --- grid -----------------------------------------------------------------------------------


def place(rows: Sequence[Row]) -> list[Json]:
    """Rows and their panels with grid positions, top to bottom, and ids 1, 2, ..."""
    placed: list[Json] = []
    y = 0
    for section in rows:
        placed.append(
            {
                "type": "row",
                "title": section.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        for line in section.lines:
            x = 0
            for panel, width in line.panels:
                placed.append({**panel, "gridPos": {"h": line.height, "w": width, "x": x, "y": y}})
                x += width
            y += line.height
    for number, panel in enumerate(placed, start=1):
        panel["id"] = number
    return placed


# --- the dashboard --------------------------------------------------------------------------


def _links(s: Settings, slug: str) -> list[Json]:
    """The other dashboards (keeping time range and variables), then the runbooks."""
    links = [
        {
            "type": "link",
            "title": DASHBOARDS[other][0],
            "url": f"/d/{s.uid(other)}",
            "icon": "dashboard",
            "tooltip": DASHBOARDS[other][1],
            "keepTime": True,
            "includeVars": True,
            "targetBlank": False,
            "asDropdown": False,
            "tags": [],
        }
        for other in DASHBOARDS
        if other != slug
    ]
    links.append(
        {
            "type": "link",
            "title": "Runbooks",
            "url": s.config["runbook_base_url"],
            "icon": "doc",
            "tooltip": "What each alert means and what to do",
            "keepTime": False,
            "includeVars": False,
            "targetBlank": True,
            "asDropdown": False,
            "tags": [],
        }
    )
    return links


def dashboard(
    s: Settings, slug: str, description: str, rows: Sequence[Row], templating: list[Json]
) -> Json:
    """A dashboard with the shared settings. No ``id``: Grafana assigns one on import and
    matches an existing dashboard by ``uid``. Returned through a JSON round trip, so no two
    panels share the library's constants (thresholds, mappings, the data source: a deep copy
    would keep them shared) and a caller may edit one panel without touching the others."""
    board = s.board
    built = {
        "title": DASHBOARDS[slug][0],
        "uid": s.uid(slug),
        "description": description,
        "tags": list(board["tags"]),
        "refresh": str(board["refresh"]),
        "time": {"from": str(board["time_from"]), "to": "now"},
        "timezone": "browser",
        "timepicker": {},
        "graphTooltip": SHARED_CROSSHAIR,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {"list": []},
        "links": _links(s, slug),
        "templating": {"list": templating},
        "panels": place(rows),
    }
    return json.loads(json.dumps(built))


def render(board: dict[str, Any]) -> str:
    """The committed text of a dashboard: stable key order, two-space indent."""
    return json.dumps(board, indent=2, sort_keys=True) + "\n"
