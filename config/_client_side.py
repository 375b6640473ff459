"""``general_settings.client_side_credentials``: may callers bring their own upstream key or
base URL, and where may that base URL point.

LiteLLM's switch, ``general_settings.allow_client_side_credentials: true``, is read too: it
turns the feature on with no ``allowed_api_bases``, i.e. callers may bring a key but every
``api_base`` is refused until the operator lists where it may point.
"""

from __future__ import annotations

from config._fields import Section, check_keys, join, to_bool, to_mapping, to_str_list
from config.api_bases import parse_pattern
from config.settings import ClientCredentialsSettings

SECTION_KEY = "client_side_credentials"
LITELLM_SWITCH = "allow_client_side_credentials"
CLIENT_SIDE_KEYS = ("enabled", "allowed_api_bases")


def parse_client_side(general: Section) -> ClientCredentialsSettings:
    """The feature's settings from ``general_settings`` (off unless switched on)."""
    scope = general.scope
    raw = to_mapping(scope, SECTION_KEY, general.get(SECTION_KEY))
    check_keys(scope, SECTION_KEY, raw, known=CLIENT_SIDE_KEYS, strict=True)
    switch = general.get_bool(LITELLM_SWITCH)
    enabled_raw = raw.get("enabled")
    enabled = to_bool(scope, join(SECTION_KEY, "enabled"), enabled_raw) \
        if enabled_raw is not None else None
    if enabled is not None and switch is not None and enabled != switch:
        raise scope.error(f"disagrees with {SECTION_KEY}.enabled; give only one",
                          LITELLM_SWITCH)
    on = bool(enabled if enabled is not None else switch)
    path = join(SECTION_KEY, "allowed_api_bases")
    patterns = []
    for index, text in enumerate(to_str_list(scope, path, raw.get("allowed_api_bases"))):
        try:
            patterns.append(parse_pattern(text))
        except ValueError as exc:
            raise scope.error(f"the URL {exc}", f"{path}[{index}]") from None
    if patterns and not on:
        scope.note("has no effect: client-side credentials are off (enabled: false)", path)
    return ClientCredentialsSettings(enabled=on, allowed_api_bases=tuple(patterns))
