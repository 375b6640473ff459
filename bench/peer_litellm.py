"""LiteLLM's proxy as a peer to benchmark batchgate against.

LiteLLM is never a dependency of batchgate: it lives in its own virtualenv,
`bench/.peer-venv` (git-ignored), created the first time a benchmark asks for the peer.
It reads the same LiteLLM-style config batchgate does, so both proxies front the same upstream.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _procs import ManagedProcess, free_port, spawn, stop, wait_http_ok

PEER_VENV = Path(__file__).resolve().parent / ".peer-venv"
PEER_REQUIREMENT = "litellm[proxy]"
INSTALL_TIMEOUT_S = 1800.0
# LiteLLM's first start imports a lot (and may run prisma/UI setup checks): allow longer.
PEER_READY_TIMEOUT_S = 90.0

# Keeps the peer quiet, offline and database-free, so it is measured doing the same job as
# batchgate's synchronous path: config-driven routing with no spend logging to a DB.
PEER_ENV = {
    "LITELLM_LOG": "ERROR",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else it fetches a cost map from the internet
    "DISABLE_SCHEMA_UPDATE": "true",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
    "NO_DOCS": "True",
    "NO_REDOC": "True",
    # Newer releases refuse to start without a master key. batchgate runs here without keys
    # too, so both proxies skip auth and are compared on the same work.
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
}
# Variables that would make the peer talk to a database or another service.
PEER_ENV_DROP = ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "LITELLM_MASTER_KEY")


class PeerUnavailable(RuntimeError):
    """The LiteLLM peer cannot be installed or started here; the message says why."""


def litellm_executable(venv: Path = PEER_VENV) -> Path:
    """Path of the `litellm` console script inside the peer venv."""
    return venv / "bin" / "litellm"


def ensure_installed(venv: Path = PEER_VENV, quiet: bool = False) -> Path:
    """Create the peer venv and install LiteLLM's proxy into it unless already there."""
    exe = litellm_executable(venv)
    if exe.exists():
        return exe
    if not quiet:
        print(f"installing {PEER_REQUIREMENT} into {venv} (first use; takes minutes) ...")
    python = venv / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         PEER_REQUIREMENT],
    ]  # fmt: skip
    for argv in steps:
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise PeerUnavailable(
                f"`{' '.join(argv)}` did not finish in {INSTALL_TIMEOUT_S:.0f}s"
            ) from exc
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).splitlines()[-15:])
            raise PeerUnavailable(
                f"`{' '.join(argv)}` failed (exit {done.returncode}); LiteLLM's proxy could"
                f" not be installed into {venv}:\n{tail}"
            )
    if not exe.exists():
        raise PeerUnavailable(f"{PEER_REQUIREMENT} installed but {exe} is missing")
    return exe


def start_litellm(
    config_path: Path, log_dir: Path, workers: int = 1, venv: Path = PEER_VENV
) -> ManagedProcess:
    """Start LiteLLM's proxy on a free loopback port with `workers` processes; wait until live."""
    exe = ensure_installed(venv)
    port = free_port()
    argv = [
        str(exe),
        "--config", str(config_path),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--num_workers", str(workers),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in PEER_ENV_DROP}
    env.update(PEER_ENV)
    proc = spawn("litellm", argv, log_dir / "litellm.log", env=env, cwd=log_dir)
    proc.base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(proc, f"{proc.base_url}/health/liveliness", PEER_READY_TIMEOUT_S)
    except BaseException as exc:
        stop(proc)
        if isinstance(exc, Exception):
            raise PeerUnavailable(f"LiteLLM's proxy did not start: {exc}") from exc
        raise
    return proc


def peer_version_of(venv: Path = PEER_VENV) -> str | None:
    """Installed LiteLLM version in the peer venv, read from package metadata (no import)."""
    for meta in (venv / "lib").glob("python*/site-packages/litellm-*.dist-info/METADATA"):
        for line in meta.read_text(errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None
