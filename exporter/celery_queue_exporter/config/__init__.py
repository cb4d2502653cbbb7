"""Configuration, split by job:

* options.py declares every option once (transport packages declare their own);
* values.py parses the kinds of value; urls.py keeps credentials out of text;
* model.py holds the objects the exporter reads; brokers.py builds brokers;
* parser.py makes the flags and --help; load.py merges flags > environment > file > defaults;
* docs.py renders docs/configuration.md from the declarations.
"""

from __future__ import annotations

from .brokers import (
    broker_from_celery_app,
    broker_from_flag,
    broker_from_mapping,
    default_broker_name,
)
from .errors import ConfigError
from .load import load_config
from .model import (
    DEFAULT_BROKER_URL,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_WAIT_BUCKETS,
    BrokerConfig,
    EventSettings,
    ExporterConfig,
)
from .options import ENV_PREFIX
from .parser import build_parser
from .urls import redact_url

__all__ = [
    "DEFAULT_BROKER_URL",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_WAIT_BUCKETS",
    "ENV_PREFIX",
    "BrokerConfig",
    "ConfigError",
    "EventSettings",
    "ExporterConfig",
    "broker_from_celery_app",
    "broker_from_flag",
    "broker_from_mapping",
    "build_parser",
    "default_broker_name",
    "load_config",
    "redact_url",
]
