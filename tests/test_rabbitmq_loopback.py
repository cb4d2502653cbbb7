"""The RabbitMQ that scripts/bootstrap.sh starts listens on loopback only.

bootstrap.sh configures the machine's node with scripts/rabbitmq-loopback.sh before starting
it. The machine's node is shared and never restarted here: a private node on spare ports gets
its configuration from the same script (files only; none of the loopback settings come from
the environment) and its own epmd on a spare port, and ``ss -ltnp`` shows what each listens on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testsupport.net import free_port, port_open
from testsupport.paths import ROOT
from testsupport.rabbitmq_node import RabbitMQNode, running_node
from testsupport.services import missing_service
from testsupport.waiting import wait_for

pytestmark = pytest.mark.rabbitmq

SCRIPT = ROOT / "scripts" / "rabbitmq-loopback.sh"
# The environment settings RabbitMQNode uses to keep a node on loopback; left out here so the
# script's files alone must do it.
LOOPBACK_ENV = ("RABBITMQ_NODE_IP_ADDRESS", "RABBITMQ_NODE_PORT", "ERL_EPMD_ADDRESS", "ERL_FLAGS")
LOOPBACK_ADDRESSES = {"127.0.0.1", "[::1]"}  # epmd always adds ::1 where IPv6 is up


def write_loopback_config(directory: Path, amqp_port: int, management_port: int) -> None:
    subprocess.run(
        ["bash", str(SCRIPT), str(directory), str(amqp_port), str(management_port)], check=True
    )


class ScriptConfiguredNode(RabbitMQNode):
    """A private node configured like bootstrap configures the machine's node."""

    def __init__(self, workdir: Path) -> None:
        self.epmd_port = free_port()
        super().__init__(workdir)

    def _write_files(self) -> None:
        super()._write_files()  # directories and enabled_plugins
        # Only what a test node needs beyond the script: guest from 127.0.0.1, a small disk.
        (self.workdir / "rabbitmq.conf").write_text(
            "loopback_users = none\ndisk_free_limit.absolute = 1MB\n"
        )
        (self.workdir / "rabbitmq-env.conf").write_text("")
        write_loopback_config(self.workdir, self.amqp_port, self.management_port or 0)

    def stop(self) -> None:
        super().stop()
        # The node's own epmd outlives it (a daemon): stop it by its port.
        env = {**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)}
        subprocess.run(["epmd", "-kill"], env=env, capture_output=True, timeout=10)
        wait_for(lambda: not port_open(self.epmd_port), timeout=10, what="epmd gone")

    def environment(self) -> dict[str, str]:
        env = super().environment()
        for name in LOOPBACK_ENV:
            env.pop(name, None)
        env["ERL_EPMD_PORT"] = str(self.epmd_port)  # its own epmd, started by the node
        return env


def listeners() -> list[tuple[str, int, set[int]]]:
    """(address, port, pids) of every listening TCP socket (``ss -ltnp``; needs root)."""
    out = subprocess.run(["ss", "-ltnpH"], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        found.append((address, int(port), {int(p) for p in re.findall(r"pid=(\d+)", line)}))
    return found


def process_group(pgid: int) -> set[int]:
    """Pids whose process group is ``pgid`` (the node: beam.smp and its helpers)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.add(int(entry.name))
            except ProcessLookupError:
                continue
    return pids


@pytest.fixture
def script_node() -> Iterator[ScriptConfiguredNode]:
    if shutil.which("ss") is None or shutil.which("epmd") is None:
        missing_service("ss (iproute2) or epmd (erlang) is not installed")
    with running_node(ScriptConfiguredNode) as node:
        yield node


def test_every_port_of_a_node_configured_by_the_script_is_on_loopback(script_node):
    assert script_node.process is not None
    node_pids = process_group(script_node.process.pid)
    node_sockets = {(a, p) for a, p, pids in listeners() if pids & node_pids}
    assert node_sockets == {
        ("127.0.0.1", script_node.amqp_port),
        ("127.0.0.1", script_node.management_port),
        ("127.0.0.1", script_node.dist_port),
    }
    epmd_addresses = {a for a, p, _ in listeners() if p == script_node.epmd_port}
    assert "127.0.0.1" in epmd_addresses
    assert epmd_addresses <= LOOPBACK_ADDRESSES, epmd_addresses


def test_the_script_is_idempotent_and_names_a_loopback_node(tmp_path):
    write_loopback_config(tmp_path, 5672, 15672)
    first = {name: (tmp_path / name).read_text() for name in ("rabbitmq.conf", "rabbitmq-env.conf")}
    write_loopback_config(tmp_path, 5672, 15672)
    assert {name: (tmp_path / name).read_text() for name in first} == first
    assert first["rabbitmq.conf"].splitlines()[1:] == [
        "listeners.tcp.default = 127.0.0.1:5672",
        "management.tcp.ip = 127.0.0.1",
        "management.tcp.port = 15672",
    ]
    assert first["rabbitmq-env.conf"].splitlines()[1:] == [
        "NODENAME=rabbit@localhost",
        "NODE_IP_ADDRESS=127.0.0.1",
        "NODE_PORT=5672",
        "ERL_EPMD_ADDRESS=127.0.0.1",
        'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"',
    ]
