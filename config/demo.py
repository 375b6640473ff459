"""The configuration of ``batchgate up --demo``: every model served by one local fake upstream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from config.loader import settings_from_mapping
from config.settings import Settings

DEMO_SOURCE = "<demo>"
DEMO_MODELS = ("gpt-4o-mini", "llama3", "text-embedding-3-small", "omni-moderation-latest")
"""The model names the demo sends upstream; the fake upstream must answer for each."""


def demo_settings(upstream_base: str, *, master_key: str | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Demo settings whose deployments all live at ``upstream_base`` (``http://host:port/v1``).

    ``env`` (default: none, so the demo is the same everywhere) may carry ``BATCHGATE_*``
    overrides; an explicit ``master_key`` wins over ``BATCHGATE_MASTER_KEY``.
    """
    env = dict(env or {})
    if master_key is not None:
        env.pop("BATCHGATE_MASTER_KEY", None)
    return settings_from_mapping(demo_config(upstream_base, master_key),
                                 source=DEMO_SOURCE, env=env)


def demo_config(upstream_base: str, master_key: str | None = None) -> dict[str, Any]:
    """The demo config as LiteLLM-style YAML data (what `batchgate up --demo` serves)."""
    def entry(group: str, model: str, *, ident: str | None = None) -> dict[str, Any]:
        params = {"model": model, "api_base": upstream_base, "api_key": None}
        info = {"id": ident} if ident else {}
        return {"model_name": group, "litellm_params": params, "model_info": info}

    config: dict[str, Any] = {
        "model_list": [
            # Two deployments of one group, so the demo shows load balancing between them.
            entry("gpt-4o-mini", "openai/gpt-4o-mini", ident="demo-gpt-4o-mini-a"),
            entry("gpt-4o-mini", "openai/gpt-4o-mini", ident="demo-gpt-4o-mini-b"),
            entry("llama3", "hosted_vllm/llama3"),
            entry("text-embedding-3-small", "openai/text-embedding-3-small"),
            entry("omni-moderation-latest", "openai/omni-moderation-latest"),
        ],
        "router_settings": {"num_retries": 1, "fallbacks": [{"llama3": ["gpt-4o-mini"]}]},
    }
    if master_key is not None:
        config["general_settings"] = {"master_key": master_key}
    return config
