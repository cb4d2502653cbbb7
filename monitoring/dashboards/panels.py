"""The shared panel library: every panel of the three dashboards comes from a function here.

Panels are plain dicts in the JSON that current Grafana writes (dashboard ``schemaVersion``
42): each key is one that ``@grafana/schema`` declares for the dashboard, the panel or the
panel plugin's options, nothing is ``null`` and no Angular-era key is written, so Grafana
runs no migration on import and strict readers (grafana-foundation-sdk) accept the files.
tests/test_dashboards_schema.py type-checks the output against ``@grafana/schema``.

A panel function returns the panel without ``gridPos`` and ``id``: ``row()`` and ``line()``
below say where it goes, and board.py places rows on the grid and numbers the panels.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .settings import DASHBOARDS, Settings

Json = dict[str, Any]

#: Every panel and query uses the data source picked in the ``datasource`` variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

#: Grafana's grid is 24 columns wide; every line of panels fills it.
GRID_WIDTH = 24

# Units (Grafana unit ids; "suffix:" is Grafana's custom-unit syntax).
UNIT_MESSAGES = "short"
UNIT_SECONDS = "s"
UNIT_RATIO = "percentunit"
UNIT_MSG_RATE = "suffix: msg/s"
UNIT_TASK_RATE = "suffix: tasks/s"
UNIT_EVENT_RATE = "suffix: events/s"
UNIT_OPS = "ops"
UNIT_COUNT = "short"
UNIT_BOOL = "none"
UNIT_BYTES = "bytes"


# --- queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Q:
    """One query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    format: str = "time_series"


def targets(queries: Sequence[Q]) -> list[Json]:
    """Prometheus targets as Grafana's code editor saves them (refIds A, B, ...)."""
    return [
        {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": query.expr,
            "format": query.format,
            "instant": query.instant,
            "legendFormat": query.legend,
            "range": not query.instant,
            "refId": ref,
        }
        for ref, query in zip(string.ascii_uppercase, queries, strict=False)
    ]


# --- thresholds and mappings ----------------------------------------------------------------


def steps(*pairs: tuple[str, float | None]) -> list[Json]:
    """Threshold steps; the first has value None, which Grafana writes as ``null`` for
    -Infinity (the base colour): the one ``null`` the schema asks for."""
    return [{"color": color, "value": value} for color, value in pairs]


#: Thresholds for panels without a limit of their own: a neutral base only.
NEUTRAL = steps(("green", None))


def above(value: float, base: str = "green", over: str = "red") -> list[Json]:
    return steps((base, None), (over, value))


def below(value: float, under: str = "red", over: str = "green") -> list[Json]:
    return steps((under, None), (over, value))


def _thresholds(step_list: list[Json]) -> Json:
    return {"mode": "absolute", "steps": step_list}


#: Value mapping of 0/1 health gauges.
UP_DOWN = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DOWN", "color": "red", "index": 0},
            "1": {"text": "UP", "color": "green", "index": 1},
        },
    }
]


# --- links ----------------------------------------------------------------------------------

#: Query string of cross-dashboard panel links: keep the time range and the variables.
KEEP_TIME_AND_VARIABLES = "${__url_time_range}&${__all_variables}"


def panel_links(s: Settings, runbooks: Iterable[str], dashboards: Iterable[str]) -> list[Json]:
    """Panel links (Grafana data links): runbooks of the alerts shown, related dashboards."""
    links = []
    for alert in runbooks:
        s.alert(alert)  # a typo fails generation, not a click
        links.append(
            {"title": f"Runbook: {alert}", "url": s.runbook_url(alert), "targetBlank": True}
        )
    for slug in dashboards:
        links.append(
            {
                "title": f"Dashboard: {DASHBOARDS[slug][0]}",
                "url": f"/d/{s.uid(slug)}?{KEEP_TIME_AND_VARIABLES}",
                "targetBlank": False,
            }
        )
    return links


# --- panels ---------------------------------------------------------------------------------


def _panel(
    s: Settings,
    kind: str,
    about: tuple[str, str, Iterable[str], Iterable[str]],
    queries: Sequence[Q],
    defaults: Json,
    options: Json,
    overrides: Sequence[Json] = (),
) -> Json:
    """``about``: title, description (with what normal looks like), runbooks, dashboards."""
    title, description, runbooks, dashboards = about
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets(queries),
        "links": panel_links(s, runbooks, dashboards),
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": options,
    }


def _bounds(min_value: float | None, max_value: float | None) -> Json:
    """``min``/``max`` field options, left out (not ``null``) when Grafana should pick them."""
    bounds = {"min": min_value, "max": max_value}
    return {key: value for key, value in bounds.items() if value is not None}


_HIDE_NOTHING = {"legend": False, "tooltip": False, "viz": False}


def timeseries(
    s: Settings,
    title: str,
    description: str,
    queries: Sequence[Q],
    *,
    unit: str,
    thresholds: list[Json] | None = None,
    runbooks: Iterable[str] = (),
    dashboards: Iterable[str] = (),
    stacked: bool = False,
    step: bool = False,
    min_value: float | None = 0,
    max_value: float | None = None,
) -> Json:
    """A time series; ``thresholds`` are drawn as dashed lines (the alert's threshold)."""
    custom = {
        "axisBorderShow": False,
        "axisCenteredZero": False,
        "axisColorMode": "text",
        "axisLabel": "",
        "axisPlacement": "auto",
        "barAlignment": 0,
        "drawStyle": "line",
        "fillOpacity": 30 if stacked else 10,
        "gradientMode": "none",
        "hideFrom": _HIDE_NOTHING,
        "insertNulls": False,
        "lineInterpolation": "stepAfter" if step else "linear",
        "lineWidth": 1,
        "pointSize": 5,
        "scaleDistribution": {"type": "linear"},
        "showPoints": "auto",
        "spanNulls": False,
        "stacking": {"mode": "normal", "group": "A"} if stacked else {"mode": "none"},
        "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
    }
    defaults = {
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "mappings": [],
        "thresholds": _thresholds(thresholds or NEUTRAL),
        "unit": unit,
        **_bounds(min_value, max_value),
    }
    options = {
        "legend": {
            "calcs": ["lastNotNull", "max"],
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return _panel(
        s, "timeseries", (title, description, runbooks, dashboards), queries, defaults, options
    )


def _reduce_last() -> Json:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def stat(
    s: Settings,
    title: str,
    description: str,
    queries: Sequence[Q],
    *,
    unit: str,
    thresholds: list[Json],
    runbooks: Iterable[str] = (),
    dashboards: Iterable[str] = (),
    mappings: list[Json] | None = None,
    no_value: str = "0",
    graph: bool = True,
) -> Json:
    """One big number per series, its background coloured by ``thresholds``."""
    defaults = {
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
        "noValue": no_value,
        "thresholds": _thresholds(thresholds),
        "unit": unit,
    }
    options = {
        "colorMode": "background",
        "graphMode": "area" if graph else "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "percentChangeColorMode": "standard",
        "reduceOptions": _reduce_last(),
        "showPercentChange": False,
        "textMode": "auto",
        "wideLayout": True,
    }
    return _panel(s, "stat", (title, description, runbooks, dashboards), queries, defaults, options)


def bargauge(
    s: Settings,
    title: str,
    description: str,
    queries: Sequence[Q],
    *,
    unit: str,
    thresholds: list[Json],
    runbooks: Iterable[str] = (),
    dashboards: Iterable[str] = (),
    min_value: float | None = 0,
    max_value: float | None = None,
) -> Json:
    """Horizontal bars, one per series, coloured by ``thresholds``."""
    defaults = {
        "color": {"mode": "thresholds"},
        "mappings": [],
        "thresholds": _thresholds(thresholds),
        "unit": unit,
        **_bounds(min_value, max_value),
    }
    options = {
        "displayMode": "gradient",
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": False},
        "maxVizHeight": 300,
        "minVizHeight": 16,
        "minVizWidth": 8,
        "namePlacement": "auto",
        "orientation": "horizontal",
        "reduceOptions": _reduce_last(),
        "showUnfilled": True,
        "sizing": "auto",
        "valueMode": "color",
    }
    return _panel(
        s, "bargauge", (title, description, runbooks, dashboards), queries, defaults, options
    )


def heatmap(
    s: Settings,
    title: str,
    description: str,
    expr: str,
    *,
    unit: str = UNIT_SECONDS,
    runbooks: Iterable[str] = (),
    dashboards: Iterable[str] = (),
) -> Json:
    """A heatmap of pre-bucketed Prometheus histograms (``expr`` sums rates ``by (le)``)."""
    defaults = {
        "custom": {"hideFrom": _HIDE_NOTHING, "scaleDistribution": {"type": "linear"}},
        "thresholds": _thresholds(NEUTRAL),
        "unit": unit,
    }
    options = {
        "calculate": False,
        "cellGap": 1,
        "cellValues": {"unit": UNIT_TASK_RATE},
        "color": {
            "exponent": 0.5,
            "fill": "dark-orange",
            "mode": "scheme",
            "reverse": False,
            "scale": "exponential",
            "scheme": "Oranges",
            "steps": 64,
        },
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "showValue": "auto",
        "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": False},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
    }
    panel = _panel(
        s,
        "heatmap",
        (title, description, runbooks, dashboards),
        [Q(expr, "{{le}}", format="heatmap")],
        defaults,
        options,
    )
    panel["maxDataPoints"] = 60  # one cell per few minutes: readable, and cheap to query
    return panel


@dataclass(frozen=True)
class Column:
    """One value column of a table: an instant query and how to show it."""

    header: str
    expr: str
    unit: str
    thresholds: list[Json] | None = None


def _column_override(column: Column) -> Json:
    """The column's unit first, then (with limits) its colour by threshold."""
    props: list[Json] = [{"id": "unit", "value": column.unit}]
    if column.thresholds:
        props += [
            {"id": "thresholds", "value": _thresholds(column.thresholds)},
            {"id": "custom.cellOptions", "value": {"type": "color-background"}},
        ]
    return {"matcher": {"id": "byName", "options": column.header}, "properties": props}


def table(
    s: Settings,
    title: str,
    description: str,
    columns: Sequence[Column],
    *,
    keys: Sequence[str],
    runbooks: Iterable[str] = (),
    dashboards: Iterable[str] = (),
) -> Json:
    """A table joining instant queries on ``keys`` (labels), one column per query."""
    queries = [Q(c.expr, instant=True, format="table") for c in columns]
    rename = {
        f"Value #{ref}": c.header for ref, c in zip(string.ascii_uppercase, columns, strict=False)
    }
    order = {key: i for i, key in enumerate([*keys, *rename.values()])}
    defaults = {
        "color": {"mode": "thresholds"},
        # cellOptions replaces the deprecated displayMode; "auto" shows plain values
        "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
        "mappings": [],
        "thresholds": _thresholds(NEUTRAL),
        "unit": UNIT_COUNT,
    }
    options = {"cellHeight": "sm", "frameIndex": 0, "showHeader": True}
    overrides = [_column_override(column) for column in columns]
    panel = _panel(
        s,
        "table",
        (title, description, runbooks, dashboards),
        queries,
        defaults,
        options,
        overrides,
    )
    panel["transformations"] = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {
                "excludeByName": {"Time": True},
                "indexByName": order,
                "renameByName": rename,
            },
        },
        {"id": "filterFieldsByName", "options": {"include": {"names": list(order)}}},
    ]
    return panel


# --- rows and lines -------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """Panels side by side, each with its width, all of one height."""

    height: int
    panels: tuple[tuple[Json, int], ...]


def line(height: int, *panels: tuple[Json, int]) -> Line:
    """One line of panels, each given with its width; the widths must fill the grid."""
    widths = sum(width for _, width in panels)
    if widths != GRID_WIDTH:
        raise ValueError(f"panel widths add up to {widths}, not {GRID_WIDTH}")
    return Line(height, panels)


@dataclass(frozen=True)
class Row:
    """A titled section of a dashboard: what each row function of a dashboard returns."""

    title: str
    lines: tuple[Line, ...]


def row(title: str, *lines: Line) -> Row:
    return Row(title, lines)
