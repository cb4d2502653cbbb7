"""Read-only inspection of a RabbitMQ broker: the management HTTP API (management.py), else
AMQP (amqp.py); this module is the small policy between them.

The way in is chosen by ``RabbitMQOptions.management`` (auto | always | never). With
``prometheus_url`` the API's counts come from the rabbitmq_prometheus plugin and the API is
read only when needed (prometheus_plugin.py). In ``auto``
mode the API is tried first on every scrape (with at most half the time budget) and AMQP is
the fallback; ``celery_rabbitmq_management_api_up`` says which one answered. Nothing is ever
written: no queue is declared (other than passively), bound, purged or consumed from.
"""

from __future__ import annotations

import logging
import time

from ...snapshot import BrokerSnapshot
from ..base import Inspector
from .amqp import AmqpReader
from .errors import RabbitMQInspectionError, broker_where
from .management import ManagementReader, WaitingLevels, queue_levels
from .nodes import PLUGIN_NODES_MAX_AGE_SECONDS, NodesReader
from .prometheus_plugin import PLUGIN_BUDGET_SHARE, PrometheusPluginReader
from .url import broker_target

__all__ = ["RabbitMQInspectionError", "RabbitMQInspector", "queue_levels"]

log = logging.getLogger(__name__)


class RabbitMQInspector(Inspector):
    """Inspects one RabbitMQ vhost."""

    def setup(self) -> None:
        self.target = broker_target(self.config)
        self.amqp = AmqpReader(self.config, self.target, self.timeout_seconds)
        self.management = ManagementReader(self.config, self.target, lambda: self.clock())
        self._management_state: bool | None = None
        self._management_problem: str | None = None
        #: Cluster health (alarms, partitions, limits) from /api/nodes (nodes.py).
        #: With the plugin, at most one read per PLUGIN_NODES_MAX_AGE_SECONDS (its cost).
        plugin = bool(self.config.options.prometheus_url)
        self.nodes = NodesReader(self.where, PLUGIN_NODES_MAX_AGE_SECONDS if plugin else 0.0)
        #: The rabbitmq_prometheus plugin, when configured (prometheus_plugin.py).
        self.plugin: PrometheusPluginReader | None = None
        if self.config.options.prometheus_url:
            self.plugin = PrometheusPluginReader(self.config, self.target.vhost, self.management)

    @property
    def where(self) -> str:
        """How errors name the broker: its label and its URL without credentials."""
        return broker_where(self.config)

    @property
    def waiting_levels(self) -> WaitingLevels | None:
        """The event tracker's per-level counts of tasks published and not yet received
        (set by QueueCollector.use_level_estimates when events are consumed): the per-level
        depth of classic priority queues whose broker reports only the total."""
        return self.management.waiting_levels

    @waiting_levels.setter
    def waiting_levels(self, source: WaitingLevels | None) -> None:
        self.management.waiting_levels = source

    @property
    def management_url(self) -> str:
        """The management API's URL, without credentials."""
        return self.management.url

    def inspect(self) -> BrokerSnapshot:
        """One scrape of the vhost. Raises RabbitMQInspectionError when the broker is out of
        reach (or refuses the credentials) by every allowed way."""
        started = time.monotonic()
        # A little under the collector's timeout, so our own error wins over its "timed out".
        deadline = started + 0.9 * self.timeout_seconds
        mode = self.config.options.management
        problem: str | None = None
        if mode != "never":
            # In auto mode, keep half the budget for the AMQP fallback.
            budget = deadline if mode == "always" else started + 0.45 * self.timeout_seconds
            try:
                if self.plugin is not None:
                    plugin_budget = started + PLUGIN_BUDGET_SHARE * self.timeout_seconds
                    snapshot = self.plugin.read(plugin_budget, budget)
                else:
                    snapshot = self.management.read(budget)
            except RabbitMQInspectionError as exc:
                if mode == "always":
                    raise
                problem = str(exc)
            else:
                self._note_management(True, None)
                # A quorum queue's first seconds have no statistics in the API: bridge them by
                # a passive declare, except in "always" mode (the user allowed the API only).
                if self.management.stats_pending and mode == "auto":
                    self.amqp.read_into(snapshot, self.management.stats_pending, deadline)
                if self.management.scheduled_pending and mode == "auto":
                    self.amqp.read_scheduled_into(
                        snapshot,
                        self.management.scheduled_pending,
                        self.management.delayed_prefix,
                        deadline,
                    )
                snapshot.rabbitmq_nodes = self.management.read_nodes(self.nodes, deadline)
                return snapshot
        snapshot = self.amqp.read(deadline, self.management.discovered)
        snapshot.management_api_up = False
        if self.plugin is not None:
            snapshot.extra.extend(self.plugin.samples())
        self._note_management(False, problem)
        return snapshot

    def _note_management(self, up: bool, problem: str | None) -> None:
        """Log when the API goes away or comes back, not on every scrape."""
        if self.config.options.management == "never":
            return
        if not up and problem and problem != self._management_problem:
            log.warning("%s; using AMQP (no per-priority or unacknowledged counts)", problem)
        elif up and self._management_state is False:
            log.info("%s: management API answers again", self.where)
        self._management_state = up
        self._management_problem = None if up else problem

    def close(self) -> None:
        self.amqp.close()
        self.management.close()
        if self.plugin is not None:
            self.plugin.close()
