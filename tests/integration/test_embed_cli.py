"""``batchgate embed`` and ``batchgate batch`` as a user runs them, against ``batchgate up``
(gunicorn, Redis, Celery workers) and the fake upstream: a run killed with SIGKILL mid-way
and resumed writes every vector exactly once, in input order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from batchgate.fake_upstream.vectors import embedding_vector
from tests.integration.conftest import queue_service
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess, clean_env, free_port

pytestmark = pytest.mark.integration

LINES = 3000
PART_SIZE = 1000
DIM = 8  # embed-model's embedding_dim in the integration upstream
RUN_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def batch_gateway(fake_upstream: FakeUpstream, redis_client: redis.Redis,
                  redis_url: str) -> Iterator[GatewayProcess]:
    with queue_service(fake_upstream, redis_client, redis_url) as gw:
        yield gw


@pytest.fixture
def slow_embeddings(upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """Embeddings slow enough that a part takes a while: room to kill the run mid-way."""
    upstream.configure({"models": {"embed-model": {"embedding_dim": DIM, "latency_ms": 150}}})
    yield upstream
    upstream.reset(config=True)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchgate", *args]


def batchgate(gateway: GatewayProcess | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command to its end, pointed at ``gateway`` through BATCHGATE_URL."""
    env = clean_env({"BATCHGATE_URL": gateway.base_url} if gateway else None)
    return subprocess.run(command(*args), capture_output=True, text=True, check=False,
                          timeout=RUN_TIMEOUT, env=env)


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state


def wait_until_part_1_is_appended_and_part_2_submitted(
        process: subprocess.Popen[bytes], state_path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, "embed ended before it could be killed mid-way"
        state = read_state(state_path)
        if state is not None:
            first, second = state["parts"][:2]
            if first["status"] == "appended" and second["status"] == "submitted":
                return state
        time.sleep(0.01)
    raise AssertionError(f"no part appended within {RUN_TIMEOUT} s: {read_state(state_path)}")


def embedded_inputs(upstream: FakeUpstream) -> int:
    """Inputs the upstream embedded successfully since its last reset."""
    return sum(entry["inputs"] for entry in upstream.stats()["log"]
               if entry["endpoint"] == "embeddings" and entry["status"] == 200)


def test_embed_killed_mid_run_resumes_to_every_vector_once_in_order(
        batch_gateway: GatewayProcess, slow_embeddings: FakeUpstream, tmp_path: Path) -> None:
    texts = [f"chunk {i}: " + "lorem ipsum " * (i % 7) + f"#{i * 7919 % 10007}"
             for i in range(LINES)]
    source = tmp_path / "chunks.txt"
    source.write_text("".join(text + "\n" for text in texts), encoding="utf-8")
    out = tmp_path / "chunks.vectors.jsonl"
    state_path = tmp_path / "chunks.vectors.jsonl.state.json"
    args = ["embed", str(source), "--model", "embed", "--part-size", str(PART_SIZE),
            "--parts-in-flight", "1", "--poll", "0.1"]

    with (tmp_path / "first-run.log").open("wb") as log:
        process = subprocess.Popen(command(*args), stdout=log, stderr=subprocess.STDOUT,
                                   env=clean_env({"BATCHGATE_URL": batch_gateway.base_url}),
                                   start_new_session=True)
        try:
            state = wait_until_part_1_is_appended_and_part_2_submitted(process, state_path)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert out.stat().st_size >= state["parts"][0]["out_length"]
    # A SIGKILL in the middle of an append leaves a torn line behind; this one stands for it.
    with out.open("ab") as torn:
        torn.write(b'{"index":1000,"embedding":[0.12')

    resumed = batchgate(batch_gateway, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == f"{LINES} vectors in {out}"
    assert "dropping" in resumed.stderr

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["index"] for row in rows] == list(range(LINES))
    assert all(row["embedding"] == embedding_vector(text, DIM)
               for row, text in zip(rows, texts, strict=True))
    assert not state_path.exists()
    # The batch submitted before the kill was re-attached to, not submitted again.
    assert embedded_inputs(slow_embeddings) == LINES


def test_embed_refuses_to_start_over_a_run_left_unfinished(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("a\nb\n")
    state_path = tmp_path / "in.vectors.jsonl.state.json"
    state_path.write_text("{}")
    result = batchgate(None, "embed", str(source), "--model", "embed")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"batchgate: {state_path} exists: an earlier run did not finish; use --resume to "
        f"continue it, or delete {state_path} and {tmp_path / 'in.vectors.jsonl'} to start "
        f"over"]


def test_batch_submit_wait_then_results_status_of_a_chat_file(
        batch_gateway: GatewayProcess, upstream: FakeUpstream, tmp_path: Path) -> None:
    requests = tmp_path / "chat.jsonl"
    requests.write_text("".join(json.dumps({
        "custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt-a", "messages": [{"role": "user", "content": f"question {i}"}]},
    }) + "\n" for i in range(5)))
    submitted = batchgate(batch_gateway, "batch", "submit", str(requests), "--wait",
                          "--metadata", "suite=integration", "--poll", "0.2")
    assert submitted.returncode == 0, submitted.stderr
    batch_id, final = submitted.stdout.splitlines()
    assert batch_id.startswith("batch_")
    assert final == f"{batch_id}: completed (5 completed, 0 failed of 5)"

    status = batchgate(batch_gateway, "batch", "status", batch_id)
    assert status.returncode == 0, status.stderr
    batch = json.loads(status.stdout)
    assert (batch["id"], batch["status"], batch["metadata"]) == (
        batch_id, "completed", {"suite": "integration"})

    saved = tmp_path / "results.jsonl"
    results = batchgate(batch_gateway, "batch", "results", batch_id, "--out", str(saved))
    assert results.returncode == 0, results.stderr
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"q{i}" for i in range(5)]
    for line in lines:
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        reply = line["response"]["body"]["choices"][0]["message"]["content"]
        assert f"question {line['custom_id'][1:]}" in reply
    printed = batchgate(batch_gateway, "batch", "results", batch_id)
    assert printed.stdout == saved.read_text()


def test_batch_cancel_prints_the_status_it_leaves(batch_gateway: GatewayProcess,
                                                  upstream: FakeUpstream,
                                                  tmp_path: Path) -> None:
    requests = tmp_path / "slow.jsonl"
    requests.write_text("".join(json.dumps({
        "custom_id": f"s{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "slower", "messages": [{"role": "user", "content": "wait"}]},
    }) + "\n" for i in range(50)))
    submitted = batchgate(batch_gateway, "batch", "submit", str(requests))
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    cancelled = batchgate(batch_gateway, "batch", "cancel", batch_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() in (f"{batch_id}: cancelling", f"{batch_id}: cancelled")


def test_an_unknown_batch_is_the_servers_message_and_exit_1(
        batch_gateway: GatewayProcess) -> None:
    result = batchgate(batch_gateway, "batch", "status", "batch_does_not_exist")
    assert result.returncode == 1
    assert result.stderr.startswith("batchgate: ")
    assert "batch_does_not_exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_not_running_is_named_with_its_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = batchgate(None, "batch", "status", "batch_x", "--base-url", url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"batchgate: cannot connect to batchgate at {url} ")
