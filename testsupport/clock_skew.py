"""A producer process whose clock is skewed (libfaketime), for the clock-skew tests
(tests/test_oncall_scenarios.py): tests/apps/skewed_producer.py under ``faketime``.

libfaketime (Debian package ``faketime``, installed by scripts/bootstrap.sh for tests) shifts
``time.time()`` of that one process by a fixed offset while the clock keeps running. Monotonic
clocks are shifted too (the default): with ``FAKETIME_DONT_FAKE_MONOTONIC=1``, Python's
``time.sleep`` (an absolute ``clock_nanosleep`` on CLOCK_MONOTONIC) fails with EINVAL under
libfaketime 0.9.10; a shifted monotonic clock only moves its origin, intervals stay real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from testsupport.paths import ROOT
from testsupport.services import missing_service

TESTS = ROOT / "tests"


def faketime() -> str:
    binary = shutil.which("faketime")
    if binary is None:
        missing_service("faketime is not installed (Debian package faketime)")
    return binary  # type: ignore[return-value]


def skewed_producer(
    url: str,
    queue: str,
    *,
    skew_seconds: int,
    host: str,
    count: int = 0,
    every: float = 0.5,
    task_seconds: float = 0.05,
    sent_event: bool = True,
) -> subprocess.Popen:
    """Start the producer ``skew_seconds`` off (positive: ahead) as host ``host``, with
    task-sent events or not; its stdout says ``sent N`` per task and ``done`` at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKETIME")}
    env.update(
        PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}",
        CQE_HOSTNAME=host,
        CQE_SENT_EVENT="1" if sent_event else "0",
    )
    command = [
        faketime(), "-f", f"{skew_seconds:+d}s",
        sys.executable, str(TESTS / "apps" / "skewed_producer.py"),
        url, queue, str(count), str(every), str(task_seconds),
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
