"""The transport registry: one line per broker kind, and the one place a URL scheme becomes a
transport. Adding a broker kind means adding its package under ``brokers/`` and one line to
TRANSPORTS; nothing else names a broker kind.

Part of the assembly (above the broker packages, which never import it): config/brokers.py
resolves each broker's transport here once, when it builds the broker's configuration; every
later stop reads ``BrokerConfig.transport``. An unknown scheme is a ConfigError naming the
field, never a fall-through to some default.
"""

from __future__ import annotations

from ..config.errors import ConfigError
from ..config.options import Option
from .base import Transport
from .rabbitmq import TRANSPORT as RABBITMQ
from .redis import TRANSPORT as REDIS

#: name -> Transport
TRANSPORTS: dict[str, Transport] = {
    REDIS.name: REDIS,
    RABBITMQ.name: RABBITMQ,
}


def register(transport: Transport) -> None:
    """Add a transport at run time (tests, plugins); its schemes must be new."""
    taken = {scheme for known in TRANSPORTS.values() for scheme in known.schemes}
    if transport.schemes & taken or transport.name in TRANSPORTS:
        raise ValueError(f"transport {transport.name!r}: name or scheme already registered")
    TRANSPORTS[transport.name] = transport


def unregister(name: str) -> None:
    del TRANSPORTS[name]


def schemes() -> list[str]:
    return sorted(scheme for transport in TRANSPORTS.values() for scheme in transport.schemes)


def for_scheme(where: str, scheme: str, safe_url: str) -> Transport:
    """The transport serving ``scheme``; ConfigError naming ``where`` when none does."""
    for transport in TRANSPORTS.values():
        if scheme in transport.schemes:
            return transport
    supported = ", ".join(schemes())
    raise ConfigError(
        f"{where}: unsupported scheme {scheme!r} in {safe_url!r} (supported: {supported})"
    )


def transport_options() -> dict[str, Option]:
    """Every transport's per-broker options by attribute name (a name declared twice must
    mean the same option)."""
    declared: dict[str, Option] = {}
    for transport in TRANSPORTS.values():
        for option in transport.options:
            if declared.setdefault(option.attr, option) is not option:
                raise ValueError(f"transport option {option.attr!r} declared twice")
    return declared
