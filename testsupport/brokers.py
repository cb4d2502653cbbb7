"""The broker generations tests run against, and where each one listens.

* ``rabbitmq-3``: the machine's Debian 12 RabbitMQ 3.10 (AMQP 5672, management 15672);
* ``rabbitmq-4``: RabbitMQ 4.0.5 from the Debian 13 root that ``scripts/debian13-brokers.sh``
  starts (``bootstrap.sh --for test`` runs it): AMQP 5682, management 15682, its own epmd 4370;
* ``redis-8``: Redis 8.0.2 from the same root on 6389 (the machine's Redis 7 is on 6379), and
  ``Redis8Server``, a private Redis 8 process on a spare port, as ``RedisServer`` is for 7.0.

Every generation is reached on 127.0.0.1 with guest/guest; a test works in a vhost of its own
(``create_vhost``/``delete_vhost`` on that generation's management API).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .net import port_open
from .rabbitmq import GUEST, create_vhost, delete_vhost
from .redis_server import RedisServer
from .waiting import ServiceError, wait_for


@dataclass(frozen=True)
class RabbitMQGeneration:
    """One RabbitMQ node of a given generation, as the tests reach it."""

    name: str
    amqp_port: int
    management_port: int
    #: How to get it running when it does not answer.
    hint: str

    @property
    def management_api(self) -> str:
        return f"http://127.0.0.1:{self.management_port}/api"

    @property
    def management_url(self) -> str:
        """The exporter's --management-url for this node."""
        return f"http://127.0.0.1:{self.management_port}"

    def url(self, vhost: str = "/") -> str:
        """A kombu AMQP URL for ``vhost``."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"

    def answers(self) -> bool:
        return port_open(self.amqp_port) and port_open(self.management_port)

    def version(self) -> str:
        """The node's RabbitMQ version, from its management API."""
        import requests  # a test dependency

        reply = requests.get(f"{self.management_api}/overview", auth=GUEST, timeout=10)
        reply.raise_for_status()
        return str(reply.json()["rabbitmq_version"])

    def create_vhost(self, name: str) -> str:
        """Create vhost ``name`` on this node, usable by guest; returns the name."""
        return create_vhost(name, self.management_api)

    def delete_vhost(self, name: str) -> None:
        """Delete vhost ``name`` with everything in it."""
        delete_vhost(name, self.management_api)


_DEBIAN13_HINT = "run `bash scripts/bootstrap.sh --for test` (starts scripts/debian13-brokers.sh)"

RABBITMQ_3 = RabbitMQGeneration("rabbitmq-3", 5672, 15672, "run `bash scripts/bootstrap.sh`")
RABBITMQ_4 = RabbitMQGeneration("rabbitmq-4", 5682, 15682, _DEBIAN13_HINT)
RABBITMQ_GENERATIONS = {g.name: g for g in (RABBITMQ_3, RABBITMQ_4)}

#: Redis 8 from the Debian 13 root (shared: tests use keys/prefixes of their own there).
REDIS_8_PORT = 6389
REDIS_8_URL = f"redis://127.0.0.1:{REDIS_8_PORT}/0"

#: Where scripts/debian13-brokers.sh unpacks the Debian 13 root (CQE_DEBIAN13_ROOT overrides).
DEBIAN13_ROOT = Path(
    os.environ.get("CQE_DEBIAN13_ROOT", "/var/lib/celery-queue-exporter/debian13-root")
)


class Redis8Server(RedisServer):
    """A private Redis 8.0 process: the Debian 13 root's redis-server, run with chroot on a
    spare port (its data directory is the root's /tmp, nothing is saved). Needs root and the
    root set up by scripts/debian13-brokers.sh (its /dev mounted: the script's ``start``)."""

    def start(self) -> Redis8Server:
        binary = DEBIAN13_ROOT / "usr/bin/redis-server"
        if os.geteuid() != 0 or not binary.exists() or not (DEBIAN13_ROOT / "dev/null").exists():
            raise ServiceError(
                f"Redis 8 needs root and the Debian 13 root at {DEBIAN13_ROOT} ({_DEBIAN13_HINT})"
            )
        self.process = subprocess.Popen(
            ["chroot", str(DEBIAN13_ROOT), "/usr/bin/redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", "/tmp"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._pings, timeout=20, what=f"Redis 8 on port {self.port}", error=ServiceError)
        return self

    def version(self) -> str:
        return str(self.client().info("server")["redis_version"])


#: The Redis generations by name: what starts a private server of each (7.0: Debian 12's
#: redis-server; 8.0: the Debian 13 root's).
REDIS_GENERATIONS: dict[str, type[RedisServer]] = {"redis-7": RedisServer, "redis-8": Redis8Server}
