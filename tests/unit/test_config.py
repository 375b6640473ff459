"""Loading LiteLLM-style configs into Settings: what good configs turn into."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchgate.errors import ConfigError
from config.demo import DEMO_MODELS, demo_settings
from config.loader import check_config, load_settings, settings_from_mapping
from config.settings import (
    DEFAULT_AZURE_API_VERSION,
    DEFAULT_MAX_FALLBACKS,
    DEFAULT_NUM_RETRIES,
    DEFAULT_OPENAI_API_BASE,
    DEFAULT_PORT,
    Provider,
    Secret,
    Settings,
)

EXAMPLES = Path(__file__).parents[2] / "config" / "examples"
SHARED_EXAMPLES = Path(__file__).parents[3] / "shared" / "examples"
EXAMPLE_ENV = {
    "AZURE_API_KEY": "az-secret-value",
    "OPENAI_API_KEY": "sk-openai-secret",
    "BATCHGATE_EXAMPLE_MASTER_KEY": "sk-master-secret",
}


def load_yaml(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_settings(path, env or {})


def check_yaml(tmp_path: Path, text: str,
               env: dict[str, str] | None = None) -> tuple[Settings, list[str]]:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return check_config(path, env or {})


def check_config_mapping(tmp_path: Path,
                         mapping: dict[str, Any]) -> tuple[Settings, list[str]]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return check_config(path, {})


def one(model: str, **params: Any) -> dict[str, Any]:
    """A one-deployment config mapping."""
    return {"model_list": [{"model_name": "m", "litellm_params": {"model": model, **params}}]}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_example_loads_without_errors(path: Path) -> None:
    settings = load_settings(path, EXAMPLE_ENV)
    assert settings.deployments
    assert settings.source == str(path)


@pytest.mark.parametrize("name", ["litellm-config-local-runtimes.yaml",
                                  "litellm-config-ollama-keys.yaml"])
def test_shared_litellm_examples_load_unchanged_and_are_bundled_byte_for_byte(name: str) -> None:
    shared = SHARED_EXAMPLES / name
    if not shared.exists():
        pytest.skip(f"{shared} is not present")
    assert load_settings(shared, EXAMPLE_ENV).deployments
    assert (EXAMPLES / name).read_bytes() == shared.read_bytes()


def test_full_example_sets_every_section() -> None:
    settings, notes = check_config(EXAMPLES / "full.yaml", EXAMPLE_ENV)
    assert notes == []
    assert len(settings.groups()["gpt-4o-mini"]) == 2
    assert settings.router.fallbacks == {"gpt-4o-mini": ("llama3-70b", "llama3")}
    assert settings.router.default_fallbacks == ("llama3",)
    assert settings.resolve_group("gpt-3.5-turbo") == "gpt-4o-mini"
    assert settings.litellm.drop_params is True
    assert settings.general.master_key == Secret("sk-master-secret")
    assert settings.server.redis_url == "redis://localhost:6379/0"
    assert settings.groups()["llama3"][0].api_base == "http://localhost:11434/v1"


def test_seed_config_yields_two_openai_groups_at_their_urls_without_a_key() -> None:
    settings = load_settings(EXAMPLES / "seed.yaml", {})
    chat, = settings.groups()["gpt-3.5-turbo"]
    embed, = settings.groups()["text-embedding-ada-002"]
    assert list(settings.groups()) == ["gpt-3.5-turbo", "text-embedding-ada-002"]
    assert (chat.provider, chat.model) == (Provider.OPENAI, "vicuna-13b")
    assert chat.url("chat/completions") == "http://127.0.0.1:20080/v1/chat/completions"
    assert embed.url("embeddings") == "http://127.0.0.1:40080/v1/embeddings"
    assert chat.api_key is None
    assert embed.api_key is None
    assert chat.auth_headers() == {}


def test_azure_deployment_gets_deployment_url_api_version_and_api_key_header() -> None:
    settings = load_settings(EXAMPLES / "litellm-config-ollama-keys.yaml", EXAMPLE_ENV)
    azure, = settings.groups()["azure-gpt-3.5"]
    assert azure.provider is Provider.AZURE
    assert azure.rpm == 6
    assert azure.url("chat/completions") == (
        "https://my-endpoint.openai.azure.com/openai/deployments/azure-gpt-3.5/"
        "chat/completions?api-version=2023-07-01-preview")
    assert azure.auth_headers() == {"api-key": "az-secret-value"}
    assert settings.general.master_key == Secret("sk-1234")


@pytest.mark.parametrize("version", ["2024-10-21", '"2024-10-21"'])
def test_azure_api_version_accepts_unquoted_dates(tmp_path: Path, version: str) -> None:
    settings = load_yaml(tmp_path, f"""
        model_list:
          - model_name: a
            litellm_params: {{model: azure/dep, api_base: "https://x.azure.com",
                              api_key: k, api_version: {version}}}
    """)
    assert settings.deployments[0].api_version == "2024-10-21"


def test_azure_api_version_defaults_when_not_given() -> None:
    settings = settings_from_mapping(one("azure/dep", api_base="https://x", api_key="k"),
                                     source="t", env={})
    assert settings.deployments[0].api_version == DEFAULT_AZURE_API_VERSION


@pytest.mark.parametrize(("given", "expected"), [
    ("http://box:11434", "http://box:11434/v1"),
    ("http://box:11434/", "http://box:11434/v1"),
    ("http://box:11434/v1", "http://box:11434/v1"),
    ("http://box:11434/v1/", "http://box:11434/v1"),
    (None, "http://localhost:11434/v1"),
])
def test_ollama_api_base_points_at_its_openai_compatible_v1_api(
        given: str | None, expected: str) -> None:
    params = {} if given is None else {"api_base": given}
    deployment, = settings_from_mapping(one("ollama/llama3", **params), source="t",
                                        env={}).deployments
    assert (deployment.provider, deployment.model) == (Provider.OLLAMA, "llama3")
    assert deployment.url("chat/completions") == f"{expected}/chat/completions"


def test_openai_prefix_without_api_base_uses_the_openai_default() -> None:
    deployment, = settings_from_mapping(one("openai/gpt-4o"), source="t", env={}).deployments
    assert deployment.api_base == DEFAULT_OPENAI_API_BASE


def test_model_keeps_every_slash_after_the_provider_prefix() -> None:
    mapping = one("hosted_vllm/meta-llama/Llama-3-8B", api_base="http://v:8000/v1")
    deployment, = settings_from_mapping(mapping, source="t", env={}).deployments
    assert deployment.provider is Provider.HOSTED_VLLM
    assert deployment.model == "meta-llama/Llama-3-8B"


def test_base_url_is_accepted_as_api_base() -> None:
    mapping = one("openai/x", base_url="http://h:1/v1/")
    assert settings_from_mapping(mapping, source="t", env={}).deployments[0].api_base == \
        "http://h:1/v1"


def test_custom_llm_provider_supplies_the_provider_of_an_unprefixed_model() -> None:
    mapping = one("org/model", custom_llm_provider="openai", api_base="http://h/v1")
    deployment, = settings_from_mapping(mapping, source="t", env={}).deployments
    assert (deployment.provider, deployment.model) == (Provider.OPENAI, "org/model")


def test_os_environ_references_are_resolved_from_the_env_mapping() -> None:
    mapping = one("openai/x", api_base="os.environ/BASE", api_key="os.environ/KEY",
                  rpm="os.environ/RPM", extra_body={"user": "os.environ/WHO"})
    env = {"BASE": "http://h:9/v1", "KEY": "sk-from-env", "RPM": "6", "WHO": "ingest"}
    deployment, = settings_from_mapping(mapping, source="t", env=env).deployments
    assert deployment.api_base == "http://h:9/v1"
    assert deployment.api_key == Secret("sk-from-env")
    assert deployment.rpm == 6
    assert deployment.default_params == {"user": "ingest"}


def test_env_defaults_to_os_environ_read_at_call_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model_list:\n  - model_name: m\n"
                    "    litellm_params: {model: openai/x, api_key: os.environ/LATE_KEY}\n")
    monkeypatch.setenv("LATE_KEY", "sk-late")
    monkeypatch.setenv("BATCHGATE_PORT", "4567")
    settings = load_settings(path)
    assert settings.deployments[0].api_key == Secret("sk-late")
    assert settings.server.port == 4567


def test_environment_variables_section_feeds_references_and_leaves_os_environ_alone(
        tmp_path: Path) -> None:
    settings = load_yaml(tmp_path, """
        environment_variables: {LOCAL_KEY: sk-in-file, BATCHGATE_PORT: 4100}
        model_list:
          - model_name: m
            litellm_params: {model: openai/x, api_key: os.environ/LOCAL_KEY}
    """, env={"LOCAL_KEY": "sk-from-process"})
    assert settings.deployments[0].api_key == Secret("sk-in-file")
    assert settings.server.port == 4100
    assert "LOCAL_KEY" not in os.environ


@pytest.mark.parametrize("written", ["None", "none", '""', "null", "~", "''"])
def test_api_key_spellings_of_nothing_mean_no_key(tmp_path: Path, written: str) -> None:
    settings = load_yaml(tmp_path, f"""
        model_list:
          - model_name: m
            litellm_params: {{model: openai/x, api_base: "http://h/v1", api_key: {written}}}
    """)
    assert settings.deployments[0].api_key is None


def test_secrets_never_show_in_repr_of_secret_deployment_or_settings() -> None:
    mapping = {**one("openai/x", api_key="sk-very-secret-1"),
               "general_settings": {"master_key": "sk-master-secret-2"}}
    settings = settings_from_mapping(mapping, source="t", env={})
    assert "sk-very-secret-1" not in repr(settings.deployments[0].api_key)
    assert "sk-very-secret-1" not in str(settings.deployments[0].api_key)
    for text in (repr(settings), str(settings), repr(settings.deployments)):
        assert "sk-very-secret-1" not in text
        assert "sk-master-secret-2" not in text


@pytest.mark.parametrize("value", ["6", 6, "+6", " 6 ", 6.0])
def test_integer_fields_accept_quoted_digits(value: object) -> None:
    deployment, = settings_from_mapping(one("openai/x", rpm=value), source="t",
                                        env={}).deployments
    assert deployment.rpm == 6


def test_limits_on_the_entry_apply_and_litellm_params_wins_when_both_set() -> None:
    mapping = {"model_list": [{"model_name": "m", "rpm": 10, "tpm": 1000,
                               "max_parallel_requests": 4,
                               "litellm_params": {"model": "openai/x", "rpm": 20}}]}
    settings = settings_from_mapping(mapping, source="t", env={})
    assert (settings.deployments[0].rpm, settings.deployments[0].tpm) == (20, 1000)
    assert settings.deployments[0].max_parallel_requests == 4


def test_numeric_litellm_params_fill_the_deployment() -> None:
    mapping = one("openai/x", timeout=30, weight=2.5, order=2, stream_timeout=5)
    deployment, = settings_from_mapping(mapping, source="t", env={}).deployments
    assert (deployment.timeout, deployment.weight, deployment.order) == (30.0, 2.5, 2)


def test_openai_request_params_become_defaults_with_extra_body_flattened() -> None:
    mapping = one("openai/x", temperature=0.1, max_tokens=64, stop=["\n"],
                  extra_body={"top_k": 5})
    deployment, = settings_from_mapping(mapping, source="t", env={}).deployments
    assert deployment.default_params == {"temperature": 0.1, "max_tokens": 64, "stop": ["\n"],
                                         "top_k": 5}


def test_litellm_only_and_unknown_params_are_accepted_and_reported_as_notes(
        tmp_path: Path) -> None:
    settings, notes = check_yaml(tmp_path, """
        model_list:
          - model_name: m
            litellm_params:
              model: openai/x
              max_retries: 3
              input_cost_per_token: 0.001
              aws_secret_access_key: os.environ/NOT_SET_AND_NOT_NEEDED
              zebra_mode: true
    """)
    assert settings.deployments[0].default_params == {}
    text = "\n".join(notes)
    assert "model_list[0] (m): litellm_params.max_retries: ignored" in text
    assert "litellm_params.input_cost_per_token: ignored" in text
    assert "litellm_params.zebra_mode: unknown key, ignored" in text
    assert all(note.startswith(str(tmp_path / "config.yaml")) for note in notes)


def test_unknown_and_litellm_only_sections_and_settings_are_noted_not_errors(
        tmp_path: Path) -> None:
    _, notes = check_yaml(tmp_path, """
        model_list: [{model_name: m, litellm_params: {model: openai/x, api_key: k}}]
        guardrails: []
        my_extension: {a: 1}
        router_settings: {redis_host: localhost, enable_pre_call_checks: true}
        litellm_settings: {success_callback: [langfuse], cache: true}
        general_settings: {database_url: "postgres://x", store_model_in_db: true}
    """)
    text = "\n".join(notes)
    for fragment in ("guardrails: ignored", "my_extension: unknown section, ignored",
                     "router_settings: redis_host: ignored",
                     "litellm_settings: success_callback: ignored",
                     "general_settings: database_url: ignored"):
        assert fragment in text


def test_derived_ids_are_stable_and_identical_entries_get_numbered_suffixes() -> None:
    entry = {"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": "http://h"}}
    mapping = {"model_list": [entry, entry, entry]}
    first = settings_from_mapping(mapping, source="a", env={})
    second = settings_from_mapping(mapping, source="b", env={})
    ids = [d.id for d in first.deployments]
    assert ids == [d.id for d in second.deployments]
    assert len(ids[0]) == 16
    assert ids[1:] == [f"{ids[0]}-2", f"{ids[0]}-3"]


def test_derived_id_changes_with_the_deployments_identity() -> None:
    a = settings_from_mapping(one("openai/x", api_base="http://h1"), source="t", env={})
    b = settings_from_mapping(one("openai/x", api_base="http://h2"), source="t", env={})
    assert a.deployments[0].id != b.deployments[0].id


def test_explicit_model_info_id_is_the_deployment_id() -> None:
    mapping = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"},
                               "model_info": {"id": "primary", "mode": "chat"}}]}
    deployment, = settings_from_mapping(mapping, source="t", env={}).deployments
    assert deployment.id == "primary"
    assert deployment.model_info == {"id": "primary", "mode": "chat"}


def two_groups(**router: Any) -> dict[str, Any]:
    return {"model_list": [{"model_name": g, "litellm_params": {"model": f"openai/{g}"}}
                           for g in ("a", "b", "c")],
            "router_settings": router}


def test_fallbacks_in_litellm_shape_become_a_group_to_groups_mapping() -> None:
    router = settings_from_mapping(two_groups(
        fallbacks=[{"a": ["b", "c"]}, {"b": ["c"]}],
        context_window_fallbacks=[{"a": ["c"]}],
        content_policy_fallbacks=[{"b": "a"}],
        default_fallbacks=["c"],
    ), source="t", env={}).router
    assert router.fallbacks == {"a": ("b", "c"), "b": ("c",)}
    assert router.context_window_fallbacks == {"a": ("c",)}
    assert router.content_policy_fallbacks == {"b": ("a",)}
    assert router.default_fallbacks == ("c",)


def test_router_scalars_are_read() -> None:
    router = settings_from_mapping(two_groups(
        routing_strategy="least-busy", num_retries="3", timeout=12, allowed_fails=1,
        cooldown_time=60, retry_after=0.5,
    ), source="t", env={}).router
    assert (router.routing_strategy, router.num_retries, router.timeout) == ("least-busy", 3, 12)
    assert (router.allowed_fails, router.cooldown_time, router.retry_after) == (1, 60.0, 0.5)


def test_router_keys_under_litellm_settings_apply_and_router_settings_wins() -> None:
    mapping = {**two_groups(num_retries=5),
               "litellm_settings": {"num_retries": 1, "fallbacks": [{"a": ["b"]}],
                                    "request_timeout": 30, "drop_params": True}}
    settings = settings_from_mapping(mapping, source="t", env={})
    assert settings.router.num_retries == 5
    assert settings.router.fallbacks == {"a": ("b",)}
    assert settings.litellm.request_timeout == 30.0
    assert settings.litellm.drop_params is True
    assert settings.timeout_for(settings.deployments[0]) == 30.0


def test_model_group_alias_resolves_through_settings() -> None:
    settings = settings_from_mapping(two_groups(
        model_group_alias={"gpt-4": "a", "hidden-one": {"model": "b", "hidden": True}},
    ), source="t", env={})
    assert settings.router.model_group_alias == {"gpt-4": "a", "hidden-one": "b"}
    assert settings.resolve_group("gpt-4") == "a"
    assert settings.resolve_group("hidden-one") == "b"
    assert settings.resolve_group("a") == "a"
    assert settings.resolve_group("nope") is None


def test_fallbacks_may_name_an_alias_and_store_its_group() -> None:
    router = settings_from_mapping(two_groups(
        model_group_alias={"big": "c"}, fallbacks=[{"a": ["big"]}]), source="t", env={}).router
    assert router.fallbacks == {"a": ("c",)}


def test_batchgate_settings_section_fills_server_settings() -> None:
    mapping = {**one("openai/x"), "batchgate_settings": {
        "redis_url": "redis://r:6379/1", "key_prefix": "bg", "max_request_bytes": "1024",
        "connect_timeout": 2, "host": "0.0.0.0", "port": 8080}}
    server = settings_from_mapping(mapping, source="t", env={}).server
    assert (server.redis_url, server.key_prefix, server.max_request_bytes) == (
        "redis://r:6379/1", "bg", 1024)
    assert (server.connect_timeout, server.host, server.port) == (2.0, "0.0.0.0", 8080)


def test_batchgate_environment_variables_override_the_file() -> None:
    mapping = {**one("openai/x"),
               "batchgate_settings": {"redis_url": "redis://file/0", "port": 1},
               "general_settings": {"master_key": "sk-file"},
               "router_settings": {"num_retries": 1}}
    env = {"BATCHGATE_REDIS_URL": "redis://env/0", "BATCHGATE_KEY_PREFIX": "pfx",
           "BATCHGATE_MAX_REQUEST_BYTES": "2048", "BATCHGATE_CONNECT_TIMEOUT": "1.5",
           "BATCHGATE_HOST": "0.0.0.0", "BATCHGATE_PORT": "9000",
           "BATCHGATE_MASTER_KEY": "sk-env", "BATCHGATE_REQUEST_TIMEOUT": "45",
           "BATCHGATE_NUM_RETRIES": "4"}
    settings = settings_from_mapping(mapping, source="t", env=env)
    assert settings.server.redis_url == "redis://env/0"
    assert (settings.server.key_prefix, settings.server.max_request_bytes) == ("pfx", 2048)
    assert (settings.server.connect_timeout, settings.server.host) == (1.5, "0.0.0.0")
    assert settings.server.port == 9000
    assert settings.general.master_key == Secret("sk-env")
    assert settings.litellm.request_timeout == 45.0
    assert settings.router.num_retries == 4


@pytest.mark.parametrize(("env", "expected"), [
    ({"REDIS_URL": "redis://plain/0"}, "redis://plain/0"),
    ({"REDIS_URL": "redis://plain/0", "BATCHGATE_REDIS_URL": "redis://bg/0"}, "redis://bg/0"),
    ({"REDIS_URL": "redis://plain/0", "BATCHGATE_REDIS_URL": ""}, "redis://plain/0"),
    ({}, None),
])
def test_plain_redis_url_applies_only_when_batchgate_redis_url_is_unset(
        env: dict[str, str], expected: str | None) -> None:
    assert settings_from_mapping({}, source="t", env=env).server.redis_url == expected


def test_empty_environment_variables_count_as_unset() -> None:
    env = {"BATCHGATE_PORT": "", "BATCHGATE_MASTER_KEY": ""}
    mapping = {**one("openai/x"), "general_settings": {"master_key": "sk-file"}}
    settings = settings_from_mapping(mapping, source="t", env=env)
    assert settings.server.port == DEFAULT_PORT
    assert settings.general.master_key == Secret("sk-file")


def test_no_path_gives_environment_only_settings() -> None:
    settings = load_settings(None, {"BATCHGATE_PORT": "4001"})
    assert (settings.source, settings.deployments, settings.server.port) == ("<env>", (), 4001)


def test_an_empty_file_loads_with_a_note_that_nothing_is_routed(tmp_path: Path) -> None:
    settings, notes = check_yaml(tmp_path, "# nothing yet\n")
    assert settings.deployments == ()
    assert any("no model_list entries" in note for note in notes)


def test_master_key_spelled_none_leaves_the_api_open_and_says_so(tmp_path: Path) -> None:
    settings, notes = check_yaml(tmp_path, """
        model_list: [{model_name: m, litellm_params: {model: openai/x, api_key: k}}]
        general_settings: {master_key: None}
    """)
    assert settings.general.master_key is None
    assert any("general_settings: master_key: no key" in note for note in notes)


def test_demo_settings_serve_every_demo_group_from_the_fake_upstream() -> None:
    base = "http://127.0.0.1:8999/v1"
    settings = demo_settings(base, master_key="sk-demo")
    groups = settings.groups()
    assert set(groups) == {"gpt-4o-mini", "llama3", "text-embedding-3-small",
                           "omni-moderation-latest"}
    assert len(groups["gpt-4o-mini"]) == 2
    assert len({d.id for d in settings.deployments}) == len(settings.deployments)
    assert all(d.url("embeddings") == f"{base}/embeddings" for d in settings.deployments)
    assert {d.model for d in settings.deployments} <= set(DEMO_MODELS)
    assert settings.general.master_key == Secret("sk-demo")
    assert settings.source == "<demo>"


def test_demo_settings_without_master_key_ignore_the_process_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHGATE_MASTER_KEY", "sk-ambient")
    assert demo_settings("http://127.0.0.1:1/v1").general.master_key is None
    with_env = demo_settings("http://127.0.0.1:1/v1", env={"BATCHGATE_PORT": "4100"})
    assert with_env.server.port == 4100


def test_check_config_notes_missing_keys_stray_api_version_and_shadowed_limits(
        tmp_path: Path) -> None:
    _, notes = check_yaml(tmp_path, """
        model_list:
          - model_name: cloud
            litellm_params: {model: openai/gpt-4o, api_version: "2024-01-01"}
          - model_name: local
            rpm: 10
            litellm_params: {model: openai/x, api_base: "http://h/v1", rpm: 20}
    """)
    text = "\n".join(notes)
    assert "model_list[0] (cloud): litellm_params.api_key: no api_key" in text
    assert "model_list[0] (cloud): litellm_params.api_version: ignored" in text
    assert "model_list[1] (local): rpm: ignored: litellm_params.rpm is also set and wins" in text


def test_router_defaults_follow_litellm() -> None:
    router = settings_from_mapping(two_groups(), source="t", env={}).router
    assert router.num_retries == DEFAULT_NUM_RETRIES == 2
    assert router.max_fallbacks == DEFAULT_MAX_FALLBACKS == 5
    assert (router.retry_policy, router.model_group_retry_policy) == ({}, {})
    assert router.disable_cooldowns is False


def test_retry_policies_max_fallbacks_and_disable_cooldowns_are_read(tmp_path: Path) -> None:
    settings, notes = check_config_mapping(tmp_path, two_groups(
        retry_policy={"RateLimitErrorRetries": 5, "BadRequestErrorRetries": "0",
                      "TimeoutErrorRetries": None},
        model_group_retry_policy={"a": {"InternalServerErrorRetries": 1},
                                  "big": {"AuthenticationErrorRetries": 2}},
        model_group_alias={"big": "c"},
        max_fallbacks=2, disable_cooldowns="true"))
    router = settings.router
    assert router.retry_policy == {"RateLimitErrorRetries": 5, "BadRequestErrorRetries": 0}
    assert router.model_group_retry_policy == {"a": {"InternalServerErrorRetries": 1},
                                               "c": {"AuthenticationErrorRetries": 2}}
    assert (router.max_fallbacks, router.disable_cooldowns) == (2, True)
    assert not any("ignored" in note for note in notes)


@pytest.mark.parametrize(("router", "fragment"), [
    ({"retry_policy": {"RateLimitRetries": 1}},
     "retry_policy.RateLimitRetries: unknown key; did you mean 'RateLimitErrorRetries'?"),
    ({"retry_policy": {"Whatever": 1}}, "retry_policy.Whatever: unknown key; expected one of"),
    ({"retry_policy": {"TimeoutErrorRetries": -1}},
     "retry_policy.TimeoutErrorRetries: must not be negative"),
    ({"retry_policy": {"TimeoutErrorRetries": "many"}},
     "retry_policy.TimeoutErrorRetries: expected an integer"),
    ({"retry_policy": [1]}, "retry_policy: expected a mapping"),
    ({"model_group_retry_policy": {"ghost": {"TimeoutErrorRetries": 1}}},
     "model_group_retry_policy.ghost: 'ghost' is not a model_name in model_list"),
    ({"model_group_retry_policy": {"a": {"TimeoutErrorRetries": 1.5}}},
     "model_group_retry_policy.a.TimeoutErrorRetries: expected an integer, got 1.5"),
    ({"model_group_retry_policy": {"a": 3}}, "model_group_retry_policy.a: expected a mapping"),
    ({"model_group_retry_policy": {"a": {}, "big": {}}, "model_group_alias": {"big": "a"}},
     "model_group_retry_policy.big: a retry policy for 'a' is given twice"),
    ({"max_fallbacks": -1}, "max_fallbacks: must not be negative"),
    ({"max_fallbacks": "lots"}, "max_fallbacks: expected an integer"),
    ({"disable_cooldowns": 2}, "disable_cooldowns: expected true or false, got 2"),
])
def test_bad_retry_and_fallback_settings_name_the_field(router: dict[str, Any],
                                                        fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(two_groups(**router), source="t", env={})
    assert f"t: router_settings: {fragment}" in str(caught.value)


def sized(model_info: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"model_name": "e",
                             "litellm_params": {"model": "openai/e", **params}}
    if model_info is not None:
        entry["model_info"] = model_info
    return {"model_list": [entry]}


def test_size_limits_default_to_none() -> None:
    d, = settings_from_mapping(sized(), source="t", env={}).deployments
    assert (d.max_input_tokens, d.max_inputs_per_request, d.max_tokens_per_request) == (
        None, None, None)


def test_size_limits_are_read_from_model_info_and_model_info_passes_through() -> None:
    info = {"max_input_tokens": 8191, "max_inputs_per_request": "64",
            "max_tokens_per_request": 100_000, "mode": "embedding"}
    d, = settings_from_mapping(sized(info), source="t", env={}).deployments
    assert (d.max_input_tokens, d.max_inputs_per_request, d.max_tokens_per_request) == (
        8191, 64, 100_000)
    assert d.model_info == info


def test_size_limits_in_litellm_params_win_over_model_info_with_a_note(tmp_path: Path) -> None:
    mapping = sized({"max_input_tokens": 8191}, max_input_tokens=512, max_inputs_per_request=32,
                    max_tokens_per_request=4096)
    settings, notes = check_config_mapping(tmp_path, mapping)
    d, = settings.deployments
    assert (d.max_input_tokens, d.max_inputs_per_request, d.max_tokens_per_request) == (
        512, 32, 4096)
    assert d.default_params == {}
    assert any("model_info.max_input_tokens: ignored: litellm_params.max_input_tokens is also "
               "set and wins" in note for note in notes)


@pytest.mark.parametrize(("mapping", "fragment"), [
    (sized({"max_input_tokens": 0}), "model_info.max_input_tokens: must be at least 1"),
    (sized({"max_inputs_per_request": "x"}),
     "model_info.max_inputs_per_request: expected an integer, got 'x'"),
    (sized(max_tokens_per_request=-5), "litellm_params.max_tokens_per_request: must be at least 1"),
    (sized(max_input_tokens=1.5), "litellm_params.max_input_tokens: expected an integer"),
    (sized(max_inputs_per_request=True),
     "litellm_params.max_inputs_per_request: expected an integer, got true"),
])
def test_bad_size_limits_name_the_entry_and_field(mapping: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(mapping, source="t", env={})
    assert f"t: model_list[0] (e): {fragment}" in str(caught.value)
