"""Processes a benchmark runs: start, wait for readiness, measure CPU, always stop.

Everything here is Linux-only by design: CPU is read from /proc, which is what lets a
benchmark charge a server's whole process tree (gunicorn master + workers, Celery, an
embedded Redis, ...) and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_READY_TIMEOUT_S = 30.0
DEFAULT_STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 30
FAKE_UPSTREAM_MODULE = "batchgate.fake_upstream"
BENCH_MODEL = "bench-model"
# Variables that would point `batchgate up` at a shared Redis instead of its own embedded one.
REDIS_ENV_VARS = ("BATCHGATE_REDIS_URL", "REDIS_URL")

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A process the benchmark needs exited or never became ready."""


@dataclass
class ManagedProcess:
    """A child process started in its own session, with its log file and base URL."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    base_url: str = ""

    @property
    def pid(self) -> int:
        """Process id of the root of the tree (also its process-group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the root process has not exited."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines of the process's combined stdout/stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --- ports and readiness -------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http_ok(
    proc: ManagedProcess, url: str, timeout_s: float = DEFAULT_READY_TIMEOUT_S
) -> None:
    """Poll GET `url` until it answers 200; fail fast if the process exits first."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StartupError(
                f"{proc.name} exited with code {proc.popen.returncode} before {url} answered;"
                f" last log lines:\n{proc.log_tail()}"
            )
        try:
            # Only ever http://127.0.0.1 URLs built by this module's callers.
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(POLL_INTERVAL_S)
    raise StartupError(
        f"{proc.name} not ready at {url} after {timeout_s:.0f}s ({last_error});"
        f" last log lines:\n{proc.log_tail()}"
    )


def wait_ready_file(
    proc: ManagedProcess, path: Path, timeout_s: float = DEFAULT_READY_TIMEOUT_S
) -> str:
    """Wait until `path` holds a non-empty line (written once the process listens); return it."""
    deadline = time.monotonic() + timeout_s
    previous = ""
    while time.monotonic() < deadline:
        text = ""
        with contextlib.suppress(OSError):
            text = path.read_text().strip()
        # Two equal reads in a row: a writer caught mid-write cannot hand us half a port.
        if text and text == previous:
            return text
        previous = text
        if not proc.alive():
            raise StartupError(
                f"{proc.name} exited with code {proc.popen.returncode} before writing {path};"
                f" last log lines:\n{proc.log_tail()}"
            )
        time.sleep(POLL_INTERVAL_S)
    raise StartupError(f"{proc.name} wrote nothing to {path} within {timeout_s:.0f}s")


# --- starting and stopping -----------------------------------------------------------------


def _die_with_parent() -> None:
    # Runs in the child before exec: if the benchmark itself is killed outright (SIGKILL,
    # OOM), the kernel sends the child SIGTERM instead of leaving a server running.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `argv` in a new session (its own process group) with output to `log_path`.

    A separate session keeps a terminal's Ctrl-C from reaching the server directly, so the
    benchmark decides the shutdown order, and lets `stop` signal the whole group at once.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # safe: the benchmark runs no threads at spawn time
        )
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


def stop(proc: ManagedProcess, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
    """Terminate the process tree (SIGTERM to its group), then SIGKILL whatever remains.

    Descendants are recorded first because a server may move some children into groups of
    their own (an embedded Redis, say); those are signalled by pid, checked against their
    start time so a recycled pid is never hit.
    """
    descendants = [(pid, _start_time(pid)) for pid in tree_pids(proc.pid)[1:]]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    for pid, started in descendants:
        _signal_if_same(pid, started, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid, started in descendants:
        _signal_if_same(pid, started, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=timeout_s)


def _signal_if_same(pid: int, started: int | None, sig: signal.Signals) -> None:
    if started is None or _start_time(pid) != started:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# --- the two servers every overhead benchmark needs ---------------------------------------


def start_fake_upstream(
    log_dir: Path, python: str = sys.executable, config: Mapping[str, Any] | None = None
) -> ManagedProcess:
    """Start batchgate's fake upstream on a kernel-chosen port and wait for it.

    Without `config` every model answers at once; with it, `config` is the fake upstream's
    settings (`{"defaults": {"latency_ms": 50}, "models": {...}}`), written next to the logs.
    """
    ready = Path(tempfile.mkstemp(prefix="upstream-port-", dir=log_dir)[1])
    ready.write_text("")
    argv = [python, "-m", FAKE_UPSTREAM_MODULE, "--port", "0", "--ready-file", str(ready)]
    if config is not None:
        config_path = log_dir / "upstream.json"  # JSON is YAML: the upstream reads either
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        argv += ["--config", str(config_path)]
    proc = spawn("fake upstream", argv, log_dir / "fake_upstream.log")
    try:
        port = int(wait_ready_file(proc, ready))
        proc.base_url = f"http://127.0.0.1:{port}"
        wait_http_ok(proc, f"{proc.base_url}/_health")
    except BaseException:
        stop(proc)
        raise
    return proc


def write_proxy_config(
    path: Path,
    upstream_base_url: str,
    model_name: str = BENCH_MODEL,
    batchgate_settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write the LiteLLM-style config both batchgate and the LiteLLM peer read.

    `batchgate_settings` (scalars only, e.g. `{"chunk_size": 1}`) becomes that section.
    """
    text = (
        "model_list:\n"
        f"  - model_name: {model_name}\n"
        "    litellm_params:\n"
        f"      model: openai/{model_name}\n"
        f"      api_base: {upstream_base_url}/v1\n"
        "      api_key: None\n"
    )
    if batchgate_settings:
        # json.dumps of a scalar is a valid YAML scalar (quoted strings, plain numbers).
        lines = [f"  {key}: {json.dumps(value)}" for key, value in batchgate_settings.items()]
        text += "batchgate_settings:\n" + "\n".join(lines) + "\n"
    path.write_text(text)
    return path


def deployment(
    group: str,
    upstream_model: str,
    upstream_base_url: str,
    *,
    model_info: Mapping[str, Any] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """One `model_list` entry: group `group` served by `upstream_model` on the fake upstream.

    `params` become extra `litellm_params` (rpm, tpm, max_parallel_requests, ...); `model_info`
    holds the rest (an `id`, per-request sizes such as `max_inputs_per_request`).
    """
    litellm_params = {
        "model": f"openai/{upstream_model}",
        "api_base": f"{upstream_base_url}/v1",
        "api_key": "None",
        **params,
    }
    entry: dict[str, Any] = {"model_name": group, "litellm_params": litellm_params}
    if model_info:
        entry["model_info"] = dict(model_info)
    return entry


def write_gateway_config(
    path: Path,
    deployments: Sequence[Mapping[str, Any]],
    *,
    router_settings: Mapping[str, Any] | None = None,
    batchgate_settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write a LiteLLM-style config.yaml with several deployments (see `deployment`)."""
    data: dict[str, Any] = {"model_list": [dict(d) for d in deployments]}
    if router_settings:
        data["router_settings"] = dict(router_settings)
    if batchgate_settings:
        data["batchgate_settings"] = dict(batchgate_settings)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def upstream_stats(upstream: ManagedProcess, *, log: bool = True) -> dict[str, Any]:
    """The fake upstream's `GET /_stats` (`log=False`: counters only, no request log)."""
    url = f"{upstream.base_url}/_stats{'' if log else '?log=0'}"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (loopback)
        stats: dict[str, Any] = json.loads(response.read())
    return stats


def reset_upstream(upstream: ManagedProcess) -> None:
    """`POST /_reset`: forget the fake upstream's counters, rate-limit windows and log."""
    url = f"{upstream.base_url}/_reset"
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 (loopback)
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310 (loopback)
        pass


def private_queue_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment minus any Redis URL, so `batchgate up` starts its own embedded Redis.

    A benchmark must not share a broker with whatever else runs on the machine (a test
    suite's Redis on 6379, say): other work in its queues would be measured as ours.
    """
    env = dict(os.environ if base is None else base)
    for name in REDIS_ENV_VARS:
        env.pop(name, None)
    return env


def start_batchgate(
    config_path: Path,
    log_dir: Path,
    workers: int = 1,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """Run `batchgate up` on a free loopback port and wait for /health/liveliness.

    Liveliness only says the API answers; Celery workers may still be starting, so a queue
    benchmark sends one job through and waits for its result before measuring.
    """
    port = free_port()
    argv = [
        python, "-m", "batchgate", "up",
        "--config", str(config_path),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--num-workers", str(workers),
        *extra_args,
    ]  # fmt: skip
    proc = spawn("batchgate", argv, log_dir / "batchgate.log", env=env)
    proc.base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(proc, f"{proc.base_url}/health/liveliness")
    except BaseException:
        stop(proc)
        raise
    return proc


# --- process-tree CPU ----------------------------------------------------------------------


def _read_stat(pid: int) -> list[str] | None:
    """Return /proc/<pid>/stat fields from field 3 (state) on, or None if pid is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may itself contain spaces or ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    fields = _read_stat(pid)
    return int(fields[19]) if fields else None


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _read_stat(int(entry.name))
        if fields:
            children[int(fields[1])].append(int(entry.name))
    return children


def tree_pids(root: int) -> list[int]:
    """Return `root` and all its live descendants, root first."""
    children = _children_map()
    found, frontier = [root], [root]
    while frontier:
        nxt = [child for pid in frontier for child in children.get(pid, [])]
        found.extend(nxt)
        frontier = nxt
    return found


def _cpu_seconds(fields: list[str]) -> float:
    # utime + stime of the process itself, plus cutime + cstime: CPU of children it has
    # already reaped. Without the latter, a worker that exits mid-phase (gunicorn
    # max_requests, a crash) would take its CPU with it; live children are never counted
    # twice because cutime only holds children that have been waited for.
    return sum(int(value) for value in fields[11:15]) / _CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by `root` and every descendant."""
    total = 0.0
    for pid in tree_pids(root):
        fields = _read_stat(pid)
        if fields:
            total += _cpu_seconds(fields)
    return total


def pids_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by these processes (gone ones count 0)."""
    total = 0.0
    for pid in pids:
        fields = _read_stat(pid)
        if fields:
            total += _cpu_seconds(fields)
    return total


def tree_cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds of the tree grouped by a short role label (depth + command), for diagnosis."""
    children = _children_map()
    roles: dict[str, float] = defaultdict(float)
    frontier, depth = [root], 0
    while frontier:
        for pid in frontier:
            fields = _read_stat(pid)
            if fields:
                roles[f"{'child ' * min(depth, 1)}{_command_label(pid)}"] += _cpu_seconds(fields)
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        depth += 1
    return dict(roles)


def _cmdline(pid: int) -> list[str]:
    """The process's argv, or [] if it is gone (or a kernel thread)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []
    return [a.decode(errors="replace") for a in argv if a]


def _command_label(pid: int) -> str:
    args = _cmdline(pid)
    if not args:
        return "?"
    # "python -m batchgate up --config x" reads as "python batchgate up": the program and its
    # subcommand, never option values (a temp path would split one role into many).
    words = [Path(args[0]).name]
    for arg in args[1:]:
        if arg == "-m":
            continue
        if arg.startswith("-") or len(words) == 3:
            break
        words.append(Path(arg).name)
    return " ".join(words)


# --- the queue's processes -----------------------------------------------------------------

QUEUE_ROLES = ("api", "celery worker", "celery beat", "redis")


def queue_role(pid: int) -> str:
    """What a process of a `batchgate up` tree does: one of QUEUE_ROLES.

    Celery workers and beat share a command (`python -m celery -A batchgate.worker ...`), so
    they are told apart by their subcommand; everything not Celery or Redis serves the API
    (the `batchgate up` process is the gunicorn master; its gunicorn workers are forks).
    """
    args = _cmdline(pid)
    # redis-server rewrites its title ("/usr/bin/redis-server 127.0.0.1:6400"): argv[0] only.
    if args and "redis-server" in args[0]:
        return "redis"
    if any("celery" in arg for arg in args):
        if "worker" in args:
            return "celery worker"
        if "beat" in args:
            return "celery beat"
    return "api"


def celery_worker_pids(root: int) -> list[int]:
    """Pids of the Celery worker processes (not beat) under a `batchgate up` process."""
    return [pid for pid in tree_pids(root)[1:] if queue_role(pid) == "celery worker"]


def queue_cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds of a `batchgate up` tree by queue role: API, Celery worker, beat, Redis."""
    roles = dict.fromkeys(QUEUE_ROLES, 0.0)
    for pid in tree_pids(root):
        fields = _read_stat(pid)
        if fields:
            roles[queue_role(pid)] += _cpu_seconds(fields)
    return roles
