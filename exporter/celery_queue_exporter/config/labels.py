"""Static labels (``--static-label env=prod``): checked here, added to every series by
``static_labels.StaticLabelRegistry``. A static label must be a valid Prometheus label name and
must not clash with a label the exporter (or Prometheus) already puts on a series: a clash
would silently replace a real value.
"""

from __future__ import annotations

import re
from typing import Any

from .. import catalogue
from .errors import ConfigError
from .values import Kind, key_values

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: Labels that are not in the catalogue's label lists but appear on exported series: the keys
#: of the info metrics' value mappings, prometheus_client's own collectors (python_info,
#: python_gc_*), histogram buckets, and the target labels Prometheus adds itself.
OTHER_TAKEN = frozenset({
    "le", "quantile", "job", "instance", "generation",
    "implementation", "major", "minor", "patchlevel", "version",
})  # fmt: skip


def taken_labels() -> frozenset[str]:
    """Every label name a series of the exporter may already carry."""
    names = {label for spec in catalogue.all_metrics() for label in spec.labels}
    return frozenset(names | OTHER_TAKEN)


def _value(where: str, text: str) -> str:
    return text


def parse_static_labels(where: str, value: Any) -> dict[str, str]:
    """Validated ``{name: value}``; ConfigError names the offending label."""
    labels = key_values(where, value, _value)
    taken = taken_labels()
    for name, text in labels.items():
        if not LABEL_NAME.match(name) or name.startswith("__"):
            raise ConfigError(
                f"{where}.{name}: not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no "
                "leading __)"
            )
        if name in taken:
            raise ConfigError(f"{where}.{name}: clashes with a label the exporter already sets")
        if not isinstance(text, str | int | float) or isinstance(text, bool):
            raise ConfigError(f"{where}.{name}: expected a text value")
    return {name: str(text) for name, text in labels.items()}


STATIC_LABELS = Kind(
    "name=value (repeat the flag; env: a=b,c=d)",
    parse_static_labels,
    blank_is_unset=True,
    takes_list=True,
)
