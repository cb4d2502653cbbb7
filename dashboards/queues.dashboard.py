"""Celery / Queues: what is waiting, for how long, what is reserved, who consumes it.

Built by ``python -m dashboards.generate`` (which calls ``build``) into dashboards/queues.json.
"""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat
from dashboards.common import (
    NEUTRAL,
    UNIT_BOOL,
    UNIT_COUNT,
    UNIT_MESSAGES,
    UNIT_MSG_RATE,
    UNIT_RATIO,
    UNIT_SECONDS,
    UP_DOWN,
    Column,
    Layout,
    Q,
    Settings,
    above,
    at_urgency,
    below,
    dashboard,
    m,
    on_transport,
    selector,
    stat,
    table,
    timeseries,
    unknown_priority,
    variables,
)

SLUG = "queues"


def build(s: Settings):
    sb = selector(s)  # broker-level series
    sq = selector(s, queue=True)  # queue-level series
    backlog_high = s.threshold("CeleryQueueBacklogHigh", "messages")
    too_long = s.threshold("CeleryQueueMessageWaitingTooLong", "seconds")
    urgent_too_long = s.threshold("CeleryQueueMostUrgentWaitingTooLong", "seconds")
    near_visibility = s.threshold("CeleryReservedNearVisibilityTimeout", "ratio")
    growth_window = s.alert("CeleryQueueBacklogGrowing")["window"]

    depth_by_queue = f"sum by (broker, queue) ({m(cat.QUEUE_MESSAGES, sq)})"
    depth_by_level = unknown_priority(
        f"sum by (broker, queue, priority) ({m(cat.QUEUE_MESSAGES, sq)})"
    )
    oldest_by_level = f"max by (broker, queue, priority) ({m(cat.QUEUE_OLDEST_MESSAGE_AGE, sq)})"
    urgent_oldest = (
        f"max by (broker, queue) ({at_urgency(m(cat.QUEUE_OLDEST_MESSAGE_AGE, sq), s, 'most')})"
    )
    up_sel = f'{s.selector}, job=~"$job", namespace=~"$namespace"'

    lay = Layout()
    lay.row("Overview")
    lay.line(
        5,
        (
            stat(
                s,
                "Brokers up",
                "Brokers the exporter inspected successfully in its last scrape "
                "(celery_broker_up). Normal: every broker UP. DOWN means the exporter could not "
                "read the broker: the depth panels below then show gaps, not zeros.",
                [Q(f"min by (broker) ({m(cat.BROKER_UP, sb)})", "{{broker}}")],
                unit=UNIT_BOOL,
                thresholds=below(1),
                mappings=UP_DOWN,
                runbooks=["CeleryBrokerDown", "CeleryExporterDown"],
                no_value="no data: exporter down?",
                graph=False,
            ),
            5,
        ),
        (
            stat(
                s,
                "Waiting messages",
                "Messages waiting in the selected queues, all priority levels "
                "(celery_queue_messages). Normal: small and returning to near 0 between bursts; "
                f"red above the CeleryQueueBacklogHigh threshold ({backlog_high:g} per queue is "
                "what the alert uses; this total turns red at the same number).",
                [Q(f"sum({m(cat.QUEUE_MESSAGES, sq)})")],
                unit=UNIT_MESSAGES,
                thresholds=above(backlog_high),
                runbooks=["CeleryQueueBacklogHigh"],
            ),
            4,
        ),
        (
            stat(
                s,
                "Reserved (unacked)",
                "Messages delivered to workers and not yet acknowledged: prefetched, running or "
                "waiting for an ETA (celery_queue_reserved_messages). They are NOT in "
                "'Waiting messages'. Normal: about workers x concurrency x prefetch.",
                [Q(f"sum({m(cat.QUEUE_RESERVED_MESSAGES, sq)})")],
                unit=UNIT_MESSAGES,
                thresholds=NEUTRAL,
            ),
            4,
        ),
        (
            stat(
                s,
                "Oldest waiting message",
                "Age of the oldest message waiting at the head of any level of the selected "
                "queues (celery_queue_oldest_message_age_seconds; a lower bound unless producers "
                f"call install(app)). Normal: seconds. Red past {too_long:g}s "
                "(CeleryQueueMessageWaitingTooLong).",
                [Q(f"max({m(cat.QUEUE_OLDEST_MESSAGE_AGE, sq)})")],
                unit=UNIT_SECONDS,
                thresholds=above(too_long),
                runbooks=["CeleryQueueMessageWaitingTooLong"],
            ),
            4,
        ),
        (
            stat(
                s,
                "Most urgent level: oldest",
                "Oldest message waiting at the most urgent level of any selected queue (Redis: "
                "priority 0, RabbitMQ: the highest). Normal: below the platform goal of "
                f"{urgent_too_long:g}s; red above it (CeleryQueueMostUrgentWaitingTooLong).",
                [Q(f"max({urgent_oldest})")],
                unit=UNIT_SECONDS,
                thresholds=above(urgent_too_long),
                runbooks=["CeleryQueueMostUrgentWaitingTooLong"],
                dashboards=["priorities"],
            ),
            4,
        ),
        (
            stat(
                s,
                "Unwatched queues",
                "Discovered queues the exporter skips because the broker's max_queues cap was "
                "reached (celery_exporter_queues_over_limit): their depth is unknown. Normal: "
                "0; otherwise raise max_queues or list the queues to watch.",
                [Q(f"sum({m(cat.QUEUES_OVER_LIMIT, sb)})")],
                unit=UNIT_COUNT,
                thresholds=above(1, over="orange"),
            ),
            3,
        ),
    )

    lay.row("Depth")
    lay.line(
        9,
        (
            timeseries(
                s,
                "Waiting messages per queue",
                "Messages waiting per queue, all priority levels together (celery_queue_messages "
                "summed over priority). Normal: flat or saw-toothed near 0; a line that keeps "
                "climbing means producers outpace workers. The dashed line is the "
                "CeleryQueueBacklogHigh threshold.",
                [Q(depth_by_queue, "{{broker}} / {{queue}}")],
                unit=UNIT_MESSAGES,
                thresholds=above(backlog_high),
                runbooks=["CeleryQueueBacklogHigh"],
            ),
            12,
        ),
        (
            timeseries(
                s,
                "Waiting messages per priority level",
                "Messages waiting per queue and priority level, stacked. Redis reports every "
                "priority step (0 = most urgent); RabbitMQ per level when its management API "
                "gives priority_lengths, otherwise one series with priority 'unknown'. Normal: "
                "the urgent levels stay near 0 while lower levels absorb bursts.",
                [Q(depth_by_level, "{{broker}} / {{queue}} p{{priority}}")],
                unit=UNIT_MESSAGES,
                stacked=True,
                dashboards=["priorities"],
            ),
            12,
        ),
    )
    lay.line(
        8,
        (
            timeseries(
                s,
                "Backlog growth rate",
                f"Change in waiting messages per second, from a linear fit over {growth_window} "
                "(deriv). Normal: hovering around 0; positive for long means the backlog "
                "grows (CeleryQueueBacklogGrowing), negative means it drains.",
                [
                    Q(
                        f"sum by (broker, queue) "
                        f"(deriv({m(cat.QUEUE_MESSAGES, sq)}[{growth_window}]))",
                        "{{broker}} / {{queue}}",
                    )
                ],
                unit=UNIT_MSG_RATE,
                min_value=None,
                runbooks=["CeleryQueueBacklogGrowing"],
            ),
            12,
        ),
        (
            timeseries(
                s,
                "Oldest waiting message per priority level",
                "Age of the next message to be consumed, per level "
                "(celery_queue_oldest_message_age_seconds). Exact when producers call "
                "celery_queue_exporter.instrumentation.install(app), otherwise a lower bound that "
                "starts at 0 when a message reaches the head. Normal: seconds and falling back to "
                "0; a level whose age climbs while others drain is being starved. Dashed line: "
                "CeleryQueueMessageWaitingTooLong.",
                [Q(oldest_by_level, "{{broker}} / {{queue}} p{{priority}}")],
                unit=UNIT_SECONDS,
                thresholds=above(too_long),
                runbooks=["CeleryQueueMessageWaitingTooLong", "CeleryPriorityStarvation"],
                dashboards=["priorities"],
            ),
            12,
        ),
    )

    lay.row("Reserved work and consumers")
    lay.line(
        8,
        (
            timeseries(
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
            ),
            8,
        ),
        (
            timeseries(
                s,
                "Oldest reservation vs visibility timeout",
                "Age of the oldest unacknowledged reservation on Redis "
                "(celery_broker_reserved_oldest_age_seconds) next to the alert line at "
                f"{near_visibility:.0%} of visibility_timeout. Past visibility_timeout Redis "
                "delivers the message again and the task runs twice. Normal: far below the "
                "line (long ETAs are the usual exception).",
                [
                    Q(m(cat.BROKER_RESERVED_OLDEST_AGE, sb), "{{broker}} oldest reservation"),
                    Q(
                        f"{near_visibility:g} * {m(cat.BROKER_VISIBILITY_TIMEOUT, sb)}",
                        f"{{{{broker}}}} {near_visibility:.0%} of visibility_timeout",
                    ),
                ],
                unit=UNIT_SECONDS,
                runbooks=["CeleryReservedNearVisibilityTimeout"],
            ),
            8,
        ),
        (
            timeseries(
                s,
                "Reservations past visibility timeout",
                "Reservations older than visibility_timeout "
                "(celery_broker_reserved_overdue_messages): Redis will deliver them again, so "
                "these tasks run twice. Normal: 0.",
                [Q(m(cat.BROKER_RESERVED_OVERDUE, sb), "{{broker}}")],
                unit=UNIT_MESSAGES,
                thresholds=above(1),
                runbooks=["CeleryReservedNearVisibilityTimeout"],
            ),
            8,
        ),
    )
    lay.line(
        8,
        (
            timeseries(
                s,
                "Consumers per queue",
                "Consumers attached to each queue: RabbitMQ's own count "
                "(celery_queue_consumers) and, for both brokers, live workers consuming it from "
                "worker events (celery_queue_workers). Normal: steady at the deployed number; 0 "
                "with waiting messages means nothing drains the queue (CeleryQueueNoConsumers).",
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
            ),
            12,
        ),
        (
            timeseries(
                s,
                "Consumer utilisation (RabbitMQ)",
                "Fraction of time RabbitMQ could deliver to the queue's consumers at once "
                "(celery_queue_consumer_utilisation_ratio). Normal: near 100% when consumers "
                "keep up; low with a backlog means prefetch limits or slow consumers. Redis has "
                "no equivalent.",
                [
                    Q(
                        m(cat.QUEUE_CONSUMER_UTILISATION, sq),
                        "{{broker}} / {{queue}}",
                    )
                ],
                unit=UNIT_RATIO,
                max_value=1,
            ),
            12,
        ),
    )

    lay.row("Redis and RabbitMQ side by side")
    for title, expr, legend, unit, thresholds, runbooks in (
        (
            "waiting messages per priority level",
            depth_by_level,
            "{{broker}} / {{queue}} p{{priority}}",
            UNIT_MESSAGES,
            None,
            [],
        ),
        (
            "oldest waiting message per level",
            oldest_by_level,
            "{{broker}} / {{queue}} p{{priority}}",
            UNIT_SECONDS,
            above(too_long),
            ["CeleryQueueMessageWaitingTooLong"],
        ),
    ):
        lay.line(
            8,
            *(
                (
                    timeseries(
                        s,
                        f"{name}: {title}",
                        f"The same measure as above for {name} brokers only, beside the other "
                        "broker on the same scale, to compare a migration. "
                        + (
                            "Redis: 0 is the most urgent level. "
                            if transport == "redis"
                            else "RabbitMQ: the highest level is the most urgent; 'unknown' "
                            "when the broker does not report per-level counts. "
                        )
                        + "Normal: both brokers drain their urgent levels first. "
                        "Empty when no broker of this kind is configured.",
                        [Q(on_transport(expr, s, transport), legend)],
                        unit=unit,
                        thresholds=thresholds,
                        runbooks=runbooks,
                    ),
                    12,
                )
                for name, transport in (("Redis", "redis"), ("RabbitMQ", "rabbitmq"))
            ),
        )

    lay.row("Exporter and brokers")
    lay.line(
        8,
        (
            timeseries(
                s,
                "Broker and exporter up",
                "celery_broker_up per broker (1 = the last inspection succeeded) and Prometheus' "
                "own up for the exporter targets. Normal: all at 1. A broker at 0 means its "
                "queues are unknown (CeleryBrokerDown); a target at 0 means no data at all "
                "(CeleryExporterDown).",
                [
                    Q(m(cat.BROKER_UP, sb), "broker {{broker}}"),
                    Q(f"up{{{up_sel}}}", "exporter {{instance}}"),
                ],
                unit=UNIT_BOOL,
                thresholds=below(1),
                step=True,
                max_value=1,
                runbooks=["CeleryBrokerDown", "CeleryExporterDown"],
            ),
            6,
        ),
        (
            timeseries(
                s,
                "Scrape duration per broker",
                "How long the exporter's last inspection of each broker took "
                "(celery_exporter_scrape_duration_seconds). Normal: milliseconds to tens of "
                "milliseconds; approaching the scrape timeout means a slow or overloaded broker, "
                "and Prometheus' scrape_timeout must stay above it.",
                [Q(m(cat.SCRAPE_DURATION, sb), "{{broker}}")],
                unit=UNIT_SECONDS,
            ),
            6,
        ),
        (
            timeseries(
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
                        f"sum by (broker) "
                        f"(rate({m(cat.MALFORMED_MESSAGES, sb)}[$__rate_interval]))",
                        "{{broker}} malformed messages",
                    ),
                ],
                unit="ops",
                thresholds=above(0.001),
                runbooks=["CeleryBrokerDown"],
            ),
            6,
        ),
        (
            timeseries(
                s,
                "RabbitMQ: management API and missing queues",
                "celery_rabbitmq_management_api_up: 1 when the management API answered; 0 means "
                "the exporter fell back to AMQP, which has no per-priority and no "
                "unacknowledged counts. celery_queue_missing: 1 for a configured queue the "
                "broker does not have. Normal: API at 1, no missing queue.",
                [
                    Q(m(cat.RABBITMQ_MANAGEMENT_UP, sb), "{{broker}} management API"),
                    Q(
                        f"{m(cat.QUEUE_MISSING, sq)} == 1",
                        "{{broker}} / {{queue}} missing",
                    ),
                ],
                unit=UNIT_BOOL,
                step=True,
                max_value=1,
            ),
            6,
        ),
    )
    lay.row("Queue summary")
    lay.line(
        8,
        (
            table(
                s,
                "Queues now",
                "One row per queue: waiting, reserved and the oldest waiting message now, plus "
                "RabbitMQ's consumer count. Sort by a column to find the queue in trouble. "
                "Normal: little waiting, young oldest message, consumers above 0.",
                [
                    Column("Waiting", depth_by_queue, UNIT_MESSAGES, above(backlog_high)),
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
            ),
            24,
        ),
    )
    return dashboard(
        s,
        SLUG,
        "Celery queues on Redis and RabbitMQ from celery-queue-exporter: depth per queue and "
        "priority level, message age, reserved work, consumers, broker and exporter health.",
        lay,
        variables(s),
    )
