"""A dependency-free progress bar on stderr (a line every few seconds when not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(1, total)
        self.stream = stream or sys.stderr
        self.width = width
        self.done_before = 0  # tasks finished in completed stages
        self.current = 0
        self.in_flight = 0
        self.label = ""
        self.started = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_line = 0.0

    def stage(self, label: str) -> None:
        self.label = label
        self.current = 0
        self.in_flight = 0
        self._draw(force=True)

    def update(self, finished: int, in_flight: int) -> None:
        self.current = finished
        self.in_flight = in_flight
        self._draw()

    def finish_stage(self, tasks: int) -> None:
        self.done_before += tasks
        self.current = 0
        self._draw(force=True)

    def line(self) -> str:
        done = min(self.total, self.done_before + self.current)
        fraction = done / self.total
        filled = int(round(fraction * self.width))
        elapsed = int(time.monotonic() - self.started)
        return (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:3.0f}% "
            f"{done}/{self.total} tasks  {elapsed // 60}:{elapsed % 60:02d}  "
            f"in flight {self.in_flight:4d}  {self.label}"
        )

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or now - self._last_line >= 0.2:
                self.stream.write("\r\x1b[K" + self.line())
                self.stream.flush()
                self._last_line = now
        elif force or now - self._last_line >= 5.0:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last_line = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
