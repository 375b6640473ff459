"""Failure drills: batchgate's processes (and its Redis) started one by one, each killable.

``GatewayProcess`` runs ``batchgate up``, whose process group holds the API, the Celery
workers and beat together. A drill needs to kill one of them and leave the others running, and
to restart a killed one on the same address, so here each is its own process group:

    with Cluster(config, folder) as cluster:
        cluster.start_api(); cluster.start_beat(); worker = cluster.start_worker()
        worker.kill(); cluster.start_worker()
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis
import yaml

from config.keys import Keys
from tests.support.gateway import clean_env, free_port, stop_group, wait_http

POLL_S = 0.05
REDIS_READY_S = 10.0


def wait_until(condition: Callable[[], bool], timeout: float,
               what: str | Callable[[], str]) -> float:
    """Poll ``condition`` until true; seconds it took. Fails naming ``what`` (or what it
    returns: logs are read only then) on timeout."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what() if callable(what) else what}: not within {timeout} s")
        time.sleep(POLL_S)
    return time.monotonic() - start


class Process:
    """One command in its own session, logging to a file; SIGKILL-able as a group."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)

    @property
    def alive(self) -> bool:
        """Still running."""
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (the crash a drill simulates); reaps it."""
        stop_group(self.process, grace=0)
        self._log.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, unless already ended; always reaps."""
        stop_group(self.process)
        self._log.close()

    def log(self) -> str:
        """What it printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class Cluster:
    """An API (``batchgate up --queue-workers 0``), Celery workers and a beat, each a process
    group of its own, sharing one config file; stopped (and reaped) on exit."""

    def __init__(self, config: dict[str, Any], folder: Path,
                 env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.config_path = folder / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = clean_env(env)
        self.prefix: str = config["batchgate_settings"]["key_prefix"]
        self.keys = Keys(self.prefix)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api: Process | None = None
        self.workers: list[Process] = []
        self.beat: Process | None = None
        self._all: list[Process] = []
        self._count = 0

    def _spawn(self, name: str, args: list[str]) -> Process:
        self._count += 1
        process = Process([sys.executable, "-m", "batchgate", *args,
                           "--config", str(self.config_path)],
                          self.folder / f"{self._count:02d}-{name}.log", self.env)
        self._all.append(process)
        return process

    def start_api(self) -> Process:
        """gunicorn on this cluster's port (the same one after a restart); waits until ready."""
        self.api = self._spawn("api", ["up", "--host", "127.0.0.1", "--port", str(self.port),
                                       "--num-workers", "1", "--queue-workers", "0"])
        try:
            wait_http(f"{self.base_url}/health/liveliness", self.api.process)
        except RuntimeError:
            raise RuntimeError(f"API did not start:\n{self.api.log()}") from None
        return self.api

    def start_worker(self) -> Process:
        """One more Celery worker (gevent pool)."""
        worker = self._spawn("worker", ["worker"])
        self.workers.append(worker)
        return worker

    def start_beat(self) -> Process:
        """The beat (lease recovery, expiry, webhooks)."""
        self.beat = self._spawn("beat", ["beat"])
        return self.beat

    def logs(self) -> str:
        """Every process's log, each under its file name."""
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-4000:]}" for p in self._all)

    def close(self) -> None:
        """Stop every process this cluster started."""
        for process in self._all:
            process.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class RedisServer:
    """A test-owned ``redis-server`` with AOF on, in ``folder``, restartable on its port."""

    def __init__(self, folder: Path, *, appendfsync: str = "always") -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start (or restart) on the same port and folder; returns once it answers PING and
        has loaded its AOF."""
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--appendonly", "yes",
                "--appendfsync", self.appendfsync, "--save", "",
                "--logfile", str(self.folder / "redis.log")]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_timeout=1)
        try:
            wait_until(lambda: self._loaded(client), REDIS_READY_S, "redis-server ready")
        finally:
            client.close()
        return self

    def _loaded(self, client: redis.Redis) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log()}")
        try:
            return client.info("persistence").get("loading") == 0
        except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
            return False

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` and reap it (SIGTERM: a clean shutdown; SIGKILL: a crash)."""
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(15)

    def stop(self) -> None:
        """Stop it if running."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        """Its log file."""
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass(frozen=True)
class Tally:
    """How a job's items ended, counted from Redis and from what the API pages out."""

    items: int
    results: int
    lost: int
    duplicated: int
    failed: int

    def as_dict(self) -> dict[str, int]:
        """For messages and the figures file."""
        return {"items": self.items, "results": self.results, "lost": self.lost,
                "duplicated": self.duplicated, "failed": self.failed}


def tally(api: httpx.Client, client: redis.Redis, keys: Keys, job_id: str,
          expected_ids: list[str]) -> Tally:
    """Every item's results: from the job's Redis hashes and from ``/queue/response``'s
    completion-order pages. Lost: an id with no result; duplicated: any id beyond once."""
    results = client.hgetall(keys.results(job_id))
    done = client.lrange(keys.done(job_id), 0, -1)
    seen: dict[str, int] = {}
    failed = 0
    after = -1
    while True:
        page = api.get(f"/queue/response/{job_id}",
                       params={"after": after, "limit": 1000}).json()
        for entry in page["data"]:
            seen[entry["custom_id"]] = seen.get(entry["custom_id"], 0) + 1
            failed += entry["status"] != "completed"
        if not page["has_more"] or page["next_after"] is None:
            break
        after = page["next_after"]
    stored = [json.loads(v)["custom_id"] for v in results.values()]
    stored_ids = set(stored)
    lost = len([i for i in expected_ids if i not in seen or i not in stored_ids])
    duplicated = (sum(n - 1 for n in seen.values()) + len(done) - len(set(done))
                  + len(stored) - len(set(stored)))
    return Tally(items=len(expected_ids), results=len(seen), lost=lost, duplicated=duplicated,
                 failed=failed)


class Figures:
    """Measured figures of the drills, appended as JSON lines to a file (for the README)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def record(self, drill: str, **figures: Any) -> None:
        """Append one drill's figures (no-op without a path)."""
        if self.path is None:
            return
        with self.path.open("a") as out:
            out.write(json.dumps({"drill": drill, **figures}) + "\n")
