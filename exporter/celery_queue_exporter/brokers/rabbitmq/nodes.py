"""RabbitMQ's cluster health from the management API's ``/api/nodes``: resource alarms (a
memory or disk alarm blocks every publisher: Celery's ``apply_async`` hangs), partitions, nodes
not running, and file descriptors and sockets against their limits.

One extra GET per scrape, with only the columns below, after the queue read and within the same
deadline; with the rabbitmq_prometheus plugin at most one per ``PLUGIN_NODES_MAX_AGE_SECONDS``.
``/api/nodes`` needs the ``monitoring`` tag (a ``management`` user gets 401/403): then the node
series are left out, the queue readings are not affected, and one line is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests

from ...snapshot import NodeReading
from ..peer_deadline import Deadline

log = logging.getLogger(__name__)

#: Columns asked of /api/nodes (a node that is down answers only name and running).
NODE_COLUMNS = (
    "name",
    "running",
    "mem_alarm",
    "disk_free_alarm",
    "partitions",
    "mem_used",
    "mem_limit",
    "fd_used",
    "fd_total",
    "sockets_used",
    "sockets_total",
)
#: At most this many nodes are exported (a cluster has a handful; bounds the label set).
MAX_NODES = 64


def parse_nodes(document: Any) -> tuple[list[NodeReading], int]:
    """Node readings from an /api/nodes answer, and how many entries were malformed (skipped:
    not an object, or no name)."""
    if not isinstance(document, list):
        return [], 1
    nodes: list[NodeReading] = []
    malformed = 0
    for entry in document:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            malformed += 1
            continue
        if len(nodes) >= MAX_NODES:
            break
        partitions = entry.get("partitions")
        nodes.append(
            NodeReading(
                node=name,
                running=_bool(entry.get("running")),
                memory_alarm=_bool(entry.get("mem_alarm")),
                disk_alarm=_bool(entry.get("disk_free_alarm")),
                partitions=len(partitions) if isinstance(partitions, list) else None,
                memory_used_bytes=_count(entry.get("mem_used")),
                memory_limit_bytes=_count(entry.get("mem_limit")),
                fd_used=_count(entry.get("fd_used")),
                fd_limit=_count(entry.get("fd_total")),
                sockets_used=_count(entry.get("sockets_used")),
                sockets_limit=_count(entry.get("sockets_total")),
            )
        )
    return sorted(nodes, key=lambda n: n.node), malformed


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    """A non-negative integer; anything else (a string such as 'unknown', a float) is
    unknown."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


#: With the rabbitmq_prometheus plugin (``prometheus_url``) /api/nodes is read at most once in
#: this many seconds and the last answer is exported in between: the read costs about as much
#: as the exporter's whole share of a plugin scrape (docs/performance.md). A node alarm then
#: shows at most this late; the node alerts' ``for:`` (1m to 5m) is longer (checked by
#: tests/test_rabbitmq_prometheus_plugin.py). Without the plugin: every scrape (0).
PLUGIN_NODES_MAX_AGE_SECONDS = 15.0


class NodesReader:
    """Reads /api/nodes for one broker; says when the read fails or recovers, not per scrape.
    ``max_age``: seconds an answer is reused for (0: read every scrape); a failed read is not
    reused, so a failure is retried at the next scrape."""

    def __init__(
        self, where: str, max_age: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.where = where
        self.max_age = max_age
        self.clock = clock
        self._problem: str | None = None
        #: GETs of /api/nodes made (for tests and benchmarks).
        self.reads = 0
        self._last: list[NodeReading] | None = None
        self._last_at = 0.0

    def read(
        self, session: requests.Session, base_url: str, auth: tuple[str, str], deadline: float
    ) -> list[NodeReading] | None:
        """The nodes, or None when the API does not give them in time (never raises: the
        queue readings of the same scrape stand on their own). Within ``max_age`` of the last
        good answer, that answer."""
        if self._last is not None and self.clock() - self._last_at < self.max_age:
            return self._last
        nodes = self._read(session, base_url, auth, deadline)
        self._last, self._last_at = nodes, self.clock()
        return nodes

    def _read(
        self, session: requests.Session, base_url: str, auth: tuple[str, str], deadline: float
    ) -> list[NodeReading] | None:
        self.reads += 1
        remaining = deadline - time.monotonic()
        problem: str | None = None
        nodes: list[NodeReading] | None = None
        if remaining <= 0.05:
            problem = "no time left in the scrape for /api/nodes"
        else:
            try:
                with Deadline(remaining) as whole_call:
                    reply = session.get(
                        f"{base_url}/api/nodes",
                        params={"columns": ",".join(NODE_COLUMNS)},
                        auth=auth,
                        timeout=(remaining, remaining),
                    )
            except requests.RequestException as exc:
                expired = whole_call.expired or isinstance(exc, requests.Timeout)
                problem = "/api/nodes timed out" if expired else f"/api/nodes: {type(exc).__name__}"
            else:
                if reply.status_code in (401, 403):
                    problem = "/api/nodes refused (the user needs the 'monitoring' tag)"
                elif reply.status_code != 200:
                    problem = f"/api/nodes answered HTTP {reply.status_code}"
                else:
                    try:
                        nodes, malformed = parse_nodes(reply.json())
                    except ValueError:
                        problem = "/api/nodes did not answer JSON"
                    else:
                        if malformed:
                            problem = f"/api/nodes: {malformed} malformed entry(ies) skipped"
            finally:
                session.close()
        if problem != self._problem:
            if problem:
                log.warning("%s: %s; node health not exported", self.where, problem)
            elif self._problem:
                log.info("%s: /api/nodes answers again", self.where)
            self._problem = problem
        return nodes
