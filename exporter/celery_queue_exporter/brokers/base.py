"""The one interface a broker package implements: what the rest of the exporter may ask of a
broker kind, and nothing else (config, collector and event collector go through it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, fields
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from ..config.model import BrokerConfig
    from ..config.options import Option
    from ..config.urls import URLPart
    from ..events.tracker import EventTracker
    from ..snapshot import BrokerSnapshot


class Inspector:
    """Reads one broker's queues at scrape time; not thread-safe (the collector serialises
    calls). Subclasses set up their clients in ``setup`` and read the broker in ``inspect``."""

    def __init__(
        self,
        config: BrokerConfig,
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        #: The budget of one inspection; the collector gives up on the broker after it.
        self.timeout_seconds = timeout_seconds
        #: Epoch seconds; tests move it to age messages.
        self.clock = clock
        self.setup()

    def setup(self) -> None:
        """Per-broker clients and state (called once, by __init__)."""

    def inspect(self) -> BrokerSnapshot:
        """One reading of the broker; raises when it cannot be read."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of connections."""


class EventConsumer(Protocol):
    """Feeds one broker's Celery event stream into an EventTracker, in its own thread."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


#: (message priority, the queue's x-max-priority or None) -> the level label it waits at.
PriorityLevel = Callable[[Any, Any], str]


def _no_check(where: str, value: Any) -> None:
    """Accepts anything: the default of the optional checks below."""


#: The transport's typed options (a frozen dataclass, one field per declared option).
OptionsT = TypeVar("OptionsT")


@dataclass(frozen=True)
class Transport(Generic[OptionsT]):
    """One broker kind, registered in ``brokers/registry.py``."""

    #: The ``transport`` label value and the prefix of default broker names.
    name: str
    #: URL schemes it serves (``redis``, ``rediss``).
    schemes: frozenset[str]
    #: What an empty URL path means in a default broker name (Redis: db "0"; AMQP: vhost "/").
    default_path: str
    #: ``(broker, timeout_seconds) -> Inspector``.
    inspector: Callable[[BrokerConfig, float], Inspector]
    #: ``(broker, tracker) -> EventConsumer``.
    event_consumer: Callable[[BrokerConfig, EventTracker], EventConsumer]
    #: ``broker -> PriorityLevel``: how the broker files a message's priority.
    priority_levels: Callable[[BrokerConfig], PriorityLevel]
    #: Per-broker options it reads (YAML keys, flags, env), declared once.
    options: tuple[Option, ...]
    #: The frozen dataclass a broker of this kind carries as ``BrokerConfig.options``: one
    #: field per declared option (by its attribute name), defaulting to its declared default.
    options_type: Callable[..., OptionsT]
    #: Schemes whose ``;``-separated URL list is ONE broker (kombu's ``sentinel://a;sentinel://b``);
    #: for any other scheme a list is Celery's failover list.
    list_schemes: frozenset[str] = frozenset()
    #: kombu transport options it accepts without declaring them (kept and passed on to its
    #: client where it takes them); None: any name (kombu hands them all to the client).
    passed_options: frozenset[str] | None = None
    #: ``(where, one parsed URL)``: raise ConfigError for a URL it cannot serve.
    check_url: Callable[[str, URLPart], None] = _no_check
    #: ``(where, broker)``: raise ConfigError for a broker it cannot watch as configured.
    check_broker: Callable[[str, BrokerConfig], None] = _no_check

    def __post_init__(self) -> None:
        """The options type matches the declarations: same names, same defaults."""
        declared = {option.attr: option.default for option in self.options}
        found = {item.name: _default(item) for item in fields(self.options_type)}  # type: ignore[arg-type]
        if found != declared:
            raise ValueError(f"transport {self.name!r}: {self.options_type} does not match OPTIONS")


def _default(item: Field[Any]) -> Any:
    """A dataclass field's default (made by its factory, if it has one)."""
    return item.default_factory() if item.default is MISSING else item.default
