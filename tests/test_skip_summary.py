"""A local run (CI unset) that skipped service tests ends with one line saying how many and
the command that runs them; under CI=true the same tests fail instead
(testsupport/skip_summary.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testsupport.skip_summary import skip_line

ROOT = Path(__file__).resolve().parent.parent

# Three tests: two whose "service" is missing (missing_service skips them locally), one that
# runs. Written next to conftest.py so it gets the project's conftest and plugins.
TINY = """
from testsupport.services import missing_service


def test_needs_a_broker():
    missing_service("the test broker is not answering")


def test_needs_another():
    missing_service("the other broker is not answering")


def test_runs():
    assert 1 + 1 == 2
"""


def run_tiny(tmp_name: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    path = ROOT / "tests" / f"{tmp_name}.py"
    path.write_text(TINY)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    try:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no", str(path)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        path.unlink()


@pytest.mark.subprocess
@pytest.mark.slow
def test_local_run_with_skips_ends_with_the_count_and_the_command(unique_name):
    name = f"test_tiny_{unique_name.replace('-', '_')}"
    result = run_tiny(name, ci=None)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[-2].startswith("=") and "1 passed, 2 skipped" in lines[-2], lines[-3:]
    assert lines[-1] == (
        "SKIPPED 2 of 3 tests (services or tools missing); to run them: "
        f"bash scripts/test.sh tests/{name}.py"
    )


@pytest.mark.subprocess
@pytest.mark.slow
def test_ci_run_fails_the_same_tests_and_prints_no_skip_line(unique_name):
    name = f"test_tiny_{unique_name.replace('-', '_')}"
    result = run_tiny(name, ci="true")
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 failed, 1 passed" in lines[-1], lines[-3:]
    assert "CI: required service missing: the test broker is not answering" in result.stdout
    assert not any(line.startswith("SKIPPED ") for line in lines)


def test_skip_line_names_the_files_only_while_the_command_stays_short():
    assert skip_line(1, 5, ["tests/test_a.py"]) == (
        "SKIPPED 1 of 5 tests (services or tools missing); to run them: "
        "bash scripts/test.sh tests/test_a.py"
    )
    many = [f"tests/test_module_number_{i}.py" for i in range(10)]
    assert skip_line(30, 230, many) == (
        "SKIPPED 30 of 230 tests (services or tools missing); to run them: bash scripts/test.sh"
    )
