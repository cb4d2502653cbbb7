"""A deadline for a whole call to a peer, not for each read.

Client libraries bound each socket read (``requests``' read timeout, redis-py's
``socket_timeout``): a peer that answers one byte every half second resets that timeout on
every byte and holds the caller for hours, and with it the broker's one inspection thread. A
``Deadline`` shuts the call's sockets down when the time is up; the blocked read returns at
once, the library raises, and the inspection reports the broker instead of hanging.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from types import TracebackType


class Deadline:
    """Shuts down the call's sockets if the block runs past ``seconds``: those ``sockets()``
    returns (a client's pooled connections) and those connected inside the block (``watch``,
    or ``note_socket`` from deep inside an HTTP client)."""

    def __init__(
        self, seconds: float, sockets: Callable[[], Iterable[socket.socket | None]] = tuple
    ) -> None:
        self.seconds = max(0.0, seconds)
        self.sockets = sockets
        #: True once the deadline passed and the sockets were shut down.
        self.expired = False
        self._watched: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._outer: Deadline | None = None

    def __enter__(self) -> Deadline:
        self._outer = getattr(_current, "deadline", None)
        _current.deadline = self
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _current.deadline = self._outer
        if self._timer is not None:
            self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline too (at once if it has passed)."""
        with self._lock:
            self._watched.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            watched = list(self._watched)
        for sock in [*watched, *self.sockets()]:
            if sock is not None:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing to wake
        sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()


def note_socket(sock: socket.socket) -> None:
    """Hand a newly connected socket to the deadline of this thread's current call, if any."""
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)
