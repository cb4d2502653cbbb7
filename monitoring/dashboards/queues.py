"""Celery / Queues: what is waiting, for how long, what is reserved, who consumes it.

Built by ``python -m monitoring.generate`` (which calls ``build``) into dashboards/queues.json.
"""

from __future__ import annotations

from typing import Any

from celery_queue_exporter import catalogue as cat

from .board import dashboard, variables
from .broker_pressure import broker_pressure
from .panels import (
    NEUTRAL,
    UNIT_BOOL,
    UNIT_COUNT,
    UNIT_MESSAGES,
    UNIT_MSG_RATE,
    UNIT_OPS,
    UNIT_RATIO,
    UNIT_SECONDS,
    UP_DOWN,
    Column,
    Json,
    Line,
    Q,
    Row,
    above,
    below,
    line,
    row,
    stat,
    table,
    timeseries,
)
from .promql import (
    EMPTIED_LEVEL_SHOWN,
    at_urgency,
    depth_by_level,
    m,
    on_transport,
    selector,
    unknown_priority,
)
from .rabbitmq4 import redeliveries_and_scheduled
from .settings import Settings

SLUG = "queues"


def _depth_by_queue(s: Settings) -> str:
    return f"sum by (broker, queue) ({m(cat.QUEUE_MESSAGES, selector(s, queue=True))})"


def _depth_by_level(s: Settings) -> str:
    depth = m(cat.QUEUE_MESSAGES, selector(s, queue=True))
    return unknown_priority(depth_by_level(depth))


def _oldest_by_level(s: Settings) -> str:
    age = m(cat.QUEUE_OLDEST_MESSAGE_AGE, selector(s, queue=True))
    return f"max by (broker, queue, priority) ({age})"


def _urgent_oldest(s: Settings) -> str:
    age = m(cat.QUEUE_OLDEST_MESSAGE_AGE, selector(s, queue=True))
    return f"max by (broker, queue) ({at_urgency(age, s, 'most')})"


def overview(s: Settings) -> Row:
    """Stat tiles: broker health, what waits, what is reserved, the oldest messages."""
    sb = selector(s)
    sq = selector(s, queue=True)
    backlog_high = s.threshold("CeleryQueueBacklogHigh", "messages")
    too_long = s.threshold("CeleryQueueMessageWaitingTooLong", "seconds")
    urgent_too_long = s.threshold("CeleryQueueMostUrgentWaitingTooLong", "seconds")

    brokers_up = stat(
        s,
        "Brokers up",
        "Brokers the exporter inspected successfully in its last scrape "
        "(celery_broker_up). Normal: every broker UP. DOWN means the exporter could "
        "not read the broker: the depth panels below then show gaps, not zeros.",
        [Q(f"min by (broker) ({m(cat.BROKER_UP, sb)})", "{{broker}}")],
        unit=UNIT_BOOL,
        thresholds=below(1),
        mappings=UP_DOWN,
        runbooks=["CeleryBrokerDown", "CeleryExporterDown"],
        no_value="no data: exporter down?",
        graph=False,
    )
    waiting_messages = stat(
        s,
        "Waiting messages",
        "Messages waiting in the selected queues, all priority levels "
        "(celery_queue_messages). Normal: small and returning to near 0 between "
        f"bursts; red above the CeleryQueueBacklogHigh threshold ({backlog_high:g} "
        "per queue is what the alert uses; this total turns red at the same number).",
        [Q(f"sum({m(cat.QUEUE_MESSAGES, sq)})")],
        unit=UNIT_MESSAGES,
        thresholds=above(backlog_high),
        runbooks=["CeleryQueueBacklogHigh"],
    )
    reserved_unacked = stat(
        s,
        "Reserved (unacked)",
        "Messages delivered to workers and not yet acknowledged: prefetched, running "
        "or waiting for an ETA (celery_queue_reserved_messages). They are NOT in "
        "'Waiting messages'. Normal: about workers x concurrency x prefetch.",
        [Q(f"sum({m(cat.QUEUE_RESERVED_MESSAGES, sq)})")],
        unit=UNIT_MESSAGES,
        thresholds=NEUTRAL,
    )
    oldest_waiting_message = stat(
        s,
        "Oldest waiting message",
        "Age of the oldest message waiting at the head of any level of the selected "
        "queues (celery_queue_oldest_message_age_seconds; a lower bound unless "
        f"producers call install(app)). Normal: seconds. Red past {too_long:g}s "
        "(CeleryQueueMessageWaitingTooLong; lower bounds do not alert, "
        "CeleryInstrumentationMissing reports them). Each queue's wait objective "
        "(CeleryQueueWaitObjectiveMissed) applies to this age too.",
        [Q(f"max({m(cat.QUEUE_OLDEST_MESSAGE_AGE, sq)})")],
        unit=UNIT_SECONDS,
        thresholds=above(too_long),
        runbooks=[
            "CeleryQueueWaitObjectiveMissed",
            "CeleryQueueMessageWaitingTooLong",
            "CeleryInstrumentationMissing",
        ],
    )
    most_urgent_level_oldest = stat(
        s,
        "Most urgent level: oldest",
        "Oldest message waiting at the most urgent level of any selected queue (Redis: "
        "priority 0, RabbitMQ: the highest). Normal: below the platform goal of "
        f"{urgent_too_long:g}s; red above it (CeleryQueueMostUrgentWaitingTooLong).",
        [Q(f"max({_urgent_oldest(s)})")],
        unit=UNIT_SECONDS,
        thresholds=above(urgent_too_long),
        runbooks=["CeleryQueueMostUrgentWaitingTooLong"],
        dashboards=["priorities"],
    )
    unwatched_queues = stat(
        s,
        "Unwatched queues",
        "Discovered queues the exporter skips because the broker's max_queues cap was "
        "reached (celery_exporter_queues_over_limit): their depth is unknown. Normal: "
        "0; otherwise raise max_queues or list the queues to watch.",
        [Q(f"sum({m(cat.QUEUES_OVER_LIMIT, sb)})")],
        unit=UNIT_COUNT,
        thresholds=above(1, over="orange"),
    )
    return row(
        "Overview",
        line(
            5,
            (brokers_up, 5),
            (waiting_messages, 4),
            (reserved_unacked, 4),
            (oldest_waiting_message, 4),
            (most_urgent_level_oldest, 4),
            (unwatched_queues, 3),
        ),
    )


def depth(s: Settings) -> Row:
    """Waiting messages per queue and level, their growth and age."""
    backlog_high = s.threshold("CeleryQueueBacklogHigh", "messages")
    too_long = s.threshold("CeleryQueueMessageWaitingTooLong", "seconds")
    growth_window = s.alert("CeleryQueueBacklogGrowing")["window"]
    waiting_messages_queue = timeseries(
        s,
        "Waiting messages per queue",
        "Messages waiting per queue, all priority levels together "
        "(celery_queue_messages summed over priority). Normal: flat or saw-toothed "
        "near 0; a line that keeps climbing means producers outpace workers. The "
        "dashed line is the CeleryQueueBacklogHigh threshold.",
        [Q(_depth_by_queue(s), "{{broker}} / {{queue}}")],
        unit=UNIT_MESSAGES,
        thresholds=above(backlog_high),
        runbooks=["CeleryQueueBacklogHigh"],
    )
    waiting_messages_priority_level = timeseries(
        s,
        "Waiting messages per priority level",
        "Messages waiting per queue and priority level, stacked. Redis reports a priority "
        "step (0 = most urgent) while it holds messages, and each queue's first step "
        f"always; a level that emptied is drawn at 0 for {EMPTIED_LEVEL_SHOWN}, then no "
        "more. RabbitMQ per level when its management API "
        "gives priority_lengths, otherwise one series with priority 'unknown'. Normal: "
        "the urgent levels stay near 0 while lower levels absorb bursts.",
        [Q(_depth_by_level(s), "{{broker}} / {{queue}} p{{priority}}")],
        unit=UNIT_MESSAGES,
        stacked=True,
        dashboards=["priorities"],
    )
    backlog_growth_rate = timeseries(
        s,
        "Backlog growth rate",
        "Change in waiting messages per second, from a linear fit over "
        f"{growth_window} (deriv). Normal: hovering around 0; positive for long means "
        "the backlog grows (CeleryQueueBacklogGrowing), negative means it drains.",
        [
            # The fit is of each queue's total: on Redis a level that empties stops being
            # sent, and a per-level fit would keep its last rising samples for the window.
            Q(
                f"deriv(({_depth_by_queue(s)})[{growth_window}:15s])",
                "{{broker}} / {{queue}}",
            )
        ],
        unit=UNIT_MSG_RATE,
        min_value=None,
        runbooks=["CeleryQueueBacklogGrowing"],
    )
    oldest_waiting_message_priority = timeseries(
        s,
        "Oldest waiting message per priority level",
        "Age of the next message to be consumed, per level "
        "(celery_queue_oldest_message_age_seconds). Exact when producers call "
        "celery_queue_exporter.instrumentation.install(app), otherwise a lower bound "
        "that starts at 0 when a message reaches the head. Normal: seconds and "
        "falling back to 0; a level whose age climbs while others drain is being "
        "starved. Dashed line: CeleryQueueMessageWaitingTooLong.",
        [Q(_oldest_by_level(s), "{{broker}} / {{queue}} p{{priority}}")],
        unit=UNIT_SECONDS,
        thresholds=above(too_long),
        runbooks=["CeleryQueueMessageWaitingTooLong", "CeleryPriorityStarvation"],
        dashboards=["priorities"],
    )
    return row(
        "Depth",
        line(9, (waiting_messages_queue, 12), (waiting_messages_priority_level, 12)),
        line(8, (backlog_growth_rate, 12), (oldest_waiting_message_priority, 12)),
    )


def reserved_work_and_consumers(s: Settings) -> Row:
    """What workers hold unacknowledged, and who consumes each queue."""
    sb = selector(s)
    sq = selector(s, queue=True)
    near_visibility = s.threshold("CeleryReservedNearVisibilityTimeout", "ratio")

    reserved_unacknowledged_queue = timeseries(
        s,
        "Reserved (unacknowledged) per queue",
        "Messages delivered to workers and not acknowledged yet, per queue "
        "(celery_queue_reserved_messages): prefetched, running, or ETA/countdown tasks "
        "held by workers. On Redis split over queues from a sample; '(unknown)' holds "
        "reservations that cannot be tied to a queue; 'all queues' is the broker-wide "
        "total "
        "(celery_broker_reserved_messages). Normal: steady around "
        "workers x concurrency x prefetch multiplier; a jump means ETA tasks.",
        [
            Q(
                f"sum by (broker, queue) ({m(cat.QUEUE_RESERVED_MESSAGES, sq)})",
                "{{broker}} / {{queue}}",
            ),
            Q(m(cat.BROKER_RESERVED_MESSAGES, sb), "{{broker}} all queues"),
        ],
        unit=UNIT_MESSAGES,
    )
    oldest_reservation_visibility_timeout = timeseries(
        s,
        "Oldest reservation vs visibility timeout",
        "Age of the oldest unacknowledged reservation on Redis "
        "(celery_broker_reserved_oldest_age_seconds) next to the alert line at "
        f"{near_visibility:.0%} of visibility_timeout. Past visibility_timeout Redis "
        "delivers the message again and the task runs twice; past the longest countdown plus "
        "the hard time limit its worker is gone (CeleryReservationsOrphaned). Normal: far "
        "below the line (long ETAs are the usual exception).",
        [
            Q(m(cat.BROKER_RESERVED_OLDEST_AGE, sb), "{{broker}} oldest reservation"),
            Q(
                f"{near_visibility:g} * {m(cat.BROKER_VISIBILITY_TIMEOUT, sb)}",
                f"{{{{broker}}}} {near_visibility:.0%} of visibility_timeout",
            ),
        ],
        unit=UNIT_SECONDS,
        runbooks=["CeleryReservedNearVisibilityTimeout", "CeleryReservationsOrphaned"],
    )
    reservations_past_visibility_timeout = timeseries(
        s,
        "Reservations past visibility timeout",
        "Reservations older than visibility_timeout "
        "(celery_broker_reserved_overdue_messages): Redis will deliver them again, so "
        "these tasks run twice. Normal: 0.",
        [Q(m(cat.BROKER_RESERVED_OVERDUE, sb), "{{broker}}")],
        unit=UNIT_MESSAGES,
        thresholds=above(1),
        runbooks=["CeleryReservedNearVisibilityTimeout"],
    )
    consumers_queue = timeseries(
        s,
        "Consumers per queue",
        "Consumers attached to each queue: RabbitMQ's own count "
        "(celery_queue_consumers) and, for both brokers, live workers consuming it "
        "from worker events (celery_queue_workers). Normal: steady at the deployed "
        "number; 0 with waiting messages means nothing drains the queue "
        "(CeleryQueueNoConsumers).",
        [
            Q(
                f"sum by (broker, queue) ({m(cat.QUEUE_CONSUMERS, sq)})",
                "{{broker}} / {{queue}} consumers",
            ),
            Q(
                f"sum by (broker, queue) ({m(cat.QUEUE_WORKERS, sq)})",
                "{{broker}} / {{queue}} workers",
            ),
        ],
        unit=UNIT_COUNT,
        thresholds=below(1),
        step=True,
        runbooks=["CeleryQueueNoConsumers", "CeleryQueueWorkersDropped"],
        dashboards=["workers"],
    )
    consumer_utilisation_rabbitmq = timeseries(
        s,
        "Consumer utilisation (RabbitMQ)",
        "Fraction of time RabbitMQ could deliver to the queue's consumers at once "
        "(celery_queue_consumer_utilisation_ratio). Normal: near 100% when consumers "
        "keep up; low with a backlog means prefetch limits or slow consumers. Redis "
        "has no equivalent.",
        [
            Q(
                m(cat.QUEUE_CONSUMER_UTILISATION, sq),
                "{{broker}} / {{queue}}",
            )
        ],
        unit=UNIT_RATIO,
        max_value=1,
    )
    return row(
        "Reserved work and consumers",
        line(
            8,
            (reserved_unacknowledged_queue, 8),
            (oldest_reservation_visibility_timeout, 8),
            (reservations_past_visibility_timeout, 8),
        ),
        line(8, (consumers_queue, 12), (consumer_utilisation_rabbitmq, 12)),
    )


def _per_transport(s: Settings, title: str, query: Q, **options: Any) -> Line:
    """The same panel twice, side by side: Redis brokers only, RabbitMQ brokers only."""
    panels = []
    for name, transport in (("Redis", "redis"), ("RabbitMQ", "rabbitmq")):
        urgency = (
            "Redis: 0 is the most urgent level. "
            if transport == "redis"
            else "RabbitMQ: the highest level is the most urgent; 'unknown' when the broker "
            "does not report per-level counts. "
        )
        description = (
            f"The same measure as above for {name} brokers only, beside the other broker on "
            f"the same scale, to compare a migration. {urgency}Normal: both brokers drain "
            "their urgent levels first. Empty when no broker of this kind is configured."
        )
        only = Q(on_transport(query.expr, s, transport), query.legend)
        panels.append((timeseries(s, f"{name}: {title}", description, [only], **options), 12))
    return line(8, *panels)


def brokers_side_by_side(s: Settings) -> Row:
    """Depth and age per level for each transport apart, for comparing a migration."""
    legend = "{{broker}} / {{queue}} p{{priority}}"
    too_long = s.threshold("CeleryQueueMessageWaitingTooLong", "seconds")
    return row(
        "Redis and RabbitMQ side by side",
        _per_transport(
            s,
            "waiting messages per priority level",
            Q(_depth_by_level(s), legend),
            unit=UNIT_MESSAGES,
        ),
        _per_transport(
            s,
            "oldest waiting message per level",
            Q(_oldest_by_level(s), legend),
            unit=UNIT_SECONDS,
            thresholds=above(too_long),
            runbooks=["CeleryQueueMessageWaitingTooLong"],
        ),
    )


def exporter_and_brokers(s: Settings) -> Row:
    """The exporter's own health: broker inspections, scrape time and errors."""
    sb = selector(s)
    sq = selector(s, queue=True)

    broker_exporter_up = timeseries(
        s,
        "Broker and exporter up",
        "celery_broker_up per broker (1 = the last inspection succeeded) and "
        "Prometheus' own up for the exporter targets. Normal: all at 1. A broker at "
        "0 means its queues are unknown (CeleryBrokerDown); a target at 0 means no "
        "data at all (CeleryExporterDown).",
        [
            Q(m(cat.BROKER_UP, sb), "broker {{broker}}"),
            Q(
                f'up{{{s.selector}, job=~"$job", namespace=~"$namespace"}}',
                "exporter {{instance}}",
            ),
        ],
        unit=UNIT_BOOL,
        thresholds=below(1),
        step=True,
        max_value=1,
        runbooks=["CeleryBrokerDown", "CeleryExporterDown"],
    )
    scrape_duration_broker = timeseries(
        s,
        "Scrape duration per broker",
        "How long the exporter's last inspection of each broker took "
        "(celery_exporter_scrape_duration_seconds). Normal: milliseconds to tens of "
        "milliseconds; approaching the scrape timeout means a slow or overloaded "
        "broker, and Prometheus' scrape_timeout must stay above it.",
        [Q(m(cat.SCRAPE_DURATION, sb), "{{broker}}")],
        unit=UNIT_SECONDS,
    )
    scrape_errors_unreadable_messages = timeseries(
        s,
        "Scrape errors and unreadable messages",
        "Per second: failed or timed-out broker inspections "
        "(celery_exporter_scrape_errors_total) and stored messages the exporter could "
        "not parse (celery_exporter_malformed_messages_total). Normal: 0.",
        [
            Q(
                f"sum by (broker) (rate({m(cat.SCRAPE_ERRORS, sb)}[$__rate_interval]))",
                "{{broker}} scrape errors",
            ),
            Q(
                f"sum by (broker) (rate({m(cat.MALFORMED_MESSAGES, sb)}[$__rate_interval]))",
                "{{broker}} malformed messages",
            ),
        ],
        unit=UNIT_OPS,
        thresholds=above(0.001),
        runbooks=["CeleryBrokerDown"],
    )
    rabbitmq_management_api_missing = timeseries(
        s,
        "Management API, missing and unreadable queues",
        "celery_rabbitmq_management_api_up: 1 when the management API answered; 0 "
        "means the exporter fell back to AMQP, which has no per-priority and no "
        "unacknowledged counts. celery_queue_missing: 1 for a configured queue the "
        "broker does not have. celery_queue_unreadable (Redis): 1 for a queue with a "
        "key of another type than kombu writes (that level has no depth); "
        "celery_exporter_unreadable_keys > 0 also covers the unacked hash. Normal: API "
        "at 1, no missing or unreadable queue.",
        [
            Q(m(cat.RABBITMQ_MANAGEMENT_UP, sb), "{{broker}} management API"),
            Q(
                f"{m(cat.QUEUE_MISSING, sq)} == 1",
                "{{broker}} / {{queue}} missing",
            ),
            Q(
                f"{m(cat.QUEUE_UNREADABLE, sq)} == 1",
                "{{broker}} / {{queue}} unreadable",
            ),
            Q(
                f"{m(cat.UNREADABLE_KEYS, sb)} > bool 0",
                "{{broker}} unreadable keys",
            ),
        ],
        unit=UNIT_BOOL,
        step=True,
        max_value=1,
    )
    return row(
        "Exporter and brokers",
        line(
            8,
            (broker_exporter_up, 6),
            (scrape_duration_broker, 6),
            (scrape_errors_unreadable_messages, 6),
            (rabbitmq_management_api_missing, 6),
        ),
    )


def queue_summary(s: Settings) -> Row:
    """One table row per queue: the numbers to sort by when something is wrong."""
    sq = selector(s, queue=True)
    backlog_high = s.threshold("CeleryQueueBacklogHigh", "messages")
    too_long = s.threshold("CeleryQueueMessageWaitingTooLong", "seconds")

    queues_now = table(
        s,
        "Queues now",
        "One row per queue: waiting, reserved and the oldest waiting message now, plus "
        "RabbitMQ's consumer count. Sort by a column to find the queue in trouble. "
        "Normal: little waiting, young oldest message, consumers above 0.",
        [
            Column("Waiting", _depth_by_queue(s), UNIT_MESSAGES, above(backlog_high)),
            Column(
                "Reserved",
                f"sum by (broker, queue) ({m(cat.QUEUE_RESERVED_MESSAGES, sq)})",
                UNIT_MESSAGES,
            ),
            Column(
                "Oldest waiting",
                f"max by (broker, queue) ({m(cat.QUEUE_OLDEST_MESSAGE_AGE, sq)})",
                UNIT_SECONDS,
                above(too_long),
            ),
            Column(
                "Consumers (RabbitMQ)",
                f"sum by (broker, queue) ({m(cat.QUEUE_CONSUMERS, sq)})",
                UNIT_COUNT,
            ),
            Column(
                "Max priority (RabbitMQ)",
                f"max by (broker, queue) ({m(cat.QUEUE_MAX_PRIORITY, sq)})",
                UNIT_COUNT,
            ),
        ],
        keys=["broker", "queue"],
        runbooks=["CeleryQueueBacklogHigh", "CeleryQueueMessageWaitingTooLong"],
    )
    return row("Queue summary", line(8, (queues_now, 24)))


def build(s: Settings) -> Json:
    """The dashboard, row by row."""
    rows = [
        overview(s),
        depth(s),
        reserved_work_and_consumers(s),
        redeliveries_and_scheduled(s),
        brokers_side_by_side(s),
        exporter_and_brokers(s),
        broker_pressure(s),
        queue_summary(s),
    ]
    return dashboard(
        s,
        SLUG,
        "Celery queues on Redis and RabbitMQ from celery-queue-exporter: depth per queue and "
        "priority level, message age, reserved work, consumers, broker pressure (memory, "
        "evictions, flushes, alarms) and exporter health.",
        rows,
        variables(s),
    )
