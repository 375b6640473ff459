"""How each fake model behaves: one immutable settings object, parsed from YAML/JSON or a dict.

Shape (every key optional)::

    defaults: {latency_ms: 0, rpm: 600}      # applies to every model, named or not
    models:
      gpt-a: {latency_ms: 100, rpm: 30}      # per-model overrides, field by field, over defaults
    log_size: 100000                         # /_stats request-log entries kept (oldest dropped)
    seed: 7                                  # seeds random failures and jitter (reproducible runs)

A model's behaviour is ``ModelBehaviour()`` <- ``defaults`` block <- its own block. Unknown keys
are errors: a typo such as ``rmp`` must not silently mean "no limit".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from batchgate.errors import ConfigError

DEFAULT_LOG_SIZE = 100_000
DEFAULT_CONTENT_POLICY_TRIGGER = "[[content_policy]]"
DEFAULT_EMBEDDING_DIM = 16
DEFAULT_MAX_INPUTS = 2048
DEFAULT_HANG_S = 3600.0
DEFAULT_RETRY_AFTER_S = 1.0
REDACTED = "***"


@dataclass(frozen=True, slots=True)
class ModelBehaviour:
    """Everything that decides how one model answers. Times in ms unless the name says ``_s``."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    """Uniform extra latency in [0, jitter_ms)."""
    rpm: int | None = None
    tpm: int | None = None
    fail_rate_500: float = 0.0
    fail_rate_503: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float = DEFAULT_RETRY_AFTER_S
    """Retry-After sent with injected (random or ``[[fail:429]]``) 429s."""
    timeout_rate: float = 0.0
    hang_s: float = DEFAULT_HANG_S
    context_window: int | None = None
    content_policy_trigger: str = DEFAULT_CONTENT_POLICY_TRIGGER
    embedding_dim: int = DEFAULT_EMBEDDING_DIM
    max_inputs: int = DEFAULT_MAX_INPUTS
    api_key: str | None = None
    stream_interval_ms: float = 0.0
    """Pause between SSE chunks; 0 sends the whole stream in one write (cheapest)."""


_RATES = ("fail_rate_500", "fail_rate_503", "rate_429", "timeout_rate")
_OPTIONAL_INTS = ("rpm", "tpm", "context_window")
_INTS = ("embedding_dim", "max_inputs")
_STRINGS = ("content_policy_trigger",)
_OPTIONAL_STRINGS = ("api_key",)
FIELDS = frozenset(f.name for f in dataclasses.fields(ModelBehaviour))


def _check_field(name: str, value: Any, source: str, entry: str) -> Any:
    """Validate one behaviour field; returns the value in its canonical type."""

    def bad(why: str) -> ConfigError:
        return ConfigError(why, source=source, entry=entry, field=name)

    if name in _STRINGS or name in _OPTIONAL_STRINGS:
        if value is None and name in _OPTIONAL_STRINGS:
            return None
        if not isinstance(value, str) or not value:
            raise bad("must be a non-empty string")
        return value
    if value is None and name in _OPTIONAL_INTS:
        return None
    # bool is an int subclass: `rpm: true` is a mistake, not a limit of 1.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad("must be a number")
    if name in _OPTIONAL_INTS or name in _INTS:
        if value != int(value) or value < 1:
            raise bad("must be a positive integer")
        return int(value)
    if value < 0:
        raise bad("must not be negative")
    if name in _RATES and value > 1:
        raise bad("is a probability and must be within 0..1")
    return float(value)


def parse_behaviour(
    block: Mapping[str, Any], base: ModelBehaviour, *, source: str, entry: str
) -> ModelBehaviour:
    """``base`` with the fields of ``block`` applied, each validated."""
    if not isinstance(block, Mapping):
        raise ConfigError("must be a mapping of behaviour fields", source=source, entry=entry)
    unknown = sorted(set(block) - FIELDS)
    if unknown:
        raise ConfigError(f"unknown field(s) {unknown}; known: {sorted(FIELDS)}",
                          source=source, entry=entry)
    changes = {k: _check_field(k, v, source, entry) for k, v in block.items()}
    resolved = dataclasses.replace(base, **changes)
    if sum(getattr(resolved, rate) for rate in _RATES) > 1:
        raise ConfigError(f"{' + '.join(_RATES)} must not exceed 1", source=source, entry=entry)
    return resolved


@dataclass(frozen=True)
class FakeSettings:
    """The whole fake upstream's configuration. Build it with :func:`parse_settings`."""

    defaults_block: Mapping[str, Any] = field(default_factory=dict)
    model_blocks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    log_size: int = DEFAULT_LOG_SIZE
    seed: int | None = None
    defaults: ModelBehaviour = ModelBehaviour()
    models: Mapping[str, ModelBehaviour] = field(default_factory=dict)

    def behaviour(self, model: str | None) -> ModelBehaviour:
        """The behaviour of ``model``; any name is served, unconfigured ones get the defaults."""
        if model is None:
            return self.defaults
        return self.models.get(model, self.defaults)

    def updated(self, data: Mapping[str, Any], *, source: str = "/_config") -> FakeSettings:
        """These settings with ``data`` applied the way ``POST /_config`` documents it.

        A given ``defaults`` block replaces the old one; each given model block replaces that
        model's block (``null`` removes the model); models not named are kept, and re-resolved
        over the new defaults. ``log_size`` and ``seed`` replace when given.
        """
        _check_top_level(data, source)
        blocks = dict(self.model_blocks)
        for name, block in _mapping(data.get("models", {}), source, "models").items():
            if block is None:
                blocks.pop(name, None)
            else:
                blocks[str(name)] = block
        merged = {
            "defaults": data.get("defaults", self.defaults_block),
            "models": blocks,
            "log_size": data.get("log_size", self.log_size),
            "seed": data.get("seed", self.seed),
        }
        return parse_settings(merged, source=source)

    def to_dict(self, *, redact_keys: bool = False) -> dict[str, Any]:
        """The configuration as given (blocks, not resolved values): it round-trips.

        ``redact_keys`` masks every ``api_key``, for answers sent over HTTP.
        """
        def block(values: Mapping[str, Any]) -> dict[str, Any]:
            out = dict(values)
            if redact_keys and out.get("api_key") is not None:
                out["api_key"] = REDACTED
            return out

        return {
            "defaults": block(self.defaults_block),
            "models": {name: block(values) for name, values in self.model_blocks.items()},
            "log_size": self.log_size,
            "seed": self.seed,
        }


_TOP_LEVEL = frozenset({"defaults", "models", "log_size", "seed"})


def _check_top_level(data: Any, source: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError("must be a mapping with keys defaults, models", source=source)
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; known: {sorted(_TOP_LEVEL)}", source=source)


def _mapping(value: Any, source: str, entry: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("must be a mapping", source=source, entry=entry)
    return value


def parse_settings(data: Mapping[str, Any] | None, *, source: str = "config") -> FakeSettings:
    """Validate a configuration mapping (the shape in this module's docstring)."""
    data = data or {}
    _check_top_level(data, source)
    defaults_block = dict(_mapping(data.get("defaults"), source, "defaults"))
    defaults = parse_behaviour(defaults_block, ModelBehaviour(), source=source, entry="defaults")
    model_blocks: dict[str, dict[str, Any]] = {}
    models: dict[str, ModelBehaviour] = {}
    for name, block in _mapping(data.get("models"), source, "models").items():
        entry = f"models.{name}"
        model_blocks[str(name)] = dict(_mapping(block, source, entry))
        models[str(name)] = parse_behaviour(model_blocks[str(name)], defaults,
                                            source=source, entry=entry)
    log_size = data.get("log_size", DEFAULT_LOG_SIZE)
    if isinstance(log_size, bool) or not isinstance(log_size, int) or log_size < 0:
        raise ConfigError("must be a non-negative integer", source=source, field="log_size")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError("must be an integer or null", source=source, field="seed")
    return FakeSettings(defaults_block, model_blocks, log_size, seed, defaults, models)


def load_settings(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> FakeSettings:
    """Read a YAML or JSON file (JSON is YAML), then apply ``overrides`` to its defaults block."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) if text.strip() else {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=source) from exc
    _check_top_level(data, source)
    return with_default_overrides(parse_settings(data, source=source), overrides or {})


def with_default_overrides(settings: FakeSettings, overrides: Mapping[str, Any]) -> FakeSettings:
    """``settings`` with fields set in its defaults block (how CLI options win over a file)."""
    if not overrides:
        return settings
    block = {**settings.defaults_block, **overrides}
    return settings.updated({"defaults": block}, source="command line")

