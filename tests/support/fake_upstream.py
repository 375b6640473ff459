"""Run the fake OpenAI-compatible upstream as a real subprocess, for integration tests and benches.

    with FakeUpstream({"models": {"gpt-a": {"rpm": 30}}}) as upstream:
        client = openai.OpenAI(base_url=upstream.base_url, api_key="x")
        ...
        assert upstream.stats()["by_status"]["200"] == 1

Stdlib only (urllib), so it adds no dependency to whatever uses it. Proxies from the
environment are ignored: the upstream is always on 127.0.0.1.

For pytest, wrap :func:`running_fake_upstream` in a fixture in a conftest::

    @pytest.fixture(scope="session")
    def fake_upstream() -> Iterator[FakeUpstream]:
        yield from running_fake_upstream()
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

DEFAULT_READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
HOST = "127.0.0.1"

# No ProxyHandler entries: an http_proxy in the environment must not capture 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeUpstream:
    """A fake upstream subprocess on a free port; a context manager that always reaps it."""

    def __init__(self, config: Mapping[str, Any] | None = None, *, args: Sequence[str] = (),
                 ready_timeout: float = DEFAULT_READY_TIMEOUT_S) -> None:
        self.config = dict(config) if config is not None else None
        self.args = list(args)
        self.ready_timeout = ready_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (the control routes live here)."""
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what an OpenAI client's ``base_url`` should be."""
        return self.root_url + "/v1"

    def start(self) -> Self:
        """Start the subprocess and wait until it answers, or raise with its output."""
        self._dir = Path(tempfile.mkdtemp(prefix="fake-upstream-"))
        ready = self._dir / "port"
        command = [sys.executable, "-m", "batchgate.fake_upstream", "--host", HOST,
                   "--port", "0", "--ready-file", str(ready), *self.args]
        if self.config is not None:
            config_file = self._dir / "config.json"  # JSON is YAML: the server reads both
            config_file.write_text(json.dumps(self.config), encoding="utf-8")
            command += ["--config", str(config_file)]
        # Output goes to a file, not a pipe: a pipe nobody reads can fill and block the server.
        with open(self._dir / "output.log", "wb") as output:
            self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            self.port = self._wait_for_port(ready)
            self._request("GET", "/_health")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self, ready: Path) -> int:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake upstream exited with {self._process.returncode}:\n"
                                   f"{self.output()}")
            if ready.exists():
                return int(ready.read_text(encoding="ascii"))
            time.sleep(0.02)
        raise TimeoutError(f"fake upstream not ready after {self.ready_timeout}s:\n"
                           f"{self.output()}")

    def output(self) -> str:
        """What the subprocess printed so far (stdout and stderr)."""
        if self._dir is None or not (self._dir / "output.log").exists():
            return ""
        return (self._dir / "output.log").read_text(encoding="utf-8", errors="replace")

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        # The URL is always http://127.0.0.1:PORT/..., never a caller-chosen scheme.
        request = urllib.request.Request(self.root_url + path, data=data, method=method,  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        try:
            with _opener.open(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"{method} {path} -> {exc.code}: {detail}") from exc

    def stats(self, *, include_log: bool = True) -> dict[str, Any]:
        """``GET /_stats``: counters, in-flight and (unless told otherwise) the request log."""
        result: dict[str, Any] = self._request("GET", "/_stats" + ("" if include_log
                                                                   else "?log=0"))
        return result

    def reset(self, *, config: bool = False) -> None:
        """``POST /_reset``: clear counters, rate windows and log (``config``: the config too)."""
        self._request("POST", "/_reset", {"config": config})

    def configure(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /_config``: replace the defaults block and/or the named models' blocks."""
        result: dict[str, Any] = self._request("POST", "/_config", dict(config))
        return result

    def stop(self) -> None:
        """Terminate (then kill) the subprocess, always reap it, and remove its temp files."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def running_fake_upstream(config: Mapping[str, Any] | None = None,
                          **kwargs: Any) -> Iterator[FakeUpstream]:
    """A generator for a pytest fixture: yields a started upstream, stops it afterwards."""
    with FakeUpstream(config, **kwargs) as upstream:
        yield upstream
