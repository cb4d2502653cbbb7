"""The metric catalogue: the one place where metric names, types, labels and meanings live.

The collectors build their metric families from these specs, the README's metric table is
generated from them (``python -m celery_queue_exporter.catalogue``), and the alert and dashboard
generators import the names from here, so a rename cannot leave one of them behind.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

MetricType = Literal["gauge", "counter", "histogram", "info"]

#: Label value for the most urgent priority level of a queue (see QUEUE_PRIORITY_URGENCY).
URGENCY_MOST = "most"
#: Label value for the least urgent priority level of a queue.
URGENCY_LEAST = "least"
#: Label value used for the ``queue`` label when a reservation cannot be tied to a queue.
UNKNOWN_QUEUE = "(unknown)"


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric family, as documented to users."""

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    accuracy: str
    source: str
    brokers: tuple[str, ...] = ("redis", "rabbitmq")
    #: When the family has no series for a label set, and what that means next to a 0 (the
    #: per-level families leave out what carries no information, issue 25); "" = not said.
    absent: str = ""

    @property
    def family_name(self) -> str:
        """Name handed to prometheus_client, which appends ``_total`` to counters itself."""
        if self.type == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        if self.type == "info" and self.name.endswith("_info"):
            return self.name[: -len("_info")]
        return self.name


def _spec(*args: object, **kwargs: object) -> MetricSpec:
    return MetricSpec(*args, **kwargs)  # type: ignore[arg-type]


# --- queues -----------------------------------------------------------------------------------

QUEUE_MESSAGES = _spec(
    "celery_queue_messages",
    "gauge",
    ("broker", "queue", "priority"),
    "Messages waiting in the queue, per priority level. On Redis the queue's first priority "
    "step (its own key) always, 0 included, and every other step while it holds messages; on "
    "RabbitMQ per level when the broker reports it (0 included), for a classic priority queue "
    "on 3.12.7+ / 4.x per level from events with the rest at priority='unknown' "
    "(celery_queue_priority_levels_source_info), else one series without the priority label.",
    "exact; RabbitMQ levels from events: exact when priority='unknown' is 0, the total always",
    "Redis: LLEN of each priority step list. RabbitMQ: management API messages_ready and "
    "priority_lengths, or a passive queue.declare (total only); task-sent and task-received "
    "events for levels from events.",
    absent="Redis: a level other than the queue's first is absent while empty, and absent "
    "means 0; the first level is always there, so `sum without (priority)` is 0 for an empty "
    "queue, never absent. `max_over_time(...) > 0` (a level used in a window) is unchanged; "
    "`min_over_time(...)` sees only the scrapes where the level held messages. A level whose "
    "key cannot be read is absent too, with celery_queue_unreadable 1. RabbitMQ: every level "
    "it reports or estimates from events, 0 included. A watched queue with no series at all "
    "was not inspected (celery_broker_up 0), does not exist (celery_queue_missing 1), or its "
    "first level's key cannot be read while the others are empty (celery_queue_unreadable 1).",
)
QUEUE_OLDEST_MESSAGE_AGE = _spec(
    "celery_queue_oldest_message_age_seconds",
    "gauge",
    ("broker", "queue", "priority"),
    "Age of the next message to be consumed at this priority level. Exact when producers call "
    "celery_queue_exporter.instrumentation.install(app); otherwise a lower bound: how long the "
    "same message has been seen at the head of the level across scrapes.",
    "exact with install(app), else lower bound",
    "Redis: LINDEX key -1 and the enqueue stamp header. RabbitMQ: head_message_timestamp "
    "(needs the timestamp property that install(app) sets).",
    absent="Absent where the level has no next message: every empty level (on Redis they "
    "reported 0 before issue 25), and on RabbitMQ every level but the one whose head it "
    "reports, and unstamped heads. 0 is a message that has just arrived, never an empty level. "
    "Alerts compare `> seconds`, which an absent level never meets; `max(...)` over empty "
    "queues is empty, not 0 (the dashboards' stat tiles show no data as 0).",
)
QUEUE_OLDEST_MESSAGE_UNSTAMPED = _spec(
    "celery_queue_oldest_message_unstamped",
    "gauge",
    ("broker", "queue", "priority"),
    "1 when the head message of this non-empty level carries no install(app) publish stamp "
    "(Redis: its age is then head tracking's lower bound; RabbitMQ: it has no "
    "head_message_timestamp, so no age), 0 when it carries one. Only for levels whose head is "
    "inspected: on RabbitMQ the most urgent non-empty level (or the series without priority); "
    "none for RabbitMQ quorum and stream queues, which never report head_message_timestamp.",
    "exact",
    "Redis: the head message's stamp headers (LINDEX key -1). RabbitMQ: whether the management "
    "API reports head_message_timestamp.",
    absent="Absent where no head is inspected: empty levels, and on RabbitMQ the levels below "
    "the head. Alerts exclude lower bounds with `unless ... == 1`, which an absent series "
    "never removes.",
)
QUEUE_PRIORITY_URGENCY = _spec(
    "celery_queue_priority_urgency_rank",
    "gauge",
    ("broker", "queue", "priority", "urgency"),
    "Marks the most and the least urgent priority level in use of each queue (urgency='most' "
    "or 'least'; the value is the level's rank among the declared levels, 0 = served first), "
    "so PromQL can pick them on any broker: Redis serves 0 first, RabbitMQ the highest number. "
    "In use: the most urgent level that has carried messages within urgency_memory_seconds "
    "(a depth above 0 at a scrape, or a task received at that level per Celery events); the "
    "least urgent such level strictly less urgent than it; the declared extreme for a side "
    "with none; the broker's priority_levels override wins. Learnt in memory: relearnt after "
    "a restart.",
    "exact (learnt since the exporter started)",
    "Redis: the configured priority_steps. RabbitMQ: the queue's x-max-priority and per-level "
    "counts. Both: levels seen non-empty, task-info events (install(app)), priority_levels.",
    absent="Two series per queue with declared levels (most and least), whatever the "
    "depths; absent for a queue without levels. Kept per level, not "
    "folded into one info series per queue: the alerts join it on (broker, queue, priority), "
    "and at two per queue it is already a per-queue cost.",
)
QUEUE_RESERVED_MESSAGES = _spec(
    "celery_queue_reserved_messages",
    "gauge",
    ("broker", "queue"),
    "Messages delivered to workers and not yet acknowledged (prefetched, running, or waiting "
    "for their ETA). On Redis attributed to queues from a random sample of the unacked hash: "
    "exact up to the sample size, estimated above it; queue '(unknown)' when a reservation "
    "cannot be tied to a queue.",
    "Redis: exact up to reserved_sample_size, then estimated; RabbitMQ: exact",
    "Redis: HRANDFIELD on kombu's unacked hash. RabbitMQ: messages_unacknowledged.",
)
QUEUE_CONSUMERS = _spec(
    "celery_queue_consumers",
    "gauge",
    ("broker", "queue"),
    "Consumers attached to the queue.",
    "exact",
    "RabbitMQ: consumers (management API) or consumer_count (queue.declare).",
    ("rabbitmq",),
)
QUEUE_CONSUMER_UTILISATION = _spec(
    "celery_queue_consumer_utilisation_ratio",
    "gauge",
    ("broker", "queue"),
    "Fraction of time the queue could deliver to its consumers immediately (1 = consumers "
    "keep up).",
    "as reported by RabbitMQ",
    "RabbitMQ management API consumer_utilisation.",
    ("rabbitmq",),
)
QUEUE_MAX_PRIORITY = _spec(
    "celery_queue_max_priority",
    "gauge",
    ("broker", "queue"),
    "The queue's x-max-priority argument (absent for queues without priorities).",
    "exact",
    "RabbitMQ management API arguments.",
    ("rabbitmq",),
)
QUEUE_MISSING = _spec(
    "celery_queue_missing",
    "gauge",
    ("broker", "queue"),
    "1 when a configured queue does not exist on the broker, else 0.",
    "exact",
    "RabbitMQ: passive queue.declare answered 404, or the queue is absent from the management API.",
    ("rabbitmq",),
)
QUEUE_UNREADABLE = _spec(
    "celery_queue_unreadable",
    "gauge",
    ("broker", "queue"),
    "1 when a key of the queue could not be read in the last inspection (a key of another type "
    "than kombu writes, e.g. a hash where a priority list belongs), else 0. That level has no "
    "celery_queue_messages series; the queue's other levels and every other queue are still "
    "exported and celery_broker_up stays 1.",
    "exact",
    "Redis: LLEN answered WRONGTYPE for the level's key.",
    ("redis",),
    absent="0 for every watched queue that was inspected: alerts read `== 1`, dashboards the 0.",
)

# --- broker-wide reserved work (Redis) --------------------------------------------------------

BROKER_RESERVED_MESSAGES = _spec(
    "celery_broker_reserved_messages",
    "gauge",
    ("broker",),
    "Messages delivered to workers and not yet acknowledged, all queues together.",
    "exact",
    "Redis: HLEN of kombu's unacked hash. RabbitMQ: sum of messages_unacknowledged.",
)
BROKER_RESERVED_OLDEST_AGE = _spec(
    "celery_broker_reserved_oldest_age_seconds",
    "gauge",
    ("broker",),
    "Age of the oldest unacknowledged reservation. Past visibility_timeout Redis delivers the "
    "message again and the task runs twice.",
    "exact (exporter and worker clocks assumed in sync)",
    "Redis: lowest score of kombu's unacked_index sorted set.",
    ("redis",),
)
BROKER_RESERVED_OVERDUE = _spec(
    "celery_broker_reserved_overdue_messages",
    "gauge",
    ("broker",),
    "Reservations older than visibility_timeout: Redis will deliver them again.",
    "exact",
    "Redis: ZCOUNT of unacked_index older than visibility_timeout.",
    ("redis",),
)
BROKER_VISIBILITY_TIMEOUT = _spec(
    "celery_broker_visibility_timeout_seconds",
    "gauge",
    ("broker",),
    "The visibility_timeout the exporter was configured with (kombu's default is 3600).",
    "configuration",
    "transport options (configuration or the Celery app).",
    ("redis",),
)
BROKER_UP = _spec(
    "celery_broker_up",
    "gauge",
    ("broker",),
    "1 when the last inspection of the broker succeeded, else 0.",
    "exact",
    "the exporter, per scrape.",
)
BROKER_LAST_SUCCESS = _spec(
    "celery_broker_last_success_timestamp_seconds",
    "gauge",
    ("broker",),
    "Unix time at which the last successful inspection of the broker finished (absent until "
    "one has): time() minus it is the age of the exporter's latest good reading.",
    "exact",
    "the exporter.",
)
BROKER_INFO = _spec(
    "celery_broker_info",
    "info",
    ("broker", "transport", "url"),
    "Configured brokers; url has credentials removed.",
    "configuration",
    "configuration.",
)
RABBITMQ_MANAGEMENT_UP = _spec(
    "celery_rabbitmq_management_api_up",
    "gauge",
    ("broker",),
    "1 when the RabbitMQ management API answered and was used, 0 when the exporter fell back to "
    "AMQP (no per-priority counts, no unacknowledged counts).",
    "exact",
    "the exporter, per scrape.",
    ("rabbitmq",),
)

RABBITMQ_PLUGIN_UP = _spec(
    "celery_rabbitmq_prometheus_plugin_up",
    "gauge",
    ("broker",),
    "1 when the broker's rabbitmq_prometheus plugin (prometheus_url) answered and its ready, "
    "unacknowledged and consumer counts were used, 0 when it did not and the management API "
    "gave them instead. While the management API is read every scrape anyway (per-priority "
    "counts on RabbitMQ 3.x, quorum queues) the plugin is not asked and this keeps its last "
    "value. No series: prometheus_url not configured.",
    "exact",
    "the exporter, per scrape.",
    ("rabbitmq",),
)
RABBITMQ_PLUGIN_FAILURES = _spec(
    "celery_rabbitmq_prometheus_plugin_failures_total",
    "counter",
    ("broker",),
    "Scrapes in which the rabbitmq_prometheus plugin did not answer usably (refused, timed "
    "out, not HTTP 200, no answer for the vhost) and the management API was read instead.",
    "exact",
    "the exporter.",
    ("rabbitmq",),
)
RABBITMQ_MANAGEMENT_QUEUE_READS = _spec(
    "celery_rabbitmq_management_queue_reads_total",
    "counter",
    ("broker",),
    "Requests the exporter made to the management API's /api/queues (its costliest call). "
    "With prometheus_url answering it grows only when the management API alone has what is "
    "needed (per-priority counts, quorum queues) or its queue facts are refreshed.",
    "exact",
    "the exporter.",
    ("rabbitmq",),
)

# --- the exporter itself ----------------------------------------------------------------------

SCRAPE_DURATION = _spec(
    "celery_exporter_scrape_duration_seconds",
    "gauge",
    ("broker",),
    "Time the last inspection of the broker took.",
    "exact",
    "the exporter.",
)
INSPECTION_RUNNING = _spec(
    "celery_exporter_inspection_running_seconds",
    "gauge",
    ("broker",),
    "How long the broker's inspection had been running when the scrape stopped waiting for it "
    "(at the earlier of --scrape-timeout and Prometheus' scrape timeout); 0 when the scrape got "
    "a finished inspection. With celery_broker_up 0, above 0 means the broker is slow or hung, "
    "0 means the inspection failed.",
    "exact",
    "the exporter, per scrape.",
)
SCRAPE_ERRORS = _spec(
    "celery_exporter_scrape_errors_total",
    "counter",
    ("broker",),
    "Inspections of the broker that failed or timed out.",
    "exact",
    "the exporter.",
)
MALFORMED_MESSAGES = _spec(
    "celery_exporter_malformed_messages_total",
    "counter",
    ("broker",),
    "Stored messages the exporter could not parse, counted each time one is read (they are "
    "skipped; depth still counts them).",
    "exact",
    "the exporter.",
)
UNREADABLE_KEYS = _spec(
    "celery_exporter_unreadable_keys",
    "gauge",
    ("broker",),
    "Keys the last inspection could not read because they hold another type than kombu writes: "
    "queue levels (see celery_queue_unreadable) and the unacked hash or its index (the reserved "
    "work readings are then left out). Each costs its own readings, never the broker.",
    "exact",
    "the exporter (Redis WRONGTYPE replies).",
    ("redis",),
)
QUEUES_OVER_LIMIT = _spec(
    "celery_exporter_queues_over_limit",
    "gauge",
    ("broker",),
    "Discovered queues the exporter does not watch because the broker's max_queues cap "
    "(default 2000) was reached; raise max_queues or list the queues to watch.",
    "exact",
    "the exporter.",
    ("redis", "rabbitmq"),
)
BUILD_INFO = _spec(
    "celery_exporter_build_info",
    "info",
    ("version", "python_version", "celery_version", "kombu_version"),
    "Version of the exporter and the libraries it reads brokers with.",
    "exact",
    "the exporter.",
)

QUEUE_METRICS: tuple[MetricSpec, ...] = (
    QUEUE_MESSAGES,
    QUEUE_OLDEST_MESSAGE_AGE,
    QUEUE_PRIORITY_URGENCY,
    QUEUE_RESERVED_MESSAGES,
    QUEUE_CONSUMERS,
    QUEUE_CONSUMER_UTILISATION,
    QUEUE_MAX_PRIORITY,
    QUEUE_MISSING,
    QUEUE_UNREADABLE,
    BROKER_RESERVED_MESSAGES,
    BROKER_RESERVED_OLDEST_AGE,
    BROKER_RESERVED_OVERDUE,
    BROKER_VISIBILITY_TIMEOUT,
    BROKER_UP,
    BROKER_INFO,
    RABBITMQ_MANAGEMENT_UP,
    SCRAPE_DURATION,
    SCRAPE_ERRORS,
    MALFORMED_MESSAGES,
    UNREADABLE_KEYS,
    QUEUES_OVER_LIMIT,
    BUILD_INFO,
)

#: Whether head ages are exact (issue 13). Kept apart from QUEUE_METRICS until a dashboard
#: charts it (the queue dashboards' coverage test reads QUEUE_METRICS).
QUEUE_STAMP_METRICS: tuple[MetricSpec, ...] = (QUEUE_OLDEST_MESSAGE_UNSTAMPED,)

# --- RabbitMQ 4: redeliveries, delivery limits, native delayed delivery (issue 23) -----------

QUEUE_REDELIVERED = _spec(
    "celery_queue_redelivered_total",
    "counter",
    ("broker", "queue"),
    "Deliveries of messages that had been delivered before (requeued after a reject, a nack or "
    "a consumer that died holding them, such as a worker killed with acks_late), since the "
    "queue was created. A rate that keeps up while the depth does not move is a task that "
    "kills its worker or a crash loop.",
    "exact (management API only; restarts at 0 when the queue is re-created)",
    "RabbitMQ: management API message_stats.redeliver.",
    ("rabbitmq",),
)
QUEUE_DELIVERY_LIMIT = _spec(
    "celery_queue_delivery_limit",
    "gauge",
    ("broker", "queue"),
    "Deliveries after which the broker drops a message (or dead-letters it when the queue has "
    "a dead-letter exchange). RabbitMQ 4 quorum queues default to 20. No series: no limit.",
    "exact (management API only)",
    "RabbitMQ: management API delivery_limit, else the x-delivery-limit argument.",
    ("rabbitmq",),
)
QUEUE_DEAD_LETTER_CONFIGURED = _spec(
    "celery_queue_dead_letter_configured",
    "gauge",
    ("broker", "queue"),
    "1 when messages the queue drops (delivery limit, TTL, overflow) go to a dead-letter "
    "exchange (x-dead-letter-exchange argument or a policy's dead-letter-exchange), 0 when "
    "they are discarded.",
    "exact (management API only)",
    "RabbitMQ: management API arguments and effective_policy_definition.",
    ("rabbitmq",),
)
QUEUE_TYPE = _spec(
    "celery_queue_type_info",
    "gauge",
    ("broker", "queue", "type"),
    "Always 1; type is the RabbitMQ queue type (classic, quorum, stream), so alerts can tell "
    "quorum queues (delivery limit, two priority levels on 4.0-4.2) from classic ones.",
    "exact (management API only)",
    "RabbitMQ: management API type.",
    ("rabbitmq",),
)
SCHEDULED_MESSAGES = _spec(
    "celery_scheduled_messages",
    "gauge",
    ("broker", "band"),
    "Countdown/ETA tasks held by Celery's native delayed delivery (Celery >= 5.5 with quorum "
    "queues), per delay band: band is the longest delay in seconds its queue "
    "celery_delayed_N holds (2^N). They are scheduled, not waiting: they have no consumer by "
    "design, and reach their app queue when due. Those queues are never watched as work "
    "queues.",
    "exact (ready + unacknowledged of each delay queue)",
    "RabbitMQ: management API of the queues celery_delayed_0..27 (with the broker's "
    "delayed_delivery_prefix).",
    ("rabbitmq",),
)

QUEUE_OLDEST_AGE_LOWER_BOUND = _spec(
    "celery_queue_oldest_message_age_lower_bound",
    "gauge",
    ("broker", "queue"),
    "1 when the queue's celery_queue_oldest_message_age_seconds (the series without priority, "
    "or priority='unknown' when its levels come from events) is only a lower bound of its "
    "oldest message's age: a RabbitMQ classic priority queue on 3.12.7+ / 4.x, where the API "
    "gives neither per-level counts nor the oldest message, only head_message_timestamp, the "
    "head of the most urgent non-empty level, whose level is then not known. Older messages "
    "may wait at less urgent levels. No series: the age is on the head's own level (levels "
    "from the broker, or exact from events), or there is none.",
    "exact",
    "RabbitMQ: management API x-max-priority and the absence of per-level counts; the "
    "events' level estimate (celery_queue_priority_levels_source_info).",
    ("rabbitmq",),
)
#: The sources of QUEUE_PRIORITY_LEVELS_SOURCE's ``source`` label.
LEVELS_FROM_BROKER = "broker"
LEVELS_FROM_EVENTS = "events"
LEVELS_TOTAL_ONLY = "none"
#: The ``priority`` of a queue's messages whose level the events do not tell (source='events').
UNKNOWN_LEVEL = "unknown"
QUEUE_PRIORITY_LEVELS_SOURCE = _spec(
    "celery_queue_priority_levels_source_info",
    "gauge",
    ("broker", "queue", "source"),
    "Always 1, for each RabbitMQ queue with priority levels: where its per-level "
    "celery_queue_messages come from. source='broker': the broker's own counts (classic "
    "priority queues up to 3.12.6, quorum queues). source='events': a classic priority queue "
    "on 3.12.7+ / 4.x with --events: the tasks seen published at each level (task-sent with the "
    "priority install(app) adds) and not yet seen received, reconciled with the broker's exact "
    "total; the rest is the level priority='unknown' (published before the exporter started, "
    "by a producer without install(app) or task-sent, or requeued after a receipt); a count "
    "above the total is taken off the most urgent levels first. source='none': such a queue "
    "without events: one series without priority.",
    "source='events': exact when priority='unknown' is 0 (and the events are complete: a worker "
    "without task events makes a level over-count until its task record expires); the "
    "levels always add up to the broker's exact total; the total is up to 5 s older than the "
    "events",
    "RabbitMQ: management API per-level fields; task-sent (priority), task-received and "
    "install(app)'s task-info events.",
    ("rabbitmq",),
)

#: RabbitMQ 4 facts (issue 23). Kept apart from QUEUE_METRICS: the dashboards do not chart
#: them yet (the queue dashboards' coverage test reads QUEUE_METRICS).
RABBITMQ4_METRICS: tuple[MetricSpec, ...] = (
    QUEUE_REDELIVERED,
    QUEUE_DELIVERY_LIMIT,
    QUEUE_DEAD_LETTER_CONFIGURED,
    QUEUE_TYPE,
    SCHEDULED_MESSAGES,
    QUEUE_OLDEST_AGE_LOWER_BOUND,
    QUEUE_PRIORITY_LEVELS_SOURCE,
)

#: Which way into RabbitMQ answered (the rabbitmq_prometheus plugin, issue 25).
RABBITMQ_PLUGIN_METRICS: tuple[MetricSpec, ...] = (
    RABBITMQ_PLUGIN_UP,
    RABBITMQ_PLUGIN_FAILURES,
    RABBITMQ_MANAGEMENT_QUEUE_READS,
)

#: How fresh each broker's reading is (issue 12/13: shared and deadline-bound inspections).
#: Kept apart from QUEUE_METRICS: they describe the exporter's view of a broker, not a queue
#: (the dashboards do not chart them yet; the queue dashboards' coverage test is unchanged).
FRESHNESS_METRICS: tuple[MetricSpec, ...] = (BROKER_LAST_SUCCESS, INSPECTION_RUNNING)

# --- broker pressure: memory, evictions, flushes, restarts, alarms (issue 22) ----------------

QUEUE_UNBOUND = _spec(
    "celery_queue_unbound",
    "gauge",
    ("broker", "queue"),
    "1 when the queue's kombu binding (_kombu.binding.<exchange> member) vanished after the "
    "exporter saw it (evicted, flushed): the queue stays watched while its lists hold messages "
    "and for unbound_queue_retention_seconds after, but Celery producers started from now on "
    "cannot route to it until a worker or producer declares it again. 0 otherwise.",
    "exact (since the exporter started)",
    "Redis: the binding sets read at each discovery pass.",
    ("redis",),
    absent="0 for every watched queue that was inspected, absent when the broker was not.",
)
REDIS_MEMORY_USED = _spec(
    "celery_redis_memory_used_bytes",
    "gauge",
    ("broker",),
    "Memory the Redis server uses (all databases), as it counts it against maxmemory.",
    "exact",
    "Redis: INFO memory used_memory.",
    ("redis",),
)
REDIS_MEMORY_MAX = _spec(
    "celery_redis_memory_max_bytes",
    "gauge",
    ("broker",),
    "The server's maxmemory; 0 means no limit (the host's memory is the limit).",
    "exact",
    "Redis: INFO memory maxmemory.",
    ("redis",),
)
REDIS_MAXMEMORY_POLICY = _spec(
    "celery_redis_maxmemory_policy_info",
    "info",
    ("broker", "policy"),
    "The server's maxmemory-policy (value 1). allkeys-lru, allkeys-lfu and allkeys-random "
    "evict Celery's queue lists, bindings and reservations once maxmemory is reached; "
    "noeviction refuses producers' writes instead; volatile-* evict only keys with a TTL.",
    "exact",
    "Redis: INFO memory maxmemory_policy.",
    ("redis",),
)
REDIS_EVICTED_KEYS = _spec(
    "celery_redis_evicted_keys_total",
    "counter",
    ("broker",),
    "Keys the server evicted for maxmemory since it started (all databases): with Celery's "
    "keys among them, messages are lost. Resets when Redis restarts.",
    "exact",
    "Redis: INFO stats evicted_keys.",
    ("redis",),
)
REDIS_OOM_REJECTIONS = _spec(
    "celery_redis_oom_rejected_commands_total",
    "counter",
    ("broker",),
    "Commands the server refused with OOM (used memory above maxmemory, noeviction or nothing "
    "left to evict) since it started: producers' publishes fail. Resets when Redis restarts "
    "or on CONFIG RESETSTAT.",
    "exact",
    "Redis >= 6.2: INFO errorstats errorstat_OOM.",
    ("redis",),
)
REDIS_FLUSHES = _spec(
    "celery_redis_flush_commands_total",
    "counter",
    ("broker", "command"),
    "FLUSHALL / FLUSHDB calls the server executed since it started (command 'flushall' or "
    "'flushdb'; any database): every message of the flushed databases is gone. Resets when "
    "Redis restarts or on CONFIG RESETSTAT.",
    "exact",
    "Redis: INFO commandstats cmdstat_flushall, cmdstat_flushdb.",
    ("redis",),
)
REDIS_UPTIME = _spec(
    "celery_redis_uptime_seconds",
    "gauge",
    ("broker",),
    "Seconds since the Redis server started: a drop is a restart (with persistence off, an "
    "empty broker).",
    "exact",
    "Redis: INFO server uptime_in_seconds.",
    ("redis",),
)
REDIS_PERSISTENCE = _spec(
    "celery_redis_persistence_enabled",
    "gauge",
    ("broker",),
    "1 when the server persists its data (AOF on, or RDB save points configured), 0 when "
    "neither: a restart empties it. Absent when unknown (AOF off and CONFIG GET refused).",
    "exact",
    "Redis: INFO persistence aof_enabled, CONFIG GET save.",
    ("redis",),
)


def _node_gauge(name: str, meaning: str, source: str) -> MetricSpec:
    return _spec(
        name, "gauge", ("broker", "node"), meaning, "exact",
        f"RabbitMQ management API /api/nodes: {source}.", ("rabbitmq",),
    )  # fmt: skip


RABBITMQ_NODE_RUNNING = _node_gauge(
    "celery_rabbitmq_node_running", "1 when the cluster node is running, 0 when it is down.",
    "running",
)  # fmt: skip
RABBITMQ_NODE_MEMORY_ALARM = _node_gauge(
    "celery_rabbitmq_node_memory_alarm",
    "1 while the node's memory alarm is set (memory above vm_memory_high_watermark): every "
    "publisher connected to the cluster is blocked.",
    "mem_alarm",
)
RABBITMQ_NODE_DISK_ALARM = _node_gauge(
    "celery_rabbitmq_node_disk_free_alarm",
    "1 while the node's disk alarm is set (free disk below disk_free_limit): every publisher "
    "connected to the cluster is blocked.",
    "disk_free_alarm",
)
RABBITMQ_NODE_PARTITIONS = _node_gauge(
    "celery_rabbitmq_node_partitions",
    "Cluster nodes this node cannot reach (a network partition); 0 when healthy.",
    "partitions (length)",
)
RABBITMQ_NODE_MEMORY_USED = _node_gauge(
    "celery_rabbitmq_node_memory_used_bytes", "Memory the node uses.", "mem_used"
)
RABBITMQ_NODE_MEMORY_LIMIT = _node_gauge(
    "celery_rabbitmq_node_memory_limit_bytes",
    "The node's memory high watermark: above it the memory alarm blocks publishers.",
    "mem_limit",
)
RABBITMQ_NODE_FD_USED = _node_gauge(
    "celery_rabbitmq_node_fd_used", "File descriptors the node has open.", "fd_used"
)
RABBITMQ_NODE_FD_LIMIT = _node_gauge(
    "celery_rabbitmq_node_fd_limit",
    "File descriptors the node may open: at the limit it refuses new connections.",
    "fd_total",
)
RABBITMQ_NODE_SOCKETS_USED = _node_gauge(
    "celery_rabbitmq_node_sockets_used",
    "Network sockets the node has open (RabbitMQ < 4 reports them).",
    "sockets_used",
)
RABBITMQ_NODE_SOCKETS_LIMIT = _node_gauge(
    "celery_rabbitmq_node_sockets_limit",
    "Network sockets the node may open: at the limit it refuses new connections.",
    "sockets_total",
)

#: How close a broker is to losing or refusing messages (issue 22). Kept apart from
#: QUEUE_METRICS: they describe the broker server, not a queue (the broker dashboard charts them).
BROKER_PRESSURE_METRICS: tuple[MetricSpec, ...] = (
    QUEUE_UNBOUND,
    REDIS_MEMORY_USED,
    REDIS_MEMORY_MAX,
    REDIS_MAXMEMORY_POLICY,
    REDIS_EVICTED_KEYS,
    REDIS_OOM_REJECTIONS,
    REDIS_FLUSHES,
    REDIS_UPTIME,
    REDIS_PERSISTENCE,
    RABBITMQ_NODE_RUNNING,
    RABBITMQ_NODE_MEMORY_ALARM,
    RABBITMQ_NODE_DISK_ALARM,
    RABBITMQ_NODE_PARTITIONS,
    RABBITMQ_NODE_MEMORY_USED,
    RABBITMQ_NODE_MEMORY_LIMIT,
    RABBITMQ_NODE_FD_USED,
    RABBITMQ_NODE_FD_LIMIT,
    RABBITMQ_NODE_SOCKETS_USED,
    RABBITMQ_NODE_SOCKETS_LIMIT,
)

# --- Celery events (task and worker metrics) ----------------------------------------------------

#: ``task`` label value that absorbs task names beyond the cardinality cap.
OTHER_TASK = "(other)"
#: ``queue`` label value (event metrics) that absorbs queue names beyond events.max_queue_names.
OTHER_QUEUE = "(other)"
#: ``worker`` label value that stands for all workers beyond events.max_workers (up while any
#: of them sends heartbeats; no per-worker activity, processed count or load).
OTHER_WORKER = "(other)"

_TASK_LABELS = ("broker", "queue", "task")
#: Appended to the help of event metrics labelled by queue (and task): the label caps.
_CAPPED = (
    " Names past the label caps (events.max_queue_names, events.max_task_names) are '(other)',"
    " as are series past the series budget (celery_event_series_dropped_total)."
)
_CAPPED_QUEUE = " Queue names past events.max_queue_names are '(other)'."
_EVENTS_SOURCE = "Celery events (worker_send_task_events / task_send_sent_event)."


def _task_counter(event: str, meaning: str) -> MetricSpec:
    return _spec(
        f"celery_task_{event}_total",
        "counter",
        _TASK_LABELS,
        meaning + _CAPPED,
        "exact while the event stream is connected (see celery_event_stream_interruptions_total)",
        f"task-{event} events.",
    )


TASK_SENT = _task_counter("sent", "Tasks published (needs task_send_sent_event on producers).")
TASK_RECEIVED = _task_counter("received", "Tasks received by a worker.")
TASK_STARTED = _task_counter("started", "Tasks a worker started executing.")
TASK_SUCCEEDED = _task_counter("succeeded", "Tasks that finished successfully.")
TASK_FAILED = _spec(
    "celery_task_failed_total",
    "counter",
    ("broker", "queue", "task", "exception"),
    "Tasks that raised an exception, not counting time-limit kills "
    "(those are in celery_task_time_limit_exceeded_total), per exception class name (e.g. "
    "'ValueError'); names past events.max_exception_names are '(other)', '(unknown)' when the "
    "event names none." + _CAPPED,
    "exact while the event stream is connected (see celery_event_stream_interruptions_total)",
    "task-failed events (exception, else the traceback's last line).",
)
TASK_RETRIED = _task_counter("retried", "Tasks that asked to be retried.")
TASK_REJECTED = _task_counter("rejected", "Tasks a worker rejected.")
TASK_REVOKED = _task_counter("revoked", "Tasks revoked before or while running.")
TASK_RECEIVED_BY_PRIORITY = _spec(
    "celery_task_received_by_priority_total",
    "counter",
    ("broker", "queue", "task", "priority"),
    "Tasks a worker received, per priority level: the level label as the broker's "
    "celery_queue_messages priority label (Redis: the priority step; RabbitMQ: the priority "
    "capped at x-max-priority). Each run (first delivery, each retry) counts once. Needs "
    "install(app) on the workers (no series without it); a task whose level is unknown is not "
    "counted." + _CAPPED,
    "exact with install(app) while the event stream is connected",
    "the task-info event of install(app)'s worker hook (queue, priority, x-max-priority).",
)
TASK_TIME_LIMIT = _spec(
    "celery_task_time_limit_exceeded_total",
    "counter",
    ("broker", "queue", "task", "limit"),
    "Tasks stopped by a time limit, apart from other failures; limit is 'soft' "
    "(SoftTimeLimitExceeded) or 'hard' (TimeLimitExceeded, the process was killed)." + _CAPPED,
    "exact while the event stream is connected",
    "task-failed events whose exception is a time limit.",
)
TASK_RUNTIME = _spec(
    "celery_task_runtime_seconds",
    "histogram",
    _TASK_LABELS,
    "Task execution time as the worker measured it." + _CAPPED,
    "exact per task; bucketed",
    "task-succeeded runtime.",
)
TASK_QUEUE_WAIT = _spec(
    "celery_task_queue_wait_seconds",
    "histogram",
    _TASK_LABELS,
    "Queue wait per run and task name: start of execution minus the later of the run's own "
    "publish and its ETA (countdown/ETA delays and retry backoffs are not waiting). From the "
    "attempt stamp of install(app) when present, else from task-sent." + _CAPPED,
    "exact with install(app) or task_send_sent_event; bucketed; clamped at 0",
    "task-started events joined with the stamp or task-sent, and the ETA (install(app) or "
    "task-received).",
)
QUEUE_WAIT = _spec(
    "celery_queue_wait_seconds",
    "histogram",
    ("broker", "queue", "priority"),
    "Queue wait per run, per queue and priority level: start of execution minus the later of "
    "the run's own publish (a retry's republish) and its ETA. The priority label needs "
    "install(app) on workers and producers; without it the series carry no priority label "
    "(wait from task-sent)." + _CAPPED_QUEUE,
    "exact with install(app); bucketed; clamped at 0",
    "the worker-side hook of install(app), else task-sent/task-received/task-started events.",
)
TASK_END_TO_END = _spec(
    "celery_task_publish_to_start_seconds",
    "histogram",
    _TASK_LABELS,
    "End-to-end delay per run and task name: start of execution minus the task's first "
    "publish, ETA/countdown delays and retries included (answers 'how long after it was "
    "first asked for did it run', not 'how long did it queue')." + _CAPPED,
    "exact with install(app) (none without it); bucketed; clamped at 0",
    "task-started events joined with the first-publish stamp of install(app).",
)
QUEUE_PREFETCH = _spec(
    "celery_queue_prefetch_seconds",
    "histogram",
    ("broker", "queue", "priority"),
    "Prefetch time per run: start of execution minus the later of task-received and the ETA, "
    "the time the task sat reserved in a worker's prefetch buffer instead of in the broker, "
    "where a more urgent task could have overtaken it. No priority label without "
    "install(app)." + _CAPPED_QUEUE,
    "exact (both ends on the worker's clock); bucketed",
    "task-received and task-started events (and the ETA).",
)
WORKER_UP = _spec(
    "celery_worker_up",
    "gauge",
    ("broker", "worker"),
    "1 while the worker sends heartbeats, 0 once none arrived within the heartbeat timeout "
    "(lost) or it went offline (graceful shutdown, see celery_worker_offline). A lost worker "
    "stays exported (as 0) for events.worker_retention_seconds so alerts can fire, an offline "
    "one for events.worker_offline_grace_seconds; then every series of the worker is dropped. "
    "Workers past events.max_workers share one series, worker='(other)', up while any of them "
    "sends heartbeats.",
    "exact to the heartbeat timeout",
    "worker-online, worker-heartbeat and worker-offline events.",
)
WORKER_OFFLINE = _spec(
    "celery_worker_offline",
    "gauge",
    ("broker", "worker"),
    "1 for a worker that announced a graceful shutdown (worker-offline event) less than "
    "events.worker_offline_grace_seconds ago (its celery_worker_up is 0), else 0: a lost "
    "worker (heartbeats stopped without worker-offline) is 0 here. A worker that sends "
    "worker-online or a heartbeat again is up and 0 here. Always 0 for worker='(other)'.",
    "exact",
    "worker-offline, worker-online and worker-heartbeat events.",
)
WORKER_ACTIVE_TASKS = _spec(
    "celery_worker_active_tasks",
    "gauge",
    ("broker", "worker"),
    "Tasks the worker is executing, from its last heartbeat.",
    "as of the last heartbeat",
    "worker-heartbeat active.",
)
WORKER_PROCESSED = _spec(
    "celery_worker_processed_tasks_total",
    "counter",
    ("broker", "worker"),
    "Tasks the worker has processed since it started, from its last heartbeat.",
    "as of the last heartbeat",
    "worker-heartbeat processed.",
)
WORKER_LOAD = _spec(
    "celery_worker_load1",
    "gauge",
    ("broker", "worker"),
    "One-minute load average of the worker's host, from its last heartbeat.",
    "as of the last heartbeat",
    "worker-heartbeat loadavg.",
)
WORKER_LAST_HEARTBEAT = _spec(
    "celery_worker_last_heartbeat_timestamp_seconds",
    "gauge",
    ("broker", "worker"),
    "When the exporter last heard from the worker (epoch seconds, exporter clock).",
    "exact",
    "worker events.",
)
WORKER_POOL_SIZE = _spec(
    "celery_worker_pool_size",
    "gauge",
    ("broker", "worker", "pool"),
    "Execution slots of the worker's pool (prefork processes, threads, greenlets; 1 for "
    "solo), as the worker announced it; pool is the pool type. Needs install(app) on workers; "
    "only for live workers exported one by one (not worker='(other)').",
    "as of the last heartbeat",
    "the worker-side hook of install(app) (sent with every heartbeat).",
)
WORKER_PREFETCH_MULTIPLIER = _spec(
    "celery_worker_prefetch_multiplier",
    "gauge",
    ("broker", "worker"),
    "The worker's worker_prefetch_multiplier: it reserves up to pool size x this many tasks.",
    "as of the last heartbeat",
    "the worker-side hook of install(app).",
)
QUEUE_WORKER_SLOTS = _spec(
    "celery_queue_worker_slots",
    "gauge",
    ("broker", "queue"),
    "Capacity of the queue: pool slots of the live workers consuming it (a worker consuming "
    "several queues counts in each). Needs install(app) on workers." + _CAPPED_QUEUE,
    "as of the last heartbeats",
    "celery_worker_pool_size of the workers that announce the queue.",
)
QUEUE_WORKER_BUSY_SLOTS = _spec(
    "celery_queue_worker_busy_slots",
    "gauge",
    ("broker", "queue"),
    "Tasks executing on the live workers consuming the queue (their heartbeat's active count, "
    "all their queues together); divided by celery_queue_worker_slots it is the queue's "
    "utilisation." + _CAPPED_QUEUE,
    "as of the last heartbeats",
    "worker-heartbeat active of the workers counted in celery_queue_worker_slots.",
)
QUEUE_WORKERS = _spec(
    "celery_queue_workers",
    "gauge",
    ("broker", "queue"),
    "Live workers consuming from the queue; the workers folded into worker='(other)' count as "
    "one." + _CAPPED_QUEUE,
    "exact to the heartbeat timeout",
    "worker events and the queues workers announce (install(app)) or run tasks from.",
)
WORKERS_QUEUES_UNKNOWN = _spec(
    "celery_workers_queues_unknown",
    "gauge",
    ("broker",),
    "Live workers that have not announced the queues they consume (no install(app) on the "
    "worker): celery_queue_workers then counts them only for the queues they ran tasks from. "
    "0 when every live worker announced its queues. The workers folded into worker='(other)' "
    "count as one, and only while none of them announced its queues within the heartbeat "
    "timeout.",
    "exact to the heartbeat timeout",
    "worker events and the queue announcements of install(app).",
)
EVENT_CONSUMER_UP = _spec(
    "celery_event_consumer_up",
    "gauge",
    ("broker",),
    "1 while the exporter is subscribed to the broker's Celery events, else 0.",
    "exact",
    "the exporter.",
)
EVENTS_RECEIVED = _spec(
    "celery_events_received_total",
    "counter",
    ("broker",),
    "Celery events received (each event of a batched task.multi message counts).",
    "exact",
    "the exporter.",
)
EVENTS_MALFORMED = _spec(
    "celery_events_malformed_total",
    "counter",
    ("broker",),
    "Event messages that could not be decoded; they are skipped.",
    "exact",
    "the exporter.",
)
EVENT_STREAM_INTERRUPTIONS = _spec(
    "celery_event_stream_interruptions_total",
    "counter",
    ("broker", "reason"),
    "Times the event subscription was lost and re-established; events sent meanwhile are lost. "
    "reason is 'disconnected' (broker restart, network) or 'overflow' (Redis dropped the "
    "subscriber for exceeding client-output-buffer-limit pubsub).",
    "exact",
    "the exporter.",
)
EVENT_CLOCK_SKEW = _spec(
    "celery_event_clock_skew_clamped_total",
    "counter",
    ("broker",),
    "Waits that came out negative or absurd (clock skew between hosts) and were clamped.",
    "exact",
    "the exporter.",
)
HOST_CLOCK_OFFSET = _spec(
    "celery_host_clock_offset_seconds",
    "gauge",
    ("broker", "host"),
    "Estimated clock offset of a host the event stream hears from: its clock minus the "
    "exporter's (positive: ahead), the largest event timestamp minus receipt time over the "
    "last 5 minutes (transit only lowers it). Head ages and waits are corrected by it.",
    "lower bound of the offset (by the fastest transit)",
    "Celery event timestamp fields against the exporter's receipt time; worker task-info "
    "events against install(app)'s publish stamp.",
)
EVENT_TRACKED_TASKS = _spec(
    "celery_event_tracked_tasks",
    "gauge",
    ("broker",),
    "Tasks whose events the exporter is holding to join (bounded in size and age).",
    "exact",
    "the exporter.",
)
EVENT_SERIES_DROPPED = _spec(
    "celery_event_series_dropped_total",
    "counter",
    ("broker", "metric"),
    "Observations of a task metric counted under its '(other)' labels because their own series "
    "would have exceeded the series budget (events.max_series_per_family series per metric, "
    "events.max_event_samples samples in all; docs/reliability.md). metric is the metric's name.",
    "exact",
    "the exporter.",
)

#: Metrics from Celery events (celery_queue_exporter/events/).
EVENT_METRICS: tuple[MetricSpec, ...] = (
    TASK_SENT,
    TASK_RECEIVED,
    TASK_STARTED,
    TASK_SUCCEEDED,
    TASK_FAILED,
    TASK_RETRIED,
    TASK_REJECTED,
    TASK_REVOKED,
    TASK_RECEIVED_BY_PRIORITY,
    TASK_TIME_LIMIT,
    TASK_RUNTIME,
    TASK_QUEUE_WAIT,
    QUEUE_WAIT,
    TASK_END_TO_END,
    QUEUE_PREFETCH,
    WORKER_UP,
    WORKER_OFFLINE,
    WORKER_ACTIVE_TASKS,
    WORKER_PROCESSED,
    WORKER_LOAD,
    WORKER_LAST_HEARTBEAT,
    WORKER_POOL_SIZE,
    WORKER_PREFETCH_MULTIPLIER,
    QUEUE_WORKERS,
    WORKERS_QUEUES_UNKNOWN,
    QUEUE_WORKER_SLOTS,
    QUEUE_WORKER_BUSY_SLOTS,
    EVENT_CONSUMER_UP,
    EVENTS_RECEIVED,
    EVENTS_MALFORMED,
    EVENT_STREAM_INTERRUPTIONS,
    EVENT_CLOCK_SKEW,
    HOST_CLOCK_OFFSET,
    EVENT_TRACKED_TASKS,
    EVENT_SERIES_DROPPED,
)


def all_metrics() -> tuple[MetricSpec, ...]:
    """Every metric the exporter can expose."""
    return (
        QUEUE_METRICS
        + QUEUE_STAMP_METRICS
        + FRESHNESS_METRICS
        + BROKER_PRESSURE_METRICS
        + RABBITMQ4_METRICS
        + RABBITMQ_PLUGIN_METRICS
        + EVENT_METRICS
    )


def by_name(name: str) -> MetricSpec:
    """Look a metric up by its exposed name (``_total`` included for counters)."""
    for spec in all_metrics():
        if spec.name == name:
            return spec
    raise KeyError(name)


def exposed_series_names(spec: MetricSpec) -> tuple[str, ...]:
    """Sample names a family exposes, e.g. a histogram's _bucket, _sum and _count."""
    if spec.type == "histogram":
        return (f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count")
    return (spec.name,)


def markdown_table() -> str:
    """The metric catalogue as a Markdown table, for the README."""
    rows = [
        "| metric | type | labels | brokers | meaning | accuracy | source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for spec in all_metrics():
        cells = [
            f"`{spec.name}`",
            spec.type,
            ", ".join(f"`{label}`" for label in spec.labels),
            ", ".join(spec.brokers),
            spec.help,
            spec.accuracy,
            spec.source,
        ]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    rows += ["", "Absent versus zero, where a family leaves series out:", ""]
    rows += [f"* `{spec.name}`: {spec.absent}" for spec in all_metrics() if spec.absent]
    return "\n".join(rows) + "\n"


CATALOGUE_BEGIN = (
    "<!-- metric catalogue: generated by `python -m celery_queue_exporter.catalogue`, begin -->"
)
CATALOGUE_END = "<!-- metric catalogue: end -->"
#: The page that carries the generated table, relative to the repository root (above exporter/).
CATALOGUE_PAGE = "docs/metrics.md"


def render_into(page_text: str) -> str:
    """Replace the catalogue block between the markers of the page with a fresh table."""
    head, sep, rest = page_text.partition(CATALOGUE_BEGIN)
    if not sep:
        raise ValueError(f"{CATALOGUE_PAGE} has no line {CATALOGUE_BEGIN!r}")
    _, sep, tail = rest.partition(CATALOGUE_END)
    if not sep:
        raise ValueError(f"{CATALOGUE_PAGE} has no line {CATALOGUE_END!r}")
    return f"{head}{CATALOGUE_BEGIN}\n{markdown_table()}{CATALOGUE_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Rewrite the metric table of docs/metrics.md (``--check`` only compares)."""
    import pathlib

    args = sys.argv[1:] if argv is None else argv
    page = pathlib.Path(__file__).resolve().parents[2] / CATALOGUE_PAGE
    current = page.read_text(encoding="utf-8")
    fresh = render_into(current)
    if "--check" in args:
        if fresh != current:
            print(
                f"{CATALOGUE_PAGE} metric catalogue is stale: "
                "run python -m celery_queue_exporter.catalogue"
            )
            return 1
        return 0
    page.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
