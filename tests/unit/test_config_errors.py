"""Every way a config can be wrong ends in one ConfigError naming file, entry and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchgate.errors import ConfigError
from config.loader import load_settings, settings_from_mapping


def load_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env or {})
    return caught.value


def entry_yaml(params: str, extra: str = "", name: str = "m") -> str:
    """A one-entry model_list whose litellm_params are ``params`` (a YAML flow mapping body)."""
    return f"model_list:\n  - model_name: {name}\n    litellm_params: {{{params}}}\n{extra}"


# (id, config text, [fragments the message must hold, in order])
ENTRY = "model_list[0] (m)"
CASES = [
    ("yaml-syntax", "model_list:\n  - model_name: m\n    litellm_params: {model: [\n",
     ["invalid YAML at line"]),
    ("top-level-list", "- model_name: m\n", ["expected a mapping of sections", "got a list"]),
    ("model-list-mapping", "model_list: {model_name: m}\n",
     ["model_list: expected a list, got a mapping"]),
    ("entry-not-mapping", "model_list: [just-a-name]\n",
     ["model_list[0]: expected a mapping with model_name and litellm_params"]),
    ("missing-model-name", "model_list: [{litellm_params: {model: openai/x}}]\n",
     ["model_list[0]: model_name: missing model_name"]),
    ("model-name-not-string", "model_list: [{model_name: [a], litellm_params: {model: openai/x}}]",
     ["model_list[0]: model_name: expected a string"]),
    ("missing-litellm-params", "model_list: [{model_name: m}]\n",
     [ENTRY, "litellm_params: missing litellm_params"]),
    ("litellm-params-not-mapping", "model_list: [{model_name: m, litellm_params: openai/x}]\n",
     [ENTRY, "litellm_params: expected a mapping"]),
    ("missing-model", entry_yaml("api_base: http://h/v1"),
     [ENTRY, "litellm_params.model: missing model"]),
    ("unknown-prefix", entry_yaml("model: bedrock/claude"),
     [ENTRY, "litellm_params.model: unknown provider prefix 'bedrock/'",
      "openai/, azure/, hosted_vllm/, ollama/"]),
    ("no-prefix", entry_yaml("model: gpt-4"),
     [ENTRY, "litellm_params.model: model 'gpt-4' has no provider prefix",
      "openai/, azure/, hosted_vllm/, ollama/"]),
    ("prefix-only", entry_yaml("model: openai/"), [ENTRY, "names no model after openai/"]),
    ("unknown-custom-provider", entry_yaml("model: x, custom_llm_provider: bedrock"),
     [ENTRY, "litellm_params.custom_llm_provider: unknown provider 'bedrock'"]),
    ("rpm-not-int", entry_yaml("model: openai/x, rpm: abc"),
     [ENTRY, "litellm_params.rpm: expected an integer, got 'abc'"]),
    ("rpm-fraction", entry_yaml("model: openai/x, rpm: 1.5"),
     [ENTRY, "litellm_params.rpm: expected an integer, got 1.5"]),
    ("rpm-bool", entry_yaml("model: openai/x, rpm: true"),
     [ENTRY, "litellm_params.rpm: expected an integer, got true"]),
    ("rpm-negative", entry_yaml("model: openai/x, rpm: -5"),
     [ENTRY, "litellm_params.rpm: must be at least 1, got -5"]),
    ("rpm-zero", entry_yaml("model: openai/x, rpm: 0"),
     [ENTRY, "litellm_params.rpm: must be at least 1, got 0"]),
    ("tpm-on-entry", entry_yaml("model: openai/x", "    tpm: lots\n"),
     [ENTRY, "tpm: expected an integer, got 'lots'"]),
    ("weight-zero", entry_yaml("model: openai/x, weight: 0"),
     [ENTRY, "litellm_params.weight: must be greater than 0"]),
    ("order-zero", entry_yaml("model: openai/x, order: 0"),
     [ENTRY, "litellm_params.order: must be at least 1"]),
    ("timeout-negative", entry_yaml("model: openai/x, timeout: -1"),
     [ENTRY, "litellm_params.timeout: must be greater than 0"]),
    ("timeout-text", entry_yaml("model: openai/x, timeout: soon"),
     [ENTRY, "litellm_params.timeout: expected a number, got 'soon'"]),
    ("env-ref-unset", entry_yaml("model: openai/x, api_key: os.environ/MISSING_KEY"),
     [ENTRY, "litellm_params.api_key: environment variable MISSING_KEY is not set"]),
    ("env-ref-unset-nested", entry_yaml("model: openai/x, extra_body: {a: [os.environ/NOPE]}"),
     [ENTRY, "litellm_params.extra_body.a[0]: environment variable NOPE is not set"]),
    ("entry-key-typo", "model_list: [{model_name: m, litelm_params: {model: openai/x}}]\n",
     [ENTRY, "litelm_params: unknown key; did you mean 'litellm_params'?"]),
    ("entry-key-unknown", "model_list: [{model_name: m, litellm_params: {model: openai/x},"
     " zzz: 1}]\n", [ENTRY, "zzz: unknown key; expected one of: model_name, litellm_params"]),
    ("param-typo", entry_yaml("model: openai/x, api_bse: http://h/v1"),
     [ENTRY, "litellm_params.api_bse: unknown key; did you mean 'api_base'?"]),
    ("vllm-without-base", entry_yaml("model: hosted_vllm/llama"),
     [ENTRY, "litellm_params.api_base: hosted_vllm/ deployments need api_base"]),
    ("azure-without-base", entry_yaml("model: azure/dep, api_key: k"),
     [ENTRY, "litellm_params.api_base: azure/ deployments need api_base"]),
    ("base-not-url", entry_yaml("model: openai/x, api_base: 'localhost:8000/v1'"),
     [ENTRY, "litellm_params.api_base: expected an http:// or https:// URL"]),
    ("base-url-disagrees", entry_yaml("model: openai/x, api_base: 'http://a', base_url: 'http://b'"),
     [ENTRY, "litellm_params.base_url: api_base and base_url disagree"]),
    ("duplicate-explicit-id",
     "model_list:\n"
     "  - {model_name: a, litellm_params: {model: openai/x}, model_info: {id: same}}\n"
     "  - {model_name: b, litellm_params: {model: openai/y}, model_info: {id: same}}\n",
     ["model_list[1] (b): model_info.id: duplicate id 'same'", "model_list[0] (a)"]),
    ("model-info-not-mapping",
     "model_list: [{model_name: m, litellm_params: {model: openai/x}, model_info: [1]}]\n",
     [ENTRY, "model_info: expected a mapping"]),
    ("fallback-unknown-target",
     entry_yaml("model: openai/x", "router_settings: {fallbacks: [{m: [gpt-9]}]}\n"),
     ["router_settings: fallbacks[0].m[0]: 'gpt-9' is not a model_name in model_list"]),
    ("fallback-unknown-source",
     entry_yaml("model: openai/x", "router_settings: {fallbacks: [{gpt-9: [m]}]}\n"),
     ["router_settings: fallbacks[0].gpt-9: 'gpt-9' is not a model_name in model_list"]),
    ("fallback-in-litellm-settings",
     entry_yaml("model: openai/x", "litellm_settings: {context_window_fallbacks: [{m: [x]}]}\n"),
     ["litellm_settings: context_window_fallbacks[0].m[0]: 'x' is not a model_name"]),
    ("fallbacks-not-list",
     entry_yaml("model: openai/x", "router_settings: {fallbacks: m}\n"),
     ["router_settings: fallbacks: expected a list like [{group: [fallback, ...]}]"]),
    ("default-fallback-unknown",
     entry_yaml("model: openai/x", "router_settings: {default_fallbacks: [m, ghost]}\n"),
     ["router_settings: default_fallbacks[1]: 'ghost' is not a model_name"]),
    ("alias-unknown-target",
     entry_yaml("model: openai/x", "router_settings: {model_group_alias: {gpt-4: ghost}}\n"),
     ["router_settings: model_group_alias.gpt-4: alias target 'ghost' is not a model_name"]),
    ("alias-mapping-unknown-target",
     entry_yaml("model: openai/x",
                "router_settings: {model_group_alias: {gpt-4: {model: ghost, hidden: true}}}\n"),
     ["router_settings: model_group_alias.gpt-4.model: alias target 'ghost'"]),
    ("routing-strategy",
     entry_yaml("model: openai/x", "router_settings: {routing_strategy: round-robin}\n"),
     ["router_settings: routing_strategy: unknown routing strategy 'round-robin'",
      "simple-shuffle, least-busy, usage-based-routing"]),
    ("router-key-typo", entry_yaml("model: openai/x", "router_settings: {num_retry: 2}\n"),
     ["router_settings: num_retry: unknown key; did you mean 'num_retries'?"]),
    ("router-not-mapping", entry_yaml("model: openai/x", "router_settings: [1]\n"),
     ["router_settings: expected a mapping, got a list"]),
    ("num-retries-negative", entry_yaml("model: openai/x", "router_settings: {num_retries: -1}\n"),
     ["router_settings: num_retries: must not be negative, got -1"]),
    ("drop-params-not-bool", entry_yaml("model: openai/x", "litellm_settings: {drop_params: 3}\n"),
     ["litellm_settings: drop_params: expected true or false, got 3"]),
    ("section-typo", "model_lists: []\n",
     ["model_lists: unknown section; did you mean 'model_list'?"]),
    ("include", "include: [other.yaml]\n", ["include: batchgate does not support include"]),
    ("master-key-env-unset",
     entry_yaml("model: openai/x", "general_settings: {master_key: os.environ/NO_MASTER}\n"),
     ["general_settings: master_key: environment variable NO_MASTER is not set"]),
    ("server-unknown-key", entry_yaml("model: openai/x", "batchgate_settings: {prot: 1}\n"),
     ["batchgate_settings: prot: unknown key; did you mean 'port'?"]),
    ("server-port-range", entry_yaml("model: openai/x", "batchgate_settings: {port: 70000}\n"),
     ["batchgate_settings: port: must be at most 65535, got 70000"]),
    ("server-redis-scheme",
     entry_yaml("model: openai/x", "batchgate_settings: {redis_url: 'http://r'}\n"),
     ["batchgate_settings: redis_url: expected a URL starting with redis://"]),
    ("environment-variables-nested",
     entry_yaml("model: openai/x", "environment_variables: {A: {b: 1}}\n"),
     ["environment_variables: environment_variables.A: expected a string or number"]),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_raises_one_config_error_naming_file_entry_and_field(
        tmp_path: Path, text: str, fragments: list[str]) -> None:
    error = load_error(tmp_path, text)
    message = str(error)
    assert message.startswith(f"{tmp_path / 'config.yaml'}: ")
    assert error.source == str(tmp_path / "config.yaml")
    position = 0
    for fragment in fragments:
        found = message.find(fragment, position)
        assert found >= 0, f"{fragment!r} not in order in {message!r}"
        position = found + len(fragment)


def test_config_error_carries_entry_and_field_separately(tmp_path: Path) -> None:
    error = load_error(tmp_path, entry_yaml("model: openai/x, rpm: abc", name="azure-gpt-3.5"))
    assert (error.entry, error.field) == ("model_list[0] (azure-gpt-3.5)", "litellm_params.rpm")
    assert error.param == "litellm_params.rpm"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, "model_list:\n  - model_name: m\n   bad: indent\n")
    assert "line 3" in str(error)


def test_missing_file_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the file"):
        load_settings(tmp_path / "nope.yaml", {})


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path, {})


def test_non_utf8_file_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"model_list: [\xff]\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(path, {})


def test_errors_about_credentials_never_echo_them(tmp_path: Path) -> None:
    error = load_error(tmp_path, entry_yaml("model: openai/x, api_key: 123456789"))
    assert "123456789" not in str(error)
    assert "litellm_params.api_key: expected a string" in str(error)
    error = load_error(tmp_path, entry_yaml(
        "model: openai/x", "batchgate_settings: {redis_url: 'http://u:hunter2@r'}\n"))
    assert "hunter2" not in str(error)
    error = load_error(tmp_path, entry_yaml("model: openai/x, api_base: 'ftp://u:pw9@h'"))
    assert "pw9" not in str(error)


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("BATCHGATE_PORT", "abc", "expected an integer, got 'abc'"),
    ("BATCHGATE_PORT", "99999", "must be at most 65535"),
    ("BATCHGATE_MAX_REQUEST_BYTES", "-1", "must be at least 1"),
    ("BATCHGATE_CONNECT_TIMEOUT", "0", "must be greater than 0"),
    ("BATCHGATE_REQUEST_TIMEOUT", "later", "expected a number"),
    ("BATCHGATE_NUM_RETRIES", "x", "expected an integer"),
    ("BATCHGATE_REDIS_URL", "localhost:6379", "expected a URL starting with redis://"),
    ("REDIS_URL", "localhost:6379", "expected a URL starting with redis://"),
    ("BATCHGATE_KEY_PREFIX", "   ", "must not be blank"),
])
def test_bad_environment_override_names_the_variable(name: str, value: str,
                                                      fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({}, source="config.yaml", env={name: value})
    assert (caught.value.source, caught.value.field) == ("environment", name)
    assert str(caught.value).startswith(f"environment: {name}: {fragment}")


@pytest.mark.parametrize(("written", "meant"), [
    ("rmp", "rpm"), ("tmp", "tpm"), ("api_bse", "api_base"), ("api_kye", "api_key"),
    ("max_parallel_request", "max_parallel_requests"), ("wieght", "weight"),
])
def test_a_misspelt_litellm_param_is_an_error_not_a_silent_default(
        tmp_path: Path, written: str, meant: str) -> None:
    error = load_error(tmp_path, entry_yaml(f"model: openai/x, {written}: 60"))
    assert f"litellm_params.{written}: unknown key; did you mean {meant!r}?" in str(error)
