"""Load a LiteLLM-style ``config.yaml`` plus the environment into one :class:`Settings`.

A LiteLLM proxy config loads unchanged. What batchgate reads:

``model_list``
    One entry per deployment: ``model_name`` (the group callers name), ``litellm_params``,
    ``model_info`` and, as LiteLLM allows, ``rpm``/``tpm``/``max_parallel_requests`` on the
    entry itself (``litellm_params`` wins when both are set). ``litellm_params.model`` must
    carry a provider prefix: ``openai/`` (any OpenAI-compatible server; default api_base
    ``https://api.openai.com/v1``), ``azure/`` (api_base required), ``hosted_vllm/`` (api_base
    required) or ``ollama/`` (default ``http://localhost:11434``; ``/v1`` is appended, as
    batchgate calls Ollama's OpenAI-compatible API). The rest of the string is the upstream
    model name, slashes included. OpenAI request fields in ``litellm_params`` (temperature,
    max_tokens, ..., ``extra_body`` flattened) become the deployment's ``default_params``.
``router_settings``
    Routing strategy, retries, timeouts, cooldowns, the four kinds of fallbacks and
    ``model_group_alias``. LiteLLM also reads ``num_retries`` and the fallbacks under
    ``litellm_settings``; batchgate does too, and ``router_settings`` wins when both are set.
``litellm_settings``
    ``request_timeout`` and ``drop_params``.
``general_settings``
    ``master_key``.
``environment_variables``
    Laid over the process environment for ``os.environ/`` references and ``BATCHGATE_*``
    (the config's value wins, as in LiteLLM, which copies them into ``os.environ``).
``batchgate_settings``
    batchgate's own: ``redis_url``, ``key_prefix``, ``max_request_bytes``,
    ``connect_timeout``, ``host``, ``port``; the queue's keys; the Files API's
    ``files_dir`` and ``max_file_bytes``.

Values and rules:

- ``os.environ/NAME`` is replaced by the variable's value anywhere in ``litellm_params``, in
  ``general_settings.master_key``, in ``batchgate_settings`` and in every other value batchgate
  reads; an unset variable is an error.
- ``api_key`` and ``master_key`` become :class:`~config.settings.Secret`. YAML null, ``""``,
  ``"None"`` and ``"none"`` mean "no key": LiteLLM configs write ``api_key: None``, which YAML
  reads as the string ``"None"``. A missing ``api_key`` also means no key; unlike LiteLLM,
  batchgate does not fall back to ``OPENAI_API_KEY``/``AZURE_API_KEY``.
- Integers may be quoted (``rpm: "6"``); counts and timeouts must be positive.
- A deployment's id is ``model_info.id`` or a stable digest of its identifying fields;
  identical entries (LiteLLM's way to weight one) get ``-2``, ``-3``... suffixes.
- Settings LiteLLM has and batchgate does not use are accepted and reported as notes by
  :func:`check_config`; a key that looks like a misspelling of one batchgate uses is an error.
- Then ``BATCHGATE_REDIS_URL`` (or ``REDIS_URL``), ``BATCHGATE_KEY_PREFIX``,
  ``BATCHGATE_MAX_REQUEST_BYTES``, ``BATCHGATE_CONNECT_TIMEOUT``, ``BATCHGATE_HOST``,
  ``BATCHGATE_PORT``, ``BATCHGATE_MASTER_KEY``, ``BATCHGATE_REQUEST_TIMEOUT``,
  ``BATCHGATE_NUM_RETRIES``, the queue's and the Files API's (``BATCHGATE_FILES_DIR``,
  ``BATCHGATE_MAX_FILE_BYTES``) override the file; empty ones count as unset.

Anything wrong raises one :class:`~batchgate.errors.ConfigError` naming the file, the entry
(``model_list[2] (azure-gpt-3.5)``) and the field (``litellm_params.rpm``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

from batchgate.errors import ConfigError
from config._deployments import parse_model_list
from config._environment import apply_env_overrides, merged_env
from config._fields import Scope, Section, describe, suggest, to_mapping
from config._files import parse_files
from config._queue import parse_queue
from config._sections import parse_general, parse_litellm, parse_router, parse_server
from config.settings import Settings

ENV_ONLY_SOURCE = "<env>"
"""``Settings.source`` when there is no file, only the environment."""
SECTIONS = ("model_list", "router_settings", "litellm_settings", "general_settings",
            "environment_variables", "batchgate_settings")
IGNORED_SECTIONS = frozenset({
    "credential_list", "guardrails", "callback_settings", "assistant_settings",
    "files_settings", "finetune_settings", "mcp_servers", "mcp_tools", "vector_store_registry",
    "prompts", "search_tools", "model_group_settings", "cache_params", "alerting_settings",
})
UNSUPPORTED_SECTIONS = {
    # Ignoring these would silently drop deployments, so they are errors.
    "include": "batchgate does not support include; merge the files into one",
}


def load_settings(path: str | os.PathLike[str] | None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the YAML file at ``path`` (None: no file) and ``env`` (``os.environ``)."""
    return check_config(path, env)[0]


def check_config(path: str | os.PathLike[str] | None,
                 env: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
    """Like :func:`load_settings`, plus notes on what the file sets that batchgate ignores."""
    env = os.environ if env is None else env  # read at call time, never at import
    if path is None:
        return _build({}, ENV_ONLY_SOURCE, env)
    source = os.fspath(path)
    return _build(_read_yaml(source), source, env)


def settings_from_mapping(data: Mapping[str, Any], *, source: str,
                          env: Mapping[str, str]) -> Settings:
    """Settings from an already parsed config (``source`` names it in errors)."""
    return _build(data, source, env)[0]


def _read_yaml(source: str) -> Any:
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text", source=source) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"invalid YAML{where}: {exc.problem or exc.context}",
                          source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from None


def _build(data: Any, source: str, env: Mapping[str, str]) -> tuple[Settings, list[str]]:
    scope = Scope(source)
    if data is None:
        data = {}  # an empty file
    if not isinstance(data, Mapping):
        raise scope.error(f"expected a mapping of sections ({', '.join(SECTIONS)}), "
                          f"got {describe(data)}")
    sections = to_mapping(scope, "", data)
    _check_sections(scope, sections)
    env = merged_env(scope.at("environment_variables"), sections.get("environment_variables"),
                     env)

    def section(name: str) -> Section:
        inner = scope.at(name)
        return Section(inner, to_mapping(inner, "", sections.get(name)), env)

    deployments = parse_model_list(scope, sections.get("model_list"), env)
    if not deployments:
        scope.note("no model_list entries: there is nothing to route to", "model_list")
    settings = Settings(
        source=source,
        deployments=deployments,
        router=parse_router(section("router_settings"), section("litellm_settings"),
                            {d.model_name for d in deployments}),
        litellm=parse_litellm(section("litellm_settings")),
        general=parse_general(section("general_settings")),
        server=parse_server(section("batchgate_settings")),
        queue=parse_queue(section("batchgate_settings")),
        files=parse_files(section("batchgate_settings")),
    )
    return apply_env_overrides(settings, env), scope.notes


def _check_sections(scope: Scope, sections: Mapping[str, Any]) -> None:
    """Unknown sections are noted, but one that looks like a misspelt known one is an error."""
    for name in sections:
        if name in SECTIONS:
            continue
        if name in UNSUPPORTED_SECTIONS:
            raise scope.error(UNSUPPORTED_SECTIONS[name], name)
        if name in IGNORED_SECTIONS:
            scope.note("ignored: batchgate does not use this LiteLLM section", name)
            continue
        guess = suggest(name, SECTIONS)
        if guess is not None:
            raise scope.error(f"unknown section; did you mean {guess!r}?", name)
        scope.note("unknown section, ignored", name)
