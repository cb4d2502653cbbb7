"""Generate the Grafana dashboards from their grafanalib sources.

    python -m dashboards.generate                      # rewrite dashboards/*.json
    python -m dashboards.generate --check              # exit 1 when the JSON is stale
    python -m dashboards.generate --config my.yaml --out /tmp/dash   # your own settings

Each ``dashboards/<name>.dashboard.py`` defines ``build(settings) -> grafanalib Dashboard``;
the JSON goes to ``<out>/<name>.json`` (and, with ``--k8s``, a copy to
k8s/generated/dashboards/). ``generate(config, out_dir)`` is the entry point for other
generators (``python -m monitoring.generate``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from grafanalib._gen import DashboardEncoder

from dashboards.common import Settings
from monitoring import config as monitoring_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
K8S_DIR = ROOT / "k8s" / "generated" / "dashboards"
SUFFIX = ".dashboard.py"


def sources() -> list[Path]:
    """The grafanalib sources, in a stable order."""
    return sorted(HERE.glob(f"*{SUFFIX}"))


def slug_of(path: Path) -> str:
    return path.name[: -len(SUFFIX)]


def load_source(path: Path) -> ModuleType:
    """Import a ``*.dashboard.py`` file (the dots keep it from being imported normally)."""
    spec = importlib.util.spec_from_file_location(f"dashboards._src_{slug_of(path)}", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_all(config: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Dashboard JSON (as dicts) by slug."""
    settings = Settings(config if config is not None else monitoring_config.load())
    boards = {}
    for path in sources():
        board = load_source(path).build(settings)
        boards[slug_of(path)] = json.loads(json.dumps(board.to_json_data(), cls=DashboardEncoder))
    return boards


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def rendered(config: dict[str, Any] | None = None) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{slug}.json": render(board) for slug, board in build_all(config).items()}


def files(config: dict[str, Any]) -> dict[Path, str]:
    """For ``python -m monitoring.generate``: dashboards/<name>.json, relative to the repo."""
    out = HERE.relative_to(ROOT)
    return {out / name: text for name, text in rendered(config).items()}


def generate(
    config: dict[str, Any] | None = None, out_dir: str | Path = HERE, k8s: bool = False
) -> list[Path]:
    """Write every dashboard's JSON into ``out_dir`` (and k8s/generated/dashboards/)."""
    files = rendered(config)
    written = []
    targets = [Path(out_dir)] + ([K8S_DIR] if k8s else [])
    for directory in targets:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = directory / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale(config: dict[str, Any] | None = None, out_dir: str | Path = HERE) -> list[str]:
    """Files in ``out_dir`` that differ from a fresh generation."""
    return [
        name
        for name, text in rendered(config).items()
        if not (Path(out_dir) / name).is_file()
        or (Path(out_dir) / name).read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    parser.add_argument("--config", help="monitoring config YAML (default: the committed one)")
    parser.add_argument("--out", default=str(HERE), help="output directory (default: dashboards/)")
    parser.add_argument("--k8s", action="store_true", help="also write k8s/generated/dashboards/")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    args = parser.parse_args(argv)
    config = monitoring_config.load(args.config)
    if args.check:
        names = stale(config, args.out)
        for name in names:
            print(f"{Path(args.out) / name} is stale: run python -m dashboards.generate")
        return 1 if names else 0
    for path in generate(config, args.out, k8s=args.k8s):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
