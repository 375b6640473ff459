"""``model_list`` -> :class:`~config.settings.Deployment` values, one entry at a time."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from config._fields import (
    Scope,
    Section,
    check_keys,
    describe,
    to_list,
    to_mapping,
    to_str,
)
from config.settings import (
    DEFAULT_AZURE_API_VERSION,
    DEFAULT_OLLAMA_API_BASE,
    DEFAULT_OPENAI_API_BASE,
    Deployment,
    Provider,
    Secret,
)

PROVIDER_PREFIXES: Mapping[str, Provider] = {
    "openai": Provider.OPENAI,
    "azure": Provider.AZURE,
    "hosted_vllm": Provider.HOSTED_VLLM,
    "ollama": Provider.OLLAMA,
    # LiteLLM's chat-endpoint flavour of Ollama; batchgate calls Ollama's OpenAI API for both.
    "ollama_chat": Provider.OLLAMA,
}
PROVIDER_HINT = ("supported prefixes: openai/, azure/, hosted_vllm/, ollama/ "
                 "(openai/ works for any OpenAI-compatible server)")

ENTRY_KEYS = ("model_name", "litellm_params", "model_info", "rpm", "tpm",
              "max_parallel_requests")
LIMIT_KEYS = ("rpm", "tpm", "max_parallel_requests")
SIZE_KEYS = ("max_input_tokens", "max_inputs_per_request", "max_tokens_per_request")
"""Per-request size limits, read from ``model_info`` or ``litellm_params`` (which wins)."""
PARAM_KEYS = frozenset({
    "model", "api_base", "base_url", "api_key", "api_version", "timeout", "rpm", "tpm",
    "max_parallel_requests", "weight", "order", "custom_llm_provider", *SIZE_KEYS,
})
REQUEST_PARAMS = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop",
    "presence_penalty", "frequency_penalty", "response_format", "dimensions",
    "encoding_format", "user", "n", "logit_bias", "logprobs", "top_logprobs", "tools",
    "tool_choice", "parallel_tool_calls", "reasoning_effort", "service_tier", "modalities",
    "audio", "prediction", "stream_options", "web_search_options", "suffix", "echo",
    "best_of", "extra_body",
    # Sampling fields OpenAI-compatible servers (vLLM, Ollama, LocalAI) accept beyond OpenAI's.
    "top_k", "min_p", "repetition_penalty",
})
"""Request fields a deployment may preset; they become ``default_params``."""
IGNORED_PARAMS = frozenset({
    "stream_timeout", "max_retries", "organization", "input_cost_per_token",
    "output_cost_per_token", "input_cost_per_second", "output_cost_per_second",
    "mock_response", "mock_timeout", "region_name", "tags", "use_in_pass_through",
    "use_litellm_proxy", "rpm_limit", "tpm_limit", "litellm_credential_name",
    "extra_headers", "headers", "azure_ad_token", "azure_ad_token_provider", "tenant_id",
    "client_id", "client_secret", "azure_username", "azure_password", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "aws_region_name", "vertex_project",
    "vertex_location", "vertex_credentials", "merge_reasoning_content_in_choices",
    "cache_control_injection_points", "configurable_clientside_auth_params",
    "litellm_trace_id", "metadata", "max_budget", "budget_duration", "api_type",
})
"""litellm_params keys LiteLLM uses internally and batchgate has no use for."""


def parse_model_list(scope: Scope, raw: Any, env: Mapping[str, str]) -> tuple[Deployment, ...]:
    """Every deployment of ``model_list``, in order, each with a unique id."""
    parsed = []
    for index, item in enumerate(to_list(scope, "model_list", raw)):
        entry_scope = scope.at(_label(index, item))
        parsed.append((entry_scope, *_parse_entry(entry_scope, item, env)))
    return _assign_ids(parsed)


def _label(index: int, item: Any) -> str:
    name = item.get("model_name") if isinstance(item, Mapping) else None
    return f"model_list[{index}] ({name})" if isinstance(name, str) else f"model_list[{index}]"


def _parse_entry(scope: Scope, item: Any,
                 env: Mapping[str, str]) -> tuple[str | None, Deployment]:
    """One entry -> (its explicit id or None, a Deployment whose id is still blank)."""
    if not isinstance(item, Mapping):
        raise scope.error("expected a mapping with model_name and litellm_params, "
                          f"got {describe(item)}")
    entry = Section(scope, to_mapping(scope, "", item), env)
    check_keys(scope, "", entry.data, known=ENTRY_KEYS, strict=True)
    if not entry.has("model_name"):
        raise scope.error("missing model_name (the group name callers use)", "model_name")
    model_name = to_str(scope, "model_name", entry.data["model_name"])
    if not entry.has("litellm_params"):
        raise scope.error("missing litellm_params (needs at least model)", "litellm_params")
    params = Section(scope, to_mapping(scope, "litellm_params", entry.data["litellm_params"]),
                     env, "litellm_params")
    check_keys(scope, "litellm_params", params.data, known=PARAM_KEYS | REQUEST_PARAMS,
               ignored=IGNORED_PARAMS)
    provider, model = _provider_and_model(params)
    api_base = _api_base(params, provider)
    api_version = _api_version(params, provider)
    api_key = _api_key(params, provider, api_base)
    model_info = to_mapping(scope, "model_info", entry.data.get("model_info"))
    sizes = {key: _size(Section(scope, model_info, env, "model_info"), params, key)
             for key in SIZE_KEYS}
    weight = params.get_float("weight", positive=True)
    rpm, tpm, max_parallel = (_limit(entry, params, key) for key in LIMIT_KEYS)
    deployment = Deployment(
        id="", model_name=model_name, provider=provider, model=model, api_base=api_base,
        api_key=api_key, api_version=api_version,
        timeout=params.get_float("timeout", positive=True),
        rpm=rpm, tpm=tpm, max_parallel_requests=max_parallel,
        weight=1.0 if weight is None else weight,
        order=params.get_int("order", minimum=1),
        model_info=model_info, default_params=_default_params(params), **sizes,
    )
    return _explicit_id(scope, model_info), deployment


def _provider_and_model(params: Section) -> tuple[Provider, str]:
    """Split ``openai/org/model`` into (openai, ``org/model``), as LiteLLM does."""
    scope, path = params.scope, params.path("model")
    model = params.get_str("model")
    if model is None:
        raise scope.error("missing model (e.g. openai/<name>)", path)
    custom = params.get_str("custom_llm_provider")
    if custom is not None:
        # LiteLLM: an explicit provider takes the model as-is, minus a matching prefix.
        if custom not in PROVIDER_PREFIXES:
            raise scope.error(f"unknown provider {custom!r}; {PROVIDER_HINT}",
                              params.path("custom_llm_provider"))
        return PROVIDER_PREFIXES[custom], model.removeprefix(f"{custom}/")
    prefix, slash, rest = model.partition("/")
    if not slash:
        raise scope.error(f"model {model!r} has no provider prefix; {PROVIDER_HINT}", path)
    if prefix not in PROVIDER_PREFIXES:
        raise scope.error(f"unknown provider prefix {prefix + '/'!r} in {model!r}; "
                          f"{PROVIDER_HINT}", path)
    if not rest.strip():
        raise scope.error(f"model {model!r} names no model after {prefix}/", path)
    return PROVIDER_PREFIXES[prefix], rest


def _api_base(params: Section, provider: Provider) -> str:
    """The OpenAI-style base URL: given (``api_base`` or ``base_url``) or the default."""
    scope = params.scope
    key = "api_base" if params.has("api_base") else "base_url"
    if params.has("api_base") and params.has("base_url") \
            and params.get("api_base") != params.get("base_url"):
        raise scope.error("api_base and base_url disagree; give only one",
                          params.path("base_url"))
    base = params.get_str(key)
    if base is None:
        if provider is Provider.OPENAI:
            return DEFAULT_OPENAI_API_BASE
        if provider is Provider.OLLAMA:
            base = DEFAULT_OLLAMA_API_BASE
        else:
            raise scope.error(f"{provider.value}/ deployments need api_base",
                              params.path("api_base"))
    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # A URL with userinfo may carry a password: do not echo it.
        shown = "" if "@" in base else f", got {describe(base)}"
        raise scope.error(f"expected an http:// or https:// URL{shown}", params.path(key))
    base = base.strip().rstrip("/")
    if provider is Provider.OLLAMA and not base.endswith("/v1"):
        base += "/v1"  # Ollama's OpenAI-compatible API lives under /v1
    return base


def _api_version(params: Section, provider: Provider) -> str | None:
    """Azure's api-version, given or the default; other providers have none."""
    if provider is not Provider.AZURE:
        if params.has("api_version"):
            params.scope.note("ignored: only azure/ deployments use api_version",
                              params.path("api_version"))
        return None
    value = params.get("api_version")
    if isinstance(value, datetime.date):
        return value.isoformat()  # YAML reads an unquoted 2024-10-21 as a date
    if value is None:
        return DEFAULT_AZURE_API_VERSION
    return to_str(params.scope, params.path("api_version"), value)


def _api_key(params: Section, provider: Provider, api_base: str) -> Secret | None:
    """The deployment's key; a note when one is almost certainly needed but missing."""
    api_key = params.get_secret("api_key")
    if api_key is None and (provider is Provider.AZURE or api_base == DEFAULT_OPENAI_API_BASE):
        # LiteLLM would quietly fall back to OPENAI_API_KEY / AZURE_API_KEY; batchgate does
        # not send an ambient credential to whatever api_base a config names.
        params.scope.note("no api_key: requests go out unauthenticated "
                          "(write api_key: os.environ/NAME to use an environment variable)",
                          params.path("api_key"))
    return api_key


def _limit(entry: Section, params: Section, key: str) -> int | None:
    """rpm/tpm/max_parallel_requests: in litellm_params, else on the entry (LiteLLM allows
    both). 0 is refused: it would park the deployment forever; leave the key out instead."""
    on_entry = entry.get_int(key, minimum=1)
    in_params = params.get_int(key, minimum=1)
    if on_entry is not None and in_params is not None and on_entry != in_params:
        entry.scope.note(f"ignored: litellm_params.{key} is also set and wins", key)
    return in_params if in_params is not None else on_entry


def _size(info: Section, params: Section, key: str) -> int | None:
    """A per-request size limit: in litellm_params, else in model_info (LiteLLM's home for
    ``max_input_tokens``). Positive: a limit of 0 would fail every request."""
    in_info = info.get_int(key, minimum=1)
    in_params = params.get_int(key, minimum=1)
    if in_info is not None and in_params is not None and in_info != in_params:
        info.scope.note(f"ignored: litellm_params.{key} is also set and wins", info.path(key))
    return in_params if in_params is not None else in_info


def _default_params(params: Section) -> dict[str, Any]:
    """OpenAI request fields preset by the config; ``extra_body`` is flattened into them,
    since batchgate sends JSON bodies rather than SDK calls."""
    out: dict[str, Any] = {}
    if params.has("extra_body"):
        out.update(to_mapping(params.scope, params.path("extra_body"), params.get("extra_body")))
    for key in sorted(REQUEST_PARAMS - {"extra_body"}):
        if key in params.data:
            out[key] = params.get(key)
    return out


def _explicit_id(scope: Scope, model_info: Mapping[str, Any]) -> str | None:
    value = model_info.get("id")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return to_str(scope, "model_info.id", value)


def _digest(d: Deployment) -> str:
    """A stable id for an entry without ``model_info.id``: the same config, the same id."""
    parts = (d.model_name, d.provider.value, d.model, d.api_base, d.api_version or "")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _assign_ids(parsed: list[tuple[Scope, str | None, Deployment]]) -> tuple[Deployment, ...]:
    """Explicit ids must be unique; derived ones get -2, -3... for identical entries
    (LiteLLM allows repeating an entry to weight it)."""
    explicit: dict[str, str | None] = {}
    for scope, given, _ in parsed:
        if given is None:
            continue
        if given in explicit:
            raise scope.error(f"duplicate id {given!r}: {explicit[given]} has it too",
                              "model_info.id")
        explicit[given] = scope.entry
    used = set(explicit)
    out = []
    for _, given, deployment in parsed:
        ident = given
        if ident is None:
            base = ident = _digest(deployment)
            n = 1
            while ident in used:
                n += 1
                ident = f"{base}-{n}"
        used.add(ident)
        out.append(replace(deployment, id=ident))
    return tuple(out)
