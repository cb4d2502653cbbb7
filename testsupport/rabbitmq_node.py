"""A private RabbitMQ node on spare ports, for tests that must stop or break a broker.

The machine's node (rabbit@localhost on 5672/15672) is shared by everyone and is never
stopped; a test that needs a broker to go away starts its own node with the
``private_rabbitmq`` fixture:

    def test_something(private_rabbitmq):
        url = private_rabbitmq.amqp_url          # amqp://guest:guest@127.0.0.1:<port>//
        api = private_rabbitmq.management_url    # http://127.0.0.1:<port>
        private_rabbitmq.stop()                  # SIGTERM, wait until the ports are closed
        private_rabbitmq.start()                 # same node name, data and ports again
        private_rabbitmq.pause()                 # SIGSTOP: ports open, nothing answers
        private_rabbitmq.resume()                # SIGCONT

The node lives in a temporary directory (mnesia, logs, config, enabled plugins, its own
Erlang cookie via HOME), is named ``cqe-<random>@localhost``, registers with the machine's
epmd on 127.0.0.1, and is stopped and removed when the test ends. It runs as the current user
(root works; so does the rabbitmq user or any user that can run ``rabbitmq-server``).
Starting takes a few seconds (the management plugin is the slow part); pass
``management=False`` to ``RabbitMQNode`` for a faster node without it, and ``tls=NodeTLS(...)``
(or ``running_node(tls=...)``) for an AMQPS listener and the management API over HTTPS, both
requiring client certificates.

To use the fixture, name this module as a plugin in the test module:
``pytest_plugins = ["testsupport.rabbitmq_node"]``; the helpers are plain imports:
``from testsupport.rabbitmq_node import RabbitMQNode``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testsupport.net import free_port, port_open
from testsupport.services import missing_service
from testsupport.waiting import wait_for

RABBITMQ_SERVER_CANDIDATES = (
    "/usr/lib/rabbitmq/bin/rabbitmq-server",  # Debian: the real script, not the su wrapper
    "rabbitmq-server",
)
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0


def _server_binary() -> str | None:
    for candidate in RABBITMQ_SERVER_CANDIDATES:
        found = shutil.which(candidate) if "/" not in candidate else candidate
        if found and os.access(found, os.X_OK):
            return found
    return None


@dataclass(frozen=True)
class NodeTLS:
    """PEM files for a node's TLS listeners (server side) and for its own readiness checks
    (a client certificate from the same CA)."""

    ca_file: str
    cert_file: str
    key_file: str
    client_cert_file: str
    client_key_file: str

    def config_lines(self, prefix: str) -> list[str]:
        """rabbitmq.conf lines: this CA, this certificate, client certificates required."""
        return [
            f"{prefix}.cacertfile = {self.ca_file}",
            f"{prefix}.certfile = {self.cert_file}",
            f"{prefix}.keyfile = {self.key_file}",
            f"{prefix}.verify = verify_peer",
            f"{prefix}.fail_if_no_peer_cert = true",
        ]

    def requests_arguments(self) -> dict:
        return {"verify": self.ca_file, "cert": (self.client_cert_file, self.client_key_file)}


class RabbitMQNode:
    """One private RabbitMQ node; ``start()`` and ``stop()`` may be called repeatedly."""

    def __init__(
        self,
        workdir: Path,
        management: bool = True,
        tls: NodeTLS | None = None,
        prometheus: bool = False,
    ) -> None:
        self.workdir = workdir
        self.management = management
        #: With ``prometheus``: the rabbitmq_prometheus plugin on a port of its own (plain HTTP).
        self.prometheus = prometheus
        #: With TLS: an AMQPS listener next to the plain one, and the management API over
        #: HTTPS only; both require a client certificate from the same CA.
        self.tls = tls
        self.nodename = f"cqe-{uuid.uuid4().hex[:10]}@localhost"
        self.amqp_port = free_port()
        self.amqps_port = free_port() if tls else None
        self.dist_port = free_port()
        self.management_port = free_port() if management else None
        self.prometheus_port = free_port() if prometheus else None
        self.user = "guest"
        self.password = "guest"
        self.process: subprocess.Popen | None = None
        self._log = None
        self._paused = False
        self._write_files()

    # --- addresses --------------------------------------------------------------------------

    @property
    def amqp_url(self) -> str:
        """AMQP URL of the node's default vhost ``/``."""
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.amqp_port}//"

    @property
    def amqps_url(self) -> str | None:
        """AMQP over TLS URL of the default vhost (None without TLS)."""
        if self.amqps_port is None:
            return None
        return f"amqps://{self.user}:{self.password}@127.0.0.1:{self.amqps_port}//"

    @property
    def management_url(self) -> str | None:
        """Base URL of the management HTTP API (None when started without it); https with
        TLS."""
        if self.management_port is None:
            return None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.management_port}"

    @property
    def prometheus_url(self) -> str | None:
        """Base URL of the rabbitmq_prometheus plugin (None when started without it)."""
        if self.prometheus_port is None:
            return None
        return f"http://127.0.0.1:{self.prometheus_port}"

    # --- files ------------------------------------------------------------------------------

    def _write_files(self) -> None:
        for sub in ("mnesia", "log", "home"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            "loopback_users = none",
            # Keep a small test node from refusing publishes on a busy, full-ish machine.
            "disk_free_limit.absolute = 1MB",
        ]
        if self.tls is not None:
            lines += [f"listeners.ssl.default = 127.0.0.1:{self.amqps_port}"]
            lines += self.tls.config_lines("ssl_options")
        if self.management_port is not None and self.tls is not None:
            lines += [
                f"management.ssl.port = {self.management_port}",
                "management.ssl.ip = 127.0.0.1",
                *self.tls.config_lines("management.ssl"),
            ]
        elif self.management_port is not None:
            lines += [
                f"management.tcp.port = {self.management_port}",
                "management.tcp.ip = 127.0.0.1",
            ]
        if self.prometheus_port is not None:
            lines += [
                f"prometheus.tcp.port = {self.prometheus_port}",
                "prometheus.tcp.ip = 127.0.0.1",
            ]
        (self.workdir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        plugins = ["rabbitmq_management"] if self.management else []
        if self.prometheus:
            plugins.append("rabbitmq_prometheus")
        (self.workdir / "enabled_plugins").write_text(f"[{','.join(plugins)}].\n")
        # An empty env file, so the machine's /etc/rabbitmq/rabbitmq-env.conf is not read.
        (self.workdir / "rabbitmq-env.conf").write_text("")

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "HOME": str(self.workdir / "home"),  # the node's own .erlang.cookie
                "RABBITMQ_NODENAME": self.nodename,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
                "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            }
        )
        return env

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the node and wait until AMQP (and the management API) answer."""
        if self.process is not None and self.process.poll() is None:
            return
        binary = _server_binary()
        if binary is None:
            missing_service("rabbitmq-server is not installed")
        self._log = open(self.workdir / "log" / "console.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [binary],
            env=self.environment(),
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends only this node
        )
        try:
            wait_for(
                self._ready, timeout=START_TIMEOUT_SECONDS, what=f"RabbitMQ node {self.nodename}"
            )
        except AssertionError:
            tail = self.console_tail()
            self.stop()
            raise AssertionError(f"private RabbitMQ node did not start; console:\n{tail}") from None

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(
                f"rabbitmq-server exited with {self.process and self.process.returncode}; "
                f"console:\n{self.console_tail()}"
            )
        if not port_open(self.amqp_port):
            return False
        if self.prometheus_port is not None and not port_open(self.prometheus_port):
            return False
        if self.management_port is None:
            return True
        return self._management_answers()

    def _management_answers(self) -> bool:
        import requests

        try:
            reply = requests.get(
                f"{self.management_url}/api/overview",
                auth=(self.user, self.password),
                timeout=2,
                **(self.tls.requests_arguments() if self.tls else {}),
            )
        except requests.RequestException:
            return False
        return reply.status_code == 200

    def stop(self) -> None:
        """Stop the node (SIGTERM: a clean shutdown) and wait until its ports are closed."""
        if self._paused:
            self.resume()
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        wait_for(
            lambda: not port_open(self.amqp_port), timeout=STOP_TIMEOUT_SECONDS, what="AMQP down"
        )

    def pause(self) -> None:
        """Freeze the node (SIGSTOP): its ports stay open but nothing answers, like a hung
        broker. Always ``resume()`` (stop() does it too)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Let a paused node run again (SIGCONT)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)
        self._paused = False

    def console_tail(self, lines: int = 40) -> str:
        path = self.workdir / "log" / "console.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console log)"


@contextlib.contextmanager
def running_node(
    node_class: type[RabbitMQNode] = RabbitMQNode,
    tls: NodeTLS | None = None,
    prometheus: bool = False,
) -> Iterator[RabbitMQNode]:
    """A started node of ``node_class`` in a temporary directory, stopped and removed after;
    ``prometheus``: with the rabbitmq_prometheus plugin too."""
    if _server_binary() is None:
        missing_service("rabbitmq-server is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="cqe-rabbitmq-"))
    extra: dict = {}
    if tls:
        extra["tls"] = tls
    if prometheus:
        extra["prometheus"] = True
    node = node_class(workdir, **extra)
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def private_rabbitmq() -> Iterator[RabbitMQNode]:
    """A private, started RabbitMQ node with the management plugin, removed afterwards."""
    with running_node() as node:
        yield node
