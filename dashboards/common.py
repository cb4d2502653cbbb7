"""Shared building blocks of the Grafana dashboards (grafanalib).

Everything an operator tunes comes from monitoring/config.yaml (``monitoring.config.load()``),
the same file the alerts are generated from: the series selector, the thresholds of the alerts
(so a panel turns red where the alert fires), the platform goals and the dashboard settings.
Metric names come from celery_queue_exporter/catalogue.py and recording rule names from
monitoring/rules.py; nothing here retypes a name.

The helpers emit the JSON of Grafana 10's current panel types (timeseries, stat, bargauge,
table, heatmap); grafanalib's BarGauge and Heatmap still write the Angular-era layout, so the
two are replaced by small Panel subclasses below.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import attr
from grafanalib import core as g

from celery_queue_exporter import catalogue as cat
from monitoring import config as monitoring_config
from monitoring import rules

#: Grafana 10.0's dashboard schema version: the JSON below is already in that schema, so
#: Grafana runs no migrations on import.
SCHEMA_VERSION = 38

#: Every panel and query uses the data source picked in the ``datasource`` variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

#: Dashboards by slug: title and one-line purpose (used for links and the docs).
DASHBOARDS: dict[str, tuple[str, str]] = {
    "queues": ("Celery / Queues", "depth, age, reserved work, consumers, broker health"),
    "workers": ("Celery / Workers", "workers, throughput, runtimes, failures, time limits"),
    "priorities": ("Celery / Priorities", "per-level depth and waits, priority effectiveness"),
}

# Units (Grafana unit ids; "suffix:" is Grafana's custom-unit syntax).
UNIT_MESSAGES = "short"
UNIT_SECONDS = "s"
UNIT_RATIO = "percentunit"
UNIT_MSG_RATE = "suffix: msg/s"
UNIT_TASK_RATE = "suffix: tasks/s"
UNIT_EVENT_RATE = "suffix: events/s"
UNIT_COUNT = "short"
UNIT_BOOL = "none"


# --- settings -------------------------------------------------------------------------------


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


# --- selectors --------------------------------------------------------------------------------


def selector(s: Settings, *, broker: bool = True, queue: bool = False, **extra: str) -> str:
    """Label matchers: the config's selector narrowed by the dashboard variables.

    ``extra`` adds matchers verbatim, e.g. ``urgency='"most"'`` or ``worker='=~"$worker"'``.
    """
    parts = [s.selector, 'job=~"$job"', 'namespace=~"$namespace"']
    if broker:
        parts.append('broker=~"$broker"')
    if queue:
        parts.append('queue=~"$queue"')
    for label, matcher in extra.items():
        op_value = matcher if matcher[:1] in "=!" else f"={matcher}"
        parts.append(f"{label}{op_value}")
    return ", ".join(parts)


def m(spec: cat.MetricSpec, sel: str, suffix: str = "") -> str:
    """``metric{selector}`` for a catalogue spec (``suffix`` e.g. ``_bucket``)."""
    return f"{spec.name}{suffix}{{{sel}}}"


def at_urgency(expr: str, s: Settings, urgency: str) -> str:
    """Keep the series of ``expr`` at a queue's most/least urgent level (any broker)."""
    rank = m(cat.QUEUE_PRIORITY_URGENCY, selector(s, queue=True, urgency=f'"{urgency}"'))
    return f"({expr}) and on (broker, queue, priority) {rank}"


def on_transport(expr: str, s: Settings, transport: str) -> str:
    """Keep the series of ``expr`` that come from brokers of one transport."""
    info = m(cat.BROKER_INFO, selector(s, transport=f'"{transport}"'))
    return f"({expr}) and on (broker) {info}"


def with_transport(expr: str, s: Settings) -> str:
    """Add the broker's ``transport`` label to every series of ``expr``."""
    info = m(cat.BROKER_INFO, selector(s))
    return f"({expr}) * on (broker) group_left (transport) max by (broker, transport) ({info})"


def unknown_priority(expr: str) -> str:
    """Name the missing priority label (RabbitMQ without per-level counts) instead of hiding it."""
    return f'label_replace({expr}, "priority", "unknown", "priority", "")'


def histogram_quantile(q: float, spec: cat.MetricSpec, sel: str, by: str, window: str) -> str:
    bucket = m(spec, sel, "_bucket")
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({bucket}[{window}])))"


def mean_of(spec: cat.MetricSpec, sel: str, by: str, window: str) -> str:
    """Mean of a histogram over ``window`` (exact, unlike bucketed quantiles)."""
    total = f"sum by ({by}) (rate({m(spec, sel, '_sum')}[{window}]))"
    count = f"sum by ({by}) (rate({m(spec, sel, '_count')}[{window}]))"
    return f"{total} / {count}"


# --- variables --------------------------------------------------------------------------------


def _query_variable(name: str, label: str, query: str, description: str) -> g.Template:
    template = g.Template(
        name=name,
        label=label,
        query=query,
        dataSource=DATASOURCE,
        includeAll=True,
        multi=True,
        allValue=".*",
        default="$__all",
        refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
        sort=g.SORT_ALPHA_ASC,
    )
    # Grafana shows the description as the variable's tooltip; "definition" is what its editor
    # displays for a Prometheus query variable.
    return _Extra(template, {"description": description, "definition": query})


@attr.s
class _Extra:
    """A grafanalib object with extra JSON keys (grafanalib has no field for them)."""

    inner: Any = attr.ib()
    extra: dict[str, Any] = attr.ib()

    def to_json_data(self) -> dict[str, Any]:
        data = self.inner.to_json_data()
        data.update(self.extra)
        return data


def variables(s: Settings, *extra: str) -> g.Templating:
    """datasource, job, namespace, broker, queue, then ``extra`` (``worker``, ``task``)."""
    base = s.selector
    up = cat.BROKER_UP.name
    templates: list[Any] = [
        _Extra(
            g.Template(
                name="datasource",
                label="Data source",
                query="prometheus",
                type="datasource",
                default="default",
            ),
            {"description": "Prometheus that scrapes celery-queue-exporter."},
        ),
        _query_variable(
            "job",
            "Job",
            f"label_values({up}{{{base}}}, job)",
            "Prometheus job(s) of the exporter.",
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
    return g.Templating(list=templates)


# --- queries and panels -----------------------------------------------------------------------


@dataclass(frozen=True)
class Q:
    """One query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    format: str = "time_series"


def _targets(queries: Sequence[Q]) -> list[g.Target]:
    targets = []
    for ref, query in zip(string.ascii_uppercase, queries, strict=False):
        target = g.Target(
            expr=query.expr,
            legendFormat=query.legend,
            refId=ref,
            instant=query.instant,
            format=query.format,
            datasource=DATASOURCE,
            intervalFactor=1,
        )
        targets.append(_Extra(target, {"range": not query.instant, "editorMode": "code"}))
    return targets


def steps(*pairs: tuple[str, float | None]) -> list[dict[str, Any]]:
    """Threshold steps, the first with value None (the base colour)."""
    return [{"color": color, "value": value} for color, value in pairs]


#: Thresholds for panels without a limit of their own: a neutral base only.
NEUTRAL = steps(("green", None))


def above(value: float, base: str = "green", over: str = "red") -> list[dict[str, Any]]:
    return steps((base, None), (over, value))


def below(value: float, under: str = "red", over: str = "green") -> list[dict[str, Any]]:
    return steps((under, None), (over, value))


#: Query string of cross-dashboard panel links: keep the time range and the variables.
KEEP_TIME_AND_VARIABLES = "${__url_time_range}&${__all_variables}"


@dataclass
class Links:
    """Panel links: runbooks of the alerts the panel shows, and related dashboards."""

    settings: Settings
    runbooks: Iterable[str] = ()
    dashboards: Iterable[str] = ()

    def to_list(self) -> list[dict[str, Any]]:
        links = []
        for alert in self.runbooks:
            self.settings.alert(alert)  # a typo fails generation, not a click
            links.append(
                {
                    "title": f"Runbook: {alert}",
                    "url": self.settings.runbook_url(alert),
                    "targetBlank": True,
                }
            )
        for slug in self.dashboards:
            links.append(
                {
                    "title": f"Dashboard: {DASHBOARDS[slug][0]}",
                    "url": f"/d/{self.settings.uid(slug)}?{KEEP_TIME_AND_VARIABLES}",
                    "targetBlank": False,
                }
            )
        return links


def _common(
    s: Settings,
    title: str,
    description: str,
    queries: Sequence[Q],
    thresholds: list[dict[str, Any]],
    runbooks: Iterable[str],
    dashboards: Iterable[str],
) -> dict[str, Any]:
    return {
        "title": title,
        "description": description,
        "dataSource": DATASOURCE,
        "targets": _targets(queries),
        "thresholds": thresholds,
        "links": Links(s, runbooks, dashboards).to_list(),
    }


def timeseries(
    s: Settings,
    title: str,
    description: str,
    queries: Sequence[Q],
    *,
    unit: str,
    thresholds: list[dict[str, Any]] | None = None,
    runbooks: Iterable[str] = (),
    dashboards: Iterable[str] = (),
    stacked: bool = False,
    step: bool = False,
    min_value: int | None = 0,
    max_value: int | None = None,
) -> g.TimeSeries:
    return g.TimeSeries(
        **_common(s, title, description, queries, thresholds or NEUTRAL, runbooks, dashboards),
        unit=unit,
        thresholdsStyleMode="dashed" if thresholds else "off",
        stacking={"mode": "normal", "group": "A"} if stacked else {"mode": "none"},
        fillOpacity=30 if stacked else 10,
        lineInterpolation="stepAfter" if step else "linear",
        legendDisplayMode="table",
        legendPlacement="bottom",
        legendCalcs=["lastNotNull", "max"],
        tooltipMode="multi",
        tooltipSort="desc",
        valueMin=min_value,
        valueMax=max_value,
        maxDataPoints=None,
    )


def stat(
    s: Settings,
    title: str,
    description: str,
    queries: Sequence[Q],
    *,
    unit: str,
    thresholds: list[dict[str, Any]],
    runbooks: Iterable[str] = (),
    dashboards: Iterable[str] = (),
    mappings: list[dict[str, Any]] | None = None,
    no_value: str = "0",
    graph: bool = True,
) -> g.Stat:
    return g.Stat(
        **_common(s, title, description, queries, thresholds, runbooks, dashboards),
        format=unit,
        color={"mode": "thresholds"},
        colorMode="background",
        graphMode="area" if graph else "none",
        reduceCalc="lastNotNull",
        mappings=mappings or [],
        noValue=no_value,
        maxDataPoints=None,
    )


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


@attr.s
class BarGaugePanel(g.Panel):
    """Grafana 10 bar gauge (grafanalib's BarGauge writes the Grafana 6 options)."""

    unit: str = attr.ib(default="short")
    min: float | None = attr.ib(default=0)
    max: float | None = attr.ib(default=None)
    orientation: str = attr.ib(default="horizontal")
    displayMode: str = attr.ib(default="gradient")
    reduceCalc: str = attr.ib(default="lastNotNull")

    def to_json_data(self) -> dict[str, Any]:
        return self.panel_json(
            {
                "fieldConfig": {
                    "defaults": {
                        "unit": self.unit,
                        "min": self.min,
                        "max": self.max,
                        "color": {"mode": "thresholds"},
                        "mappings": [],
                    },
                    "overrides": [],
                },
                "options": {
                    "displayMode": self.displayMode,
                    "orientation": self.orientation,
                    "reduceOptions": {"calcs": [self.reduceCalc], "fields": "", "values": False},
                    "showUnfilled": True,
                    "valueMode": "color",
                    "namePlacement": "auto",
                    "sizing": "auto",
                    "minVizHeight": 16,
                    "minVizWidth": 8,
                    "maxVizHeight": 300,
                },
                "type": "bargauge",
            }
        )


def bargauge(
    s: Settings,
    title: str,
    description: str,
    queries: Sequence[Q],
    *,
    unit: str,
    thresholds: list[dict[str, Any]],
    runbooks: Iterable[str] = (),
    dashboards: Iterable[str] = (),
    max_value: float | None = None,
    min_value: float | None = 0,
) -> BarGaugePanel:
    return BarGaugePanel(
        **_common(s, title, description, queries, thresholds, runbooks, dashboards),
        unit=unit,
        max=max_value,
        min=min_value,
        maxDataPoints=None,
    )


@attr.s
class HeatmapPanel(g.Panel):
    """Grafana 10 heatmap of pre-bucketed Prometheus histograms (grafanalib's is Angular-era)."""

    unit: str = attr.ib(default="s")

    def to_json_data(self) -> dict[str, Any]:
        return self.panel_json(
            {
                "fieldConfig": {
                    "defaults": {
                        "unit": self.unit,
                        "custom": {
                            "hideFrom": {"legend": False, "tooltip": False, "viz": False},
                            "scaleDistribution": {"type": "linear"},
                        },
                    },
                    "overrides": [],
                },
                "options": {
                    "calculate": False,
                    "cellGap": 1,
                    "color": {
                        "mode": "scheme",
                        "scheme": "Oranges",
                        "scale": "exponential",
                        "exponent": 0.5,
                        "steps": 64,
                        "reverse": False,
                        "fill": "dark-orange",
                    },
                    "exemplars": {"color": "rgba(255,0,255,0.7)"},
                    "filterValues": {"le": 1e-9},
                    "legend": {"show": True},
                    "rowsFrame": {"layout": "auto"},
                    "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
                    "yAxis": {"axisPlacement": "left", "reverse": False, "unit": self.unit},
                    "cellValues": {"unit": UNIT_TASK_RATE},
                },
                "type": "heatmap",
            }
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
) -> HeatmapPanel:
    query = Q(expr, "{{le}}", format="heatmap")
    return HeatmapPanel(
        **_common(s, title, description, [query], NEUTRAL, runbooks, dashboards),
        unit=unit,
        maxDataPoints=60,
    )


@dataclass(frozen=True)
class Column:
    """One value column of a table: an instant query and how to show it."""

    header: str
    expr: str
    unit: str
    thresholds: list[dict[str, Any]] | None = None


def table(
    s: Settings,
    title: str,
    description: str,
    columns: Sequence[Column],
    *,
    keys: Sequence[str],
    runbooks: Iterable[str] = (),
    dashboards: Iterable[str] = (),
) -> g.Table:
    """A table joining instant queries on ``keys`` (labels), one column per query."""
    queries = [Q(c.expr, instant=True, format="table") for c in columns]
    rename = {
        f"Value #{ref}": c.header for ref, c in zip(string.ascii_uppercase, columns, strict=False)
    }
    order = {key: i for i, key in enumerate([*keys, *rename.values()])}
    overrides = []
    for column in columns:
        props: list[dict[str, Any]] = [{"id": "unit", "value": column.unit}]
        if column.thresholds:
            props += [
                {"id": "thresholds", "value": {"mode": "absolute", "steps": column.thresholds}},
                {"id": "custom.cellOptions", "value": {"type": "color-background"}},
            ]
        overrides.append(
            {"matcher": {"id": "byName", "options": column.header}, "properties": props}
        )
    panel = g.Table(
        **_common(s, title, description, queries, NEUTRAL, runbooks, dashboards),
        unit=UNIT_COUNT,
        overrides=overrides,
        transformations=[
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
        ],
        maxDataPoints=None,
    )
    return panel


# --- layout -----------------------------------------------------------------------------------


class Layout:
    """Places panels on Grafana's 24-column grid, section by section, without overlaps."""

    WIDTH = 24

    def __init__(self) -> None:
        self.y = 0
        self.panels: list[Any] = []

    def row(self, title: str) -> None:
        self.panels.append(
            g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=self.WIDTH, x=0, y=self.y))
        )
        self.y += 1

    def line(self, height: int, *panels: tuple[Any, int]) -> None:
        """One line of panels, each given with its width; the widths must fill the grid."""
        widths = sum(width for _, width in panels)
        if widths != self.WIDTH:
            raise ValueError(f"panel widths add up to {widths}, not {self.WIDTH}")
        x = 0
        for panel, width in panels:
            self.panels.append(
                attr.evolve(panel, gridPos=g.GridPos(h=height, w=width, x=x, y=self.y))
            )
            x += width
        self.y += height


def dashboard(s: Settings, slug: str, description: str, layout: Layout, templating) -> g.Dashboard:
    """A dashboard with the shared settings, links to the other dashboards and panel ids."""
    title, _ = DASHBOARDS[slug]
    links = [
        g.DashboardLink(
            type="link",
            title=DASHBOARDS[other][0],
            uri=f"/d/{s.uid(other)}",
            icon="dashboard",
            keepTime=True,
            includeVars=True,
            tooltip=DASHBOARDS[other][1],
        )
        for other in DASHBOARDS
        if other != slug
    ]
    links.append(
        g.DashboardLink(
            type="link",
            title="Runbooks",
            uri=s.config["runbook_base_url"],
            icon="doc",
            keepTime=False,
            targetBlank=True,
            tooltip="What each alert means and what to do",
        )
    )
    board = s.board
    return g.Dashboard(
        title=title,
        uid=s.uid(slug),
        description=description,
        tags=list(board["tags"]),
        refresh=str(board["refresh"]),
        time=g.Time(str(board["time_from"]), "now"),
        timezone="browser",
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        schemaVersion=SCHEMA_VERSION,
        editable=True,
        links=links,
        templating=templating,
        panels=layout.panels,
    ).auto_panel_ids()


# --- priority queries (shared by the dashboards; recording rules where they exist) -----------


class Priority:
    """Per-priority wait queries: the priorities dashboard's core and the alerts' subject.

    The waits, the most/least urgent levels and the priority effectiveness read the recording
    rules of monitoring/rules.py, so the panels show exactly what the alerts evaluate (same
    window, same "under backlog" gate). Recorded series already carry the config's selector
    (the rules apply it) and keep only job, broker, queue and priority, so they are narrowed by
    the job/broker/queue variables alone.
    """

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.names = rules.recording_names(s.config)
        self.sel = selector(s, queue=True)
        self.recorded_sel = 'job=~"$job", broker=~"$broker", queue=~"$queue"'
        self.window = self.names.window

    def recorded(self, name: str) -> str:
        return f"{name}{{{self.recorded_sel}}}"

    @property
    def p50_by_level(self) -> str:
        return self.recorded(self.names.wait_p50)

    @property
    def p95_by_level(self) -> str:
        return self.recorded(self.names.wait_p95)

    @property
    def most_p95(self) -> str:
        return f"max by (broker, queue) ({self.recorded(self.names.wait_p95_most_urgent)})"

    @property
    def least_p95(self) -> str:
        return f"max by (broker, queue) ({self.recorded(self.names.wait_p95_least_urgent)})"

    @property
    def effectiveness(self) -> str:
        """1 - most urgent p95 / least urgent p95, per queue, recorded only under backlog."""
        return f"max by (broker, queue) ({self.recorded(self.names.priority_wait_reduction)})"

    @property
    def most_buckets(self) -> str:
        rate = self.recorded(self.names.wait_bucket_rate)
        return at_urgency(rate, self.s, cat.URGENCY_MOST)

    @property
    def started_by_level(self) -> str:
        count = m(cat.QUEUE_WAIT, self.sel, "_count")
        return unknown_priority(f"sum by (broker, queue, priority) (rate({count}[{self.window}]))")

    @property
    def starving(self) -> str:
        """Levels with waiting messages and no start in the window while their queue started
        tasks from other levels."""
        depth = f"sum by (broker, queue, priority) ({m(cat.QUEUE_MESSAGES, self.sel)}) > 0"
        count = m(cat.QUEUE_WAIT, self.sel, "_count")
        started = f"sum by (broker, queue, priority) (increase({count}[{self.window}])) > 0"
        queue_started = f"sum by (broker, queue) (increase({count}[{self.window}])) > 0"
        return (
            f"({depth}) unless on (broker, queue, priority) ({started})"
            f" and on (broker, queue) ({queue_started})"
        )
