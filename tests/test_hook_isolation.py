"""The hook users import into their Celery apps needs Celery and nothing else of ours.

``celery_queue_exporter.instrumentation`` (and the package's ``__init__``) may import only the
standard library, Celery and kombu: a user's app must not pull in redis, pika, requests,
orjson, hiredis, prometheus_client or yaml by installing the hook. Proven twice: in a fresh
interpreter of the test venv (nothing heavy lands in sys.modules), and in a venv that holds
only celery and its own requirements (the heavy modules are not even importable there).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from testsupport.paths import ROOT

HEAVY = ("redis", "pika", "prometheus_client", "requests", "orjson", "hiredis", "yaml")

#: Loads Celery, then the hook (imported and installed on an app); prints the heavy top-level
#: modules loaded by Celery itself, those the hook added, and those that could be imported.
PROBE = f"""
import importlib.util, json, sys
heavy = {HEAVY!r}
def loaded():
    return {{m.split(".")[0] for m in sys.modules}} & set(heavy)
from celery import Celery
app = Celery("probe", broker="memory://", set_as_current=False)
by_celery = loaded()
import celery_queue_exporter
from celery_queue_exporter import instrumentation
instrumentation.install(app)
instrumentation.uninstall()
print(json.dumps({{
    "by_celery": sorted(by_celery),
    "by_hook": sorted(loaded() - by_celery),
    "importable": sorted(m for m in heavy if importlib.util.find_spec(m) is not None),
    "hook": instrumentation.__file__,
}}))
"""


def run_probe(python: str | Path) -> dict:
    """PROBE in a fresh, isolated interpreter (-I: no PYTHONPATH, no user site, no cwd)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [str(python), "-I", "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def celery_closure() -> list[importlib.metadata.Distribution]:
    """celery's distribution and every distribution it requires (markers evaluated, no
    extras), as installed in the test venv."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = ["celery"]
    while todo:
        name = todo.pop()
        dist = importlib.metadata.distribution(name)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(seen.values())


def top_level_paths(dist: importlib.metadata.Distribution) -> set[Path]:
    """The importable top-level packages and modules a distribution installed, and its
    .dist-info (kombu and celery read their own metadata)."""
    paths: set[Path] = set()
    for file in dist.files or ():
        first = file.parts[0]
        if first in {"..", "__pycache__"} or first.endswith(".pth"):
            continue
        if len(file.parts) == 1 and not first.endswith((".py", ".so")):
            continue
        paths.add(Path(dist.locate_file(first)))
    return paths


@pytest.mark.subprocess
def test_hook_pulls_in_nothing_heavy_in_the_test_venv():
    found = run_probe(sys.executable)
    assert found["by_hook"] == []
    # kombu registers its YAML serializer when PyYAML is installed: Celery's doing, not ours.
    assert found["by_celery"] == ["yaml"]
    assert found["importable"] == sorted(HEAVY)  # they are installed here, just not imported
    assert Path(found["hook"]) == ROOT / "exporter/celery_queue_exporter/instrumentation.py"


@pytest.mark.subprocess
@pytest.mark.slow
def test_hook_works_in_a_venv_holding_only_celery(tmp_path):
    venv = tmp_path / "celery-only"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)  # fmt: skip
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    site = Path(purelib)
    closure = celery_closure()
    names = sorted(dist.metadata["Name"].lower() for dist in closure)
    assert {"celery", "kombu", "billiard", "vine", "amqp", "click"} <= set(names)
    assert not {"redis", "pika", "requests", "orjson", "hiredis", "pyyaml"} & set(names)
    for dist in closure:
        for path in top_level_paths(dist):
            (site / path.name).symlink_to(path)
    # Our package only (not the rest of exporter/): the hook must not need the rest of it.
    (site / "celery_queue_exporter").mkdir()
    for module in ("__init__.py", "instrumentation.py"):
        source = ROOT / "exporter" / "celery_queue_exporter" / module
        (site / "celery_queue_exporter" / module).symlink_to(source)

    found = run_probe(python)
    assert found == {
        "by_celery": [],
        "by_hook": [],
        "importable": [],
        "hook": str(site / "celery_queue_exporter" / "instrumentation.py"),
    }
