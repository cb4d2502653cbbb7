"""The committed dashboards against Grafana's published schema (npm ``@grafana/schema``).

tsc from tests/node type-checks each dashboard as a typed literal (see grafana_schema.py for
how, and for the two documented artefact categories it allows). The plants below show the
check fails on what it is there to catch: a ``null``, legacy keys, a mistyped enum value.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_dashboards import committed, content_panels

from testsupport import grafana_schema as schema
from testsupport.services import missing_service

#: tsc (tests/node) checks every dashboard here: the node tier.
pytestmark = pytest.mark.node

#: The JSON path of the one kind of ``null`` Grafana's schema asks for: a base threshold
#: step's value (-Infinity, which JSON cannot hold), in field defaults or a table column's
#: thresholds override.
BASE_STEP = re.compile(
    r".*(?:\.defaults\.thresholds|\.overrides\[\d+\]\.properties\[\d+\]\.value)"
    r"\.steps\[0\]\.value"
)


@pytest.fixture(scope="module", autouse=True)
def tsc() -> None:
    if not schema.TSC.exists():
        missing_service(f"{schema.TSC} is missing (npm ci in tests/node)")


@pytest.mark.slow
def test_committed_dashboards_validate_against_grafana_schema():
    boards = committed()
    assert schema.schema_errors(boards) == []


def test_only_documented_artefacts_are_allowed():
    """The allow-list is not a blanket: every error it lets through is a valid enum string
    or a panel link, and the link checked against DataLink has no error of its own."""
    boards = committed()
    enums = schema.string_enums()
    errors = schema.run_tsc(boards)
    assert errors, "no artefact at all: is the literal still typed?"
    kinds = set()
    for error in errors:
        assert schema.is_allowed(error, enums), error
        kinds.add("link" if error.path.endswith("]") else "enum")
    assert kinds == {"link", "enum"}
    assert len(schema.ALLOWED) == 6


def _nulls(value: Any, path: str = "") -> Iterator[str]:
    if value is None:
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nulls(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nulls(item, f"{path}[{i}]")


def test_no_null_but_the_base_threshold_steps():
    for slug, board in committed().items():
        nulls = list(_nulls(board))
        assert nulls, slug  # every panel has a base step
        assert [path for path in nulls if not BASE_STEP.fullmatch(path)] == [], slug


#: Keys of Angular-era Grafana that must not come back (most of them the schema rejects; the
#: table's ``displayMode`` is only deprecated there, so it is checked here by name).
LEGACY_DASHBOARD_KEYS = {"rows", "style", "hideControls", "sharedCrosshair", "__inputs", "gnetId"}
LEGACY_PANEL_KEYS = {"editable", "error", "columns", "fontSize", "span", "height", "minSpan"}
LEGACY_VARIABLE_KEYS = {"auto", "auto_count", "auto_min", "useTags", "tagsQuery", "definition"}


def test_no_legacy_keys_and_the_current_schema_version():
    for slug, board in committed().items():
        assert board["schemaVersion"] == 42, slug
        assert LEGACY_DASHBOARD_KEYS.isdisjoint(board), slug
        assert "time_options" not in board["timepicker"], slug
        for variable in board["templating"]["list"]:
            assert LEGACY_VARIABLE_KEYS.isdisjoint(variable), (slug, variable["name"])
        for panel in board["panels"]:
            assert LEGACY_PANEL_KEYS.isdisjoint(panel), (slug, panel["title"])
        for panel in content_panels(board):
            custom = panel["fieldConfig"]["defaults"].get("custom", {})
            assert "displayMode" not in custom, (slug, panel["title"])
            if panel["type"] == "table":
                assert custom["cellOptions"] == {"type": "auto"}, slug
            for target in panel["targets"]:
                assert set(target) == {
                    "datasource",
                    "editorMode",
                    "expr",
                    "format",
                    "instant",
                    "legendFormat",
                    "range",
                    "refId",
                }, (slug, panel["title"])


# --- the check can fail -----------------------------------------------------------------------


def _table(board: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in board["panels"] if p["type"] == "table")


def _stat(board: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in board["panels"] if p["type"] == "stat")


#: One planted fault per copy of the Queues dashboard, and the error (code, path) it must give.
PLANTS: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    "null description": (
        lambda b: _stat(b).update(description=None),
        "TS2322",
        "panels[1].description",
    ),
    "null option": (
        lambda b: _stat(b)["options"].update(colorMode=None),
        "TS2322",
        "panels[1].options.colorMode",
    ),
    "null link url": (
        lambda b: _stat(b)["links"][0].update(url=None),
        "TS2322",
        "panels[1].links[0].url",
    ),
    "rows": (lambda b: b.update(rows=[]), "TS2353", "rows"),
    "style": (lambda b: b.update(style="dark"), "TS2353", "style"),
    "hideControls": (lambda b: b.update(hideControls=False), "TS2353", "hideControls"),
    "sharedCrosshair": (lambda b: b.update(sharedCrosshair=False), "TS2353", "sharedCrosshair"),
    "__inputs": (lambda b: b.update(__inputs=[]), "TS2353", "__inputs"),
    "panel editable": (lambda b: _stat(b).update(editable=True), "TS2353", "panels[1].editable"),
    "panel error": (lambda b: _stat(b).update(error=False), "TS2353", "panels[1].error"),
    "table columns": (lambda b: _table(b).update(columns=[]), "TS2353", "panels[34].columns"),
    "time_options": (
        lambda b: b["timepicker"].update(time_options=["5m"]),
        "TS2353",
        "timepicker.time_options",
    ),
    "variable useTags": (
        lambda b: b["templating"]["list"][1].update(useTags=False),
        "TS2353",
        "templating.list[1].useTags",
    ),
    "unknown option": (
        lambda b: _stat(b)["options"].update(legacyThing=1),
        "TS2353",
        "panels[1].options.legacyThing",
    ),
    "mistyped enum": (
        lambda b: _stat(b)["fieldConfig"]["defaults"]["color"].update(mode="thresholdz"),
        "TS2820",
        "panels[1].fieldConfig.defaults.color.mode",
    ),
}


@pytest.mark.slow
def test_the_check_catches_planted_nulls_legacy_keys_and_bad_enums():
    queues = committed()["queues"]
    assert _table(queues) is queues["panels"][34] and _stat(queues) is queues["panels"][1]
    boards = {}
    for number, (plant, _, _) in enumerate(PLANTS.values()):
        board = copy.deepcopy(queues)
        plant(board)
        boards[f"plant{number}"] = board
    found = {
        (e.path.partition(":")[0], e.code, e.path.partition(":")[2])
        for e in schema.schema_errors(boards)
    }
    expected = {
        (f"plant{number}", code, path) for number, (_, code, path) in enumerate(PLANTS.values())
    }
    assert found == expected, json.dumps(sorted(found ^ expected), indent=1)
