"""Alerts on the exporter and the brokers it inspects (alerts/tests/exporter_broker.yaml)."""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from .base import Body, Settings, alert


@alert("CeleryExporterDown", summary="The Celery queue exporter is down or missing.")
def exporter_down(s: Settings) -> Body:
    up = s.e.metric("up")
    return Body(
        f"{up} == 0\nor\nabsent({up})",
        "{{ if $labels.instance }}Prometheus has failed to scrape {{ $labels.instance }} "
        "(job {{ $labels.job }})"
        f"{{{{ else }}}}Prometheus has no scrape target matching {s.config['selector']}"
        f"{{{{ end }}}} for more than {s.for_text}: queue, worker and task metrics are "
        "not collected and the other Celery alerts cannot fire.",
    )


@alert("CeleryBrokerDown", summary="The exporter cannot inspect a Celery broker.")
def broker_down(s: Settings) -> Body:
    return Body(
        f"{s.e.metric(cat.BROKER_UP.name)} == 0",
        "The exporter {{ $labels.instance }} has failed to inspect broker "
        f"{{{{ $labels.broker }}}} for more than {s.for_text} (celery_broker_up is 0): "
        "the broker is down, unreachable, refuses the exporter's credentials, or answers "
        "slower than the scrape timeout. This broker's queue metrics are missing meanwhile.",
    )
