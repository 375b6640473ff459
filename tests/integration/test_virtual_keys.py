"""Virtual keys against ``batchgate up`` with a master key (gunicorn, Redis, Celery, the fake
upstream): the admin API, ownership (another key gets 404, the master key sees all), model
restrictions, per-key limits through the scheduler's budgets, and usage per key and job."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.integration.conftest import queue_service
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess
from tests.support.redis_scan import dump_values, keys_under

pytestmark = pytest.mark.integration

MASTER = "sk-master-vkeys-7d1e"
CHAT = {"model": "gpt-a", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def service(fake_upstream: FakeUpstream, redis_client: redis.Redis,
            redis_url: str) -> Iterator[GatewayProcess]:
    with tempfile.TemporaryDirectory(prefix="batchgate-files-") as folder, \
            queue_service(fake_upstream, redis_client, redis_url, master_key=MASTER,
                          files_dir=folder, chunk_size=4, feed_window=16) as gw:
        yield gw


@pytest.fixture
def admin(service: GatewayProcess, upstream: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {MASTER}"}) as client:
        yield client


def as_key(service: GatewayProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=service.base_url, timeout=30,
                        headers={"Authorization": f"Bearer {key}"})


def generate(admin: httpx.Client, **spec: Any) -> dict[str, Any]:
    reply = admin.post("/key/generate", json=spec)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def wait_job(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/queue/response/{job_id}", params={"wait": 5}).json()
        if job["status"] in ("completed", "failed", "cancelled", "expired"):
            return job
    raise AssertionError(f"job {job_id} did not end")


def test_generate_shows_the_key_once_and_stores_only_its_hash(
        admin: httpx.Client, service: GatewayProcess, redis_client: redis.Redis) -> None:
    made = generate(admin, key_alias="team-a-once", models=["gpt-a"], rpm_limit=100,
                    metadata={"team": "a"}, duration="30d")
    key = made["key"]
    assert key.startswith("sk-")
    assert len(key) > 40
    assert made["token"] == hashlib.sha256(key.encode()).hexdigest()
    assert made["key_name"] == f"sk-...{key[-4:]}"
    assert made["expires"] is not None
    assert made["rpm_limit"] == 100

    info = admin.get("/key/info", params={"key": key}).json()
    assert info["key"] == made["token"]
    assert info["info"]["key_alias"] == "team-a-once"
    assert key not in json.dumps(info)
    assert key not in dump_values(redis_client, service.prefix)  # type: ignore[attr-defined]
    with as_key(service, key) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        own = client.get("/key/info").json()
        assert own["key"] == made["token"]
        assert own["info"]["usage"]["requests"] == 1


def test_only_the_master_key_manages_keys(admin: httpx.Client,
                                          service: GatewayProcess) -> None:
    key = generate(admin)["key"]
    other = generate(admin)
    with as_key(service, key) as client:
        for path, body in (("/key/generate", {}), ("/key/update", {"key": key}),
                           ("/key/delete", {"keys": [key]})):
            reply = client.post(path, json=body)
            assert reply.status_code == 403, path
            assert reply.json()["error"]["code"] == "permission_denied"
        assert client.get("/metrics").status_code == 403
        hidden = client.get("/key/info", params={"key": other["key"]})
        assert hidden.status_code == 404
        assert hidden.json()["error"]["code"] == "key_not_found"
    with httpx.Client(base_url=service.base_url) as anonymous:
        assert anonymous.post("/key/generate", json={}).status_code == 401
    with as_key(service, other["token"]) as holder_of_the_hash:  # a token is not a key
        assert holder_of_the_hash.get("/key/info").status_code == 401
    with as_key(service, "sk-" + "x" * 40) as stranger:
        reply = stranger.post("/v1/chat/completions", json=CHAT)
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "invalid_api_key"


def test_jobs_files_and_batches_belong_to_their_key(admin: httpx.Client,
                                                    service: GatewayProcess) -> None:
    owner, intruder = generate(admin)["key"], generate(admin)["key"]
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": CHAT}
    with openai.OpenAI(base_url=f"{service.base_url}/v1", api_key=owner,
                       max_retries=0) as sdk:
        file = sdk.files.create(file=("in.jsonl", json.dumps(line).encode() + b"\n"),
                                purpose="batch")
        batch = sdk.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                   completion_window="24h")
    with as_key(service, owner) as client:
        job = client.post("/queue/requests", json=CHAT).json()
    paths = [f"/queue/response/{job['id']}", f"/v1/files/{file.id}",
             f"/v1/files/{file.id}/content", f"/v1/batches/{batch.id}"]
    with as_key(service, intruder) as client:
        for path in paths:
            reply = client.get(path)
            assert reply.status_code == 404, path
            assert "error" in reply.json()
        assert client.post(f"/v1/batches/{batch.id}/cancel").status_code == 404
        assert client.post(f"/queue/response/{job['id']}/cancel").status_code == 404
        listed = json.dumps([client.get(p).json() for p in ("/v1/files", "/v1/batches",
                                                            "/queue/requests")])
        assert file.id not in listed
        assert batch.id not in listed
        assert job["id"] not in listed
        # Nothing of the intruder's failed attempts changed the owner's batch.
    for path in paths:
        assert admin.get(path).status_code == 200, path
    with as_key(service, owner) as client:
        assert wait_job(client, job["id"])["status"] == "completed"


def test_a_key_uses_only_its_models(admin: httpx.Client, service: GatewayProcess) -> None:
    key = generate(admin, models=["gpt-a"])["key"]
    with as_key(service, key) as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["gpt-a"]
        for path, body in (("/v1/chat/completions", {**CHAT, "model": "gpt-b"}),
                           ("/v1/chat/completions", {**CHAT, "model": "gpt-a,gpt-b"}),
                           ("/queue/requests", {**CHAT, "model": "gpt-b"})):
            reply = client.post(path, json=body)
            assert reply.status_code == 401, (path, reply.text)
            assert reply.json()["error"]["code"] == "key_model_access_denied"
        line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                "body": {**CHAT, "model": "gpt-b"}}
        file_id = client.post("/v1/files", data={"purpose": "batch"}, files={
            "file": ("in.jsonl", json.dumps(line).encode() + b"\n")}).json()["id"]
        batch = client.post("/v1/batches", json={"input_file_id": file_id,
                                                 "endpoint": "/v1/chat/completions",
                                                 "completion_window": "24h"}).json()
        deadline = time.monotonic() + 30
        while batch["status"] not in ("failed", "completed") and time.monotonic() < deadline:
            time.sleep(0.2)
            batch = client.get(f"/v1/batches/{batch['id']}").json()
        assert batch["status"] == "failed"
        assert batch["errors"]["data"][0]["code"] == "key_model_access_denied"
    with pytest.raises(AssertionError):
        generate(admin, models=["no-such-model"])


def test_a_keys_rpm_holds_sync_and_queued_work(admin: httpx.Client, service: GatewayProcess,
                                               upstream: FakeUpstream) -> None:
    key = generate(admin, rpm_limit=3)["key"]
    with as_key(service, key) as client:
        codes = [client.post("/v1/chat/completions", json=CHAT) for _ in range(4)]
        assert [r.status_code for r in codes] == [200, 200, 200, 429]
        limited = codes[-1]
        assert limited.json()["error"]["code"] == "key_rate_limited"
        assert 0 < int(limited.headers["Retry-After"]) <= 61

    queued = generate(admin, rpm_limit=3)["key"]
    with as_key(service, queued) as client:
        job = client.post("/queue/requests", json={
            "endpoint": "/v1/chat/completions",
            "requests": [{"custom_id": f"r{i}", "body": CHAT} for i in range(6)]}).json()
        time.sleep(3)  # long enough for all six to run if nothing held them
        seen = client.get(f"/queue/response/{job['id']}").json()
        assert seen["request_counts"]["completed"] == 3
        assert seen["status"] == "in_progress"
        client.post(f"/queue/response/{job['id']}/cancel")
    # Another key, and the master key, are not held by this key's budget.
    assert admin.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_usage_is_counted_per_key_and_per_job(admin: httpx.Client,
                                              service: GatewayProcess) -> None:
    made = generate(admin)
    with as_key(service, made["key"]) as client:
        sync = client.post("/v1/chat/completions", json=CHAT).json()["usage"]
        job = client.post("/queue/requests", json={
            "endpoint": "/v1/chat/completions",
            "requests": [{"custom_id": f"u{i}", "body": CHAT} for i in range(5)]}).json()
        done = wait_job(client, job["id"])
        answers = [r["response"]["usage"] for r in done["data"]]
        expected = sum(a["total_tokens"] for a in answers)
        assert done["usage"]["total_tokens"] == expected > 0
        assert done["usage"]["requests"] == 5
        assert done["usage"]["prompt_tokens"] == sum(a["prompt_tokens"] for a in answers)
        info = client.get("/key/info").json()["info"]["usage"]
        assert info["requests"] == 6
        assert info["total_tokens"] == expected + sync["total_tokens"]


def test_update_and_delete_take_effect_at_once(admin: httpx.Client,
                                               service: GatewayProcess,
                                               redis_client: redis.Redis) -> None:
    made = generate(admin, key_alias="to-delete")
    key = made["key"]
    updated = admin.post("/key/update", json={"key": key, "models": ["gpt-b"],
                                              "rpm_limit": 7}).json()
    assert updated["info"]["models"] == ["gpt-b"]
    assert updated["info"]["rpm_limit"] == 7
    with as_key(service, key) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 401
    missing = admin.post("/key/delete", json={"keys": [key], "key_aliases": ["nope"]})
    assert missing.status_code == 404
    with as_key(service, key) as client:  # nothing was deleted by the refused call
        assert client.get("/key/info").status_code == 200
    deleted = admin.post("/key/delete", json={"key_aliases": ["to-delete"]}).json()
    assert deleted == {"deleted_keys": [made["token"]]}
    with as_key(service, key) as client:
        assert client.get("/key/info").status_code == 401
    prefix = service.prefix  # type: ignore[attr-defined]
    assert not [k for k in keys_under(redis_client, prefix) if made["token"] in k]


def test_an_expired_key_is_refused(admin: httpx.Client, service: GatewayProcess) -> None:
    key = generate(admin, duration="1s")["key"]
    time.sleep(1.1)
    with as_key(service, key) as client:
        reply = client.post("/v1/chat/completions", json=CHAT)
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "expired_key"


@pytest.mark.parametrize(("body", "param"), [
    ({"max_budget": 10}, "max_budget"),
    ({"duration": "forever"}, "duration"),
    ({"rpm_limit": "10"}, "rpm_limit"),
    ({"rpm_limit": 0}, "rpm_limit"),
    ({"key_alias": "a\r\nX-Injected: 1"}, "key_alias"),
    ({"key_alias": "x" * 200}, "key_alias"),
    ({"models": "gpt-a"}, "models"),
    ({"metadata": {"blob": "x" * 20_000}}, "metadata"),
    ({"key": "not-an-sk-key"}, "key"),
])
def test_bad_key_settings_get_a_400_and_make_nothing(
        admin: httpx.Client, service: GatewayProcess, redis_client: redis.Redis,
        body: dict[str, Any], param: str) -> None:
    prefix = service.prefix  # type: ignore[attr-defined]
    before = len([k for k in keys_under(redis_client, prefix) if ":vkey:" in k])
    reply = admin.post("/key/generate", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param
    after = len([k for k in keys_under(redis_client, prefix) if ":vkey:" in k])
    assert after == before


def test_a_taken_alias_is_a_conflict(admin: httpx.Client) -> None:
    generate(admin, key_alias="unique-alias")
    reply = admin.post("/key/generate", json={"key_alias": "unique-alias"})
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "key_alias_exists"
