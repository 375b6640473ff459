"""Run ``batchgate up`` as a real process (gunicorn) for integration tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

READY_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without any BATCHGATE_* setting of the developer's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    env.update(extra or {})
    return env


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop_group(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """Stop a child started with its own session, and everything under it: SIGTERM, then
    SIGKILL after ``grace`` seconds (at once when ``grace`` is 0); always reaps."""
    if process.poll() is not None:
        return
    if grace > 0:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class GatewayProcess:
    """``batchgate up`` on a free port with a config written from a dict (or a file).

    stdout and stderr go to ``log_path`` so tests can scan what the service logged.
    """

    def __init__(self, config: dict[str, Any] | Path | None = None, *, workers: int = 1,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="batchgate-gw-")
        folder = Path(self._dir.name)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "gateway.log"
        args = [sys.executable, "-m", "batchgate", "up", "--host", "127.0.0.1",
                "--port", str(self.port), "--num-workers", str(workers), *(extra_args or [])]
        self.config_path: Path | None = None
        if isinstance(config, dict):
            self.config_path = folder / "config.yaml"
            self.config_path.write_text(yaml.safe_dump(config))
        elif isinstance(config, Path):
            self.config_path = config
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        full_env = clean_env(env)
        self.env = full_env
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=full_env, start_new_session=True)
        try:
            wait_http(f"{self.base_url}/health/liveliness", self.process)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"gateway did not start:\n{self.log()}") from None

    def log(self) -> str:
        """Everything the service printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop gunicorn (and everything it started); always reaps."""
        stop_group(self.process)
        self._log.close()

    def close(self) -> None:
        """Stop and remove temporary files."""
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ServiceProcess:
    """Another ``batchgate`` command (``worker``, ``beat``) sharing a gateway's config and env."""

    def __init__(self, gateway: GatewayProcess, *command: str) -> None:
        assert gateway.config_path is not None
        self.log_path = gateway.log_path.with_name(f"{command[0]}-{free_port()}.log")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batchgate", *command, "--config", str(gateway.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=gateway.env, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the whole process group: the crash a drill simulates."""
        stop_group(self.process, grace=0)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; always reaps."""
        stop_group(self.process)
        self._log.close()

    def log(self) -> str:
        """What it printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")
