"""Reading the files a configuration names (the YAML file, password files): text only, and
errors that say where without quoting bytes that may be a password."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError


def read_text_file(where: str, path: str) -> str:
    """A UTF-8 file's text; a file that cannot be read or decoded is a ConfigError naming
    ``where`` and the position, never the bytes (they may be a password)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path!r}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{where}: {path!r} is not UTF-8 text (line {line}, byte offset {exc.start})"
        ) from None
