"""The Grafana dashboards: generated JSON in step with its source, structure, links, names.

The queries themselves are evaluated against a real Prometheus in test_dashboards_prometheus.py;
the helpers here (panel and query iteration, metric-name extraction, variable substitution) are
shared with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from celery_queue_exporter import catalogue as cat
from monitoring import config as monitoring_config
from monitoring import generate as monitoring_generate
from monitoring.dashboards import build_all, files, panels
from monitoring.dashboards.settings import DASHBOARDS, Settings

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "dashboards"
SLUGS = ("priorities", "queues", "workers")
CURRENT_PANEL_TYPES = {"timeseries", "stat", "bargauge", "table", "heatmap"}
#: Grafana unit ids the dashboards use ("suffix:" units are Grafana's custom-unit syntax).
KNOWN_UNITS = {"short", "s", "percentunit", "none", "ops", "bytes"}


# --- helpers shared with the Prometheus tests -------------------------------------------------


def committed() -> dict[str, dict[str, Any]]:
    return {
        slug: json.loads((DASHBOARD_DIR / f"{slug}.json").read_text(encoding="utf-8"))
        for slug in SLUGS
    }


def all_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def content_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (p for p in all_panels(board) if p["type"] != "row")


def all_targets(boards: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict, dict]]:
    """(dashboard slug, panel, target) for every query of every panel."""
    for slug, board in boards.items():
        for panel in content_panels(board):
            for target in panel.get("targets", []):
                yield slug, panel, target


def variable_queries(boards: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict]]:
    for slug, board in boards.items():
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                yield slug, variable


_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric and recording-rule names an expression selects (functions and keywords aside)."""
    names = set()
    for alternatives in re.findall(r'__name__=~"([^"]*)"', expr):
        names.update(alternatives.split("|"))
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function call
        if match.group().lower() in _PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def label_values_query(query: str) -> tuple[str, str]:
    """(series selector, label) of a Grafana ``label_values(selector, label)`` query."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip(), re.S)
    assert match, f"not a label_values() query: {query}"
    return match.group(1), match.group(2)


def concrete(expr: str, values: dict[str, str], rate_interval: str = "1m") -> str:
    """Replace Grafana's variables the way Grafana would before sending the query."""
    text = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    for name, value in values.items():
        text = re.sub(rf"\$\{{{name}\}}|\${name}\b", value, text)
    assert "$" not in text, f"unreplaced variable in {text}"
    return text


def catalogue_series() -> set[str]:
    return {name for spec in cat.all_metrics() for name in cat.exposed_series_names(spec)}


def spec_of_series(name: str) -> cat.MetricSpec | None:
    for spec in cat.all_metrics():
        if name in cat.exposed_series_names(spec):
            return spec
    return None


def recording_rule_names(config: dict[str, Any] | None = None) -> set[str]:
    """Names recorded by the generated rules of monitoring/rules.py."""
    from monitoring import rules

    return {rule.record for rule in rules.recording_rules(config or monitoring_config.load())}


# --- generation -------------------------------------------------------------------------------


def test_committed_json_equals_a_fresh_generation():
    fresh = {path.name: text for path, text in files(monitoring_config.load()).items()}
    assert sorted(fresh) == [f"{slug}.json" for slug in SLUGS]
    for name, text in fresh.items():
        on_disk = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
        assert on_disk == text, f"dashboards/{name} is stale: run python -m monitoring.generate"
    assert monitoring_generate.main(["--check"]) == 0
    # the copies kustomize packs into ConfigMaps (written by python -m monitoring.generate)
    for name, text in fresh.items():
        assert (ROOT / "k8s" / "generated" / "dashboards" / name).read_text() == text, name


def test_files_are_relative_to_the_repository():
    assert sorted(files(monitoring_config.load())) == [
        Path("dashboards") / f"{slug}.json" for slug in SLUGS
    ]


def test_built_panels_share_no_objects():
    """build_all() is for callers to inspect and edit: one panel's edit stays in that panel."""
    board = build_all(monitoring_config.load())["queues"]
    first, second = list(content_panels(board))[:2]
    first["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["color"] = "purple"
    first["datasource"]["uid"] = "edited"
    assert second["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["color"] != "purple"
    assert second["datasource"]["uid"] == "${datasource}"
    assert build_all(monitoring_config.load())["queues"] != board


def test_check_reports_a_stale_file(tmp_path, capsys):
    assert monitoring_generate.main(["--out", str(tmp_path)]) == 0
    board = json.loads((tmp_path / "dashboards" / "queues.json").read_text())
    board["panels"][1]["title"] = "edited by hand"
    (tmp_path / "dashboards" / "queues.json").write_text(json.dumps(board))
    capsys.readouterr()
    assert monitoring_generate.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "dashboards/queues.json" in err
    # only that file is stale
    assert "dashboards/workers.json" not in err and "dashboards/priorities.json" not in err


def test_own_settings_flow_into_every_dashboard(tmp_path):
    config = monitoring_config.load()
    config["selector"] = 'job="my-celery", cluster="eu-1"'
    config["dashboards"] = {
        "uid_prefix": "acme",
        "refresh": "1m",
        "time_from": "now-24h",
        "tags": ["acme"],
    }
    config["runbook_base_url"] = "https://wiki.example.com/runbooks"
    config["alerts"]["CeleryQueueBacklogHigh"]["messages"] = 4242
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert monitoring_generate.main(["--config", str(path), "--out", str(out)]) == 0

    boards = {slug: json.loads((out / "dashboards" / f"{slug}.json").read_text()) for slug in SLUGS}
    for slug, board in boards.items():
        assert board["uid"] == f"acme-{slug}"
        assert (board["refresh"], board["time"]["from"], board["tags"]) == (
            "1m",
            "now-24h",
            ["acme"],
        )
        links = [link["url"] for link in board["links"]]
        assert links == [f"/d/acme-{other}" for other in DASHBOARDS if other != slug] + [
            "https://wiki.example.com/runbooks"
        ]
    recorded = recording_rule_names(config)
    for _, _, target in all_targets(boards):
        if not metric_names(target["expr"]) <= recorded:
            assert 'job="my-celery", cluster="eu-1"' in target["expr"], target["expr"]
    backlog = [
        panel["title"]
        for panel in content_panels(boards["queues"])
        if {"color": "red", "value": 4242}
        in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    ]
    assert backlog == ["Waiting messages", "Waiting messages per queue"]
    runbooks = {
        link["url"]
        for board in boards.values()
        for panel in content_panels(board)
        for link in panel["links"]
        if link["title"].startswith("Runbook: ")
    }
    assert "https://wiki.example.com/runbooks/CeleryQueueBacklogHigh.md" in runbooks
    assert all(url.startswith("https://wiki.example.com/runbooks/") for url in runbooks)


def test_k8s_copies_are_identical(tmp_path):
    assert monitoring_generate.main(["--out", str(tmp_path)]) == 0
    copies = tmp_path / "k8s" / "generated" / "dashboards"
    assert sorted(p.name for p in copies.iterdir()) == sorted(f"{s}.json" for s in SLUGS)
    for slug in SLUGS:
        assert (copies / f"{slug}.json").read_text() == (DASHBOARD_DIR / f"{slug}.json").read_text()


# --- structure --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return committed()


def test_stable_uids_titles_and_settings(boards):
    settings = monitoring_config.load()["dashboards"]
    for slug, board in boards.items():
        assert board["uid"] == f"celery-queue-exporter-{slug}"
        assert len(board["uid"]) <= 40  # Grafana's limit
        assert board["title"] == DASHBOARDS[slug][0]
        assert board["refresh"] == settings["refresh"]
        assert board["time"] == {"from": settings["time_from"], "to": "now"}
        assert board["tags"] == settings["tags"]
        assert board["schemaVersion"] >= 38  # Grafana 10 schema: no migrations on import
        # no id (it was null): Grafana assigns one on import and matches by uid
        assert "id" not in board
        assert board["description"]


def test_panel_ids_are_unique(boards):
    for slug, board in boards.items():
        ids = [panel["id"] for panel in all_panels(board)]
        assert all(isinstance(i, int) and i > 0 for i in ids), slug
        assert len(ids) == len(set(ids)), f"{slug}: duplicate panel ids"


def _cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    pos = panel["gridPos"]
    return {
        (x, y)
        for x in range(pos["x"], pos["x"] + pos["w"])
        for y in range(pos["y"], pos["y"] + pos["h"])
    }


def test_grid_positions_do_not_overlap_and_fit_the_grid(boards):
    for slug, board in boards.items():
        taken: dict[tuple[int, int], str] = {}
        for panel in all_panels(board):
            pos = panel["gridPos"]
            assert pos["w"] > 0 and pos["h"] > 0
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (slug, panel["title"])
            for cell in _cells(panel):
                assert cell not in taken, f"{slug}: {panel['title']!r} overlaps {taken[cell]!r}"
                taken[cell] = panel["title"]


def test_overlap_check_catches_an_overlap(boards):
    board = json.loads(json.dumps(boards["queues"]))
    first, second = list(content_panels(board))[:2]
    second["gridPos"] = dict(first["gridPos"], x=first["gridPos"]["x"] + 1)
    with pytest.raises(AssertionError, match="overlaps"):
        test_grid_positions_do_not_overlap_and_fit_the_grid({"queues": board})


def test_layout_rejects_a_line_that_does_not_fill_the_grid():
    panel = panels.stat(
        Settings(), "t", "d", [panels.Q("1")], unit="short", thresholds=panels.NEUTRAL
    )
    with pytest.raises(ValueError, match="add up to 20, not 24"):
        panels.line(4, (panel, 20))


def test_only_current_panel_types(boards):
    for slug, board in boards.items():
        types = {panel["type"] for panel in content_panels(board)}
        assert types <= CURRENT_PANEL_TYPES, f"{slug}: {types - CURRENT_PANEL_TYPES}"
        assert {"graph", "singlestat"}.isdisjoint(p["type"] for p in all_panels(board))
    used = {p["type"] for board in boards.values() for p in content_panels(board)}
    assert used == CURRENT_PANEL_TYPES


def test_every_panel_has_description_unit_thresholds_and_queries(boards):
    for slug, board in boards.items():
        for panel in content_panels(board):
            where = f"{slug}: {panel['title']}"
            assert len(panel["description"]) >= 60, where
            assert "normal" in panel["description"].lower(), f"{where}: say what normal looks like"
            unit = panel["fieldConfig"]["defaults"]["unit"]
            assert unit in KNOWN_UNITS or unit.startswith("suffix: "), where
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps and steps[0]["value"] is None, where
            values = [step["value"] for step in steps[1:]]
            assert values == sorted(values), where
            assert panel["targets"], where
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where
                assert target["expr"].strip(), where
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), where
            if panel["type"] == "table":
                for override in panel["fieldConfig"]["overrides"]:
                    assert override["properties"][0]["id"] == "unit", where
            if panel["type"] == "heatmap":
                assert [t["format"] for t in panel["targets"]] == ["heatmap"], where
                assert panel["options"]["calculate"] is False, where


def test_variables_on_every_dashboard(boards):
    expected = {
        "priorities": ["datasource", "job", "namespace", "broker", "queue"],
        "queues": ["datasource", "job", "namespace", "broker", "queue"],
        "workers": ["datasource", "job", "namespace", "broker", "queue", "worker", "task"],
    }
    selector = monitoring_config.load()["selector"]
    for slug, board in boards.items():
        variables = board["templating"]["list"]
        assert [v["name"] for v in variables] == expected[slug]
        assert variables[0]["type"] == "datasource" and variables[0]["query"] == "prometheus"
        for variable in variables[1:]:
            assert variable["type"] == "query"
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert variable["includeAll"] and variable["allValue"] == ".*"
            series, label = label_values_query(variable["query"])
            assert label == variable["name"]
            assert selector in series


def test_queries_use_the_config_selector_and_the_variables(boards):
    selector = monitoring_config.load()["selector"]
    recorded = recording_rule_names()
    for slug, panel, target in all_targets(boards):
        expr = target["expr"]
        selections = re.findall(r"\b([a-zA-Z_:][\w:]*)\{([^}]*)\}", expr)
        for names, matchers in re.findall(r'(?<![\w:])\{__name__=~"([^"]*)", ([^}]*)\}', expr):
            selections += [(name, matchers) for name in names.split("|")]
        assert selections, (slug, panel["title"])
        for name, matchers in selections:
            where = f"{slug}: {panel['title']}: {name}"
            if name in recorded:
                # the rule applied the selector; recorded series keep job, broker, queue
                assert matchers == 'job=~"$job", broker=~"$broker", queue=~"$queue"', where
                continue
            assert matchers.startswith(selector), where
            assert 'job=~"$job"' in matchers and 'namespace=~"$namespace"' in matchers, where
            if name != "up":
                assert 'broker=~"$broker"' in matchers, where
            spec = spec_of_series(name)
            if spec and "queue" in spec.labels:
                assert 'queue=~"$queue"' in matchers, where


def test_alert_panels_link_to_their_runbooks(boards):
    config = monitoring_config.load()
    alerts = set(config["alerts"])
    linked: set[str] = set()
    for slug, board in boards.items():
        for panel in content_panels(board):
            runbooks = {
                link["title"].removeprefix("Runbook: "): link["url"]
                for link in panel["links"]
                if link["title"].startswith("Runbook: ")
            }
            for alert, url in runbooks.items():
                assert alert in alerts, f"{slug}: {panel['title']}: unknown alert {alert}"
                assert url == f"{config['runbook_base_url']}/{alert}.md"
            mentioned = set(re.findall(r"\bCelery[A-Z]\w+", panel["description"])) & alerts
            missing = mentioned - set(runbooks)
            assert not missing, f"{slug}: {panel['title']} names {missing} without a runbook link"
            linked |= set(runbooks)
    assert linked == alerts, f"alerts without a panel linking their runbook: {alerts - linked}"


def test_alert_thresholds_come_from_the_config(boards):
    alerts = monitoring_config.load()["alerts"]

    def red_at(slug: str, title: str) -> list[float]:
        (panel,) = [p for p in content_panels(boards[slug]) if p["title"] == title]
        return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]

    assert red_at("queues", "Waiting messages") == [alerts["CeleryQueueBacklogHigh"]["messages"]]
    assert red_at("queues", "Most urgent level: oldest") == [
        alerts["CeleryQueueMostUrgentWaitingTooLong"]["seconds"]
    ]
    assert red_at("priorities", "Least urgent level: oldest") == [
        alerts["CeleryPriorityStarvation"]["seconds"]
    ]
    assert red_at("workers", "Failure ratio") == [alerts["CeleryTaskFailureRatioHigh"]["ratio"]]
    goals = monitoring_config.load()["goals"]
    assert red_at("priorities", "Effectiveness (worst queue)") == [
        goals["min_priority_wait_reduction"]
    ]


def test_dashboards_link_to_each_other(boards):
    uids = {slug: board["uid"] for slug, board in boards.items()}
    for slug, board in boards.items():
        targets = {link["url"] for link in board["links"] if link["type"] == "link"}
        assert {f"/d/{uids[other]}" for other in uids if other != slug} <= targets
        for link in board["links"]:
            if link["url"].startswith("/d/"):
                assert link["keepTime"] and link["includeVars"]
        for panel in content_panels(board):
            for link in panel["links"]:
                if link["title"].startswith("Dashboard: "):
                    uid = link["url"].split("?")[0].removeprefix("/d/")
                    assert uid in uids.values() and uid != board["uid"], link


def test_every_selected_name_is_a_catalogue_metric_or_recording_rule(boards):
    known = catalogue_series() | recording_rule_names() | {"up"}
    queries = [t["expr"] for _, _, t in all_targets(boards)]
    queries += [label_values_query(v["query"])[0] for _, v in variable_queries(boards)]
    used: set[str] = set()
    for expr in queries:
        names = metric_names(expr)
        assert names, expr
        assert names <= known, f"unknown names {names - known} in {expr}"
        used |= names
    # the dashboards cover the queue catalogue (build info aside)
    queue_series = {s.name for s in cat.QUEUE_METRICS} - {cat.BUILD_INFO.name}
    assert queue_series - used == set()


def test_metric_name_extraction():
    expr = (
        "histogram_quantile(0.95, sum by (broker, le) (rate(celery_task_runtime_seconds_bucket"
        '{job="x", task=~"a|b"}[5m]))) and on (broker) celery_broker_info{transport="redis"}'
        " / ignoring (le) celery:queue_wait:p95_5m offset 5m or vector(0) > bool 1e-9"
        ' + sum(rate({__name__=~"celery_task_failed_total|up", job="x"}[1m]))'
    )
    assert metric_names(expr) == {
        "celery_task_failed_total",
        "up",
        "celery_task_runtime_seconds_bucket",
        "celery_broker_info",
        "celery:queue_wait:p95_5m",
    }
    assert (
        concrete(
            'rate(x{q=~"$queue", b=~"${broker}"}[$__rate_interval])',
            {
                "queue": "a|b",
                "broker": ".*",
            },
        )
        == 'rate(x{q=~"a|b", b=~".*"}[1m])'
    )


# --- layout pictures --------------------------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.slow
def test_layout_pictures_are_drawn_for_every_dashboard(tmp_path):
    from monitoring.dashboards import layout

    assert layout.main(["--out", str(tmp_path)]) == 0
    for slug in SLUGS:
        fresh = (tmp_path / f"{slug}.png").read_bytes()
        doc = (ROOT / "docs" / "img" / f"{slug}.png").read_bytes()
        assert fresh[:8] == doc[:8] == b"\x89PNG\r\n\x1a\n"
        # same pixel size: the committed picture shows the current grid (IHDR width/height)
        assert fresh[16:24] == doc[16:24], f"docs/img/{slug}.png is stale: run render_layout"
