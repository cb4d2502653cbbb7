"""Stopping a process a test or benchmark started: politely first, then for certain."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

KILL_WAIT_SECONDS = 10.0


def stop_process(
    process: subprocess.Popen | None, timeout: float = 15.0, *, group: bool = False
) -> None:
    """SIGTERM and wait up to ``timeout`` seconds; then SIGKILL and wait.

    With ``group`` the SIGKILL goes to the process's whole group: a process started with
    ``start_new_session=True`` (a Celery worker and its pool children, a script and what it
    spawned) leaves nothing behind. A process that already exited is left alone.
    """
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(timeout=KILL_WAIT_SECONDS)


def proc_status(pid: int, *fields: str) -> dict[str, int]:
    """Numeric fields of /proc/PID/status (``Threads``, ``VmRSS`` in KiB, ...), Linux only."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in fields:
            values[key] = int(rest.split()[0])
    return values
