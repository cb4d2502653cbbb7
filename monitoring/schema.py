"""Validation primitives of the monitoring config: durations and declared parameters.

Alert, recording and section parameters are declared with :class:`Number`, :class:`Ratio` or
:class:`Duration` next to the code that reads them; the config validator checks a user's file
against those declarations, so a name or bound is written in one place only. This module has
no dependency inside the mixin, so every other module can import it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?$")


class MonitoringConfigError(ValueError):
    """A problem in the monitoring config, with the path of the field in the message."""


def parse_duration(text: Any, where: str = "duration") -> int:
    """Seconds in a Prometheus duration such as ``90s``, ``5m`` or ``1h30m`` (whole seconds)."""
    match = _DURATION.match(str(text).strip()) if text is not None else None
    if not match or not any(match.groups()):
        raise MonitoringConfigError(
            f"{where}: expected a duration like 30s, 5m or 1h, got {text!r}"
        )
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def format_duration(seconds: int) -> str:
    """The shortest Prometheus duration for ``seconds``: 3600 -> ``1h``, 90 -> ``1m30s``."""
    if seconds <= 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


def duration_seconds(value: Any) -> int:
    """Seconds of an already validated duration (``0``/``0s`` allowed, as in ``for: 0``)."""
    return 0 if str(value).strip() in {"0", "0s"} else parse_duration(value)


def mapping(where: str, value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping; otherwise an error naming ``where``."""
    if not isinstance(value, dict):
        raise MonitoringConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


@dataclass(frozen=True)
class Number:
    """A number within ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)."""

    minimum: float = 0
    maximum: float | None = None

    def check(self, where: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MonitoringConfigError(f"{where}: expected a number, got {value!r}")
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            bounds = (
                f"{self.minimum:g} or more"
                if self.maximum is None
                else f"between {self.minimum:g} and {self.maximum:g}"
            )
            raise MonitoringConfigError(f"{where}: must be {bounds}, got {value!r}")


@dataclass(frozen=True)
class Ratio(Number):
    """A fraction between 0 and 1."""

    maximum: float | None = 1


@dataclass(frozen=True)
class Duration:
    """A Prometheus duration of at least ``minimum_seconds`` (PromQL refuses a ``[0s]`` range)."""

    minimum_seconds: int = 1

    def check(self, where: str, value: Any) -> None:
        if parse_duration(value, where) < self.minimum_seconds:
            raise MonitoringConfigError(
                f"{where}: must be at least {format_duration(self.minimum_seconds)}, got {value!r}"
            )


@dataclass(frozen=True)
class QueueSeconds:
    """A mapping of queue name to a number of seconds (per-queue overrides; may be empty)."""

    minimum: float = 1

    def check(self, where: str, value: Any) -> None:
        section = mapping(where, value if value is not None else {})
        for queue, seconds in section.items():
            if not isinstance(queue, str) or not queue:
                raise MonitoringConfigError(f"{where}: expected queue names, got {queue!r}")
            Number(minimum=self.minimum).check(f"{where}.{queue}", seconds)


Param = Number | Duration | QueueSeconds


def check_section(where: str, value: Any, params: Mapping[str, Param]) -> dict[str, Any]:
    """Check a section holding exactly ``params``: unknown and missing keys are errors."""
    section = mapping(where, value)
    unknown = sorted(set(section) - set(params))
    if unknown:
        raise MonitoringConfigError(f"{where}.{unknown[0]}: unknown setting")
    check_params(where, section, params)
    return section


def check_params(where: str, section: Mapping[str, Any], params: Mapping[str, Param]) -> None:
    """Check that ``section`` holds every declared parameter, each within its bounds."""
    for key, param in params.items():
        if key not in section:
            raise MonitoringConfigError(f"{where}.{key}: missing")
        param.check(f"{where}.{key}", section[key])
