"""A private redis-server process on a spare port, owned by the test or benchmark that
started it.

Never the machine's Redis on 6379 (shared with everyone): a private server may be stopped,
restarted on the same port, or have its command statistics read without disturbing anyone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import redis

from testsupport.net import free_port
from testsupport.waiting import ServiceError, wait_for

START_TIMEOUT_SECONDS = 10.0


class RedisServer:
    """``redis-server`` on 127.0.0.1 with no persistence.

    ``start()`` and ``stop()`` may be repeated (same port, same directory: a restart with empty
    data). ``close()`` stops it and removes the working directory if this object created it.
    Used as a context manager it starts on entry and closes on exit.
    """

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        self.port = free_port() if port is None else port
        self._owns_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="cqe-redis-")) if workdir is None else workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return self.db_url(0)

    def db_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db)

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; raise ServiceError otherwise."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server is not installed (run scripts/bootstrap.sh)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(
            self._pings,
            timeout=START_TIMEOUT_SECONDS,
            what=f"redis-server on port {self.port}",
            error=ServiceError,
        )
        return self

    def _pings(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise ServiceError(
                f"redis-server on port {self.port} exited with {self.process.returncode}"
            )
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        """Stop the process (SIGTERM); the port and directory stay for a later ``start()``."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        """Stop, and remove the working directory if this object made it."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ raises
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
