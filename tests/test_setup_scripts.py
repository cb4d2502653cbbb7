"""The set-up scripts as a user runs them: a second set-up installs nothing, run.sh starts no
service for a broker the user named, and bootstrap refuses a piece it does not know."""

from __future__ import annotations

import subprocess

import pytest

from testsupport.net import free_port
from testsupport.paths import ROOT

SCRIPTS = ROOT / "scripts"


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.subprocess
def test_setup_again_installs_nothing():
    """test.sh already ran the set-up (or the developer did): every piece is there, so a new
    run neither installs a package nor reinstalls .venv or tests/node."""
    result = run_script(str(SCRIPTS / "bootstrap.sh"), "--for", "run,demo,test")
    assert result.returncode == 0, result.stderr
    installed = [line for line in result.stderr.splitlines() if "installing" in line]
    # Fails once after pyproject.toml or the lock changed without a set-up since (stale .venv).
    assert installed == [], "a second set-up installed again; the first run above brought it up"
    assert result.stderr.splitlines()[-1] == "bootstrap: ready (run,demo,test)"


@pytest.mark.subprocess
def test_run_with_a_named_broker_that_is_down_says_so_and_starts_nothing():
    port = free_port()  # nothing listens there
    result = run_script(
        str(SCRIPTS / "run.sh"), "--once", "--broker-url", f"redis://127.0.0.1:{port}/0"
    )
    assert result.returncode == 1  # --once: 1 when a broker is down
    assert (
        f"run: note: nothing answers on 127.0.0.1:{port}; the exporter reports that broker "
        "down (celery_broker_up 0) until it does"
    ) in result.stderr
    assert "starting" not in result.stderr
    assert "bootstrap: ready (run)" in result.stderr  # the run piece only
    assert f'celery_broker_up{{broker="redis-127.0.0.1-{port}-0"}} 0.0' in result.stdout


@pytest.mark.subprocess
def test_bootstrap_refuses_an_unknown_piece():
    result = run_script(str(SCRIPTS / "bootstrap.sh"), "--for", "run,everything")
    assert result.returncode == 2
    assert result.stderr == "bootstrap: unknown piece 'everything' (run, redis, demo, test)\n"
