"""Serve the app under gunicorn, in this process (``batchgate up``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from api.app import create_app
from batchgate.logs import gunicorn_logger_class
from batchgate.multiproc import child_exit
from config.settings import Settings

DEFAULT_WORKER_CLASS = "gevent"
"""Measured with bench/overhead.py (README, "Performance"): with the urllib3 transport, gevent
served ~1,400 req/s per process at 32 in flight (0.7 ms CPU/request), gthread ~900 (1.1 ms)."""
DEFAULT_THREADS = 64
GRACEFUL_TIMEOUT = 10


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._factory()


def serve(settings: Settings, *, host: str, port: int, workers: int,
          worker_class: str = DEFAULT_WORKER_CLASS, threads: int = DEFAULT_THREADS,
          log_level: str = "info") -> None:
    """Run gunicorn until it is told to stop; each worker builds its app after the fork,
    so no connection pool is ever shared between processes."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": worker_class,
        "threads": threads,
        "worker_connections": 1000,
        # Both worker classes heartbeat from their own loop, so a long upstream call does not
        # trip this; it only catches a worker that is truly stuck.
        "timeout": 120,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "keepalive": 75,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": log_level,
        # gunicorn's own lines in batchgate's JSON format (batchgate.logs), and a dead
        # worker's metrics files marked as such (multiprocess mode, batchgate.multiproc).
        "logger_class": gunicorn_logger_class(),
        "child_exit": child_exit,
        "proc_name": "batchgate",
        # gunicorn 27's control socket sits at one fixed path per user: two instances on a
        # host (tests, a benchmark beside a service) would fight over it. Nothing uses it.
        "control_socket_disable": True,
    }
    _Gunicorn(lambda: create_app(settings), options).run()
