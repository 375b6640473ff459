"""The `batchgate` command as a user runs it: config check, up --demo, healthcheck."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "config" / "examples"


def batchgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchgate", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})},
                          check=False)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_config_check_accepts_every_shipped_example(path: Path) -> None:
    secrets = {"AZURE_API_KEY": "sk-az-secret", "OPENAI_API_KEY": "sk-oa-secret",
               "BATCHGATE_EXAMPLE_MASTER_KEY": "sk-master-secret"}
    result = batchgate("config", "check", str(path), env=secrets)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    for value in secrets.values():
        assert value not in result.stdout + result.stderr


@pytest.mark.parametrize(("text", "names"), [
    ("model_list:\n  - model_name: a\n    litellm_params: {model: bogus/x}\n",
     ["model_list[0]", "litellm_params.model", "bogus"]),
    ("model_list:\n  - model_name: a\n    litellm_params: {api_base: http://x}\n",
     ["model_list[0]", "litellm_params.model"]),
    ("model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n"
     "      api_key: os.environ/BATCHGATE_TEST_SURELY_UNSET\n",
     ["model_list[0]", "api_key", "BATCHGATE_TEST_SURELY_UNSET"]),
    ("model_list: [oops\n", ["line"]),
])
def test_config_check_rejects_bad_config_with_one_clear_line_and_exit_2(
        tmp_path: Path, text: str, names: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = batchgate("config", "check", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for name in [str(path), *names]:
        assert name in result.stderr


def test_up_with_a_bad_config_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model_list:\n  - model_name: a\n")
    result = batchgate("up", "--config", str(path), "--port", str(free_port()))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_up_demo_serves_the_openai_sdk_with_nothing_else_running() -> None:
    with GatewayProcess(None, extra_args=["--demo"]) as gw:
        with openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="demo", max_retries=0) as sdk:
            reply = sdk.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi demo"}])
            assert "hi demo" in (reply.choices[0].message.content or "")
            vectors = sdk.embeddings.create(model="text-embedding-3-small", input="chunk")
            assert len(vectors.data[0].embedding) > 0
        match = re.search(r"demo upstream on http://127\.0\.0\.1:(\d+)/v1", gw.log())
        assert match, gw.log()
        demo_port = int(match.group(1))
    # Stopping batchgate stops the demo upstream it started.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{demo_port}/_health", timeout=2)


def test_seed_style_config_loads_and_serves(tmp_path: Path) -> None:
    seed = (EXAMPLES / "seed.yaml").read_text()
    with FakeUpstream(None) as chat, FakeUpstream(None) as embed:
        # The seed names fixed ports (20080, 40080); point them at this run's upstreams.
        text = seed.replace("127.0.0.1:20080", f"127.0.0.1:{chat.port}")
        text = text.replace("127.0.0.1:40080", f"127.0.0.1:{embed.port}")
        (tmp_path / "seed.yaml").write_text(text)
        with GatewayProcess(tmp_path / "seed.yaml") as gw, openai.OpenAI(
                base_url=f"{gw.base_url}/v1", api_key="x", max_retries=0) as sdk:
            reply = sdk.chat.completions.create(
                model="gpt-3.5-turbo", messages=[{"role": "user", "content": "seed"}])
            assert reply.model == "vicuna-13b"
            sdk.embeddings.create(model="text-embedding-ada-002", input="chunk")
        assert chat.stats()["by_model"] == {"vicuna-13b": 1}
        assert embed.stats()["by_model"] == {"sentence-luke": 1}
        # `api_key: None` means no key: nothing is sent as a credential.
        assert chat.stats()["log"][0]["auth"] is None


def test_healthcheck_exit_code_follows_readiness(gateway: GatewayProcess) -> None:
    assert batchgate("healthcheck", "--url", gateway.base_url).returncode == 0
    dead = batchgate("healthcheck", "--url", f"http://127.0.0.1:{free_port()}")
    assert dead.returncode == 1


def test_readiness_checks_redis_where_configured(fake_upstream: FakeUpstream,
                                                 tmp_path: Path) -> None:
    redis_url = os.environ.get("BATCHGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    config = {"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/m", "api_base": fake_upstream.base_url}}]}
    with GatewayProcess(config, env={"BATCHGATE_REDIS_URL": redis_url}) as gw:
        body = httpx.get(f"{gw.base_url}/health/readiness").json()
        assert body["redis"] == "connected"
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with GatewayProcess(config, env={"BATCHGATE_REDIS_URL": dead}) as gw:
        response = httpx.get(f"{gw.base_url}/health/readiness")
        assert response.status_code == 503
        assert response.json()["status"] == "unhealthy"


def _children(pid: int) -> dict[int, str]:
    """Child pid -> command line, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")\
                    .decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_recycled_api_worker_leaves_redis_celery_and_the_upstream_running() -> None:
    with GatewayProcess(None, extra_args=["--demo", "--queue-workers", "1"]) as gw:
        children = _children(gw.process.pid)
        own = (Path(f"/proc/{gw.process.pid}/cmdline").read_bytes().replace(b"\0", b" ")
               .decode())
        api_workers = [pid for pid, cmd in children.items() if cmd == own]
        services = {pid: cmd for pid, cmd in children.items() if cmd != own}
        assert len(api_workers) == 1
        assert any("redis-server" in cmd for cmd in services.values()), services
        os.kill(api_workers[0], signal.SIGTERM)
        deadline = time.monotonic() + 60
        while True:  # gunicorn replaces the worker
            now = _children(gw.process.pid)
            if [p for p, c in now.items() if c == own and p != api_workers[0]]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        wait = time.monotonic() + 30
        while httpx.get(f"{gw.base_url}/health/readiness", timeout=5).status_code != 200:
            assert time.monotonic() < wait, "not ready after the worker was replaced"
            time.sleep(0.2)
        assert set(services) <= set(_children(gw.process.pid)), "a service was stopped"
        job = httpx.post(f"{gw.base_url}/queue/requests", timeout=10, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "still here"}]})
        answer = httpx.get(f"{gw.base_url}/queue/response/{job.json()['id']}",
                           params={"wait": 20}, timeout=30).json()
        assert answer["status"] == "completed", answer
