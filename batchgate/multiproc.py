"""The folder where every process of one batchgate writes its Prometheus metrics.

prometheus_client picks its multiprocess mode when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``: whoever starts processes sets the variable before anything
imports it, and the children inherit it. ``batchgate up`` and ``batchgate api`` own the folder
(an operator's, wiped at start since stale files of an earlier run would add to the counts,
or a private one removed at exit); ``batchgate worker`` and ``beat`` only join one that is set,
since on a shared host the API may already be writing there.

This module imports only the standard library: it runs before gevent patches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from batchgate.processes import private_folder

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def own_folder(env: MutableMapping[str, str]) -> Callable[[], None]:
    """Make ``env`` name a clean metrics folder; returns the cleanup to run at exit (a no-op
    in a forked child, and for an operator's folder)."""
    given = env.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
        return lambda: None
    folder_name, remove = private_folder("batchgate-metrics-")
    env[MULTIPROC_ENV] = folder_name
    return remove


def join_folder(env: MutableMapping[str, str]) -> None:
    """Make sure a configured metrics folder exists (never wiped: others may write there)."""
    given = env.get(MULTIPROC_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook: a dead worker's live gauges stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
