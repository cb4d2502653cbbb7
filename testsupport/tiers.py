"""The test tiers: markers that say what a test needs, ``--fast`` for the tests needing nothing.

Every test that needs more than this Python process carries a tier marker (per test, not per
module, where a module mixes pure and service tests):

* ``redis``: a redis-server (private servers the test starts);
* ``rabbitmq``: the machine's RabbitMQ on 127.0.0.1:5672 (or a private node it starts);
* ``prometheus``: a binary of the Prometheus project (prometheus, promtool, alertmanager,
  amtool);
* ``kubectl``: the Kubernetes and container tools (kubectl kustomize, hadolint);
* ``node``: the Node tools of tests/node (npm, tsc, ajv);
* ``subprocess``: any other process (the exporter's CLI, scripts, pip, a nested pytest).

``slow`` (more than a few seconds) is orthogonal. A test with none of the tier markers is pure:
``pytest --fast`` (what ``bash scripts/test.sh --fast`` runs) selects exactly those and keeps
them honest: during the fast tier a test that starts a process, or connects to a TCP port that
something outside this process listens on (or to any non-loopback address), fails and names
the marker it lacks. Connecting to a server the test started in-process, or to a loopback port
nobody listens on (a broker that is down), stays pure.

Registered from tests/conftest.py (``pytest_plugins``); the markers are declared in
pyproject.toml.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

#: Markers that take a test out of the fast tier.
TIER_MARKERS = ("redis", "rabbitmq", "prometheus", "kubectl", "node", "subprocess")
FAST_EXPRESSION = " and ".join(f"not {name}" for name in TIER_MARKERS)
LOOPBACK = {"127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="run only pure tests (no tier marker: " + ", ".join(TIER_MARKERS) + "), and fail "
        "one that starts a process or connects to a service",
    )


def is_pure(item: pytest.Item) -> bool:
    return not any(item.get_closest_marker(name) for name in TIER_MARKERS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("fast"):
        return
    keep = [item for item in items if is_pure(item)]
    dropped = [item for item in items if not is_pure(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


# --- the guard --------------------------------------------------------------------------------


class Guard:
    """Records what a pure test must not do; patched in for the fast tier only (a service
    fixture's background thread of an earlier test must never trip it in a full run)."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.own_ports: set[int] = set()
        self._saved: list[tuple[Any, str, Any]] = []

    # Listening sockets of this process: connecting to them is pure.
    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def install(self) -> None:
        guard = self
        real_bind = socket.socket.bind
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex

        def bind(sock: socket.socket, address: Any) -> None:
            real_bind(sock, address)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                guard.own_ports.add(sock.getsockname()[1])

        def check(sock: socket.socket, address: Any) -> None:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return
            host, port = address[0], address[1]
            if host not in LOOPBACK:
                problem = f"connects to {host}:{port} (not loopback)"
            elif port not in guard.own_ports and port in listening_ports():
                problem = (
                    f"connects to 127.0.0.1:{port}, a service outside this process "
                    "(mark it redis, rabbitmq, prometheus, ...)"
                )
            else:
                return
            guard.violations.append(problem)
            # Refused, as a down service would be: the test ends soon instead of using it.
            raise ConnectionRefusedError(f"the fast tier {problem}")

        def connect(sock: socket.socket, address: Any) -> None:
            check(sock, address)
            return real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            check(sock, address)
            return real_connect_ex(sock, address)

        def no_process(what: str) -> Any:
            def refuse(*args: Any, **kwargs: Any) -> Any:
                guard.violations.append(f"starts a process ({what}): mark it subprocess")
                raise PermissionError(f"the fast tier starts no process ({what})")

            return refuse

        self._patch(socket.socket, "bind", bind)
        self._patch(socket.socket, "connect", connect)
        self._patch(socket.socket, "connect_ex", connect_ex)
        self._patch(subprocess.Popen, "_execute_child", no_process("subprocess"))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            if hasattr(os, name):
                self._patch(os, name, no_process(f"os.{name}"))

    def uninstall(self) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state on this machine (/proc/net/tcp and tcp6, state 0A)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


GUARD = pytest.StashKey[Guard]()


def pytest_configure(config: pytest.Config) -> None:
    # Under xdist the controller starts the workers (processes) and runs no test: the guard
    # goes into each worker only.
    controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(
        config, "workerinput"
    )
    if config.getoption("fast", default=False) and not controller:
        guard = Guard()
        guard.install()
        config.stash[GUARD] = guard


def pytest_unconfigure(config: pytest.Config) -> None:
    guard = config.stash.get(GUARD, None)
    if guard is not None:
        guard.uninstall()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    guard = item.config.stash.get(GUARD, None)
    if guard is not None:
        guard.violations.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fails the phase (set-up, call, teardown) of a fast-tier test that reached for a process
    or a service, even when the code under test caught the error the guard raised."""
    report = yield
    guard = item.config.stash.get(GUARD, None)
    if guard is None or not guard.violations:
        return report
    problem = "not a pure test: " + "; ".join(dict.fromkeys(guard.violations))
    guard.violations.clear()
    if report.failed:
        problem += "\n\n" + str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = problem
    return report
