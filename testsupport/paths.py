"""Where the repository is, for tests that read its files or run its scripts."""

from __future__ import annotations

from pathlib import Path

#: The repository's root (the parent of testsupport/).
ROOT = Path(__file__).resolve().parent.parent
