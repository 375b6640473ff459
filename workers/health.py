"""Deployment health probes: one small real call to each deployment."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from batchgate.errors import BatchgateError
from config.settings import Deployment
from workers.gateway import Gateway

PROBE_BODIES: dict[str, dict[str, Any]] = {
    "chat/completions": {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1},
    "completions": {"prompt": "ping", "max_tokens": 1},
    "embeddings": {"input": "ping"},
    "moderations": {"input": "ping"},
}
_MODES = {"chat": "chat/completions", "completion": "completions",
          "embedding": "embeddings", "moderation": "moderations"}


def probe_endpoint(deployment: Deployment) -> str:
    """The endpoint a probe calls: ``model_info.mode`` (LiteLLM's key), else guessed by name."""
    mode = deployment.model_info.get("mode")
    if isinstance(mode, str) and mode in _MODES:
        return _MODES[mode]
    name = f"{deployment.model_name} {deployment.model}".lower()
    if "embed" in name:
        return "embeddings"
    if "moderation" in name:
        return "moderations"
    return "chat/completions"


def probe(gateway: Gateway, deployment: Deployment) -> dict[str, Any]:
    """The deployment's public description, plus ``error`` when its probe failed."""
    endpoint = probe_endpoint(deployment)
    entry = {**deployment.public(), "endpoint": f"/{endpoint}"}
    try:
        answer = gateway.call(deployment, endpoint, PROBE_BODIES[endpoint])
    except BatchgateError as exc:
        return {**entry, "error": exc.message}
    if not answer.ok:
        return {**entry, "error": f"answered {answer.status}"}
    return entry


def probe_all(gateway: Gateway, deployments: Sequence[Deployment]) -> dict[str, Any]:
    """LiteLLM's ``/health`` shape: healthy and unhealthy endpoints with their counts."""
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(deployments)))) as pool:
        results = list(pool.map(lambda d: probe(gateway, d), deployments))
    healthy = [r for r in results if "error" not in r]
    unhealthy = [r for r in results if "error" in r]
    return {"healthy_endpoints": healthy, "unhealthy_endpoints": unhealthy,
            "healthy_count": len(healthy), "unhealthy_count": len(unhealthy)}
