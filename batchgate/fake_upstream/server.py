"""Running the fake upstream as a server: bind, announce the port, serve until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from batchgate.fake_upstream.app import build_app
from batchgate.fake_upstream.settings import FakeSettings

SHUTDOWN_TIMEOUT_S = 0.25
"""Short: requests in an injected hang would otherwise hold shutdown for aiohttp's 60 s."""
BACKLOG = 1024


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it happens to be installed (it is not a dependency), else asyncio's."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def write_ready_file(path: str | Path, port: int) -> None:
    """Write ``port`` to ``path`` atomically, so a polling parent never reads half a number."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n", encoding="ascii")
    os.replace(tmp, target)


def display_url(host: str, port: int) -> str:
    """``http://host:port``, bracketing IPv6 literals."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def run(host: str, port: int, settings: FakeSettings,
              ready_file: str | Path | None = None) -> None:
    """Serve until SIGINT or SIGTERM (or until cancelled)."""
    runner = web.AppRunner(build_app(settings), access_log=None, handler_cancellation=True,
                           shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=BACKLOG)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        print(f"fake-upstream listening on {display_url(host, bound_port)}", flush=True)
        if ready_file is not None:
            write_ready_file(ready_file, bound_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Signal handlers need the main thread; elsewhere, cancelling run() stops it.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(host: str, port: int, settings: FakeSettings,
          ready_file: str | Path | None = None) -> None:
    """Serve on ``host:port`` (0 picks a free port) until SIGINT/SIGTERM; blocks."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run(host, port, settings, ready_file))
