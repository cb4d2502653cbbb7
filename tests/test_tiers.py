"""The fast tier (``pytest --fast``, testsupport/tiers.py) runs exactly the tests without a tier
marker, and fails one that starts a process or uses a service outside its process, even when
the code under test swallowed the error. And the tests of one xdist_group run on one xdist
worker (testsupport/xdist_groups.py), so a module-scoped stack they share starts once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from testsupport.net import free_port
from testsupport.paths import ROOT
from testsupport.tiers import FAST_EXPRESSION, TIER_MARKERS, listening_ports

# Written next to conftest.py (as tests/test_skip_summary.py does) so it gets the project's
# conftest and plugins. SERVICE_PORT is a port the outer test listens on, outside the inner run;
# nothing listens on DOWN_PORT (a broker that is down).
TINY = """
import contextlib
import os
import socket
import subprocess
import threading

import pytest


def test_pure():
    assert sorted({3, 1, 2}) == [1, 2, 3]


def test_own_server_is_pure():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        threading.Thread(target=lambda: server.accept()[0].close(), daemon=True).start()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass


def test_down_broker_is_pure():
    with pytest.raises(ConnectionRefusedError):  # nothing listens there
        socket.create_connection(("127.0.0.1", int(os.environ["DOWN_PORT"])), timeout=5)


def test_starts_a_process():
    with contextlib.suppress(OSError):  # code that swallows the error still fails the test
        subprocess.run(["true"], check=False)


def test_uses_a_service():
    with contextlib.suppress(OSError):
        socket.create_connection(("127.0.0.1", int(os.environ["SERVICE_PORT"])), timeout=5)


@pytest.mark.redis
def test_marked_redis():
    subprocess.run(["true"], check=True)
"""


@pytest.mark.subprocess
def test_fast_tier_runs_unmarked_tests_and_fails_those_reaching_outside(unique_name):
    name = f"test_tiny_{unique_name.replace('-', '_')}"
    path = ROOT / "tests" / f"{name}.py"
    path.write_text(TINY)
    try:
        with socket.socket() as service:
            service.bind(("127.0.0.1", 0))
            service.listen()
            env = {k: v for k, v in os.environ.items() if k != "CI"}
            env["SERVICE_PORT"] = str(service.getsockname()[1])
            env["DOWN_PORT"] = str(free_port())
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no", "-q",
                 "-rA", "--fast", str(path)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
    finally:
        path.unlink()
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "2 failed, 3 passed, 1 deselected" in out.splitlines()[-1], out[-2000:]
    for test in ("test_pure", "test_own_server_is_pure", "test_down_broker_is_pure"):
        assert f"PASSED tests/{name}.py::{test}" in out
    assert f"FAILED tests/{name}.py::test_starts_a_process - " in out
    assert "not a pure test: starts a process (subprocess): mark it subprocess" in out
    assert f"FAILED tests/{name}.py::test_uses_a_service - " in out
    assert f"connects to 127.0.0.1:{env['SERVICE_PORT']}, a service outside this process" in out


def test_fast_expression_excludes_every_tier_marker():
    assert TIER_MARKERS == ("redis", "rabbitmq", "prometheus", "kubectl", "node", "subprocess")
    assert FAST_EXPRESSION == (
        "not redis and not rabbitmq and not prometheus and not kubectl and not node "
        "and not subprocess"
    )


def test_listening_ports_sees_a_socket_once_it_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert port not in listening_ports()
        sock.listen()
        assert port in listening_ports()


GROUPED = """
import os

import pytest


@pytest.fixture(scope="module")
def stack():
    with open(os.environ["GROUP_LOG"], "a") as log:
        log.write(f"{os.getpid()} stack\\n")
    return os.getpid()


@pytest.mark.parametrize("i", range(6))
@pytest.mark.xdist_group("one-stack")
def test_grouped(stack, i):
    with open(os.environ["GROUP_LOG"], "a") as log:
        log.write(f"{os.getpid()} test {i}\\n")


@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""


@pytest.mark.subprocess
@pytest.mark.slow
def test_an_xdist_group_runs_on_one_worker_with_one_module_stack(unique_name, tmp_path):
    name = f"test_tiny_{unique_name.replace('-', '_')}"
    path = ROOT / "tests" / f"{name}.py"
    path.write_text(GROUPED)
    log = tmp_path / "group.log"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no", "-q",
             "-n", "3", "--dist", "loadgroup", str(path)],
            cwd=ROOT, env={**os.environ, "GROUP_LOG": str(log)}, capture_output=True,
            text=True, timeout=180,
        )  # fmt: skip
    finally:
        path.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = log.read_text().splitlines()
    assert len({line.split()[0] for line in lines}) == 1, lines  # one worker
    assert [line.split(" ", 1)[1] for line in lines] == ["stack"] + [f"test {i}" for i in range(6)]
