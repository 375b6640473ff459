"""The scheduler with real processes: declared budgets, faults, fallbacks and packing.

Each test runs its own fake upstream (the limits and faults it enforces are the point) and a
whole batchgate (gunicorn API, Celery worker and beat, Redis) on a fresh key prefix.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.integration.test_queue import submit, wait_done
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess
from tests.support.redis_scan import delete_under

pytestmark = pytest.mark.integration


def entry(name: str, model: str, base: str, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {
        "model": f"openai/{model}", "api_base": base, "api_key": "None", **params}}


@contextlib.contextmanager
def service(upstream_models: dict[str, Any], model_list: Any, redis_client: redis.Redis,
            redis_url: str, router: dict[str, Any] | None = None,
            **queue: Any) -> Iterator[tuple[FakeUpstream, httpx.Client]]:
    """A fake upstream with ``upstream_models`` and a batchgate routing ``model_list(base)``."""
    prefix = f"bgtest-{uuid.uuid4().hex[:10]}"
    with FakeUpstream(upstream_models) as upstream:
        config = {"model_list": model_list(upstream.base_url),
                  "router_settings": router or {},
                  "batchgate_settings": {"redis_url": redis_url, "key_prefix": prefix,
                                         "item_lease": 10, "worker_concurrency": 64, **queue}}
        try:
            with GatewayProcess(config, workers=1, extra_args=["--queue-workers", "1"]) as gw, \
                    httpx.Client(base_url=gw.base_url, timeout=60) as api:
                yield upstream, api
        finally:
            delete_under(redis_client, prefix)


def results(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = -1
    while True:
        page = api.get(f"/queue/response/{job_id}",
                       params={"order": "input", "after": after, "limit": 500}).json()
        out += page["data"]
        if not page["has_more"]:
            return out
        after = page["next_after"]


def chat_batch(n: int, model: str, text: str = "line", **body: Any) -> dict[str, Any]:
    return {"endpoint": "/v1/chat/completions", "requests": [
        {"custom_id": f"c{i}", "body": {"model": model, "max_tokens": 8, **body, "messages": [
            {"role": "user", "content": f"{text} {i}"}]}} for i in range(n)]}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_declared_rpm_is_used_to_the_full_and_never_causes_a_429(
        redis_client: redis.Redis, redis_url: str) -> None:
    """LiteLLM's weak spot, replayed: 80 requests, 2 deployments at 30 rpm each, an upstream
    enforcing 30/min on a sliding window. All 80 answered, zero upstream 429s, and the 20
    that do not fit the first minute go as soon as the window lets them."""
    models = {"defaults": {"latency_ms": 20}, "models": {"m1": {"rpm": 30}, "m2": {"rpm": 30}}}
    def model_list(base: str) -> list[dict[str, Any]]:
        return [entry("chat", "m1", base, rpm=30), entry("chat", "m2", base, rpm=30)]

    with service(models, model_list, redis_client, redis_url,
                 router={"routing_strategy": "usage-based-routing"}) as (upstream, api):
        started = time.monotonic()
        job = submit(api, chat_batch(80, "chat"))
        done = wait_done(api, job["id"], timeout=120)
        elapsed = time.monotonic() - started
        stats = upstream.stats()
    assert done["request_counts"]["completed"] == 80
    assert stats["by_status"].get("429", 0) == 0
    assert sum(stats["by_model"].values()) == 80
    for model in ("m1", "m2"):
        times = sorted(e["t"] for e in stats["log"] if e["model"] == model)
        # The upstream's own rule, checked on its own clock: at most 30 in any 60 s.
        assert all(b - a >= 60 for a, b in zip(times, times[30:], strict=False)), model
    arrivals = sorted(e["t"] for e in stats["log"])
    # The 61st request may go once the first has left the 60 s window (plus the margin
    # batchgate keeps for the trip to the upstream), and not much later.
    assert 60 <= arrivals[60] - arrivals[0] <= 60 * 1.05
    assert elapsed <= 60 * 1.2


def test_sync_callers_wait_for_room_then_hear_an_honest_retry_after(
        redis_client: redis.Redis, redis_url: str) -> None:
    models = {"defaults": {"latency_ms": 0}, "models": {"m1": {"rpm": 3}}}
    def model_list(base: str) -> list[dict[str, Any]]:
        return [entry("chat", "m1", base, rpm=3)]

    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with service(models, model_list, redis_client, redis_url) as (upstream, api):
        answers = [api.post("/v1/chat/completions", json=body) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]
        started = time.monotonic()
        refused = api.post("/v1/chat/completions", json={**body, "timeout": 2})
        waited = time.monotonic() - started
        assert refused.status_code == 429
        assert 55 <= int(refused.headers["retry-after"]) <= 62
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert waited < 2
        assert upstream.stats()["by_status"].get("429", 0) == 0


def test_faults_end_every_item_exactly_once_with_retries_and_fallbacks(
        redis_client: redis.Redis, redis_url: str) -> None:
    """20 % 500s, 10 % 429s with Retry-After, hung requests and context-window errors: every
    item ends once, long prompts are answered by the context-window fallback, and no request
    to a throttled deployment arrives before the Retry-After it was given."""
    models = {"defaults": {"latency_ms": 5},
              "models": {"flaky": {"fail_rate_500": 0.2, "rate_429": 0.1, "retry_after_s": 1,
                                   "timeout_rate": 0.03, "hang_s": 5, "context_window": 60},
                         "big": {"latency_ms": 5},
                         "throttled": {"rate_429": 0.3, "retry_after_s": 1}}}
    def model_list(base: str) -> list[dict[str, Any]]:
        return [entry("chat", "flaky", base, timeout=1),
                entry("big", "big", base),
                entry("paced", "throttled", base, max_parallel_requests=1)]

    router = {"num_retries": 6, "context_window_fallbacks": [{"chat": ["big"]}],
              "allowed_fails": 1000}
    long_text = "word " * 80
    requests = [{"custom_id": f"c{i}", "body": {"model": "chat", "max_tokens": 8, "messages": [
        {"role": "user", "content": long_text if i % 10 == 0 else f"line {i}"}]}}
        for i in range(150)]
    requests += [{"custom_id": f"p{i}", "body": {"model": "paced", "max_tokens": 4,
                                                  "messages": [{"role": "user", "content": "x"}]}}
                 for i in range(12)]
    with service(models, model_list, redis_client, redis_url, router=router) as (upstream, api):
        job = submit(api, {"endpoint": "/v1/chat/completions", "requests": requests})
        done = wait_done(api, job["id"], timeout=150)
        items = results(api, job["id"])
        log = upstream.stats()["log"]
    ids = [item["custom_id"] for item in items]
    assert sorted(ids) == sorted(r["custom_id"] for r in requests)
    assert done["request_counts"]["total"] == len(requests)
    by_id = {item["custom_id"]: item for item in items}
    for i in range(0, 150, 10):
        assert by_id[f"c{i}"]["status"] == "completed", by_id[f"c{i}"]
        assert by_id[f"c{i}"]["fallback"] == "big"
    completed = sum(1 for item in items if item["status"] == "completed")
    assert completed >= len(requests) * 0.95
    assert any(item["attempts"] > 1 for item in items)
    paced = [e for e in log if e["model"] == "throttled"]
    assert any(e["status"] == 429 for e in paced)
    for before, after in itertools.pairwise(paced):
        if before["status"] == 429:
            assert after["t"] - before["t"] >= 1.0 - 0.05, (before, after)


def test_embeddings_are_packed_and_split_back_in_order(
        redis_client: redis.Redis, redis_url: str) -> None:
    models = {"defaults": {"latency_ms": 0, "embedding_dim": 4, "max_inputs": 2048,
                           "content_policy_trigger": "FORBIDDEN"}}
    def model_list(base: str) -> list[dict[str, Any]]:
        return [{**entry("emb", "e1", base), "model_info": {"max_input_tokens": 40}}]

    texts = [f"chunk number {i} of the manual" for i in range(1500)]
    texts[7] = "x" * 400                     # over max_input_tokens: fails alone, never sent
    texts[900] = "FORBIDDEN text"            # the upstream refuses it: spoils only itself
    requests = [{"custom_id": f"e{i}", "body": {"model": "emb", "input": text}}
                for i, text in enumerate(texts)]
    requests.append({"custom_id": "pair", "body": {"model": "emb", "input": ["a b", "c d"]}})
    with service(models, model_list, redis_client, redis_url,
                 embedding_chunk_size=512) as (upstream, api):
        job = submit(api, {"endpoint": "/v1/embeddings", "requests": requests})
        wait_done(api, job["id"], timeout=60)
        items = results(api, job["id"])
        stats = upstream.stats()
    assert [item["custom_id"] for item in items] == [r["custom_id"] for r in requests]
    assert items[7]["status"] == "failed"
    assert items[7]["error"]["code"] == "input_too_large"
    assert items[900]["status"] == "failed"
    failed = [item["custom_id"] for item in items if item["status"] != "completed"]
    assert failed == ["e7", "e900"]
    for item in items[:5] + items[1000:1005]:
        data = item["response"]["data"]
        assert [d["index"] for d in data] == [0]
        assert len(data[0]["embedding"]) == 4
    assert len(items[-1]["response"]["data"]) == 2
    # 1,499 sendable items in chunks of 512: a handful of requests, plus the spoiled pack's
    # items sent one by one.
    packed = [e for e in stats["log"] if e["inputs"] > 1]
    assert len(packed) <= 6
    assert stats["requests"] <= 6 + 512 + 1
