"""Every option of the exporter, declared once: YAML key, flag, environment variable, kind
(type and bounds), default and help. Parsing (load.py), ``--help`` and docs/configuration.md
(docs.py) all read these declarations. Options of one broker kind are declared by its transport
package (``brokers/<name>/options.py``) with the same Option class.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from . import values
from .labels import STATIC_LABELS as STATIC_LABELS_KIND
from .values import Kind

ENV_PREFIX = "CELERY_EXPORTER_"
DEFAULT_BROKER_URL = "redis://localhost:6379/0"


@dataclass(frozen=True)
class Option:
    """One setting."""

    #: YAML key path within its section: ``port``, ``tls.cert_file``, ``events.max_workers``;
    #: for broker options the key inside a ``brokers:`` entry (``transport_options.sep``).
    key: str
    kind: Kind
    default: Any
    help: str
    flag: str | None = None
    #: Environment variable without ENV_PREFIX.
    env: str | None = None
    #: store | append (repeatable flag) | bool (--x / --no-x) | store_true (flag only)
    action: str = "store"
    #: False for the options that exist only on the command line (--config, --once).
    in_file: bool = True

    @property
    def attr(self) -> str:
        """The attribute the option sets on its config object."""
        return self.key.rsplit(".", 1)[-1]

    @property
    def dest(self) -> str:
        """The argparse destination of its flag."""
        return re.sub(r"[^0-9A-Za-z]+", "_", self.key).strip("_")

    @property
    def env_var(self) -> str | None:
        return ENV_PREFIX + self.env if self.env else None

    def default_value(self) -> Any:
        """A fresh copy of the default (lists must not be shared between brokers)."""
        return copy.deepcopy(self.default)


def default_of(options: tuple[Option, ...], key: str) -> Any:
    """The declared default of ``key``, for the dataclasses of model.py."""
    return next(option for option in options if option.key == key).default


SECONDS = values.number(0, values.MAX_SECONDS)
COUNT = values.integer(1, 100_000_000)

# --- the process --------------------------------------------------------------------------------

CONFIG = Option("config", values.TEXT, None, "YAML configuration file", "--config", "CONFIG",
                in_file=False)  # fmt: skip
BROKER_URL = Option(
    "brokers[].url",
    values.TEXT,
    DEFAULT_BROKER_URL,
    "broker to watch, URL or NAME=URL; repeat for several (the environment variable takes "
    "several separated by spaces); replaces the file's brokers",
    "--broker-url",
    "BROKER_URL",
    action="append",
)
CELERY_APP = Option(
    "celery_app",
    values.TEXT,
    None,
    "module:attr of your Celery app, to read broker, transport options and queues from",
    "--celery-app",
    "CELERY_APP",
)
HOST = Option("host", values.TEXT, "0.0.0.0", "listen address", "--host", "HOST")
PORT = Option("port", values.integer(0, 65535), 9818, "listen port", "--port", "PORT")
SCRAPE_TIMEOUT = Option(
    "scrape_timeout_seconds",
    SECONDS,
    10.0,
    "longest a scrape waits for each broker's inspection, in seconds (Prometheus' own scrape "
    "timeout, from its X-Prometheus-Scrape-Timeout-Seconds header, wins when shorter)",
    "--scrape-timeout",
    "SCRAPE_TIMEOUT",
)
URGENCY_MEMORY = Option(
    "urgency_memory_seconds",
    SECONDS,
    86400.0,
    "a priority level not seen carrying messages for this long stops counting for the most and "
    "least urgent levels of celery_queue_priority_urgency_rank (so a stray message at an "
    "unused level marks it only this long), in seconds",
    "--urgency-memory",
    "URGENCY_MEMORY",
)
TLS_CERT_FILE = Option("tls.cert_file", values.TEXT, None, "serve HTTPS with this certificate",
                       "--tls-cert-file", "TLS_CERT_FILE")  # fmt: skip
TLS_KEY_FILE = Option("tls.key_file", values.TEXT, None, "private key for --tls-cert-file",
                      "--tls-key-file", "TLS_KEY_FILE")  # fmt: skip
TLS_CLIENT_CA_FILE = Option(
    "tls.client_ca_file",
    values.TEXT,
    None,
    "require client certificates signed by this CA",
    "--tls-client-ca-file",
    "TLS_CLIENT_CA_FILE",
)
LOG_LEVEL = Option(
    "log_level",
    values.choice("DEBUG", "INFO", "WARNING", "ERROR", upper=True),
    "INFO",
    "log level",
    "--log-level",
    "LOG_LEVEL",
)
EVENTS = Option(
    "events",
    values.BOOLEAN,
    False,
    "consume Celery events (task and worker metrics); in the file `events: true` or an "
    "`events:` mapping (with `enabled:`, default true)",
    "--events",
    "EVENTS",
    action="bool",
)
STATIC_LABELS = Option(
    "static_labels",
    STATIC_LABELS_KIND,
    {},
    "labels added to every series, e.g. env=prod; not one the exporter sets itself",
    "--static-label",
    "STATIC_LABELS",
    action="append",
)
ONCE = Option("once", values.BOOLEAN, False, "print one scrape to stdout and exit", "--once",
              action="store_true", in_file=False)  # fmt: skip

#: Settings of the ExporterConfig that need no special handling.
EXPORTER_SETTINGS = (HOST, PORT, SCRAPE_TIMEOUT, URGENCY_MEMORY, TLS_CERT_FILE, TLS_KEY_FILE,
                     TLS_CLIENT_CA_FILE, LOG_LEVEL, STATIC_LABELS)  # fmt: skip
PROCESS_OPTIONS = (CONFIG, BROKER_URL, CELERY_APP, *EXPORTER_SETTINGS, EVENTS, ONCE)

# --- every broker, whatever its transport -------------------------------------------------------

NAME = Option(
    "name",
    values.TEXT,
    None,
    "the broker label (default: from the URL, e.g. redis-localhost-6379-0)",
)
URL = Option("url", values.TEXT, DEFAULT_BROKER_URL, "broker URL (required)")
QUEUES = Option(
    "queues",
    values.NAMES,
    [],
    "queues to watch (always watched); listing queues turns discovery off unless "
    "discover_queues says otherwise",
    "--queue",
    "QUEUES",
    action="append",
)
DISCOVER_QUEUES = Option(
    "discover_queues",
    values.BOOLEAN,
    True,
    "find queues from kombu's binding sets (Redis) or the vhost (RabbitMQ)",
    "--discover-queues",
    "DISCOVER_QUEUES",
    action="bool",
)
MAX_QUEUES = Option(
    "max_queues",
    values.integer(1, 1_000_000),
    2000,
    "cardinality cap: discovered queues beyond it are not watched (listed queues always are)",
)
QUEUE_INCLUDE = Option(
    "queue_include",
    values.PATTERNS,
    [],
    "watch only discovered queues whose whole name matches one of these regular expressions "
    "(listed queues are always watched); applied before max_queues",
    "--queue-include",
    "QUEUE_INCLUDE",
    action="append",
)
QUEUE_EXCLUDE = Option(
    "queue_exclude",
    values.PATTERNS,
    [],
    "leave out discovered queues whose whole name matches one of these regular expressions",
    "--queue-exclude",
    "QUEUE_EXCLUDE",
    action="append",
)
TRANSPORT_OPTIONS = Option(
    "transport_options",
    values.OPTION_MAP,
    {},
    "kombu transport options as in broker_transport_options: declared ones (below) are "
    "checked and used, the others kept and passed on where the exporter's client takes them",
    "--broker-transport-option",
    "BROKER_TRANSPORT_OPTIONS",
    action="append",
)
PRIORITY_LEVELS = Option(
    "priority_levels",
    values.PRIORITY_LEVELS,
    {},
    "per queue, the most and/or least urgent priority level to mark in "
    "celery_queue_priority_urgency_rank, instead of the levels seen carrying messages "
    "(Redis: values among priority_steps)",
)


def _broker_tls(key: str, kind: Kind, default: Any, help_text: str) -> Option:
    """An ``ssl:`` setting of a broker connection (``--broker-ssl-*``; the name Celery gives
    them, broker_use_ssl, and distinct from the exporter's own ``tls:``)."""
    suffix = key.upper()
    flag = "--broker-ssl-" + key.replace("_", "-")
    return Option(f"ssl.{key}", kind, default, help_text, flag, "BROKER_SSL_" + suffix)


#: TLS (``ssl:``) towards the broker (rediss://, amqps:// and the management API over https); the
#: Celery app's broker_use_ssl fills the same settings.
BROKER_TLS = (
    _broker_tls("ca_file", values.TEXT, None,
                "CA bundle (PEM) the broker's certificate must chain to (default: the system's)"),
    _broker_tls("cert_file", values.TEXT, None, "client certificate (PEM) to present"),
    _broker_tls("key_file", values.TEXT, None, "private key of cert_file (PEM, unencrypted)"),
    _broker_tls("verify", values.choice("required", "optional", "none"), "required",
                "certificate check: required (and host name), optional, none (insecure)"),
    _broker_tls("server_name", values.TEXT, None,
                "name the certificate must carry, when it is not the URL's host (AMQP only)"),
)  # fmt: skip

PASSWORD = Option("password", values.TEXT, None, "password, kept out of the URL")
PASSWORD_FILE = Option("password_file", values.TEXT, None, "read the password from this file")
PASSWORD_ENV = Option("password_env", values.TEXT, None,
                      "read the password from this environment variable")  # fmt: skip

#: Broker options set like any other (name, url and the password ones are special).
BROKER_SETTINGS = (QUEUES, DISCOVER_QUEUES, MAX_QUEUES, QUEUE_INCLUDE, QUEUE_EXCLUDE,
                   PRIORITY_LEVELS, TRANSPORT_OPTIONS, *BROKER_TLS)  # fmt: skip
BROKER_OPTIONS = (NAME, URL, *BROKER_SETTINGS, PASSWORD, PASSWORD_FILE, PASSWORD_ENV)

# --- Celery events (``events:`` in YAML) --------------------------------------------------------

#: Task runtime buckets (seconds): milliseconds to an hour.
DEFAULT_RUNTIME_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
#: Queue wait buckets (seconds): half-second steps from 3 to 6 s, so histogram_quantile reads a
#: p95 near the "starts within 5 s" goal within 10 % (tests/test_waits_tracker.py).
DEFAULT_WAIT_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 5.5, 6, 7.5, 10, 15, 30, 60, 120, 180,
    240, 300, 600, 1200, 1800, 3600,
)  # fmt: skip


def _event(key: str, kind: Kind, default: Any, help_text: str) -> Option:
    """An ``events:`` setting; its flag and variable drop the ``_seconds`` of the key."""
    suffix = key.removesuffix("_seconds").upper()
    flag = "--events-" + suffix.lower().replace("_", "-")
    return Option(f"events.{key}", kind, default, help_text, flag, "EVENTS_" + suffix)


EVENT_SETTINGS = (
    _event(
        "heartbeat_timeout_seconds",
        SECONDS,
        30.0,
        "a worker is down after this long without a heartbeat (see docs/events.md)",
    ),
    _event(
        "worker_retention_seconds",
        SECONDS,
        3600.0,
        "a lost worker (heartbeats stopped) stays exported (as 0) this long; at least "
        "heartbeat_timeout_seconds",
    ),
    _event(
        "worker_offline_grace_seconds",
        SECONDS,
        120.0,
        "a worker that went offline gracefully (worker-offline) is exported as offline this "
        "long, then its series are dropped (see docs/events.md)",
    ),
    _event(
        "runtime_buckets",
        values.BUCKETS,
        DEFAULT_RUNTIME_BUCKETS,
        "task runtime histogram bounds, seconds",
    ),
    _event(
        "wait_buckets", values.BUCKETS, DEFAULT_WAIT_BUCKETS, "queue wait histogram bounds, seconds"
    ),
    _event(
        "task_names",
        values.NAMES,
        [],
        'allow-list of task names; others become task="(other)" (empty: any, up to max_task_names)',
    ),
    _event("max_task_names", COUNT, 500, 'no allow-list: the first N task names, then "(other)"'),
    _event(
        "max_exception_names",
        COUNT,
        100,
        'exception label of failed tasks: the first N names, then "(other)"',
    ),
    _event("max_queue_names", COUNT, 1000, 'queue label: the first N names, then "(other)"'),
    _event("max_workers", COUNT, 1000, 'workers one by one; the rest share worker="(other)"'),
    _event(
        "max_label_length",
        values.integer(32, 4096),
        128,
        "label values from events (task, queue, exception, worker) and task ids longer than "
        "this many characters are cut to it, ending in '~' and 8 hex digits of a hash of the "
        "whole value, so two long names stay distinct (docs/reliability.md)",
    ),
    _event(
        "max_series_per_family",
        COUNT,
        2000,
        "series budget: at most this many series per event metric family, all brokers "
        "together; observations of a new series past it count under '(other)' labels and in "
        "celery_event_series_dropped_total",
    ),
    _event(
        "max_event_samples",
        COUNT,
        20_000,
        "series budget: at most this many samples per scrape from the task metrics of all "
        "brokers together (a histogram series costs its buckets + 3); past it, new series "
        "fold like past max_series_per_family",
    ),
    _event("max_tracked_tasks", COUNT, 100_000, "join state: tasks in flight remembered"),
    _event("max_task_age_seconds", SECONDS, 3600.0, "join state: forget a task after this long"),
    _event("max_wait_seconds", SECONDS, 86400.0, "waits above this are clamped as clock skew"),
    _event(
        "state_file",
        values.TEXT,
        None,
        "keep the known workers in this JSON file (written at most every 10 s and at shutdown, "
        "read at start), so lost workers stay down across exporter restarts; unset: none kept",
    ),
    _event(
        "state_file_max_bytes",
        values.integer(1024, 1 << 31),
        16 << 20,
        "a state file larger than this is not read (a warning, and a start without known "
        "workers), so a huge or hostile file cannot exhaust memory",
    ),
)
