"""The configuration objects the rest of the exporter reads: plain data, at the bottom of the
package (they import nothing above config/). Defaults come from options.py and from each
transport's declared options."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import options as opt
from .options import default_of
from .urls import BrokerURL

if TYPE_CHECKING:
    from ..brokers.base import Transport

DEFAULT_PORT: int = opt.PORT.default
DEFAULT_HOST: str = opt.HOST.default
DEFAULT_BROKER_URL = opt.DEFAULT_BROKER_URL
DEFAULT_RUNTIME_BUCKETS = opt.DEFAULT_RUNTIME_BUCKETS
DEFAULT_WAIT_BUCKETS = opt.DEFAULT_WAIT_BUCKETS


@dataclass(frozen=True)
class BrokerTLS:
    """How to check the broker's certificate and which one to present; file paths only (the
    key itself is never read into the configuration, so it cannot end up in a message)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: required | optional | none
    verify: str = "required"
    server_name: str | None = None

    @property
    def configured(self) -> bool:
        """Anything beyond the defaults (the system's CAs, full verification)."""
        return self != BrokerTLS()


#: A transport's typed options (brokers/redis/options.py RedisOptions, ...).
OptionsT = TypeVar("OptionsT")


@dataclass(repr=False)
class BrokerConfig(Generic[OptionsT]):
    """One broker to watch; ``name`` becomes the ``broker`` label.

    Built by config/brokers.py, which parses the URL once and resolves its transport: both
    travel with the broker, so no later stop splits the URL or looks the scheme up again.
    ``options`` is the transport's own frozen options object (``broker.options.sep`` on Redis,
    ``broker.options.management_url`` on RabbitMQ): a reader and a type checker see what a
    broker of that kind has.
    """

    name: str
    url: BrokerURL
    transport: Transport[OptionsT]
    options: OptionsT
    queues: list[str] = field(default_factory=list)
    discover_queues: bool = opt.DISCOVER_QUEUES.default
    max_queues: int = opt.MAX_QUEUES.default
    queue_include: list[re.Pattern[str]] = field(default_factory=opt.QUEUE_INCLUDE.default_value)
    queue_exclude: list[re.Pattern[str]] = field(default_factory=opt.QUEUE_EXCLUDE.default_value)
    #: queue -> {"most": N, "least": M} (urgency.py).
    priority_levels: dict[str, dict[str, int]] = field(
        default_factory=opt.PRIORITY_LEVELS.default_value
    )
    #: TLS settings towards the broker (``ssl:`` of the broker entry).
    tls: BrokerTLS = field(default_factory=BrokerTLS)
    #: Credentials kept out of the URL.
    password: str | None = None
    #: Transport options no transport declares: kept, handed to the broker client where
    #: it takes them (brokers/<name>/), ignored otherwise (they concern workers).
    extra_transport_options: dict[str, Any] = field(default_factory=dict)

    @property
    def safe_url(self) -> str:
        return self.url.redacted

    def connect_url(self) -> str:
        """The URL with the password from password/password_file/env put in, for connecting."""
        return self.url.text if self.password is None else self.url.with_password(self.password)

    def __repr__(self) -> str:  # never show the URL's password
        return f"BrokerConfig(name={self.name!r}, url={self.safe_url!r})"


def _event_default(key: str) -> Any:
    return default_of(opt.EVENT_SETTINGS, "events." + key)


@dataclass
class EventSettings:
    """How the Celery event consumer judges workers and bounds its state (``events:`` in YAML).

    Keep heartbeat_timeout_seconds, worker_retention_seconds and worker_offline_grace_seconds
    in step with monitoring/config.yaml ``exporter:`` (the worker-down alerts' ``for:`` depends
    on them).
    """

    heartbeat_timeout_seconds: float = _event_default("heartbeat_timeout_seconds")
    worker_retention_seconds: float = _event_default("worker_retention_seconds")
    # a worker that sent worker-offline: exported as offline this long, then dropped
    worker_offline_grace_seconds: float = _event_default("worker_offline_grace_seconds")
    runtime_buckets: tuple[float, ...] = _event_default("runtime_buckets")
    wait_buckets: tuple[float, ...] = _event_default("wait_buckets")
    task_names: list[str] = field(default_factory=list)  # allow-list; empty: any, up to max
    max_task_names: int = _event_default("max_task_names")
    # exception label of celery_task_failed_total (the first N names, then catalogue.OTHER_TASK)
    max_exception_names: int = _event_default("max_exception_names")
    # queue label values from events (the first N distinct names, then catalogue.OTHER_QUEUE)
    max_queue_names: int = _event_default("max_queue_names")
    # workers exported one by one (the first N hostnames, the rest folded into OTHER_WORKER)
    max_workers: int = _event_default("max_workers")
    # label values and task ids cut to this length with a hash suffix (events/budget.py)
    max_label_length: int = _event_default("max_label_length")
    # the series budget of the task metrics, whole exporter (events/budget.py)
    max_series_per_family: int = _event_default("max_series_per_family")
    max_event_samples: int = _event_default("max_event_samples")
    max_tracked_tasks: int = _event_default("max_tracked_tasks")
    max_task_age_seconds: float = _event_default("max_task_age_seconds")
    max_wait_seconds: float = _event_default("max_wait_seconds")
    # JSON file keeping the known workers across restarts (events/state.py); None: not kept
    state_file: str | None = _event_default("state_file")
    # a larger state file is refused with a warning (events/state.py)
    state_file_max_bytes: int = _event_default("state_file_max_bytes")


@dataclass
class ExporterConfig:
    """Everything the exporter process needs."""

    brokers: list[BrokerConfig]
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    scrape_timeout_seconds: float = opt.SCRAPE_TIMEOUT.default
    urgency_memory_seconds: float = opt.URGENCY_MEMORY.default
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    #: Added to every series (validated in config/labels.py).
    static_labels: dict[str, str] = field(default_factory=dict)
    log_level: str = opt.LOG_LEVEL.default
    once: bool = False
    events: bool = False
    event_settings: EventSettings = field(default_factory=EventSettings)
