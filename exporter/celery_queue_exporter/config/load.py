"""Loading: flags > environment > YAML file > defaults, validated before anything starts.

Every problem is raised as ConfigError with the path of the offending field (its YAML key), so
the command line can print one clear line and exit 2. Credentials are kept out of every
message. Which options exist, their flags, variables, kinds and defaults come from options.py
and the transport packages; this module only merges and cross-checks.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

import yaml

from . import options as opt
from .brokers import (
    apply,
    broker_from_celery_app,
    broker_from_flag,
    broker_from_mapping,
    broker_settings,
    check_keys,
)
from .errors import ConfigError
from .files import read_text_file
from .model import BrokerConfig, EventSettings, ExporterConfig
from .options import Option
from .parser import build_parser


class _Sources:
    """One option's raw value: its flag, else its environment variable, else the file."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env

    def pick(self, option: Option, file_value: Any = None) -> Any:
        value = getattr(self.args, option.dest, None) if option.flag else None
        if isinstance(value, list) and not option.kind.takes_list:  # repeatable flag
            value = ",".join(value)
        if value is None and option.env_var and option.env_var in self.env:
            value = self.env[option.env_var]
        if value is None:
            value = file_value
        if option.kind.blank_is_unset and isinstance(value, str) and not value.strip():
            return None
        return value


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """Where and what, without the parser's snippet of the offending line (it may hold a
    password) and without anything it quotes from the file."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or "cannot parse"
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context else problem
    what = re.sub(r"'[^']*'|\"[^\"]*\"", "(...)", what)  # e.g. "found character 'x' ..."
    if mark is None:
        return what
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}"


def _load_file(path: str) -> dict[str, Any]:
    text = read_text_file("config", path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path!r} is not valid YAML: {yaml_error_text(exc)}") from None
    except RecursionError:
        raise ConfigError(f"config: {path!r} is nested too deeply to be a configuration") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path!r} must hold a mapping at the top level")
    in_file = [option for option in opt.PROCESS_OPTIONS if option.in_file]
    check_keys("config: ", data, {option.key.split(".")[0].split("[")[0] for option in in_file})
    tls = data.get("tls") or {}
    if not isinstance(tls, dict):
        raise ConfigError("config: tls: expected a mapping")
    check_keys("tls.", tls, {o.attr for o in opt.EXPORTER_SETTINGS if o.key.startswith("tls.")})
    return data


def _brokers(sources: _Sources, data: dict[str, Any]) -> tuple[list[BrokerConfig], bool]:
    """The brokers, and whether they came from flags or the environment (the per-broker flags
    apply to those only). Flags replace the environment's brokers, which replace the file's."""
    if sources.args.brokers_url:
        urls = sources.args.brokers_url
        return [broker_from_flag(f"--broker-url[{i}]", url) for i, url in enumerate(urls)], True
    variable = opt.BROKER_URL.env_var or ""
    if sources.env.get(variable):
        urls = sources.env[variable].split()
        return [broker_from_flag(f"{variable}[{i}]", url) for i, url in enumerate(urls)], True
    raw = data.get("brokers") or []
    if not isinstance(raw, list):
        raise ConfigError("config: brokers: expected a list of brokers")
    return [broker_from_mapping(f"brokers[{i}]", item) for i, item in enumerate(raw)], False


def _check_brokers(brokers: list[BrokerConfig]) -> None:
    names = [broker.name for broker in brokers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"brokers: duplicate broker name {duplicates[0]!r}; give each a name")
    for broker in brokers:
        broker.transport.check_broker(f"brokers[{broker.name}]", broker)


def _check_tls(config: ExporterConfig) -> None:
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


def _events(sources: _Sources, file_events: Any) -> tuple[bool, EventSettings]:
    """``events: true`` or ``events: {enabled: true, <setting>: ...}`` in the file."""
    file_values: dict[str, Any] = {}
    if isinstance(file_events, dict):
        check_keys("events.", file_events, {o.attr for o in opt.EVENT_SETTINGS} | {"enabled"})
        file_values = {k: v for k, v in file_events.items() if k != "enabled"}
        file_events = file_events.get("enabled", True)
    enabled = sources.pick(opt.EVENTS, file_events)
    settings = EventSettings()
    for option in opt.EVENT_SETTINGS:
        value = sources.pick(option, file_values.get(option.attr))
        if value is not None:
            setattr(settings, option.attr, option.kind.parse(option.key, value))
    if settings.worker_retention_seconds < settings.heartbeat_timeout_seconds:
        raise ConfigError(
            f"events.worker_retention_seconds: must be at least heartbeat_timeout_seconds "
            f"({settings.heartbeat_timeout_seconds:g}), got {settings.worker_retention_seconds:g}"
        )
    if settings.state_file is not None:
        folder = Path(settings.state_file).expanduser().resolve().parent
        if Path(settings.state_file).is_dir() or not folder.is_dir():
            raise ConfigError(
                f"events.state_file: needs a file in an existing directory, got "
                f"{settings.state_file!r}"
            )
    return (opt.EVENTS.kind.parse("events", enabled) if enabled is not None else False), settings


def load_config(
    argv: list[str] | None = None, environ: dict[str, str] | None = None
) -> ExporterConfig:
    """Merge flags, environment, file and defaults, and validate the result."""
    sources = _Sources(
        build_parser().parse_args(argv), dict(os.environ if environ is None else environ)
    )
    config_path = sources.pick(opt.CONFIG)
    data = _load_file(config_path) if config_path else {}

    brokers, from_flags = _brokers(sources, data)
    celery_app = sources.pick(opt.CELERY_APP, data.get("celery_app"))
    if celery_app:
        brokers.append(broker_from_celery_app(str(celery_app)))
    if not brokers:
        brokers = [broker_from_mapping("default broker", {"url": opt.DEFAULT_BROKER_URL})]
        from_flags = True
    # Per-broker flags apply to brokers named on the command line or in the environment.
    for option in broker_settings():
        value = sources.pick(option)
        for broker in brokers if from_flags and value is not None else []:
            apply(broker, option, option.key, value)
    _check_brokers(brokers)

    config = ExporterConfig(brokers=brokers)
    for option in opt.EXPORTER_SETTINGS:
        value = sources.pick(option, _lookup_file(data, option.key))
        if value is not None:
            setattr(config, option.dest, option.kind.parse(option.key, value))
    _check_tls(config)
    config.events, config.event_settings = _events(sources, data.get("events"))
    config.once = bool(sources.args.once)
    return config


def _lookup_file(data: dict[str, Any], key: str) -> Any:
    section, _, name = key.rpartition(".")
    holder = data.get(section) or {} if section else data
    return holder.get(name)
