"""The configuration objects the rest of the exporter reads; defaults come from options.py and
from each transport's declared options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import brokers as registry
from . import options as opt
from .options import default_of
from .urls import redact_url, with_password

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


class BrokerConfig:
    """One broker to watch; ``name`` becomes the ``broker`` label.

    Options a transport package declares (``priority_steps``, ``management_url``, ...) live in
    ``options`` and read like attributes (``broker.sep``), so adding a transport adds no field
    here. Every broker carries every transport's options (defaults unless set): one set of
    flags serves brokers of several kinds, each reading its own.
    """

    def __init__(
        self,
        name: str,
        url: str,
        queues: list[str] | None = None,
        discover_queues: bool = opt.DISCOVER_QUEUES.default,
        max_queues: int = opt.MAX_QUEUES.default,
        password: str | None = None,
        **options: Any,
    ) -> None:
        declared = registry.transport_options()
        unknown = sorted(set(options) - set(declared))
        if unknown:
            raise TypeError(f"BrokerConfig: no transport declares an option {unknown[0]!r}")
        self.name = name
        self.url = url
        self.queues: list[str] = list(queues or [])
        self.discover_queues = discover_queues
        self.max_queues = max_queues
        #: Credentials kept out of the URL.
        self.password = password
        for option in (opt.QUEUE_INCLUDE, opt.QUEUE_EXCLUDE, opt.PRIORITY_LEVELS, *opt.BROKER_TLS):
            setattr(self, option.attr, option.default_value())
        #: Transport options no transport declares: kept, handed to the broker client where
        #: it takes them (brokers/<name>/), ignored otherwise (they concern workers).
        self.extra_transport_options: dict[str, Any] = {}
        self.options: dict[str, Any] = {
            attr: option.default_value() for attr, option in declared.items()
        }
        self.options.update(options)

    def __getattr__(self, name: str) -> Any:  # only called for names not set on the instance
        options = self.__dict__.get("options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(f"BrokerConfig has no attribute or transport option {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        options = self.__dict__.get("options")
        if options is not None and name in options:
            options[name] = value
        else:
            super().__setattr__(name, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BrokerConfig) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    @property
    def transport(self) -> str:
        """The transport's name (``redis``, ``rabbitmq``), from the URL scheme."""
        return registry.transport_of(self).name

    @property
    def tls(self) -> BrokerTLS:
        """TLS settings towards the broker (``ssl:`` of the broker entry)."""
        return BrokerTLS(self.ca_file, self.cert_file, self.key_file, self.verify, self.server_name)

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def connect_url(self) -> str:
        """The URL with the password from password/password_file/env put in, for connecting."""
        return self.url if self.password is None else with_password(self.url, self.password)

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
