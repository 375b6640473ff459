"""schemathesis against a running batchgate: every operation of ``/openapi.json`` fuzzed
(valid and invalid data), and every answer checked: no 5xx, a status the document names, its
content type, a body matching its schema.

Random ids and model names would only ever reach the 404s, so part of the draws use real
ones: model groups of the config, and a file, a batch and jobs made before the run
(schemathesis dictionaries). The coverage phase is left out: schemathesis 4.32 fails inside
its own generator on free-form (``{}``) properties, such as a message's ``content``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.keyed_service import AUTH, keyed_queue_service
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")
MAX_EXAMPLES = 15
"""Per operation: ~50 operations take about a minute on 2 cores."""
SEED = 7
MODELS = ["gpt-a", "gpt-b", "embed", "gpt-a,gpt-b"]
REAL_SHARE = 0.5
"""Of the draws for a model, an id or a file id, the share that takes a real one."""


@pytest.fixture(scope="module")
def fuzzed(fake_upstream: FakeUpstream, redis_client: redis.Redis,
           redis_url: str) -> Iterator[GatewayProcess]:
    # max_wait 1 s: ?wait= long-polls would otherwise hold the fuzzer up to 60 s a call.
    with keyed_queue_service(fake_upstream, redis_client, redis_url, max_wait=1) as (gw, _, _):
        yield gw


def seed_objects(base_url: str) -> dict[str, list[str]]:
    """A file, a batch of it and queue jobs (single, compare), for the fuzzer to find."""
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-a", "messages": [{"role": "user", "content": "hi"}]}}
    chat = {"model": "gpt-a", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as api:
        files = [api.post("/v1/files", data={"purpose": "batch"},
                          files={"file": ("in.jsonl", json.dumps(line).encode())}
                          ).raise_for_status().json()["id"] for _ in range(2)]
        batch = api.post("/v1/batches", json={
            "input_file_id": files[0], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}).raise_for_status().json()["id"]
        jobs = [api.post("/queue/requests", json=body).raise_for_status().json()["id"]
                for body in (chat, {**chat, "model": "gpt-a,gpt-b"})]
        for job in jobs:
            api.get(f"/queue/response/{job}", params={"wait": 1})
    return {"files": files, "batches": [batch], "jobs": [*jobs, batch], "models": MODELS}


def write_config(folder: Path, values: dict[str, list[str]]) -> Path:
    """A schemathesis.toml binding models and ids to the real ones, part of the time."""
    lines = []
    for name, found in values.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(found)}", ""]
    lines.append("[parameters]")
    for key, name in (("body.model", "models"), ("body.input_file_id", "files"),
                      ("path.file_id", "files"), ("path.batch_id", "batches"),
                      ("path.job_id", "jobs")):
        lines.append(f'"{key}" = {{ dictionary = "{name}", probability = {REAL_SHARE} }}')
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_schemathesis(base_url: str, folder: Path, config: Path, *,
                     max_examples: int = MAX_EXAMPLES,
                     seed: int = SEED) -> subprocess.CompletedProcess[str]:
    """``st run`` in its own process: hypothesis' and schemathesis' warnings stay out of
    this pytest (``-W error``), and the verdict is its exit code."""
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [str(st), "--no-color", "--config-file", str(config), "run",
         f"{base_url}/openapi.json", "--checks", CHECKS,
         "--max-examples", str(max_examples), "--seed", str(seed),
         "--phases", "examples,fuzzing", "--workers", "2",
         "--header", f"Authorization: {AUTH['Authorization']}", "--request-timeout", "20",
         "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=300, check=False, cwd=folder)


@pytest.mark.timeout(360)
def test_no_answer_breaks_the_document_or_is_a_server_error(fuzzed: GatewayProcess,
                                                             tmp_path: Path) -> None:
    config = write_config(tmp_path, seed_objects(fuzzed.base_url))
    result = run_schemathesis(fuzzed.base_url, tmp_path, config)
    assert result.returncode == 0, (result.stdout[-20000:] + result.stderr[-4000:]
                                    + "\n--- gateway log ---\n" + fuzzed.log()[-4000:])
    assert "Traceback" not in fuzzed.log()
