"""Value kinds: how a raw option value (flag or environment text, YAML value) becomes a checked
one. Each kind also describes itself for --help and docs/configuration.md, so the type and
bounds a user reads are the ones the parser enforces."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .urls import is_http_url, redact_url


@dataclass(frozen=True)
class Kind:
    """A parser plus what the docs say about it."""

    describe: str
    parse: Callable[[str, Any], Any]
    #: An empty flag or environment value means "not set" (e.g. CELERY_EXPORTER_QUEUES="").
    blank_is_unset: bool = False
    #: The values of a repeated flag reach ``parse`` as a list instead of joined with commas
    #: (a regular expression or a label value may itself hold a comma).
    takes_list: bool = False


def as_int(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{where}: must be between {low} and {high}, got {number}")
    return number


def as_float(where: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where}: expected a number")
    try:
        number = float(str(value).strip())
    except (ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if not number > low:
        raise ConfigError(f"{where}: must be greater than {low:g}, got {number:g}")
    if number > high:
        raise ConfigError(f"{where}: must be at most {high:g}, got {number:g}")
    return number


def as_bool(where: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def as_str_list(where: str, value: Any) -> list[str]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [str(item).strip() for item in value]
    else:
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    if any(not item for item in items):
        raise ConfigError(f"{where}: empty queue name in {value!r}")
    return items


def ascending(where: str, value: Any, item: Callable[[str, Any], Any], what: str) -> list[Any]:
    """A non-empty, strictly ascending list from ``a,b,c`` or a YAML list."""
    if isinstance(value, str):
        raw: list[Any] = [piece for piece in value.replace(" ", "").split(",") if piece]
    elif isinstance(value, list | tuple | range):
        raw = list(value)
    else:
        raise ConfigError(f"{where}: expected a list of {what}, got {value!r}")
    values = [item(where, piece) for piece in raw]
    if not values:
        raise ConfigError(f"{where}: must not be empty")
    if values != sorted(set(values)):
        raise ConfigError(f"{where}: must be strictly ascending, got {values}")
    return values


def check_http_url(where: str, value: Any) -> str:
    text = str(value).strip()
    if not is_http_url(text):
        raise ConfigError(f"{where}: expected an http(s) URL, got {redact_url(text)!r}")
    return text.rstrip("/")


# --- the kinds options are declared with ----------------------------------------------------


def integer(low: int, high: int) -> Kind:
    return Kind(f"integer {low}..{high}", lambda where, v: as_int(where, v, low, high))


#: The longest duration (seconds) an option may hold: every platform's sockets, selectors and
#: thread waits accept it (Windows' threading.TIMEOUT_MAX is about 4.3e6), so a value such as
#: 1e12 is a configuration error instead of an OverflowError on every scrape.
MAX_SECONDS = 1_000_000.0


def number(above: float, at_most: float = math.inf) -> Kind:
    bounds = f"number > {above:g}" + (f", at most {at_most:,.0f}" if at_most < math.inf else "")
    return Kind(bounds, lambda where, v: as_float(where, v, above, at_most))


def choice(*values: str, upper: bool = False) -> Kind:
    def parse(where: str, value: Any) -> str:
        text = str(value).strip()
        text = text.upper() if upper else text.lower()
        if text not in values:
            listed = ", ".join(values[:-1]) + f" or {values[-1]}"
            raise ConfigError(f"{where}: expected {listed}, got {text!r}")
        return text

    return Kind(" | ".join(values), parse, blank_is_unset=upper)


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected a string")
    return str(value)


def _non_empty(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string")
    return value


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string")
    return value


BOOLEAN = Kind("boolean", as_bool)
#: Free text (a host name, a file path): empty means "not set".
TEXT = Kind("text", _text, blank_is_unset=True)
#: A string that must be one (may be empty; e.g. a key prefix).
STRING = Kind("string", _string)
NON_EMPTY_STRING = Kind("non-empty string", _non_empty)
NAMES = Kind("list of names (a,b,c)", as_str_list, blank_is_unset=True)
HTTP_URL = Kind("http(s) URL", check_http_url, blank_is_unset=True)
BUCKETS = Kind(
    "ascending numbers > 0 (a,b,c)",
    lambda where, v: tuple(ascending(where, v, lambda w, i: as_float(w, i, 0), "bucket bounds")),
)


def _pattern(where: str, value: Any) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty regular expression, got {value!r}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ConfigError(f"{where}: invalid regular expression {value!r}: {exc}") from None


def as_patterns(where: str, value: Any) -> list[re.Pattern[str]]:
    """Regular expressions: a YAML list or repeated flags; one text is ONE pattern (commas and
    spaces belong to it; combine several with ``|``)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{where}: expected a list of regular expressions, got {value!r}")
    return [_pattern(f"{where}[{i}]", item) for i, item in enumerate(items)]


def key_values(where: str, value: Any, convert: Callable[[str, str], Any]) -> dict[str, Any]:
    """``{key: value}`` from a YAML mapping (values kept), ``key=value`` texts (repeated flags)
    or one ``k=v,k2=v2`` text (an environment variable); texts go through ``convert``."""
    if isinstance(value, dict):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, str):
        pairs = [piece for piece in value.split(",") if piece.strip()]
    elif isinstance(value, list | tuple):
        pairs = [str(item) for item in value]
    else:
        raise ConfigError(f"{where}: expected a mapping or key=value, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for number, pair in enumerate(pairs):
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            # The text may be a secret (a password option): it is not shown.
            raise ConfigError(f"{where}: expected key=value, item {number + 1} has no key=")
        out[key] = convert(f"{where}.{key}", text.strip())
    return out


def _yaml_scalar(where: str, text: str) -> Any:
    """A flag's option value as YAML reads it (7200 -> int, true -> bool, {a: 1} -> mapping)."""
    import yaml

    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        raise ConfigError(f"{where}: not a valid YAML value") from None


PATTERNS = Kind("regular expressions (full match; repeat the flag)", as_patterns,
                blank_is_unset=True, takes_list=True)  # fmt: skip
#: Transport options as kombu/Celery spell them; values read as YAML scalars.
OPTION_MAP = Kind(
    "key=value (repeat the flag; value read as YAML)",
    lambda where, v: key_values(where, v, _yaml_scalar),
    blank_is_unset=True,
    takes_list=True,
)


def as_mapping(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return {str(key): item for key, item in value.items()}


MAPPING = Kind("mapping", as_mapping)


#: The sides of a queue's urgency override (``priority_levels: {queue: {most: 9, least: 0}}``).
URGENCY_SIDES = ("most", "least")


def as_priority_levels(where: str, value: Any) -> dict[str, dict[str, int]]:
    """Per-queue override of the most and least urgent level: ``{queue: {most: N, least: M}}``
    with non-negative integers (either side may be left out)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: expected a mapping of queue -> {{most: N, least: M}}, "
            f"got {type(value).__name__}"
        )
    out: dict[str, dict[str, int]] = {}
    for queue, sides in value.items():
        if not isinstance(queue, str) or not queue:
            raise ConfigError(f"{where}: queue names must be non-empty strings, got {queue!r}")
        at = f"{where}.{queue}"
        if not isinstance(sides, dict) or not sides:
            raise ConfigError(f"{at}: expected a mapping with most and/or least")
        unknown = sorted(str(key) for key in sides if key not in URGENCY_SIDES)
        if unknown:
            raise ConfigError(f"{at}.{unknown[0]}: unknown field (allowed: least, most)")
        levels: dict[str, int] = {}
        for side, level in sides.items():
            if isinstance(level, bool) or not isinstance(level, int):
                raise ConfigError(f"{at}.{side}: expected a non-negative integer, got {level!r}")
            if not 0 <= level <= 255:
                raise ConfigError(f"{at}.{side}: must be between 0 and 255, got {level}")
            levels[side] = level
        out[queue] = levels
    return out


PRIORITY_LEVELS = Kind("mapping queue -> {most: N, least: M} (YAML only)", as_priority_levels)
