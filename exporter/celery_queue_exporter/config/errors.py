"""The one exception every configuration problem becomes."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, with the field it concerns in the message (the command line
    prints it as one line and exits 2; credentials never appear in it)."""
