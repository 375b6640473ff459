"""Child processes of ``batchgate up``: a Celery worker, an embedded Redis, a demo upstream.

Each child gets SIGTERM when ``batchgate up`` dies, however it dies (Linux
``PR_SET_PDEATHSIG``), so nothing is left running behind it.

gunicorn forks its workers from inside ``batchgate up``, while its cleanup is pending: every
cleanup here is :func:`owned` by the process that set it up, and folders are made with
``mkdtemp`` (``TemporaryDirectory`` registers a finalizer that a forked worker would run at
its exit), so a worker that exits or is recycled never stops the master's Redis, Celery
workers or upstream, nor removes their folders.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

PR_SET_PDEATHSIG = 1
READY_TIMEOUT = 15.0


def _die_with_parent() -> None:
    # Not Linux: children are still stopped by stop() on a normal exit.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def owned(action: Callable[..., Any], *args: Any) -> Callable[[], None]:
    """``action(*args)``, run only in the process that calls this (a no-op in a fork)."""
    owner = os.getpid()

    def run() -> None:
        if os.getpid() == owner:
            action(*args)

    return run


def private_folder(prefix: str) -> tuple[str, Callable[[], None]]:
    """A new temporary folder and the owned cleanup that removes it."""
    folder = tempfile.mkdtemp(prefix=prefix)
    return folder, owned(shutil.rmtree, folder, True)


def spawn(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start a child that shares our stdout/stderr and dies with us."""
    return subprocess.Popen(list(args), env=dict(env), preexec_fn=_die_with_parent)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A private ``redis-server`` on a free loopback port, for ``batchgate up`` without a
    ``REDIS_URL``. It keeps nothing on disk: production points at a real Redis (AOF on)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no Redis configured and no redis-server on PATH: install one "
                               "(e.g. apt-get install redis-server) or set BATCHGATE_REDIS_URL")
        folder, self._remove_folder = private_folder("batchgate-redis-")
        self.stop: Callable[[], None] = owned(self._stop)
        """Stop the server and remove its folder (in this process only)."""
        self.port = free_port()
        self.process = spawn([binary, "--port", str(self.port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", folder,
                              "--loglevel", "warning"], {})
        deadline = time.monotonic() + READY_TIMEOUT
        while not _answers_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the embedded redis-server did not start")
            time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _stop(self) -> None:
        stop(self.process)
        self._remove_folder()


def celery_args(*command: str) -> list[str]:
    """``python -m celery -A batchgate.worker --quiet <command...>``: no start-up banner, so
    all a worker or beat prints is JSON log lines (batchgate.logs)."""
    return [sys.executable, "-m", "celery", "-A", "batchgate.worker", "--quiet", *command]
