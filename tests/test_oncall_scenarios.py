"""Issue 13's acceptance test: the situations real Celery teams live through, each reproduced
end to end and ending with the EXACT set of alerts an on-call engineer would see.

Every scenario gets a fresh, isolated stack (tests/oncall_stack.py): its own exporter process
(``--events``), its own Prometheus (own tsdb, scrape and evaluation every second, rules rendered
by the real generator with ``for: 2s``), a private redis-server and/or a private RabbitMQ vhost,
real Celery workers (tests/apps/events_app.py) and a producer in this process. So the alerts a
scenario sees are its own: at its end it asserts what fires (nothing else may) and what must
not even be pending. The table in docs/alerts.md names these tests.

Scenarios 1, 2, 3 and 8 (priorities, install(app)) and 4, 5, 6, 7, 9, 10, 11 (workers,
brokers, noise) share the harness; the quiet run (11) takes three minutes, the others well
under one each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from oncall_stack import OncallStack, stacks

pytestmark = [pytest.mark.redis, pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture
def make_stack() -> Iterator[Callable[..., OncallStack]]:
    """``make_stack(**knobs)``: a started :class:`OncallStack`, closed after the test."""
    with stacks() as make:
        yield make


# --- scenarios 1, 2, 3: priorities and install(app) -----------------------------------------


# --- scenario 4 ---------------------------------------------------------------------------------


# --- scenario 5 ---------------------------------------------------------------------------------


# --- scenario 6 ---------------------------------------------------------------------------------


# --- scenario 7 ---------------------------------------------------------------------------------


# --- scenario 8: without install(app) ------------------------------------------------------------


# --- scenario 9 ---------------------------------------------------------------------------------


# --- scenario 10 --------------------------------------------------------------------------------


# --- scenario 11 --------------------------------------------------------------------------------
