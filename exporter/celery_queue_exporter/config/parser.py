"""The command line: argparse flags and --help text from the option declarations, grouped
as docs/configuration.md groups them."""

from __future__ import annotations

import argparse
from typing import Any

from ..brokers import registry
from . import options as opt
from .options import ENV_PREFIX, Option


def option_groups() -> list[tuple[str, list[Option]]]:
    """Every option by section, in --help and docs order."""
    groups = [
        ("The exporter", list(opt.PROCESS_OPTIONS)),
        ("Every broker (`brokers:` entries; the flags apply to brokers given by flag or "
         "environment)", list(opt.BROKER_OPTIONS)),
    ]  # fmt: skip
    for transport in registry.TRANSPORTS.values():
        groups.append((f"{transport.name} brokers (`brokers:` entries)", list(transport.options)))
    groups.append(("Celery events (`events:`)", list(opt.EVENT_SETTINGS)))
    return groups


def flag_help(option: Option) -> str:
    """The --help line of an option: its help, kind, default and environment variable."""
    text = option.help
    if option.action not in {"bool", "store_true"}:
        text += f" [{option.kind.describe}]"
    default = option.default
    if default not in (None, "", [], {}, False):
        text += f" (default {show(default)})"
    if option.env_var:
        text += f"; env {option.env_var}"
    return text.replace("%", "%%")


def show(value: Any) -> str:
    """A default as a user would write it on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
    if isinstance(value, str):
        return value.encode("unicode_escape").decode("ascii")
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-queue-exporter",
        description="Prometheus exporter for Celery queues on Redis and RabbitMQ, per priority.",
        epilog=f"Flags win over the environment ({ENV_PREFIX}...), which wins over --config. "
        "Every option: docs/configuration.md.",
    )
    for title, options in option_groups():
        group = parser.add_argument_group(title.split(" (")[0])
        for option in options:
            if option.flag:
                group.add_argument(option.flag, **_flag_arguments(option))
    return parser


def _flag_arguments(option: Option) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dest": option.dest, "help": flag_help(option)}
    if option.action == "bool":
        kwargs.update(action=argparse.BooleanOptionalAction, default=None)
    elif option.action == "store_true":
        kwargs.update(action="store_true")
    else:
        kwargs.update(action=option.action, metavar=option.env or option.attr.upper())
    return kwargs
