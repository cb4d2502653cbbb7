"""Alertmanager inhibition rules for the mixin's alerts, from the same config.

Two alerts make others meaningless, and their pages would only repeat the cause:

* CeleryExporterDown: nothing of that exporter is collected; every other Celery alert of the
  same ``job`` and ``instance`` is inhibited (most resolve anyway once their series go stale,
  which is a false all-clear). ``instance`` too: with two exporters in one job (one per
  broker, or two replicas), one of them down must not silence the other's pages. Alerts
  aggregated without ``instance`` are not inhibited by it (they cannot fire from a dead
  exporter's missing series anyway).
* CeleryBrokerDown: the exporter cannot *inspect* the broker (failed or slower than the scrape
  timeout), so the alerts built on the inspection (depths, ages, reservations, RabbitMQ
  consumers) of the same ``job`` and ``broker`` are inhibited. Alerts built on the Celery
  event stream are not: they already require ``celery_event_consumer_up`` and may be the very
  pages that matter while an overloaded broker stalls (workers dying, tasks failing). Other
  brokers' alerts are untouched.

Alert names come from the declarations (monitoring/alerts/), only enabled ones; the rendered
file is ``alerts/alertmanager-inhibit-rules.yaml`` (merge its ``inhibit_rules:`` into your
alertmanager.yml; tests/test_alertmanager.py checks it against a real Alertmanager).
"""

from __future__ import annotations

from typing import Any

EXPORTER_DOWN = "CeleryExporterDown"
BROKER_DOWN = "CeleryBrokerDown"
#: Alerts built on what the broker inspection reads (CeleryBrokerDown inhibits these only).
INSPECTION_ALERTS = (
    "CeleryInstrumentationMissing",
    "CeleryQueueBacklogHigh",
    "CeleryQueueBacklogGrowing",
    "CeleryQueueMostUrgentWaitingTooLong",
    "CeleryQueueMessageWaitingTooLong",
    "CeleryQueueWaitObjectiveMissed",
    "CeleryQueueNoConsumers",
    "CeleryPriorityStarvation",
    "CeleryReservedNearVisibilityTimeout",
    "CeleryReservationsOrphaned",
    "CeleryTaskRedeliveredRepeatedly",
    "CeleryDeliveryLimitWithoutDeadLetter",
    # Broker pressure (monitoring/alerts/broker_pressure.py): read by the same inspection.
    "CeleryRedisEvictionPolicyRisky",
    "CeleryRedisKeysEvicted",
    "CeleryRedisOutOfMemory",
    "CeleryRedisMessagesLost",
    "CeleryRabbitMQResourceAlarm",
    "CeleryRabbitMQPartitioned",
    "CeleryRabbitMQNodeDown",
    "CeleryRabbitMQNodeNearLimit",
)


def _enabled(config: dict[str, Any]) -> list[str]:
    return [name for name, settings in config["alerts"].items() if settings.get("enabled", True)]


def _one_of(names: list[str]) -> str:
    return f'alertname=~"{"|".join(names)}"'


def inhibit_rules(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``inhibit_rules:`` list for a validated ``config`` (Alertmanager 0.22+ matchers)."""
    enabled = _enabled(config)
    rules: list[dict[str, Any]] = []
    if EXPORTER_DOWN in enabled:
        targets = [name for name in enabled if name != EXPORTER_DOWN]
        rules.append(
            {
                "source_matchers": [f'alertname="{EXPORTER_DOWN}"'],
                "target_matchers": [_one_of(targets)],
                "equal": ["job", "instance"],
            }
        )
    if BROKER_DOWN in enabled:
        targets = [name for name in enabled if name in INSPECTION_ALERTS]
        rules.append(
            {
                "source_matchers": [f'alertname="{BROKER_DOWN}"'],
                "target_matchers": [_one_of(targets)],
                "equal": ["job", "broker"],
            }
        )
    return rules
