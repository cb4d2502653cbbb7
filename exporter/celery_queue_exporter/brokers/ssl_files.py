"""The check both transports make of a broker's ``ssl:`` files (shared, so it exists once)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config.errors import ConfigError

if TYPE_CHECKING:
    from ..config.model import BrokerConfig


def check_ssl_files(where: str, broker: BrokerConfig) -> None:
    """The broker's ``ssl:`` files exist (a typo fails at start, not as a TLS error later),
    and a key comes with its certificate."""
    tls = broker.tls
    if tls.key_file and not tls.cert_file:
        raise ConfigError(f"{where}.ssl.key_file: needs cert_file too")
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{where}.ssl.{name}: no such file {path!r}")
