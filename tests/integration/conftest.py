"""Integration fixtures: real processes (fake upstream, batchgate under gunicorn)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess
from tests.support.redis_scan import delete_under
from workers.webhooks.secretbox import SecretBox

UPSTREAM_KEY = "sk-upstream-integration-4f9a1c77e0"
MASTER_KEY = "sk-master-integration"

UPSTREAM_MODELS = {
    "defaults": {"latency_ms": 0},
    "models": {
        "slow-model": {"latency_ms": 300},
        "slower-model": {"latency_ms": 1500},
        "limited-model": {"rpm": 2},
        "small-context": {"context_window": 50},
        "keyed-model": {"api_key": UPSTREAM_KEY},
        "embed-model": {"embedding_dim": 8},
    },
}


def gateway_config(base_url: str, *, master_key: str | None = None) -> dict[str, Any]:
    """A LiteLLM-style config routing every test group to the fake upstream."""
    def entry(name: str, model: str | None = None, **params: Any) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {
            "model": f"openai/{model or name}", "api_base": base_url, "api_key": "None",
            **params}}

    config: dict[str, Any] = {"model_list": [
        entry("gpt-a"), entry("gpt-b"), entry("slow", "slow-model"),
        entry("slower", "slower-model"),
        entry("limited", "limited-model"), entry("small", "small-context"),
        entry("keyed", "keyed-model", api_key=UPSTREAM_KEY),
        entry("wrong-key", "keyed-model", api_key="sk-not-the-right-one"),
        entry("embed", "embed-model"),
        entry("broken", "gpt-a", api_base="http://127.0.0.1:9/v1", timeout=2),
    ]}
    if master_key:
        config["general_settings"] = {"master_key": master_key}
    return config


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(UPSTREAM_MODELS) as upstream:
        yield upstream


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> FakeUpstream:
    """The shared fake upstream with counters and windows cleared."""
    fake_upstream.reset()
    return fake_upstream


@pytest.fixture(scope="session")
def gateway(fake_upstream: FakeUpstream) -> Iterator[GatewayProcess]:
    with GatewayProcess(gateway_config(fake_upstream.base_url), workers=2) as gw:
        yield gw


@pytest.fixture(scope="session")
def keyed_gateway(fake_upstream: FakeUpstream) -> Iterator[GatewayProcess]:
    config = gateway_config(fake_upstream.base_url, master_key=MASTER_KEY)
    with GatewayProcess(config, workers=1) as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayProcess, upstream: FakeUpstream) -> openai.OpenAI:
    """The official SDK pointed at batchgate; no SDK retries, so tests see every status."""
    with openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="unused",
                       max_retries=0, timeout=20) as sdk:
        yield sdk  # type: ignore[misc]


# -- the queue: batchgate up (API + Celery worker + beat) on a test-owned key prefix --------

SERVER_SECRET_KEY = SecretBox.generate_key()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("BATCHGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def queue_config(base_url: str, redis_url: str, prefix: str, **settings: Any) -> dict[str, Any]:
    """The test gateway config plus a queue on its own key prefix."""
    config = gateway_config(base_url)
    config["batchgate_settings"] = {
        "redis_url": redis_url, "key_prefix": prefix, "webhook_allowed_hosts": ["127.0.0.1"],
        "webhook_schedule": [0, "1s", "1s"], "webhook_timeout": 3, "item_lease": 5,
        "worker_concurrency": 64, "max_batch_requests": 2000,
        # "broken" is never reachable: its items fail after 2 s instead of waiting out the
        # "outage" for their whole completion window (tests/integration/test_drills.py).
        "outage_wait": "2s", **settings}
    return config


@contextlib.contextmanager
def queue_service(fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str, *,
                  queue_workers: int = 1, master_key: str | None = None,
                  **settings: Any) -> Iterator[GatewayProcess]:
    """A whole batchgate on a fresh prefix; its keys are deleted afterwards."""
    prefix = f"bgtest-{uuid.uuid4().hex[:10]}"
    config = queue_config(fake_upstream.base_url, redis_url, prefix, **settings)
    if master_key:
        config["general_settings"] = {"master_key": master_key}
    try:
        with GatewayProcess(config, workers=1, extra_args=["--queue-workers", str(queue_workers)],
                            env={"BATCHGATE_SECRET_KEY": SERVER_SECRET_KEY}) as gw:
            gw.prefix = prefix  # type: ignore[attr-defined]
            yield gw
    finally:
        delete_under(redis_client, prefix)


@pytest.fixture(scope="session")
def queue_gateway(fake_upstream: FakeUpstream, redis_client: redis.Redis,
                  redis_url: str) -> Iterator[GatewayProcess]:
    with queue_service(fake_upstream, redis_client, redis_url) as gw:
        yield gw


@pytest.fixture
def api(queue_gateway: GatewayProcess, upstream: FakeUpstream) -> Iterator[httpx.Client]:
    """Plain HTTP to the queue gateway."""
    with httpx.Client(base_url=queue_gateway.base_url, timeout=60) as client:
        yield client
