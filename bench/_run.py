"""The shell every benchmark's main() shares: signals, exit codes, publishing the report."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from _procs import StartupError

EXIT_NO_START = 2
EXIT_INTERRUPTED = 130


def _sigterm_as_sigint(signum: int, frame: FrameType | None) -> None:
    signal.raise_signal(signal.SIGINT)


def stop_on_signals() -> None:
    """Ctrl-C stops us even when a shell started us in the background with SIGINT ignored;
    `kill` (SIGTERM) becomes the same SIGINT, so asyncio.run cancels the phase cleanly and
    the servers are stopped on the way out."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm_as_sigint)


def measured(run: Callable[[], None]) -> int | None:
    """Run the measuring part: None when it finished, else the exit code to return."""
    try:
        run()
    except StartupError as exc:
        print(f"benchmark could not start: {exc}", file=sys.stderr)
        return EXIT_NO_START
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    return None


def publish(report: dict[str, Any], rendered: str, json_path: Path | None) -> None:
    """Print the report, and write it as JSON when asked."""
    print(rendered)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {json_path}")


def results_path(name: str, quick: bool = False) -> Path:
    """The default JSON file of a benchmark: bench/results/<name>[-quick].json (git-ignored)."""
    return Path(__file__).parent / "results" / f"{name}{'-quick' if quick else ''}.json"


def logs_folder(chosen: Path | None, stack: contextlib.ExitStack) -> Path:
    """Where servers write their logs: ``--log-dir`` (created), else a temporary directory
    removed when ``stack`` closes."""
    folder = chosen or Path(stack.enter_context(tempfile.TemporaryDirectory()))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def machine_settings(load_before: float) -> dict[str, Any]:
    """What every report records about the run: CPUs, load before/after, Python, command."""
    return {
        "cpus": os.cpu_count(),
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
