"""The rabbitmq_prometheus plugin as the way to a RabbitMQ vhost's counts (issue 25).

The management API's ``/api/queues`` is RabbitMQ's costliest read: the node gathers every
queue's statistics for it (45-70 ms for 200 priority queues on 3.10, where the plugin's
``/metrics/detailed`` answers the same counts in 7-10 ms). With ``prometheus_url`` set, each
scrape reads ONE ``GET {prometheus_url}/metrics/detailed?vhost=V&family=...`` (no credentials
unless the URL carries them) for ready, unacknowledged and consumer counts, consumer
utilisation and head message timestamps, and joins them to the queue *facts* the management
API gave at its last read (type, arguments, exclusive/auto-delete). ``/api/queues`` is read
again only when:

* it alone has what a watched queue needs every scrape: per-priority counts (classic priority
  queues up to RabbitMQ 3.12.6, quorum queues on 4.x), quorum facts (returned messages,
  redeliveries), Celery's delayed delivery queues (quorum) -- see ``needs_management``;
* the plugin's queue list differs from the facts' (a queue was declared or deleted; on a
  cluster a node's plugin lists only the queues whose process runs on it);
* the facts are older than ``FACTS_MAX_AGE_SECONDS``;
* the plugin did not answer (``celery_rabbitmq_prometheus_plugin_up`` 0, and
  ``celery_rabbitmq_prometheus_plugin_failures_total`` counts it): the management API alone,
  as without the plugin. A plugin failure never fails the broker.

While a watched queue needs the API every scrape, the plugin is not asked at all: the API's
answer carries the counts too, and the plugin's request would add cost and spare none (its
cost is in docs/performance.md). When both are read in one scrape (new facts), ready,
unacknowledged and consumer counts come from the plugin, the rest from the API (both from the
node's same core metrics, refreshed every ``collect_statistics_interval``). Read-only: GETs
only.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import requests

from ... import catalogue as cat
from ...config.model import BrokerConfig
from ...config.urls import redact_url, without_credentials
from ...snapshot import BrokerSnapshot, ExtraSample
from ..peer_deadline import Deadline
from .delayed import delayed_level
from .errors import broker_where
from .http import deadline_session
from .management import HEADLESS_QUEUE_TYPES, ManagementReader, queue_levels
from .options import RabbitMQOptions
from .tls import http_session

log = logging.getLogger(__name__)

#: The plugin's per-queue families read (same names and labels on 3.10.8 and 4.0.5, checked).
FAMILIES = ("queue_coarse_metrics", "queue_consumer_count", "queue_metrics")
#: Plugin series -> the management API field it stands for (same meaning, same units).
FIELDS = {
    "rabbitmq_detailed_queue_messages_ready": "messages_ready",
    "rabbitmq_detailed_queue_messages_unacked": "messages_unacknowledged",
    "rabbitmq_detailed_queue_consumers": "consumers",
    "rabbitmq_detailed_queue_consumer_utilisation": "consumer_utilisation",
    "rabbitmq_detailed_queue_consumer_capacity": "consumer_capacity",
    "rabbitmq_detailed_queue_head_message_timestamp": "head_message_timestamp",
}
#: Fields that are counts (integers in the API's JSON).
COUNT_FIELDS = frozenset({"messages_ready", "messages_unacknowledged", "consumers"})
#: Management API facts older than this are read again (a policy or argument change).
FACTS_MAX_AGE_SECONDS = 60.0
#: Share of the inspection's budget the plugin may take (the API keeps the rest as fallback).
PLUGIN_BUDGET_SHARE = 0.25


class PluginError(RuntimeError):
    """The plugin did not answer usably (a message fit for logs: no credentials)."""


def parse_detailed(text: str, vhost: str) -> dict[str, dict[str, Any]]:
    """Queue -> management-API-shaped fields from a ``/metrics/detailed`` text body, for the
    queues of ``vhost``. A NaN head timestamp (no stamped head) is left out, as the API does;
    a line that does not parse costs that value only.

    The plugin writes its labels as ``{vhost="V",queue="Q"}``; 3.10 does not escape ``"`` or
    ``\\`` in them, 4.0 does (both checked on real nodes): the queue is everything between
    ``queue="`` and the line's last ``"}``, as written; ``named_as_the_api`` reads an escaped
    name back. A name that matches no API name makes the scrape read the API (see ``read``): a
    cost, never a wrong count.
    """
    # One pass at C speed over the body: most of its lines are series the exporter skips. The
    # pattern starts with a literal newline (not ``^`` in MULTILINE mode) so the regex engine
    # can jump between candidate lines by a literal search: about twice as fast on 350 kB.
    line = _line_pattern(vhost)
    suffixes, count_fields, isfinite = _SUFFIXES, COUNT_FIELDS, math.isfinite
    queues: dict[str, dict[str, Any]] = {}
    for suffix, queue, text_value in line.findall("\n" + text):
        field = suffixes[suffix]
        try:
            value = float(text_value)
        except ValueError:
            continue
        entry = queues.get(queue)
        if entry is None:
            entry = queues[queue] = {"name": queue}
        if not isfinite(value):
            continue  # NaN: no head timestamp
        entry[field] = int(value) if field in count_fields else value
    return queues


_SUFFIXES = {name.removeprefix("rabbitmq_detailed_queue_"): field for name, field in FIELDS.items()}


@functools.lru_cache(maxsize=64)
def _line_pattern(vhost: str) -> re.Pattern[str]:
    """One series line of ``vhost`` that the exporter reads (compiled once per vhost): a
    newline, the name, the two labels, the value up to the line's end."""
    return re.compile(
        r"\nrabbitmq_detailed_queue_(" + "|".join(_SUFFIXES) + r')\{vhost="'
        + re.escape(vhost)
        + r'",queue="([^\n]*)"\} (\S+)(?=\n|$)'
    )  # fmt: skip


def _unescaped(text: str) -> str:
    """A label value as the text format escapes it, read back (\\\\, \\", \\n)."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def named_as_the_api(
    plugin: dict[str, dict[str, Any]], facts: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The plugin's queues under the API's names: RabbitMQ 3.10's plugin writes a name with
    ``"`` or ``\\`` as it is, 4.0's escapes it (both seen on real nodes). A name the API does
    not know is tried unescaped; one that matches neither stays (the lists then differ and the
    scrape reads the API)."""
    if all(name in facts for name in plugin):
        return plugin
    named = {}
    for name, counts in plugin.items():
        if name not in facts and "\\" in name and (plain := _unescaped(name)) in facts:
            name, counts = plain, {**counts, "name": plain}
        named[name] = counts
    return named


def needs_management(
    facts: dict[str, dict[str, Any]], watched: Iterable[str], delayed_prefix: str = ""
) -> bool:
    """Whether ``/api/queues`` has, for the watched queues, what changes every scrape and the
    plugin does not give: per-priority counts, quorum/stream facts; or the vhost holds Celery's
    delayed delivery queues (quorum queues, exported as scheduled messages)."""
    for name in watched:
        entry = facts.get(name)
        if entry is None:
            continue
        if entry.get("type") in HEADLESS_QUEUE_TYPES or queue_levels(entry) is not None:
            return True
    return any(delayed_level(name, delayed_prefix) is not None for name in facts)


def joined_entries(
    facts: dict[str, dict[str, Any]], plugin: dict[str, dict[str, Any]], fresh: bool = False
) -> list[dict[str, Any]]:
    """API entries with the plugin's counts in place of the API's: a queue's facts (type,
    arguments, ...) from ``facts``, its counts from ``plugin`` when the plugin lists it.
    ``fresh``: the facts were read this scrape, so a count the plugin lacks keeps the API's
    value; otherwise it is unknown (a stale count or head timestamp would be wrong)."""
    bare = facts if fresh else without_counts(facts)
    joined = []
    for name, entry in facts.items():
        counts = plugin.get(name)
        joined.append(entry if counts is None else {**bare[name], **counts})
    return joined


_PLUGIN_FIELDS = frozenset(FIELDS.values())


def without_counts(facts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The facts without the fields the plugin gives (stale once the facts are not new):
    computed once per facts read, so a steady scrape builds one dict per queue, not two."""
    return {
        name: {k: v for k, v in entry.items() if k not in _PLUGIN_FIELDS}
        for name, entry in facts.items()
    }


class PrometheusPluginReader:
    """Reads one vhost through the plugin, the management API only where needed."""

    def __init__(
        self,
        config: BrokerConfig[RabbitMQOptions],
        vhost: str,
        management: ManagementReader,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = broker_where(config)
        self.vhost = vhost
        self.management = management
        self.clock = clock
        self.delayed_prefix = config.options.delayed_delivery_prefix
        url, auth = without_credentials(config.options.prometheus_url or "")
        self.url = url
        self.auth = auth
        self._session = deadline_session(http_session(config.tls))
        self._session.headers["User-Agent"] = "celery-queue-exporter"
        #: The last /api/queues entries by name, when they were read, and whether they need
        #: the API every scrape.
        self._facts: dict[str, dict[str, Any]] | None = None
        self._facts_at = 0.0
        #: The same without the plugin's fields (without_counts), once per facts read.
        self._bare_facts: dict[str, dict[str, Any]] | None = None
        #: Each queue's fact samples (quorum.queue_samples) for these facts.
        self._fact_samples: dict[str, list[ExtraSample]] = {}
        self._needs_management = True
        self.up: bool | None = None
        self.failures = 0
        self._problem: str | None = None

    def read(self, plugin_deadline: float, deadline: float) -> BrokerSnapshot:
        """One scrape: the plugin (until ``plugin_deadline``), the API when needed (until
        ``deadline``). Raises RabbitMQInspectionError only when the API was needed and failed."""
        facts = self._facts
        if facts is not None and self._needs_management:
            # The API is read every scrape for what only it gives (per-level counts, quorum
            # facts), and its answer carries the counts too: the plugin would add a request
            # and spare none. Back to the plugin once the watched queues no longer need it.
            return self._read_management(None, deadline)
        plugin = self._read_plugin(plugin_deadline)
        if plugin is not None and facts is not None:
            plugin = named_as_the_api(plugin, facts)
        if (
            plugin is not None
            and facts is not None
            and self.clock() - self._facts_at < FACTS_MAX_AGE_SECONDS
            and plugin.keys() == facts.keys()
        ):
            # The facts without their (stale) counts, stripped once per facts read: as every
            # queue is listed by the plugin here, joined with fresh=True this is exactly
            # joined_entries(facts, plugin).
            if self._bare_facts is None:
                self._bare_facts = without_counts(facts)
            entries = joined_entries(self._bare_facts, plugin, fresh=True)
            # The queues' fact samples (type, dead-lettering, ...) come from the facts alone:
            # computed once per facts read.
            snapshot = self.management.snapshot_from_entries(entries, self._fact_samples)
            snapshot.extra.extend(self.samples())
            return snapshot
        return self._read_management(plugin, deadline)

    def _read_management(
        self, plugin: dict[str, dict[str, Any]] | None, deadline: float
    ) -> BrokerSnapshot:
        """/api/queues (new facts), with the plugin's counts when it answered this scrape."""
        fetched = self.management.fetch_entries(deadline)
        facts = {str(e["name"]): e for e in fetched if isinstance(e, dict) and "name" in e}
        self._facts, self._facts_at, self._bare_facts = facts, self.clock(), None
        self._fact_samples = {}
        if plugin is not None:
            plugin = named_as_the_api(plugin, facts)
        entries = fetched if plugin is None else joined_entries(facts, plugin, fresh=True)
        snapshot = self.management.snapshot_from_entries(entries)
        self._needs_management = needs_management(facts, snapshot.queues, self.delayed_prefix)
        snapshot.extra.extend(self.samples())
        return snapshot

    def samples(self) -> list[ExtraSample]:
        """celery_rabbitmq_prometheus_plugin_up (once tried), its failures and the API reads."""
        samples = [
            ExtraSample(cat.RABBITMQ_PLUGIN_FAILURES, (), float(self.failures)),
            ExtraSample(cat.RABBITMQ_MANAGEMENT_QUEUE_READS, (), float(self.management.reads)),
        ]
        if self.up is not None:
            samples.append(ExtraSample(cat.RABBITMQ_PLUGIN_UP, (), 1.0 if self.up else 0.0))
        return samples

    def _read_plugin(self, deadline: float) -> dict[str, dict[str, Any]] | None:
        """The plugin's counts by queue, or None (logged when the state changes, counted)."""
        try:
            queues = self._fetch(deadline)
        except PluginError as exc:
            self.failures += 1
            self.up = False
            if str(exc) != self._problem:
                log.warning("%s; reading the management API instead", exc)
                self._problem = str(exc)
            return None
        if self.up is False:
            log.info("%s: rabbitmq_prometheus answers again", self.where)
        self.up, self._problem = True, None
        return queues

    def _fetch(self, deadline: float) -> dict[str, dict[str, Any]]:
        remaining = max(0.05, deadline - time.monotonic())
        where = f"{self.where}: rabbitmq_prometheus {redact_url(self.url)}"
        params = [("vhost", self.vhost), *(("family", family) for family in FAMILIES)]
        try:
            with Deadline(remaining) as whole_call:
                reply = self._session.get(
                    f"{self.url}/metrics/detailed",
                    params=params,
                    auth=self.auth,
                    timeout=(remaining, remaining),
                )
        except requests.RequestException as exc:
            if whole_call.expired or isinstance(exc, requests.Timeout):
                raise PluginError(f"{where} did not answer within {remaining:.1f}s") from None
            raise PluginError(f"{where} unreachable ({type(exc).__name__})") from None
        finally:
            self._session.close()  # a new connection (and socket to watch) for every call
        if reply.status_code != 200:
            raise PluginError(f"{where} answered HTTP {reply.status_code}")
        # The text format is UTF-8; decoded once (``reply.text`` decodes on every access).
        text = reply.content.decode("utf-8", "replace")
        if "rabbitmq_detailed_queue_" not in text and "rabbitmq_build_info" not in text:
            raise PluginError(f"{where} did not answer Prometheus text")
        return parse_detailed(text, self.vhost)

    @property
    def detailed_url(self) -> str:
        """The plugin request of this vhost, without credentials (for benchmarks and logs)."""
        families = "".join(f"&family={family}" for family in FAMILIES)
        return f"{self.url}/metrics/detailed?vhost={quote(self.vhost, safe='')}{families}"

    def close(self) -> None:
        self._session.close()
