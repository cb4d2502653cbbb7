"""Configuration: flags > environment > YAML file > defaults, validated before anything starts.

Every problem is raised as ConfigError with the path of the offending field, so the command
line can print one clear line and exit non-zero. Credentials are kept out of every message.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

DEFAULT_PORT = 9818
DEFAULT_HOST = "0.0.0.0"
DEFAULT_BROKER_URL = "redis://localhost:6379/0"
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
DEFAULT_SEP = "\x06\x16"
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
ENV_PREFIX = "CELERY_EXPORTER_"

REDIS_SCHEMES = {"redis", "rediss"}
RABBITMQ_SCHEMES = {"amqp", "amqps", "pyamqp"}


class ConfigError(ValueError):
    """A configuration problem, with the field it concerns in the message."""


UNPARSABLE_URL = "<unparsable url>"


def _credentials_misparsed(url: str, netloc: str) -> bool:
    """An '@' outside the parsed netloc means userinfo was not recognised (typically a password
    with an unencoded / ? or #): pieces of the password would land in host, port or path."""
    return "@" in url and "@" not in netloc


def redact_url(url: str) -> str:
    """The URL without user name and password, safe for logs, labels and errors."""
    try:
        parts = urlsplit(url)
        if _credentials_misparsed(url, parts.netloc) or not parts.hostname:
            return UNPARSABLE_URL
        host = parts.hostname
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return UNPARSABLE_URL
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def default_broker_name(url: str) -> str:
    """A readable broker label derived from the URL, e.g. ``redis-localhost-6379-0``."""
    parts = urlsplit(url)
    transport = "rabbitmq" if parts.scheme in RABBITMQ_SCHEMES else "redis"
    where = parts.path.lstrip("/") or ("0" if transport == "redis" else "/")
    pieces = [transport, parts.hostname or "localhost"]
    if parts.port:
        pieces.append(str(parts.port))
    pieces.append("default-vhost" if where == "/" else where)
    return re.sub(r"[^A-Za-z0-9_.:-]+", "-", "-".join(pieces))


@dataclass
class BrokerConfig:
    """One broker to watch; ``name`` becomes the ``broker`` label."""

    name: str
    url: str
    queues: list[str] = field(default_factory=list)
    discover_queues: bool = True
    # Redis transport options that shape keys (kombu's names).
    priority_steps: list[int] = field(default_factory=lambda: list(DEFAULT_PRIORITY_STEPS))
    sep: str = DEFAULT_SEP
    global_keyprefix: str = ""
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    unacked_key: str = "unacked"
    unacked_index_key: str = "unacked_index"
    reserved_sample_size: int = 1000
    discovery_interval_seconds: float = 30.0
    #: Cardinality cap: discovered queues beyond it are not watched (listed queues always are).
    max_queues: int = 2000
    # RabbitMQ.
    management_url: str | None = None
    management: str = "auto"  # auto | always | never
    # Credentials kept out of the URL.
    password: str | None = field(default=None, repr=False)

    @property
    def transport(self) -> str:
        scheme = urlsplit(self.url).scheme
        return "rabbitmq" if scheme in RABBITMQ_SCHEMES else "redis"

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def connect_url(self) -> str:
        """The URL with the password from password/password_file/env put in, for connecting."""
        if self.password is None:
            return self.url
        parts = urlsplit(self.url)
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:{_quote(self.password)}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def __repr__(self) -> str:  # never show the URL's password
        return f"BrokerConfig(name={self.name!r}, url={self.safe_url!r})"


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@dataclass
class ExporterConfig:
    """Everything the exporter process needs."""

    brokers: list[BrokerConfig]
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    scrape_timeout_seconds: float = 10.0
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    log_level: str = "INFO"
    once: bool = False
    events: bool = False
    event_settings: EventSettings = field(default_factory=lambda: EventSettings())


# --- Celery events ----------------------------------------------------------------------------

#: Task runtime buckets (seconds): milliseconds to an hour.
DEFAULT_RUNTIME_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
#: Queue wait buckets (seconds): half-second steps from 3 to 6 s, so histogram_quantile reads a
#: p95 near the "starts within 5 s" goal within 10 % (tests/test_wait_buckets.py).
DEFAULT_WAIT_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 5.5, 6, 7.5, 10, 15, 30, 60, 120, 180,
    240, 300, 600, 1200, 1800, 3600,
)  # fmt: skip


@dataclass
class EventSettings:
    """How the Celery event consumer judges workers and bounds its state (``events:`` in YAML).

    Keep heartbeat_timeout_seconds and worker_retention_seconds in step with
    monitoring/config.yaml ``exporter:`` (the worker-down alerts' ``for:`` depends on them).
    """

    heartbeat_timeout_seconds: float = 30.0
    worker_retention_seconds: float = 3600.0
    runtime_buckets: tuple[float, ...] = DEFAULT_RUNTIME_BUCKETS
    wait_buckets: tuple[float, ...] = DEFAULT_WAIT_BUCKETS
    task_names: list[str] = field(default_factory=list)  # allow-list; empty: any, up to max
    max_task_names: int = 500
    # exception label of celery_task_failed_total: the first N names, then catalogue.OTHER_TASK
    max_exception_names: int = 100
    # queue label values from events (the first N distinct names, then catalogue.OTHER_QUEUE)
    max_queue_names: int = 1000
    # workers exported one by one (the first N hostnames, the rest folded into OTHER_WORKER)
    max_workers: int = 1000
    max_tracked_tasks: int = 100_000
    max_task_age_seconds: float = 3600.0
    max_wait_seconds: float = 86400.0


# --- parsing helpers --------------------------------------------------------------------------

_BROKER_KEYS = {
    "name",
    "url",
    "queues",
    "discover_queues",
    "transport_options",
    "reserved_sample_size",
    "discovery_interval_seconds",
    "max_queues",
    "management_url",
    "management",
    "password",
    "password_file",
    "password_env",
}
_TRANSPORT_OPTION_KEYS = {
    "priority_steps",
    "sep",
    "global_keyprefix",
    "visibility_timeout",
    "unacked_key",
    "unacked_index_key",
}
_TOP_KEYS = {
    "brokers",
    "host",
    "port",
    "scrape_timeout_seconds",
    "tls",
    "log_level",
    "celery_app",
    "events",
}
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file"}
#: ``events:`` mapping keys -> (flag suffix / env name suffix, parser kind).
_EVENT_KEYS = {
    "heartbeat_timeout_seconds": ("HEARTBEAT_TIMEOUT", "seconds"),
    "worker_retention_seconds": ("WORKER_RETENTION", "seconds"),
    "runtime_buckets": ("RUNTIME_BUCKETS", "buckets"),
    "wait_buckets": ("WAIT_BUCKETS", "buckets"),
    "task_names": ("TASK_NAMES", "names"),
    "max_task_names": ("MAX_TASK_NAMES", "count"),
    "max_exception_names": ("MAX_EXCEPTION_NAMES", "count"),
    "max_queue_names": ("MAX_QUEUE_NAMES", "count"),
    "max_workers": ("MAX_WORKERS", "count"),
    "max_tracked_tasks": ("MAX_TRACKED_TASKS", "count"),
    "max_task_age_seconds": ("MAX_TASK_AGE", "seconds"),
    "max_wait_seconds": ("MAX_WAIT", "seconds"),
}


def _as_buckets(where: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, str):
        raw: list[Any] = [piece for piece in value.replace(" ", "").split(",") if piece]
    elif isinstance(value, list | tuple):
        raw = list(value)
    else:
        raise ConfigError(f"{where}: expected a list of bucket bounds, got {value!r}")
    bounds = [_as_float(where, item, 0) for item in raw]
    if not bounds:
        raise ConfigError(f"{where}: must not be empty")
    if bounds != sorted(set(bounds)):
        raise ConfigError(f"{where}: must be strictly ascending, got {bounds}")
    return tuple(bounds)


def _event_settings(where: str, values: dict[str, Any]) -> EventSettings:
    """EventSettings from already merged raw values (flag > env > file) keyed like YAML."""
    settings = EventSettings()
    for key, value in values.items():
        kind = _EVENT_KEYS[key][1]
        if kind == "seconds":
            setattr(settings, key, _as_float(f"{where}.{key}", value, 0))
        elif kind == "buckets":
            setattr(settings, key, _as_buckets(f"{where}.{key}", value))
        elif kind == "names":
            setattr(settings, key, _as_str_list(f"{where}.{key}", value))
        else:
            setattr(settings, key, _as_int(f"{where}.{key}", value, 1, 100_000_000))
    if settings.worker_retention_seconds < settings.heartbeat_timeout_seconds:
        raise ConfigError(
            f"{where}.worker_retention_seconds: must be at least heartbeat_timeout_seconds "
            f"({settings.heartbeat_timeout_seconds:g}), got {settings.worker_retention_seconds:g}"
        )
    return settings


def _check_keys(where: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}{unknown[0]}: unknown field (allowed: {', '.join(sorted(allowed))})"
        )


def _as_int(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{where}: must be between {low} and {high}, got {number}")
    return number


def _as_float(where: str, value: Any, low: float) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if not number > low:
        raise ConfigError(f"{where}: must be greater than {low:g}, got {number:g}")
    return number


def _as_bool(where: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _as_str_list(where: str, value: Any) -> list[str]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [str(item).strip() for item in value]
    else:
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    if any(not item for item in items):
        raise ConfigError(f"{where}: empty queue name in {value!r}")
    return items


def parse_priority_steps(where: str, value: Any) -> list[int]:
    """kombu's priority_steps: ascending distinct integers within 0..9 (kombu clamps to 0..9)."""
    if isinstance(value, str):
        raw = [piece for piece in value.replace(" ", "").split(",") if piece]
    elif isinstance(value, list | tuple | range):
        raw = list(value)
    else:
        raise ConfigError(f"{where}: expected a list of integers, got {value!r}")
    steps = [_as_int(where, item, 0, 9) for item in raw]
    if not steps:
        raise ConfigError(f"{where}: must not be empty")
    if steps != sorted(set(steps)):
        raise ConfigError(f"{where}: must be strictly ascending, got {steps}")
    if steps[0] != 0:
        raise ConfigError(
            f"{where}: must start at 0 (kombu floors priorities to a step), got {steps}"
        )
    return steps


def _check_url(where: str, url: Any) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}: expected a broker URL such as {DEFAULT_BROKER_URL}")
    url = url.strip()
    unparsable = ConfigError(
        f"{where}: cannot parse the URL (is a special character such as / ? # @ in the "
        "password? percent-encode it, or use password_file / password_env)"
    )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:  # its message can quote parts of the password: never show it
        raise unparsable from None
    if _credentials_misparsed(url, parts.netloc):
        raise unparsable
    if parts.scheme not in REDIS_SCHEMES | RABBITMQ_SCHEMES:
        schemes = ", ".join(sorted(REDIS_SCHEMES | RABBITMQ_SCHEMES))
        raise ConfigError(
            f"{where}: unsupported scheme {parts.scheme!r} in {redact_url(url)!r} "
            f"(supported: {schemes})"
        )
    if not parts.hostname:
        raise ConfigError(f"{where}: no host in {redact_url(url)!r}")
    if parts.scheme in REDIS_SCHEMES:
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise ConfigError(f"{where}: Redis database must be a number, got {db!r}")
    return url


def _apply_transport_options(where: str, broker: BrokerConfig, options: dict[str, Any]) -> None:
    """Copy the kombu transport options the exporter understands; others are ignored on purpose
    (a Celery app's options can hold anything) but must be a mapping."""
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected a mapping, got {options!r}")
    if "priority_steps" in options:
        broker.priority_steps = parse_priority_steps(
            f"{where}.priority_steps", options["priority_steps"]
        )
    if "sep" in options:
        if not isinstance(options["sep"], str) or not options["sep"]:
            raise ConfigError(f"{where}.sep: expected a non-empty string")
        broker.sep = options["sep"]
    for key in ("global_keyprefix", "unacked_key", "unacked_index_key"):
        if key in options:
            if not isinstance(options[key], str):
                raise ConfigError(f"{where}.{key}: expected a string")
            setattr(broker, key, options[key])
    if "visibility_timeout" in options:
        broker.visibility_timeout = _as_float(
            f"{where}.visibility_timeout", options["visibility_timeout"], 0
        )


def _read_password_file(where: str, path: Any) -> str:
    try:
        return Path(str(path)).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read password file {path!r}: {exc.strerror}") from None


def broker_from_mapping(where: str, data: Any) -> BrokerConfig:
    """Build one broker from a YAML mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with at least 'url'")
    _check_keys(f"{where}.", data, _BROKER_KEYS)
    url = _check_url(f"{where}.url", data.get("url"))
    name = data.get("name") or default_broker_name(url)
    broker = BrokerConfig(name=str(name), url=url)
    if "queues" in data:
        broker.queues = _as_str_list(f"{where}.queues", data["queues"])
        broker.discover_queues = False
    if "discover_queues" in data:
        broker.discover_queues = _as_bool(f"{where}.discover_queues", data["discover_queues"])
    options = data.get("transport_options") or {}
    if isinstance(options, dict):
        _check_keys(f"{where}.transport_options.", options, _TRANSPORT_OPTION_KEYS)
    _apply_transport_options(f"{where}.transport_options", broker, options)
    if "reserved_sample_size" in data:
        broker.reserved_sample_size = _as_int(
            f"{where}.reserved_sample_size", data["reserved_sample_size"], 1, 1_000_000
        )
    if "max_queues" in data:
        broker.max_queues = _as_int(f"{where}.max_queues", data["max_queues"], 1, 1_000_000)
    if "discovery_interval_seconds" in data:
        broker.discovery_interval_seconds = _as_float(
            f"{where}.discovery_interval_seconds", data["discovery_interval_seconds"], -1
        )
    if "management_url" in data:
        broker.management_url = _check_http_url(f"{where}.management_url", data["management_url"])
    if "management" in data:
        broker.management = _management_mode(f"{where}.management", data["management"])
    if "password" in data:
        broker.password = str(data["password"])
    if "password_file" in data:
        broker.password = _read_password_file(f"{where}.password_file", data["password_file"])
    if "password_env" in data:
        variable = str(data["password_env"])
        if variable not in os.environ:
            raise ConfigError(f"{where}.password_env: environment variable {variable} is not set")
        broker.password = os.environ[variable]
    return broker


def _management_mode(where: str, value: Any) -> str:
    mode = str(value).strip().lower()
    if mode not in {"auto", "always", "never"}:
        raise ConfigError(f"{where}: expected auto, always or never, got {mode!r}")
    return mode


def _check_http_url(where: str, value: Any) -> str:
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{where}: expected an http(s) URL, got {redact_url(text)!r}")
    return text.rstrip("/")


_NAMED_URL = re.compile(r"^(?P<name>[A-Za-z0-9_.:-]+)=(?P<url>[a-z]+://.*)$")


def broker_from_flag(where: str, text: str) -> BrokerConfig:
    """``--broker-url`` takes ``URL`` or ``NAME=URL``."""
    match = _NAMED_URL.match(text.strip())
    if match:
        return broker_from_mapping(where, {"name": match["name"], "url": match["url"]})
    return broker_from_mapping(where, {"url": text})


def broker_from_celery_app(spec: str) -> BrokerConfig:
    """Read broker URL, transport options and declared queues from the user's Celery app."""
    where = "celery_app"
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ConfigError(f"{where}: expected module:attribute, got {spec!r}")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module can raise anything
        raise ConfigError(f"{where}: cannot import {module_name!r}: {exc}") from None
    try:
        app = getattr(module, attr or "app")
    except AttributeError:
        raise ConfigError(f"{where}: module {module_name!r} has no {attr or 'app'!r}") from None
    conf = app.conf
    url = conf.broker_url or DEFAULT_BROKER_URL
    url = url.split(";")[0].strip()  # failover lists: the first is the primary
    broker = broker_from_mapping(where, {"url": url, "name": default_broker_name(url)})
    options = dict(conf.broker_transport_options or {})
    known = {key: value for key, value in options.items() if key in _TRANSPORT_OPTION_KEYS}
    _apply_transport_options(f"{where}.broker_transport_options", broker, known)
    queues: list[str] = []
    for queue in conf.task_queues or ():
        name = getattr(queue, "name", None) or str(queue)
        queues.append(name)
    default = conf.task_default_queue
    if default and default not in queues:
        queues.append(default)
    broker.queues = queues
    broker.discover_queues = True
    return broker


# --- loading ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-queue-exporter",
        description="Prometheus exporter for Celery queues on Redis and RabbitMQ, per priority.",
        epilog=f"Every flag also reads an environment variable {ENV_PREFIX}<FLAG> "
        "(e.g. CELERY_EXPORTER_PORT); flags win over the environment, which wins over --config.",
    )
    add = parser.add_argument
    add("--config", help="YAML configuration file")
    add(
        "--broker-url",
        action="append",
        help=f"broker to watch, URL or NAME=URL; repeat for several (default {DEFAULT_BROKER_URL})",
    )
    add("--queue", action="append", help="queue to watch (repeatable; also comma-separated)")
    add(
        "--discover-queues",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="find queues from kombu's binding sets (Redis) or the vhost (RabbitMQ)",
    )
    add("--celery-app", help="module:attr of your Celery app, to read broker and queues from")
    add("--priority-steps", help="Redis priority steps, e.g. 0,3,6,9 (kombu's default)")
    add("--sep", help="Redis priority key separator (kombu's default is \\x06\\x16)")
    add("--global-keyprefix", help="Redis global_keyprefix transport option")
    add("--visibility-timeout", help="Redis visibility_timeout in seconds (default 3600)")
    add("--management-url", help="RabbitMQ management API URL (default http://<host>:15672)")
    add(
        "--management-api",
        choices=["auto", "always", "never"],
        help="RabbitMQ: use the management API when it answers (auto, default), only it "
        "(always), or AMQP only (never)",
    )
    add("--host", help=f"listen address (default {DEFAULT_HOST})")
    add("--port", help=f"listen port (default {DEFAULT_PORT})")
    add("--scrape-timeout", help="per-broker inspection timeout in seconds (default 10)")
    add("--tls-cert-file", help="serve HTTPS with this certificate")
    add("--tls-key-file", help="private key for --tls-cert-file")
    add("--tls-client-ca-file", help="require client certificates signed by this CA")
    add(
        "--events",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="consume Celery events (task and worker metrics)",
    )
    for key, (suffix, kind) in _EVENT_KEYS.items():
        flag = "--events-" + suffix.lower().replace("_", "-")
        add(flag, dest="events_" + key, help=f"events.{key} ({kind}; see docs/events.md)")
    add("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    add("--once", action="store_true", help="print one scrape to stdout and exit")
    return parser


def _load_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path!r}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path!r} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path!r} must hold a mapping at the top level")
    _check_keys("config: ", data, _TOP_KEYS)
    return data


def load_config(
    argv: list[str] | None = None, environ: dict[str, str] | None = None
) -> ExporterConfig:
    """Merge flags, environment, file and defaults, and validate the result."""
    env = dict(os.environ if environ is None else environ)
    args = build_parser().parse_args(argv)

    def pick(flag_value: Any, env_name: str, file_value: Any = None) -> Any:
        if flag_value is not None:
            return flag_value
        if ENV_PREFIX + env_name in env:
            return env[ENV_PREFIX + env_name]
        return file_value

    config_path = pick(args.config, "CONFIG")
    data = _load_file(config_path) if config_path else {}

    # Brokers: flags replace the environment's, which replace the file's.
    brokers: list[BrokerConfig] = []
    if args.broker_url:
        brokers = [
            broker_from_flag(f"--broker-url[{i}]", url) for i, url in enumerate(args.broker_url)
        ]
        from_flags = True
    elif env.get(ENV_PREFIX + "BROKER_URL"):
        urls = env[ENV_PREFIX + "BROKER_URL"].split()
        brokers = [broker_from_flag(f"{ENV_PREFIX}BROKER_URL[{i}]", u) for i, u in enumerate(urls)]
        from_flags = True
    else:
        raw = data.get("brokers") or []
        if not isinstance(raw, list):
            raise ConfigError("config: brokers: expected a list of brokers")
        brokers = [broker_from_mapping(f"brokers[{i}]", item) for i, item in enumerate(raw)]
        from_flags = False

    celery_app = pick(args.celery_app, "CELERY_APP", data.get("celery_app"))
    if celery_app:
        brokers.append(broker_from_celery_app(str(celery_app)))
    if not brokers:
        brokers = [broker_from_mapping("default broker", {"url": DEFAULT_BROKER_URL})]
        from_flags = True

    # Per-broker flags apply to brokers named on the command line or in the environment.
    queues = pick(args.queue and ",".join(args.queue), "QUEUES")
    discover = pick(args.discover_queues, "DISCOVER_QUEUES")
    steps = pick(args.priority_steps, "PRIORITY_STEPS")
    sep = pick(args.sep, "SEP")
    prefix = pick(args.global_keyprefix, "GLOBAL_KEYPREFIX")
    visibility = pick(args.visibility_timeout, "VISIBILITY_TIMEOUT")
    management_url = pick(args.management_url, "MANAGEMENT_URL")
    management_mode = pick(args.management_api, "MANAGEMENT_API")
    for broker in brokers if from_flags else []:
        if queues:
            broker.queues = _as_str_list("--queue", queues)
            broker.discover_queues = False
        if discover is not None:
            broker.discover_queues = _as_bool("--discover-queues", discover)
        options: dict[str, Any] = {}
        if steps is not None:
            options["priority_steps"] = steps
        if sep is not None:
            options["sep"] = sep
        if prefix is not None:
            options["global_keyprefix"] = prefix
        if visibility is not None:
            options["visibility_timeout"] = visibility
        _apply_transport_options("--transport-options", broker, options)
        if management_url:
            broker.management_url = _check_http_url("--management-url", management_url)
        if management_mode is not None:
            broker.management = _management_mode("--management-api", management_mode)

    names = [broker.name for broker in brokers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"brokers: duplicate broker name {duplicates[0]!r}; give each a name")
    for broker in brokers:
        if broker.transport == "redis" and not broker.queues and not broker.discover_queues:
            raise ConfigError(
                f"brokers[{broker.name}]: no queues listed and discovery is off: nothing to watch"
            )

    tls = data.get("tls") or {}
    if not isinstance(tls, dict):
        raise ConfigError("config: tls: expected a mapping")
    _check_keys("tls.", tls, _TLS_KEYS)
    config = ExporterConfig(brokers=brokers)
    config.host = str(pick(args.host, "HOST", data.get("host")) or DEFAULT_HOST)
    port = pick(args.port, "PORT", data.get("port"))
    if port is not None:
        config.port = _as_int("port", port, 0, 65535)
    timeout = pick(args.scrape_timeout, "SCRAPE_TIMEOUT", data.get("scrape_timeout_seconds"))
    if timeout is not None:
        config.scrape_timeout_seconds = _as_float("scrape_timeout_seconds", timeout, 0)
    config.tls_cert_file = pick(args.tls_cert_file, "TLS_CERT_FILE", tls.get("cert_file"))
    config.tls_key_file = pick(args.tls_key_file, "TLS_KEY_FILE", tls.get("key_file"))
    config.tls_client_ca_file = pick(
        args.tls_client_ca_file, "TLS_CLIENT_CA_FILE", tls.get("client_ca_file")
    )
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise ConfigError("tls: cert_file and key_file must be given together")
    if config.tls_client_ca_file and not config.tls_cert_file:
        raise ConfigError("tls.client_ca_file: needs cert_file and key_file too")
    for label, path in (
        ("tls.cert_file", config.tls_cert_file),
        ("tls.key_file", config.tls_key_file),
        ("tls.client_ca_file", config.tls_client_ca_file),
    ):
        if path and not Path(path).is_file():
            raise ConfigError(f"{label}: no such file {path!r}")
    level = str(pick(args.log_level, "LOG_LEVEL", data.get("log_level")) or "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"log_level: expected DEBUG, INFO, WARNING or ERROR, got {level!r}")
    config.log_level = level
    file_events = data.get("events")
    file_event_values: dict[str, Any] = {}
    if isinstance(file_events, dict):  # events: {enabled: true, heartbeat_timeout_seconds: ...}
        _check_keys("events.", file_events, set(_EVENT_KEYS) | {"enabled"})
        file_event_values = {k: v for k, v in file_events.items() if k != "enabled"}
        file_events = file_events.get("enabled", True)
    events = pick(args.events, "EVENTS", file_events)
    config.events = _as_bool("events", events) if events is not None else False
    event_values: dict[str, Any] = {}
    for key, (suffix, _kind) in _EVENT_KEYS.items():
        value = pick(getattr(args, "events_" + key), "EVENTS_" + suffix, file_event_values.get(key))
        if value is not None:
            event_values[key] = value
    config.event_settings = _event_settings("events", event_values)
    config.once = bool(args.once)
    return config
