"""Brokers from a YAML mapping, a ``--broker-url`` value or the user's Celery app (the assembly:
above the broker packages). Each broker's URL is parsed once and its transport resolved here,
when its configuration is built. The options a broker takes are the generic ones of
options.py plus every transport's declared ones; each broker keeps its own transport's."""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ..brokers import registry
from ..brokers.base import Transport
from . import options as opt
from .errors import ConfigError
from .files import read_text_file
from .model import BrokerConfig
from .options import Option
from .urls import BrokerURL, URLPart, label_text, redact_url, scheme_of, split_url_list

TRANSPORT_OPTIONS = "transport_options"


def check_keys(where: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}{unknown[0]}: unknown field (allowed: {', '.join(sorted(allowed))})"
        )


def broker_settings() -> list[Option]:
    """Every option a broker takes that is set the ordinary way, generic ones first."""
    return [*opt.BROKER_SETTINGS, *registry.transport_options().values()]


def _top_keys(options: list[Option]) -> set[str]:
    return {option.key.split(".", 1)[0] for option in options}


def parse_url(where: str, url: Any) -> tuple[BrokerURL, Transport]:
    """A broker URL some transport serves, parsed once (without leaking its password), and that
    transport: the one place a broker's scheme is resolved (brokers/registry.py holds the
    table); every later stop reads ``BrokerConfig.url`` and ``BrokerConfig.transport``."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}: expected a broker URL such as {opt.DEFAULT_BROKER_URL}")
    url = url.strip()
    pieces = split_url_list(url)
    if len(pieces) > 1:
        return _parse_url_list(where, pieces)
    part, transport = _parse_piece(where, url)
    return BrokerURL(url, (part,)), transport


def _parse_piece(where: str, text: str) -> tuple[URLPart, Transport]:
    part = URLPart.parse(where, text)
    transport = _transport(where, part.scheme, text)
    if not part.host:
        raise ConfigError(f"{where}: no host in {redact_url(text)!r}")
    transport.check_url(where, part)
    return part, transport


def _transport(where: str, scheme: str, text: str) -> Transport:
    return registry.for_scheme(where, scheme, redact_url(text))


def _parse_url_list(where: str, pieces: list[str]) -> tuple[BrokerURL, Transport]:
    """kombu's ``a;b`` URL lists: one broker only where its transport says so (sentinels);
    elsewhere Celery means failover, and the exporter watches one broker per entry."""
    parsed = [_parse_piece(f"{where}[{i}]", piece) for i, piece in enumerate(pieces)]
    parts = tuple(part for part, _transport in parsed)
    transport = parsed[0][1]
    schemes = {part.scheme for part in parts}
    if len(schemes) > 1 or not schemes <= transport.list_schemes:
        allowed = " or ".join(f"{scheme}://" for scheme in sorted(transport.list_schemes))
        only = f"only when every URL is {allowed}" if allowed else "never (a failover list)"
        raise ConfigError(
            f"{where}: a ';'-separated URL list is one {transport.name} broker {only}; "
            "give each broker its own entry"
        )
    return BrokerURL(";".join(pieces), parts), transport


def default_name(url: BrokerURL, transport: Transport) -> str:
    """A readable broker label derived from the URL, e.g. ``redis-localhost-6379-0``."""
    where = url.database or transport.default_path
    pieces = [transport.name, url.first.host or "localhost"]
    if url.first.port:
        pieces.append(str(url.first.port))
    pieces.append("default-vhost" if where == "/" else where)
    return label_text(pieces)


def default_broker_name(url: str) -> str:
    """``default_name`` of a URL text."""
    return default_name(*parse_url("url", url))


def set_option(broker: BrokerConfig, option: Option, value: Any) -> None:
    """Put a parsed value where it lives: the broker's ``tls``, its transport's typed options,
    or the broker itself. Another transport's option concerns other brokers (one set of
    flags serves brokers of several kinds): this one ignores it."""
    if option.key.startswith("ssl."):
        broker.tls = replace(broker.tls, **{option.attr: value})
    elif option.attr in {own.attr for own in broker.transport.options}:
        broker.options = replace(broker.options, **{option.attr: value})
    elif option.attr not in registry.transport_options():
        setattr(broker, option.attr, value)


def apply(broker: BrokerConfig, option: Option, where: str, value: Any) -> None:
    """Set one option on ``broker``; listing queues turns discovery off (discover_queues, set
    after it, can turn it back on)."""
    parsed = option.kind.parse(where, value)
    if option is opt.TRANSPORT_OPTIONS:
        apply_transport_options(broker, where, parsed)
        return
    set_option(broker, option, parsed)
    if option is opt.QUEUES:
        broker.discover_queues = False


def apply_transport_options(
    broker: BrokerConfig, where: str, options: dict[str, Any], strict: bool = True
) -> None:
    """kombu transport options: a declared one is checked by its kind and used; another one
    the broker's transport passes on is kept in ``extra_transport_options`` for its client
    (brokers/<name>/). ``strict``: any other name is a ConfigError (a typo kombu would ignore
    as well); a Celery app's options are read leniently, they may serve other transports."""
    declared = {
        option.attr: option
        for option in registry.transport_options().values()
        if option.key.startswith(TRANSPORT_OPTIONS + ".")
    }
    passed = broker.transport.passed_options
    for key, value in options.items():
        option = declared.get(key)
        if option is not None:
            set_option(broker, option, option.kind.parse(f"{where}.{key}", value))
        elif passed is None or key in passed:
            broker.extra_transport_options[key] = value
        elif strict:
            known = ", ".join(sorted(set(declared) | passed))
            raise ConfigError(f"{where}.{key}: unknown field (allowed: {known})")


def new_broker(name: str, url: str, **settings: Any) -> BrokerConfig:
    """A broker built in code (tests, embedding): its URL checked and its transport resolved as
    for the file's brokers; ``settings`` by attribute name, the generic ones (``queues``,
    ``discover_queues``, ``password``, ``tls``, ...) or its transport's own (``sep``,
    ``management_url``, ...), taken as given."""
    parsed, transport = parse_url(f"brokers[{name}].url", url)
    broker = BrokerConfig(name, parsed, transport, transport.options_type())
    own = {item.name for item in fields(broker.options)}
    generic = {item.name for item in fields(BrokerConfig)} - {"name", "url", "transport", "options"}
    for key, value in settings.items():
        if key in own:
            broker.options = replace(broker.options, **{key: value})
        elif key in generic:
            setattr(broker, key, value)
        else:
            raise TypeError(f"new_broker: a {transport.name} broker has no setting {key!r}")
    return broker


def apply_celery_ssl(broker: BrokerConfig, where: str, use_ssl: Any) -> None:
    """Celery's ``broker_use_ssl`` (True, or a mapping spelt the Redis way ``ssl_ca_certs`` or
    the AMQP way ``ca_certs``) as the broker's ``ssl:`` settings."""
    if not use_ssl:
        return
    if use_ssl is True:
        return  # the defaults: the system's CAs, full verification
    if not isinstance(use_ssl, dict):
        raise ConfigError(f"{where}: expected True or a mapping, got {type(use_ssl).__name__}")
    for key, value in use_ssl.items():
        setting = CELERY_SSL_KEYS.get(str(key).removeprefix("ssl_"))
        if setting is None or value is None:
            continue  # ciphers, ssl_version and the like: the defaults are kept
        if setting == "verify":
            value = _cert_reqs(f"{where}.{key}", value)
        option = next(o for o in opt.BROKER_TLS if o.attr == setting)
        apply(broker, option, f"{where}.{key}", value)


#: broker_use_ssl keys (without kombu's Redis ``ssl_`` prefix) -> tls: settings.
CELERY_SSL_KEYS = {
    "ca_certs": "ca_file",
    "certfile": "cert_file",
    "keyfile": "key_file",
    "cert_reqs": "verify",
    "server_hostname": "server_name",
}


def _cert_reqs(where: str, value: Any) -> str:
    """ssl.CERT_REQUIRED / 2 / 'required' / 'CERT_REQUIRED' -> required | optional | none."""
    import ssl

    if isinstance(value, int):
        try:
            value = ssl.VerifyMode(value).name
        except ValueError:
            raise ConfigError(f"{where}: unknown verification mode {value!r}") from None
    return str(value).lower().removeprefix("cert_")


def _lookup(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    """(present, value) of a dotted key in a mapping."""
    head, _, rest = key.partition(".")
    if head not in data:
        return False, None
    if not rest:
        return True, data[head]
    inner = data[head]
    return _lookup(inner, rest) if isinstance(inner, dict) else (False, None)


def _text_field(where: str, value: Any, hint: str = "") -> str:
    """A field that must be a YAML string; the message never shows the value (a password
    given as a mapping or a number would otherwise be echoed)."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got a {_yaml_type(value)}{hint}")
    return value


def _yaml_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", dict: "mapping", list: "list"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _password(where: str, data: dict[str, Any]) -> str | None:
    password = None
    if "password" in data:
        password = _text_field(
            f"{where}.password", data["password"], " (quote it in YAML: password: '...')"
        )
    if "password_file" in data:
        path = _text_field(f"{where}.password_file", data["password_file"])
        password = read_text_file(f"{where}.password_file", path).strip()
    if "password_env" in data:
        variable = _text_field(f"{where}.password_env", data["password_env"])
        if variable not in os.environ:
            raise ConfigError(f"{where}.password_env: environment variable {variable} is not set")
        password = os.environ[variable]
    return password


def broker_from_mapping(where: str, data: Any) -> BrokerConfig:
    """Build one broker from a YAML mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with at least 'url'")
    settings = broker_settings()
    check_keys(f"{where}.", data, _top_keys([*opt.BROKER_OPTIONS, *settings]))
    options = data.get(TRANSPORT_OPTIONS) or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.{TRANSPORT_OPTIONS}: expected a mapping, got {options!r}")
    tls = data.get("ssl") or {}
    if not isinstance(tls, dict):
        raise ConfigError(f"{where}.ssl: expected a mapping, got {tls!r}")
    check_keys(f"{where}.ssl.", tls, {option.attr for option in opt.BROKER_TLS})
    url, transport = parse_url(f"{where}.url", data.get("url"))
    name = data.get("name")
    if name is not None:
        name = _text_field(f"{where}.name", name) if not isinstance(name, int) else str(name)
    broker = BrokerConfig(
        name or default_name(url, transport), url, transport, transport.options_type()
    )
    for option in settings:
        if option.key.startswith(TRANSPORT_OPTIONS + "."):
            continue  # applied with the transport_options mapping, declared or not
        present, value = _lookup(data, option.key)
        if present:
            apply(broker, option, f"{where}.{option.key}", value)
    broker.password = _password(where, data)
    return broker


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
    url = conf.broker_url or opt.DEFAULT_BROKER_URL
    pieces = split_url_list(url)
    first = scheme_of(pieces[0])
    if first not in _transport(where, first, pieces[0]).list_schemes:
        url = pieces[0]  # a failover list: the first is the primary
    broker = broker_from_mapping(where, {"url": url})  # named from its URL
    # Declared options are checked; the others are kept for the transport's client.
    app_options = dict(conf.broker_transport_options or {})
    apply_transport_options(broker, f"{where}.broker_transport_options", app_options, False)
    apply_celery_ssl(broker, f"{where}.broker_use_ssl", conf.broker_use_ssl)
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
