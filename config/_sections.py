"""The settings sections beside ``model_list``: router, litellm, general and batchgate's own."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from config._client_side import LITELLM_SWITCH, SECTION_KEY, parse_client_side
from config._fields import (
    Scope,
    Section,
    check_keys,
    describe,
    join,
    to_bool,
    to_int,
    to_mapping,
    to_str_list,
)
from config._files import FILES_KEYS
from config._queue import QUEUE_KEYS
from config.settings import (
    DEFAULT_ALLOWED_FAILS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_COOLDOWN_TIME,
    DEFAULT_HOST,
    DEFAULT_KEY_PREFIX,
    DEFAULT_MAX_FALLBACKS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_NUM_RETRIES,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_ROUTING_STRATEGY,
    RETRY_POLICY_KEYS,
    GeneralSettings,
    LiteLLMSettings,
    RouterSettings,
    ServerSettings,
)

ROUTING_STRATEGIES = ("simple-shuffle", "least-busy", "usage-based-routing",
                      "usage-based-routing-v2", "latency-based-routing", "cost-based-routing")
FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
ROUTER_KEYS = ("routing_strategy", "num_retries", "timeout", *FALLBACK_KEYS,
               "default_fallbacks", "allowed_fails", "cooldown_time", "retry_after",
               "model_group_alias", "retry_policy", "model_group_retry_policy", "max_fallbacks",
               "disable_cooldowns")
ROUTER_IGNORED = frozenset({
    "redis_host", "redis_port", "redis_password", "redis_url", "cache_responses",
    "cache_kwargs", "enable_pre_call_checks", "optional_pre_call_checks", "routing_strategy_args",
    "allowed_fails_policy", "provider_budget_config", "enable_tag_filtering",
    "tag_filtering_match_any", "set_verbose", "debug_level", "polling_interval",
    "default_litellm_params", "default_max_parallel_requests", "default_priority", "client_ttl",
    "stream_timeout", "enable_loadbalancing_on_batch_endpoints", "router_general_settings",
    "alerting_config", "assistants_config", "search_tools",
})
# LiteLLM also reads these under litellm_settings; router_settings wins when both are given.
LITELLM_ROUTER_KEYS = ("num_retries", *FALLBACK_KEYS, "default_fallbacks")
LITELLM_KEYS = ("request_timeout", "drop_params", *LITELLM_ROUTER_KEYS)
GENERAL_KEYS = ("master_key", SECTION_KEY, LITELLM_SWITCH)
SERVER_KEYS = ("redis_url", "key_prefix", "max_request_bytes", "connect_timeout", "host", "port")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
LITELLM_IGNORED = frozenset({
    "success_callback", "failure_callback", "callbacks", "service_callback", "cache",
    "cache_params", "set_verbose", "json_logs", "turn_off_message_logging",
    "redact_user_api_key_info", "telemetry", "max_budget", "budget_duration", "max_retries",
    "modify_params", "ssl_verify", "force_ipv4", "enable_preview_features",
    "default_team_settings", "max_internal_user_budget", "default_internal_user_params",
    "upperbound_key_generate_params", "default_key_generate_params", "key_generation_settings",
    "langfuse_default_tags", "enable_json_schema_validation", "return_response_headers",
    "disable_end_user_cost_tracking", "callback_settings", "public_teams", "mcp_aliases",
})
GENERAL_IGNORED = frozenset({
    "database_url", "database_connection_pool_limit", "database_connection_timeout",
    "store_model_in_db", "alerting", "alerting_threshold", "alert_types", "proxy_batch_write_at",
    "disable_spend_logs", "disable_master_key_return", "allowed_routes", "public_routes",
    "admin_only_routes", "enable_jwt_auth", "litellm_jwtauth", "ui_access_mode", "custom_auth",
    "max_parallel_requests", "global_max_parallel_requests", "background_health_checks",
    "health_check_interval", "health_check_details", "pass_through_endpoints",
    "enforce_user_param", "allow_requests_on_db_unavailable", "infer_model_from_keys",
    "maximum_spend_logs_retention_period", "use_redis_transaction_buffer",
    "spend_report_frequency", "forward_openai_org_id", "user_header_name", "master_key_alias",
    "disable_reset_budget", "use_shared_health_check",
})
T = TypeVar("T")


def parse_router(router: Section, litellm: Section, groups: Collection[str]) -> RouterSettings:
    """``router_settings`` (plus the router keys LiteLLM also reads in ``litellm_settings``)."""
    check_keys(router.scope, "", router.data, known=ROUTER_KEYS, ignored=ROUTER_IGNORED)

    def pick(key: str) -> Section:
        return litellm if key in LITELLM_ROUTER_KEYS and not router.has(key) else router

    strategy = router.get_str("routing_strategy") or DEFAULT_ROUTING_STRATEGY
    if strategy not in ROUTING_STRATEGIES:
        raise router.scope.error(f"unknown routing strategy {strategy!r}; expected one of: "
                                 f"{', '.join(ROUTING_STRATEGIES)}", "routing_strategy")
    aliases = _aliases(router, groups)
    known = {**aliases, **{g: g for g in groups}}  # a group shadows a same-named alias
    fallbacks = {key: _fallbacks(pick(key), key, known) for key in FALLBACK_KEYS}
    default_fallbacks = pick("default_fallbacks")
    return RouterSettings(
        routing_strategy=strategy,
        num_retries=_or(pick("num_retries").get_int("num_retries"), DEFAULT_NUM_RETRIES),
        timeout=router.get_float("timeout", positive=True),
        default_fallbacks=tuple(
            _group(default_fallbacks, f"default_fallbacks[{i}]", name, known)
            for i, name in enumerate(_names(default_fallbacks, "default_fallbacks"))),
        allowed_fails=_or(router.get_int("allowed_fails"), DEFAULT_ALLOWED_FAILS),
        cooldown_time=_or(router.get_float("cooldown_time"), DEFAULT_COOLDOWN_TIME),
        retry_after=_or(router.get_float("retry_after"), 0.0),
        model_group_alias=aliases,
        retry_policy=_retry_policy(router.scope, "retry_policy", router.get("retry_policy")),
        model_group_retry_policy=_group_retry_policies(router, known),
        max_fallbacks=_or(router.get_int("max_fallbacks"), DEFAULT_MAX_FALLBACKS),
        disable_cooldowns=_or(router.get_bool("disable_cooldowns"), False),
        **fallbacks,
    )


def parse_litellm(litellm: Section) -> LiteLLMSettings:
    """``litellm_settings``: the request timeout and ``drop_params``."""
    check_keys(litellm.scope, "", litellm.data, known=LITELLM_KEYS, ignored=LITELLM_IGNORED)
    return LiteLLMSettings(
        request_timeout=_or(litellm.get_float("request_timeout", positive=True),
                            DEFAULT_REQUEST_TIMEOUT),
        drop_params=_or(litellm.get_bool("drop_params"), False),
    )


def parse_general(general: Section) -> GeneralSettings:
    """``general_settings``: the master key, client-side credentials."""
    check_keys(general.scope, "", general.data, known=GENERAL_KEYS, ignored=GENERAL_IGNORED)
    master_key = general.get_secret("master_key")
    if master_key is None and "master_key" in general.data:
        general.scope.note("no key (null, empty or None): the API is open to anyone",
                           "master_key")
    return GeneralSettings(master_key=master_key,
                           client_side_credentials=parse_client_side(general))


def parse_server(server: Section) -> ServerSettings:
    """``batchgate_settings``: batchgate's own section, so unknown keys are errors."""
    check_keys(server.scope, "", server.data, known=(*SERVER_KEYS, *QUEUE_KEYS, *FILES_KEYS),
               strict=True)
    return ServerSettings(
        redis_url=redis_url(server.scope, "redis_url", server.get("redis_url")),
        key_prefix=_or(server.get_str("key_prefix"), DEFAULT_KEY_PREFIX),
        max_request_bytes=_or(server.get_int("max_request_bytes", minimum=1),
                              DEFAULT_MAX_REQUEST_BYTES),
        connect_timeout=_or(server.get_float("connect_timeout", positive=True),
                            DEFAULT_CONNECT_TIMEOUT),
        host=_or(server.get_str("host"), DEFAULT_HOST),
        port=_or(server.get_int("port", maximum=65535), DEFAULT_PORT),
    )


def redis_url(scope: Scope, path: str, value: Any) -> str | None:
    """A Redis URL, or None; the value is never echoed (it may hold a password)."""
    if value is None or value in ("", "None", "none"):
        return None
    if not isinstance(value, str) or not value.startswith(REDIS_SCHEMES):
        raise scope.error(f"expected a URL starting with {', '.join(REDIS_SCHEMES)}", path)
    return value


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def _aliases(router: Section, groups: Collection[str]) -> dict[str, str]:
    """``model_group_alias``: alias -> group, each value a name or ``{model, hidden}``."""
    scope = router.scope
    out: dict[str, str] = {}
    for alias, target in to_mapping(scope, "model_group_alias",
                                    router.get("model_group_alias")).items():
        path = f"model_group_alias.{alias}"
        if isinstance(target, Mapping):
            check_keys(scope, path, map(str, target), known=("model", "hidden"), strict=True)
            hidden = target.get("hidden")
            if hidden is not None and to_bool(scope, f"{path}.hidden", hidden):
                scope.note("ignored: batchgate lists every alias", f"{path}.hidden")
            target, path = target.get("model"), f"{path}.model"
        if not isinstance(target, str) or not target:
            raise scope.error(f"expected a model group name, got {describe(target)}", path)
        if target not in groups:
            raise scope.error(f"alias target {target!r} is not a model_name in model_list", path)
        if alias in groups:
            scope.note(f"alias shadows the model group {alias!r}, which wins",
                       f"model_group_alias.{alias}")
        out[alias] = target
    return out


def _retry_policy(scope: Scope, path: str, raw: Any) -> dict[str, int]:
    """LiteLLM's ``RetryPolicy``: ``{RateLimitErrorRetries: 3, ...}``, counts >= 0."""
    policy = to_mapping(scope, path, raw)
    check_keys(scope, path, policy, known=RETRY_POLICY_KEYS, strict=True)
    out = {}
    for key, value in policy.items():
        if value is not None:  # null: not set, as in LiteLLM's Optional fields
            out[key] = to_int(scope, join(path, key), value)
    return out


def _group_retry_policies(router: Section,
                          known: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """``model_group_retry_policy``: group (or alias) -> its own retry policy."""
    key = "model_group_retry_policy"
    out: dict[str, dict[str, int]] = {}
    for name, raw in to_mapping(router.scope, key, router.get(key)).items():
        path = join(key, name)
        group = _group(router, path, name, known)
        if group in out:
            raise router.scope.error(f"a retry policy for {group!r} is given twice", path)
        out[group] = _retry_policy(router.scope, path, raw)
    return out


def _fallbacks(section: Section, key: str,
               known: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """LiteLLM's ``[{"gpt-3.5-turbo": ["gpt-4"]}, ...]`` -> ``{"gpt-3.5-turbo": ("gpt-4",)}``."""
    scope = section.scope
    raw = section.get(key)
    items = [raw] if isinstance(raw, Mapping) else _names_or_maps(section, key, raw)
    out: dict[str, tuple[str, ...]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise scope.error(f"expected a mapping of model group to fallback groups, "
                              f"got {describe(item)}", f"{key}[{index}]")
        for source_name, targets in item.items():
            path = f"{key}[{index}].{source_name}"
            group = _group(section, path, str(source_name), known)
            if group in out:
                raise scope.error(f"{key} for {group!r} are given twice", path)
            out[group] = tuple(_group(section, f"{path}[{i}]", name, known)
                               for i, name in enumerate(to_str_list(scope, path, targets)))
    return out


def _names_or_maps(section: Section, key: str, raw: Any) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise section.scope.error(f"expected a list like [{{group: [fallback, ...]}}], "
                                  f"got {describe(raw)}", key)
    return raw


def _names(section: Section, key: str) -> list[str]:
    return to_str_list(section.scope, key, section.get(key))


def _group(section: Section, path: str, name: str, known: Mapping[str, str]) -> str:
    """The model group ``name`` stands for (a group, or an alias of one)."""
    if name not in known:
        raise section.scope.error(f"{name!r} is not a model_name in model_list", path)
    return known[name]
