"""Client-side credentials against real processes: a caller's own key and base URL reach
their upstream, and the clear key is never in Redis, a Celery message or a log."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from config.keys import Keys
from config.settings import Secret
from tests.integration.conftest import SERVER_SECRET_KEY, UPSTREAM_KEY, queue_config
from tests.integration.test_queue import HELLO, wait_done
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess, ServiceProcess
from tests.support.redis_scan import delete_under, dump_values, keys_under
from workers.client_credentials import ClientCredentials, JobCredentials
from workers.credentials_store import seal
from workers.jobs import Item, JobKind, NewJob, Outcome, item_result
from workers.store import JobStore
from workers.webhooks.secretbox import SecretBox

pytestmark = pytest.mark.integration

CALLER_KEY = "sk-caller-own-3b9f0e6d1c2a"
"""The only key the caller's upstream takes; the gateway's config never holds it."""
REFUSED_BASES = ("http://169.254.169.254/", "http://127.0.0.1:1/",
                 "http://[::ffff:127.0.0.1]:1/v1", "http://2130706433/")


@pytest.fixture(scope="module")
def caller_upstream() -> Iterator[FakeUpstream]:
    """The caller's own OpenAI-compatible server, serving the model the deployment names."""
    with FakeUpstream({"defaults": {"latency_ms": 0},
                       "models": {"keyed-model": {"api_key": CALLER_KEY}}}) as upstream:
        yield upstream


@contextlib.contextmanager
def service(fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str,
            allowed: list[str]) -> Iterator[GatewayProcess]:
    """API and beat with client-side credentials on, and no worker (the test starts one)."""
    prefix = f"bgtest-{uuid.uuid4().hex[:10]}"
    config = queue_config(fake_upstream.base_url, redis_url, prefix)
    config["general_settings"] = {"client_side_credentials": {
        "enabled": True, "allowed_api_bases": allowed}}
    try:
        with GatewayProcess(config, workers=1, extra_args=["--queue-workers", "0"],
                            env={"BATCHGATE_SECRET_KEY": SERVER_SECRET_KEY}) as gw:
            gw.prefix = prefix  # type: ignore[attr-defined]
            yield gw
    finally:
        delete_under(redis_client, prefix)


def decoded_messages(client: redis.Redis, prefix: str) -> str:
    """Every Celery message under ``prefix`` with its base64 body decoded (kombu keeps waiting
    messages in lists and unacked ones in a hash)."""
    out: list[str] = []
    for key in keys_under(client, prefix):
        kind = client.type(key)
        values: list[Any] = (client.lrange(key, 0, -1) if kind == "list" else
                             list(client.hgetall(key).values()) if kind == "hash" else [])
        for value in values:
            try:
                message = json.loads(value)
                body = message["body"] if isinstance(message, dict) else None
            except (ValueError, TypeError, KeyError):
                continue
            if isinstance(body, str):
                out.append(base64.b64decode(body).decode("utf-8", "replace"))
    return "\n".join(out)


def post(api: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return api.post(path, json=body)


def test_callers_own_credentials_are_used_and_never_kept_in_clear(
        fake_upstream: FakeUpstream, caller_upstream: FakeUpstream, redis_client: redis.Redis,
        redis_url: str) -> None:
    # The caller's upstream is on loopback: only listing it exactly lets it through.
    own = {"api_key": CALLER_KEY, "api_base": caller_upstream.base_url}
    chat = {"model": "wrong-key", "messages": HELLO}
    with service(fake_upstream, redis_client, redis_url, [caller_upstream.base_url]) as gw, \
            httpx.Client(base_url=gw.base_url, timeout=30) as api:
        prefix = gw.prefix  # type: ignore[attr-defined]
        keys = Keys(prefix)
        # Sync: the deployment's own key is wrong; the caller's, at the caller's base, works.
        assert post(api, "/v1/chat/completions", chat).status_code == 502
        sync = post(api, "/v1/chat/completions", {**chat, **own})
        assert sync.status_code == 200, sync.text
        for base in REFUSED_BASES:
            refused = post(api, "/v1/chat/completions", {**chat, **own, "api_base": base})
            assert refused.status_code == 400, base
            assert refused.json()["error"]["code"] == "invalid_api_base"
            refused = post(api, "/queue/requests", {**chat, **own, "api_base": base})
            assert refused.status_code == 400, base
            assert refused.json()["error"]["code"] == "invalid_api_base"

        # Queued: a single job, an inline batch with one request bringing its own, and a job
        # cancelled before it runs.
        single = post(api, "/queue/requests", {**chat, **own}).json()
        inline = post(api, "/queue/requests", {"endpoint": "/v1/chat/completions", "requests": [
            {"custom_id": "own", "body": {**chat, **own}},
            {"custom_id": "plain", "body": {"model": "gpt-a", "messages": HELLO}}]}).json()
        cancelled = post(api, "/queue/requests", {**chat, **own}).json()
        assert api.post(f"/queue/jobs/{cancelled['id']}/cancel").status_code == 200
        jobs = (single, inline, cancelled)
        assert all(redis_client.exists(keys.credentials(j["id"])) for j in jobs)
        assert 0 < redis_client.ttl(keys.credentials(single["id"])) <= 24 * 3600 + 3600
        queued = dump_values(redis_client, prefix)
        messages = decoded_messages(redis_client, prefix)
        assert "batchgate.run_chunk" in queued  # the broker's messages were scanned
        assert keys.credentials(single["id"]) in queued  # and the encrypted records
        assert single["id"] in messages  # and decoded

        worker = ServiceProcess(gw, "worker")
        try:
            done = {j["id"]: wait_done(api, j["id"]) for j in jobs}
            finished = dump_values(redis_client, prefix) + decoded_messages(redis_client, prefix)
            logs = gw.log() + worker.log()
        finally:
            worker.stop()

    assert done[single["id"]]["status"] == "completed"
    assert done[single["id"]]["status_code"] == 200
    batch = done[inline["id"]]
    assert batch["status"] == "completed"
    assert {r["custom_id"]: r["status_code"] for r in batch["data"]} == {"own": 200,
                                                                       "plain": 200}
    assert done[cancelled["id"]]["status"] == "cancelled"
    # Every call that succeeded with the caller's key went to the caller's upstream.
    assert caller_upstream.stats()["by_model"]["keyed-model"] == 3
    # The encrypted record went with each job's end; the key was never anywhere in clear.
    assert not any(keys.credentials(j["id"]) in finished for j in jobs)
    assert not any(redis_client.exists(keys.credentials(j["id"])) for j in jobs)
    for text in (queued, messages, finished, logs):
        assert CALLER_KEY not in text
        assert SERVER_SECRET_KEY not in text


def test_with_the_feature_off_a_body_with_credentials_is_refused(
        gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=30) as api:
        for path in ("/v1/chat/completions", "/queue/requests"):
            for extra in ({"api_key": CALLER_KEY}, {"api_base": "https://api.openai.com/v1"},
                          {"user_config": {"model_list": []}}):
                response = post(api, path, {"model": "keyed", "messages": HELLO, **extra})
                assert response.status_code == 400, (path, extra)
                assert response.json()["error"]["code"] == "client_side_credentials_disabled"
    assert upstream.stats()["requests"] == 0
    assert CALLER_KEY not in gateway.log()


# -- the Lua scripts that end a job delete its credentials ------------------------------------

@pytest.fixture
def store() -> Iterator[JobStore]:
    url = os.environ.get("BATCHGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, decode_responses=True)
    prefix = f"bgcreds-{uuid.uuid4().hex[:10]}"
    yield JobStore(client, Keys(prefix), job_ttl=60)
    delete_under(client, prefix)
    client.close()


def new_job(store: JobStore, n: int) -> str:
    box = SecretBox(SERVER_SECRET_KEY)
    items = [Item(i, f"c{i}", "m", {"model": "m", "input": str(i)}) for i in range(n)]
    job = NewJob(id=f"job_{uuid.uuid4().hex[:8]}", kind=JobKind.BATCH, endpoint="embeddings",
                 items=items, owner="o", created_at=int(time.time()), completion_window=60,
                 priority=0, credentials_sealed=seal(
                     box, JobCredentials(ClientCredentials(Secret(UPSTREAM_KEY))), [0] * n))
    store.create(job)
    return job.id


def test_credentials_get_a_ttl_and_go_when_the_last_item_ends(store: JobStore) -> None:
    job_id = new_job(store, 2)
    key = store.keys.credentials(job_id)
    assert 60 < store.redis.ttl(key) <= 60 + 3600
    assert store.get(job_id)["client_credentials"] == "1"  # type: ignore[index]
    for index in range(2):
        item = store.items(job_id, index, index + 1)[0]
        assert store.redis.exists(key)
        store.finish(job_id, index, Outcome.COMPLETED,
                     item_result(item, Outcome.COMPLETED, status_code=200, body={},
                                 finished_at=time.time()), time.time())
    assert not store.redis.exists(key)


@pytest.mark.parametrize("outcome", [Outcome.CANCELLED, Outcome.EXPIRED])
def test_credentials_go_when_a_stop_ends_the_job(store: JobStore, outcome: Outcome) -> None:
    job_id = new_job(store, 3)  # nothing fed yet: the stop ends every item at once
    status, stopped = store.stop(job_id, outcome, time.time())
    assert (status, stopped) == (outcome.value, True)
    assert not store.redis.exists(store.keys.credentials(job_id))
