"""Integration fixtures: real processes (fake upstream, batchgate under gunicorn)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess

UPSTREAM_KEY = "sk-upstream-integration-4f9a1c77e0"
MASTER_KEY = "sk-master-integration"

UPSTREAM_MODELS = {
    "defaults": {"latency_ms": 0},
    "models": {
        "slow-model": {"latency_ms": 300},
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
