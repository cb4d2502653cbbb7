"""What the load test offers: urgency classes, setups (broker x settings) and scenarios.

Pure data and arithmetic, no I/O: the runner, the report and the tests share it.

Urgency classes are broker-neutral (``urgent`` is served first everywhere); each broker maps
them to the Celery ``priority`` its users would write. On Redis 0 is the most urgent priority
(kombu pops step 0 first), on RabbitMQ the highest number is, so the two maps mirror each other
(``rabbitmq = 9 - redis``). The Redis map deliberately uses priorities that kombu's default
``priority_steps`` [0, 3, 6, 9] fold together (0 and 2 both land in step 0) to show what the
steps cost, next to a 10-step variant that keeps them apart.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass, field

#: Urgency classes, most urgent first, and their share of the mixed workload.
CLASSES: tuple[str, ...] = ("urgent", "high", "normal", "low")
SHARES: tuple[float, ...] = (0.10, 0.20, 0.30, 0.40)
#: The class whose latency the planning document's criteria talk about.
URGENT = CLASSES[0]
LEAST = CLASSES[-1]

REDIS_PRIORITY = {"urgent": 0, "high": 2, "normal": 5, "low": 9}
RABBITMQ_PRIORITY = {name: 9 - value for name, value in REDIS_PRIORITY.items()}
RABBITMQ_MAX_PRIORITY = 9

DEFAULT_STEPS = (0, 3, 6, 9)
TEN_STEPS = tuple(range(10))


@dataclass(frozen=True)
class Setup:
    """One broker with one set of Celery settings."""

    name: str
    broker: str  # "redis" or "rabbitmq"
    priorities: bool  # False: a FIFO baseline (no priority sent, no x-max-priority)
    recommended: bool  # prefetch 1 + acks_late (True) or Celery's defaults (False)
    steps: tuple[int, ...] = DEFAULT_STEPS  # Redis only

    @property
    def prefetch_multiplier(self) -> int:
        return 1 if self.recommended else 4

    @property
    def acks_late(self) -> bool:
        return self.recommended

    @property
    def settings_text(self) -> str:
        if self.recommended:
            return "worker_prefetch_multiplier=1, task_acks_late=True"
        return "Celery defaults (worker_prefetch_multiplier=4, task_acks_late=False)"

    @property
    def description(self) -> str:
        if not self.priorities:
            kind = "FIFO baseline: no priorities"
        elif self.broker == "redis":
            kind = f"kombu priority_steps {list(self.steps)}"
        else:
            kind = f"classic queue, x-max-priority={RABBITMQ_MAX_PRIORITY}"
        return f"{kind}; {self.settings_text}"

    def priority(self, cls: str) -> int | None:
        """The Celery priority a task of this class is published with (None: none)."""
        if not self.priorities:
            return None
        return (REDIS_PRIORITY if self.broker == "redis" else RABBITMQ_PRIORITY)[cls]

    def level(self, cls: str) -> str:
        """The exporter's ``priority`` label for this class' tasks (see exporter.events)."""
        priority = self.priority(cls)
        if self.broker == "redis":
            value = 0 if priority is None else max(0, min(9, priority))
            return str(self.steps[max(0, bisect_right(self.steps, value) - 1)])
        return str(0 if priority is None else min(priority, RABBITMQ_MAX_PRIORITY))


@dataclass(frozen=True)
class Scenario:
    """A workload: phases of (seconds, offered load as a multiple of capacity)."""

    name: str
    kind: str  # "mixed", "starvation" or "countdown"
    phases: tuple[tuple[float, float], ...]
    #: starvation: least-urgent tasks published once the urgent stream has filled the workers.
    starved_tasks: int = 0
    starved_at: float = 0.0
    #: countdown: this share of the tasks is published with a countdown drawn uniformly from
    #: countdown_range (seconds), as teams scheduling work with countdown/eta= do.
    countdown_share: float = 0.0
    countdown_range: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Plan:
    """Everything one load-test run does."""

    setups: tuple[Setup, ...]
    mixed: Scenario
    starvation: Scenario
    starvation_setups: tuple[Setup, ...]
    #: Countdown-heavy mixed workload, on the same setups as the starvation scenario.
    countdown: Scenario
    workers: int = 2
    concurrency: int = 4
    duration: float = 0.5
    seed: int = 8
    scrape_interval: float = 1.0
    quick: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def slots(self) -> int:
        return self.workers * self.concurrency

    @property
    def capacity(self) -> float:
        """Tasks per second the workers can finish at most (slots / task duration)."""
        return self.slots / self.duration


def setups(brokers: tuple[str, ...], quick: bool) -> tuple[Setup, ...]:
    out: list[Setup] = []
    if "redis" in brokers:
        out.append(Setup("redis-fifo", "redis", priorities=False, recommended=True))
        out.append(Setup("redis-steps4", "redis", priorities=True, recommended=True))
        if not quick:
            out.append(Setup("redis-steps10", "redis", True, True, TEN_STEPS))
            out.append(Setup("redis-steps4-defaults", "redis", True, recommended=False))
    if "rabbitmq" in brokers:
        out.append(Setup("rabbitmq-fifo", "rabbitmq", priorities=False, recommended=True))
        out.append(Setup("rabbitmq-priority", "rabbitmq", priorities=True, recommended=True))
        if not quick:
            out.append(Setup("rabbitmq-priority-defaults", "rabbitmq", True, recommended=False))
    return tuple(out)


def make_plan(
    brokers: tuple[str, ...] = ("redis", "rabbitmq"),
    *,
    quick: bool = False,
    workers: int = 2,
    concurrency: int = 4,
    duration: float = 0.5,
    phase_seconds: float | None = None,
    load_factors: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0),
    starvation_seconds: float | None = None,
    seed: int = 8,
) -> Plan:
    """The default plan (or ``quick``), scaled to a 2-core machine."""
    if phase_seconds is None:
        phase_seconds = 2.0 if quick else 7.0
    if starvation_seconds is None:
        starvation_seconds = 5.0 if quick else 20.0
    countdown = Scenario(
        "countdown",
        "countdown",
        ((starvation_seconds, 0.9),),
        countdown_share=0.7,
        countdown_range=(1.0, 3.0) if quick else (2.0, 8.0),
    )
    phases = tuple((phase_seconds, factor) for factor in load_factors)
    if not quick and len(phases) > 1:  # hold the deepest overload a little longer
        phases = phases[:-1] + ((phase_seconds * 1.25, load_factors[-1]),)
    mixed = Scenario("mixed", "mixed", phases)
    starvation = Scenario(
        "starvation",
        "starvation",
        ((starvation_seconds, 1.1),),
        starved_tasks=3 if quick else 5,
        starved_at=min(2.0, starvation_seconds / 3),
    )
    all_setups = setups(brokers, quick)
    starving = tuple(
        s for s in all_setups if s.priorities and s.recommended and s.steps == DEFAULT_STEPS
    )
    return Plan(
        setups=all_setups,
        mixed=mixed,
        starvation=starvation,
        starvation_setups=starving,
        countdown=countdown,
        workers=workers,
        concurrency=concurrency,
        duration=duration,
        seed=seed,
        quick=quick,
    )


@dataclass(frozen=True)
class Offer:
    """One task to publish: when (seconds from the start) and which class."""

    at: float
    cls: str
    countdown: float = 0.0  # seconds; 0: published for immediate execution


def schedule(scenario: Scenario, capacity: float, seed: int) -> list[Offer]:
    """Evenly spaced arrivals per phase; classes drawn with a fixed seed (same for every setup,
    so setups see the same sequence)."""
    rng = random.Random(seed)
    delays = random.Random(seed + 1)  # apart, so the class sequence matches the mixed one
    low, high = scenario.countdown_range
    offers: list[Offer] = []
    start = 0.0
    for seconds, factor in scenario.phases:
        rate = capacity * factor
        count = int(round(seconds * rate))
        for index in range(count):
            at = start + index / rate
            if scenario.kind == "starvation":
                cls = URGENT
            else:
                cls = rng.choices(CLASSES, weights=SHARES)[0]
            countdown = 0.0
            if scenario.countdown_share and delays.random() < scenario.countdown_share:
                countdown = round(delays.uniform(low, high), 3)
            offers.append(Offer(at, cls, countdown))
        start += seconds
    if scenario.kind == "starvation":
        for index in range(scenario.starved_tasks):
            offers.append(Offer(scenario.starved_at + index * 0.01, LEAST))
        offers.sort(key=lambda offer: offer.at)
    return offers
