"""Private Redis set-ups for the production-broker tests: a master with a replica and three
sentinels, and a TLS-only server with certificates from a private CA (made with openssl).

Every process runs on spare ports in a temporary directory and is stopped by the context
manager that started it; the machine's Redis on 6379 is never touched.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from testsupport.net import free_port
from testsupport.services import missing_service
from testsupport.waiting import wait_for

MASTER_NAME = "cqe-master"


def _redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("redis-server is not installed")
    return str(binary)


@dataclass
class Processes:
    """Processes started for one test, stopped in reverse order."""

    started: list[subprocess.Popen] = field(default_factory=list)

    def start(self, args: list[str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


def _plain_server(processes: Processes, workdir: Path, name: str, *extra: str) -> int:
    port = free_port()
    processes.start(
        [_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), *extra],
        workdir / f"{name}.log",
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port)
    wait_for(lambda: _pings(client), 10, what=f"redis {name} on {port}")
    return port


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@dataclass
class SentinelSet:
    master_port: int
    replica_port: int
    sentinel_ports: list[int]

    def url(self, db: int = 0) -> str:
        return ";".join(f"sentinel://127.0.0.1:{port}/{db}" for port in self.sentinel_ports)

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[index], decode_responses=True)

    def master_port_now(self) -> int:
        host, port = self.sentinel().sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)


@contextlib.contextmanager
def sentinel_set() -> Iterator[SentinelSet]:
    """A master, a replica of it and three sentinels watching it (quorum 2)."""
    workdir = Path(tempfile.mkdtemp(prefix="cqe-sentinel-"))
    processes = Processes()
    try:
        master = _plain_server(processes, workdir, "master")
        replica = _plain_server(
            processes, workdir, "replica", "--replicaof", "127.0.0.1", str(master)
        )
        wait_for(
            lambda: redis.Redis(port=replica).info("replication").get("master_link_status") == "up",
            15,
            what="replica in sync",
        )
        ports = []
        for i in range(3):
            port = free_port()
            conf = workdir / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 2000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            )
            processes.start(
                [_redis_server(), str(conf), "--sentinel"], workdir / f"sentinel-{i}.log"
            )
            ports.append(port)
        topology = SentinelSet(master, replica, ports)
        for i in range(3):
            wait_for(lambda i=i: _knows_replica(topology, i), 20, what=f"sentinel {i} ready")
        yield topology
    finally:
        processes.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _knows_replica(topology: SentinelSet, index: int) -> bool:
    try:
        return bool(topology.sentinel(index).sentinel_slaves(MASTER_NAME))
    except redis.ConnectionError:
        return False


# --- TLS ----------------------------------------------------------------------------------


@dataclass
class Pki:
    """A private CA and certificates it signed (server for 127.0.0.1/localhost, client), plus
    a second, unrelated CA for the wrong-CA cases."""

    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> Pki:
    """ca.pem/ca.key, server.pem/server.key (SAN 127.0.0.1, localhost), client.pem/client.key,
    other-ca.pem: all with openssl, EC keys (fast)."""
    if shutil.which("openssl") is None:
        missing_service("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN=cqe test {ca}")  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for leaf in ("server", "client"):
        _openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr",
                 "-subj", f"/CN=cqe test {leaf}")  # fmt: skip
        _openssl(directory, "x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.pem",
                 "-CAkey", "ca.key", "-CAcreateserial", "-out", f"{leaf}.pem", "-days", "2",
                 "-extfile", f"{leaf}.ext")  # fmt: skip
    for key in directory.glob("*.key"):
        key.chmod(0o644)  # readable by a RabbitMQ node running as another user
    return Pki(directory)


@contextlib.contextmanager
def tls_redis(pki: Pki, password: str) -> Iterator[int]:
    """A redis-server answering only TLS (``--port 0``), requiring client certificates from
    the private CA and a password; yields its TLS port."""
    workdir = Path(tempfile.mkdtemp(prefix="cqe-redis-tls-"))
    processes = Processes()
    port = free_port()
    try:
        processes.start(
            [_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", pki.path("server.pem"), "--tls-key-file", pki.path("server.key"),
             "--tls-ca-cert-file", pki.path("ca.pem"), "--tls-auth-clients", "yes",
             "--requirepass", password, "--save", "", "--appendonly", "no",
             "--dir", str(workdir)],
            workdir / "redis.log",
        )  # fmt: skip
        client = tls_client(pki, port, password)
        wait_for(lambda: _pings(client), 10, what=f"TLS redis on {port}")
        yield port
    finally:
        processes.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def tls_client(pki: Pki, port: int, password: str) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, password=password, ssl=True,
        ssl_ca_certs=pki.path("ca.pem"), ssl_certfile=pki.path("client.pem"),
        ssl_keyfile=pki.path("client.key"),
    )  # fmt: skip
