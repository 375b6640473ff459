"""The demo upstream of ``batchgate up --demo``: a fake OpenAI server in a child process."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

DEMO_UPSTREAM = {
    # A little latency so the demo behaves like a network service, not a function call.
    "defaults": {"latency_ms": 40, "jitter_ms": 30},
    "models": {"text-embedding-3-small": {"latency_ms": 10, "jitter_ms": 5, "embedding_dim": 64}},
}
READY_TIMEOUT = 15.0


class DemoUpstream:
    """A running fake upstream; ``base_url`` is its OpenAI-style ``/v1`` base."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="batchgate-demo-")
        folder = Path(self._dir.name)
        (folder / "upstream.yaml").write_text(yaml.safe_dump(DEMO_UPSTREAM))
        ready = folder / "port"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batchgate.fake_upstream", "--host", host, "--port", "0",
             "--config", str(folder / "upstream.yaml"), "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while not (ready.exists() and ready.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the demo upstream did not start")
            time.sleep(0.05)
        self.base_url = f"http://{host}:{int(ready.read_text())}/v1"

    def stop(self) -> None:
        """Stop the child process and remove its files."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._dir.cleanup()
