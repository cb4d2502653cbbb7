"""Configuration, in two layers (docs/architecture.md).

The vocabulary, at the bottom of the package (plain data; imports nothing above config/):

* errors.py: ConfigError; values.py parses the kinds of value; labels.py static labels;
* options.py declares every option once (transport packages declare their own with it);
* urls.py parses a broker URL once (BrokerURL) and keeps credentials out of text;
* model.py holds the objects the exporter reads (BrokerConfig, BrokerTLS, EventSettings, ...).

The assembly, above the broker packages (it reads their declarations and the registry):

* brokers.py builds brokers (URL parsed, transport resolved, typed options filled);
* parser.py makes the flags and --help; load.py merges flags > environment > file > defaults;
* docs.py renders docs/configuration.md from the declarations.

This ``__init__`` exports the vocabulary only, so a broker package importing it never runs
the assembly: ``load_config`` is in ``config.load``, ``build_parser`` in ``config.parser``,
``broker_from_*`` and ``new_broker`` in ``config.brokers``.
"""

from __future__ import annotations

from .errors import ConfigError
from .model import (
    DEFAULT_BROKER_URL,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_WAIT_BUCKETS,
    BrokerConfig,
    BrokerTLS,
    EventSettings,
    ExporterConfig,
)
from .options import ENV_PREFIX
from .urls import BrokerURL, URLPart, redact_url

__all__ = [
    "DEFAULT_BROKER_URL",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_WAIT_BUCKETS",
    "ENV_PREFIX",
    "BrokerConfig",
    "BrokerTLS",
    "BrokerURL",
    "ConfigError",
    "EventSettings",
    "ExporterConfig",
    "URLPart",
    "redact_url",
]
