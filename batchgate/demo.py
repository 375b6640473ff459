"""The demo of ``batchgate up --demo``: a fake OpenAI upstream in a child process, and a
config file whose models it serves."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from batchgate.processes import owned, private_folder, spawn, stop
from config.demo import demo_config

DEMO_UPSTREAM = {
    # A little latency so the demo behaves like a network service, not a function call.
    "defaults": {"latency_ms": 40, "jitter_ms": 30},
    "models": {"text-embedding-3-small": {"latency_ms": 10, "jitter_ms": 5, "embedding_dim": 64}},
}
READY_TIMEOUT = 15.0


class DemoUpstream:
    """A running fake upstream; ``config_path`` is a batchgate config routing to it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        name, self._remove_folder = private_folder("batchgate-demo-")
        self.stop: Callable[[], None] = owned(self._stop)
        """Stop the child process and remove its files (in this process only)."""
        folder = Path(name)
        (folder / "upstream.yaml").write_text(yaml.safe_dump(DEMO_UPSTREAM))
        ready = folder / "port"
        self.process = spawn(
            [sys.executable, "-m", "batchgate.fake_upstream", "--host", host, "--port", "0",
             "--config", str(folder / "upstream.yaml"), "--ready-file", str(ready)], {})
        deadline = time.monotonic() + READY_TIMEOUT
        while not (ready.exists() and ready.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the demo upstream did not start")
            time.sleep(0.05)
        self.base_url = f"http://{host}:{int(ready.read_text())}/v1"
        self.config_path = folder / "demo-config.yaml"
        self.config_path.write_text(yaml.safe_dump(demo_config(self.base_url),
                                                   sort_keys=False))

    def _stop(self) -> None:
        stop(self.process, timeout=5)
        self._remove_folder()
