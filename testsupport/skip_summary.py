"""Ends a local run that skipped tests with one line: how many, and the command that runs them.

Without ``CI`` a test whose service is missing skips (``testsupport.services.missing_service``);
pytest's own closing line then still looks green, so a user could take a partial run for a
full one. This plugin prints, after pytest's summary, e.g.::

    SKIPPED 24 of 230 tests (services or tools missing); to run them: bash scripts/test.sh

``bash scripts/test.sh`` installs and starts what is missing and runs with ``CI=true``, where a
missing service fails instead of skipping. Nothing is printed under ``CI`` or when nothing was
skipped. Registered in tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import os

import pytest

RUN_THEM = "bash scripts/test.sh"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_line(skipped: int, total: int, files: list[str]) -> str:
    """The closing line; names the test files when a few hold every skip."""
    command = RUN_THEM
    if files and len(" ".join(files)) <= 120:
        command = f"{RUN_THEM} {' '.join(files)}"
    return (
        f"SKIPPED {skipped} of {total} tests (services or tools missing); to run them: " + command
    )


RAN = ("passed", "failed", "skipped", "error", "xfailed", "xpassed")


def pytest_unconfigure(config: pytest.Config) -> None:
    """After pytest's own summary line, so the skip line is the run's last line.

    The total is the tests that reported (not ``session.testscollected``): under pytest-xdist
    the controller collects nothing itself, and deselected tests are not part of the run.
    """
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or _in_ci() or hasattr(config, "workerinput"):
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if getattr(r, "nodeid", "")]
    if not skipped:
        return
    files = sorted({r.nodeid.split("::")[0] for r in skipped})
    ran = {r.nodeid for key in RAN for r in reporter.stats.get(key, []) if getattr(r, "nodeid", "")}
    total = len(ran)
    reporter.write_line(skip_line(len(skipped), total, files), yellow=True, bold=True)
