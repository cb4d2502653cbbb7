"""Clock skew between the exporter and the hosts it hears from (issue 21,
alerts/tests/clock.yaml).

The exporter corrects head ages and waits by each host's estimated offset
(celery_host_clock_offset_seconds, events/clock.py), so skew alone does not page the age and
wait alerts; this alert names the host so its clock gets fixed (corrections need the host's
events, and logs, certificates and ETAs are wrong there too).
"""

from __future__ import annotations

from celery_queue_exporter import catalogue as cat

from ..promql import num
from ..schema import Number
from .base import Body, Settings, alert


@alert(
    "CeleryClockSkew",
    summary="A Celery host's clock is off from the exporter's.",
    seconds=Number(minimum=1),
)
def clock_skew(s: Settings) -> Body:
    seconds = num(s["seconds"])
    offset = s.e.metric(cat.HOST_CLOCK_OFFSET.name)
    # One alert per host whatever the number of exporter replicas (max over instances); the
    # sign is kept in the value (positive: the host is ahead).
    return Body(
        f"max by (job, broker, host) ({offset})\n> {seconds}\n"
        "or\n"
        f"min by (job, broker, host) ({offset})\n< -{seconds}",
        "The clock of host {{ $labels.host }} (heard from on broker {{ $labels.broker }}) "
        'is {{ printf "%+.1f" $value }}s off the exporter\'s (positive: ahead; limit '
        f"{seconds}s) for {s.for_text}. Head ages and waits are corrected by this offset where "
        "the host sends events, so the age and wait alerts stay right; fix the clock (NTP) "
        "before its publish stamps, ETAs and logs mislead anything else. Every host off by "
        "about the same amount: the exporter's own clock is off.",
    )
