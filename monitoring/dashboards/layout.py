"""Draw each dashboard's panel grid (titles, types, rows) to docs/img/<name>.png.

    python -m monitoring.dashboards.layout [--out docs/img]

A picture of what a dashboard holds before importing it; reads the committed JSON in
dashboards/, so run ``python -m monitoring.generate`` first. Needs matplotlib (the ``test``
extra).
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
OUT = ROOT / "docs" / "img"

#: Grafana draws a grid row 30 px high and a column 1/24 of the width (~80 px at 1920 px).
ROW_TO_COLUMN = 30 / 80 * 1.25
COLOURS = {
    "stat": "#d6eaf8",
    "timeseries": "#e8f6f3",
    "bargauge": "#fdebd0",
    "table": "#f4ecf7",
    "heatmap": "#fadbd8",
}


def render(board: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    panels = board["panels"]
    depth = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width_in = 16.0
    height_in = width_in / 24 * depth * ROW_TO_COLUMN + 1.2
    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=100)
    ax.set_xlim(0, 24)
    ax.set_ylim(depth * ROW_TO_COLUMN, 0)
    ax.axis("off")
    for panel in panels:
        pos = panel["gridPos"]
        x, y = pos["x"], pos["y"] * ROW_TO_COLUMN
        w, h = pos["w"], pos["h"] * ROW_TO_COLUMN
        if panel["type"] == "row":
            ax.add_patch(Rectangle((x, y), w, h, facecolor="#34495e", edgecolor="none"))
            ax.text(x + 0.2, y + h / 2, panel["title"], color="white", va="center", fontsize=11,
                    fontweight="bold")  # fmt: skip
            continue
        ax.add_patch(
            Rectangle(
                (x + 0.08, y + 0.04), w - 0.16, h - 0.08,
                facecolor=COLOURS.get(panel["type"], "#eeeeee"), edgecolor="#7f8c8d",
                linewidth=1,
            )
        )  # fmt: skip
        chars = max(10, int(w * 4.6))
        title = "\n".join(textwrap.wrap(panel["title"], chars)[:3])
        ax.text(x + 0.3, y + 0.2, title, va="top", ha="left", fontsize=9.5, fontweight="bold")
        alerts = [
            link["title"][9:] for link in panel["links"] if link["title"].startswith("Runbook: ")
        ]
        if alerts:
            ax.text(x + 0.3, y + h - 0.15, "runbook: " + ", ".join(alerts) if w >= 12 else
                    f"{len(alerts)} runbook link(s)", va="bottom", ha="left", fontsize=7.5,
                    color="#a04000")  # fmt: skip
        ax.text(x + w - 0.3, y + h - 0.15, panel["type"], va="bottom", ha="right", fontsize=8,
                color="#566573", style="italic")  # fmt: skip
    legend = [Patch(facecolor=c, edgecolor="#7f8c8d", label=t) for t, c in COLOURS.items()]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(legend),
              frameon=False, fontsize=9)  # fmt: skip
    variables = ", ".join(f"${v['name']}" for v in board["templating"]["list"])
    ax.set_title(
        f"{board['title']}  (uid {board['uid']})\nvariables: {variables}",
        fontsize=12,
        loc="left",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.dashboards.layout", description=__doc__
    )
    parser.add_argument("--out", default=str(OUT), help="output directory (default: docs/img)")
    args = parser.parse_args(argv)
    for source in sorted(DASHBOARD_DIR.glob("*.json")):
        board = json.loads(source.read_text(encoding="utf-8"))
        target = Path(args.out) / f"{source.stem}.png"
        render(board, target)
        print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
