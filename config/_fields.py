"""Typed coercion of raw YAML values, with errors and notes that say where they are.

Every helper works inside a :class:`Scope` (the file and the entry being read) and takes the
field path, so a bad value becomes one :class:`~batchgate.errors.ConfigError` naming file,
entry and field, and an ignored key becomes one human-readable note for ``config check``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchgate.errors import ConfigError
from config.settings import Secret

ENV_REF_PREFIX = "os.environ/"
"""LiteLLM's way of saying "read this value from the environment variable named after /"."""
NO_KEY_STRINGS = frozenset({"", "None", "none"})
"""Credential values that mean "no key": LiteLLM configs write ``api_key: None``, which YAML
reads as the string ``"None"``."""
IGNORED_WHY = "batchgate does not use this LiteLLM setting"
TYPO_CUTOFF = 0.8
"""difflib ratio above which an unknown key is taken for a misspelling of a known one."""

_INT_RE = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


@dataclass
class Scope:
    """Where values are being read: a source (file path) and an entry; collects notes."""

    source: str
    entry: str | None = None
    notes: list[str] = field(default_factory=list)

    def at(self, entry: str) -> Scope:
        """A scope for ``entry`` in the same source, sharing this scope's notes."""
        return Scope(self.source, entry, self.notes)

    def error(self, message: str, field: str | None = None) -> ConfigError:
        """The ConfigError for a bad ``field`` here (the caller raises it)."""
        return ConfigError(message, source=self.source, entry=self.entry, field=field)

    def note(self, message: str, field: str | None = None) -> None:
        """Record something the user should know but that does not stop loading."""
        parts = (self.source, self.entry, field, message)
        self.notes.append(": ".join(part for part in parts if part))


def describe(value: Any) -> str:
    """A short rendering of a bad value for a message. Never call it on a credential."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def join(prefix: str, key: str) -> str:
    """The field path of ``key`` under ``prefix`` (``litellm_params`` + ``rpm``)."""
    return f"{prefix}.{key}" if prefix else key


def suggest(name: str, choices: Iterable[str], cutoff: float = TYPO_CUTOFF) -> str | None:
    """The known name ``name`` is most likely a misspelling of, if any."""
    choices = list(choices)
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=cutoff)
    if matches:
        return matches[0]
    # difflib scores short swaps low ("rmp" vs "rpm": 0.67); one edit away is a typo too.
    if len(name) >= 3:
        return next((c for c in sorted(choices) if _one_edit_apart(name, c)), None)
    return None


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether one insertion, deletion, substitution or swap of neighbours turns a into b."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diffs) == 1 or (len(diffs) == 2 and diffs[1] == diffs[0] + 1
                                   and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]])
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def resolve_env(scope: Scope, path: str, value: Any, env: Mapping[str, str]) -> Any:
    """``value`` with every ``os.environ/NAME`` string (at any depth) replaced from ``env``."""
    if isinstance(value, str) and value.startswith(ENV_REF_PREFIX):
        name = value[len(ENV_REF_PREFIX):]
        if not name:
            raise scope.error(f"{ENV_REF_PREFIX} needs a variable name after the /", path)
        if name not in env:
            raise scope.error(f"environment variable {name} is not set", path)
        return env[name]
    if isinstance(value, Mapping):
        return {str(k): resolve_env(scope, join(path, str(k)), v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(scope, f"{path}[{i}]", v, env) for i, v in enumerate(value)]
    return value


def to_mapping(scope: Scope, path: str, value: Any) -> dict[str, Any]:
    """A mapping with string keys; null (an empty YAML section) is an empty mapping."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise scope.error(f"expected a mapping, got {describe(value)}", path)
    return {str(k): v for k, v in value.items()}


def to_list(scope: Scope, path: str, value: Any) -> list[Any]:
    """A list; null (an empty YAML key) is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise scope.error(f"expected a list, got {describe(value)}", path)
    return value


def to_str(scope: Scope, path: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str):
        raise scope.error(f"expected a string, got {describe(value)}", path)
    if not value.strip():
        raise scope.error("must not be empty", path)
    return value


def to_str_list(scope: Scope, path: str, value: Any) -> list[str]:
    """A list of non-empty strings; a lone string is a list of one."""
    if isinstance(value, str):
        return [to_str(scope, path, value)]
    return [to_str(scope, f"{path}[{i}]", v) for i, v in enumerate(to_list(scope, path, value))]


def to_int(scope: Scope, path: str, value: Any, *, minimum: int = 0,
           maximum: int | None = None) -> int:
    """An integer in range; a quoted one (``"6"``) counts, as LiteLLM users often quote."""
    number: int | None = None
    if isinstance(value, bool):
        pass  # YAML true/false is never a count
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None:
        raise scope.error(f"expected an integer, got {describe(value)}", path)
    if number < minimum:
        floor = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        raise scope.error(f"{floor}, got {number}", path)
    if maximum is not None and number > maximum:
        raise scope.error(f"must be at most {maximum}, got {number}", path)
    return number


def to_float(scope: Scope, path: str, value: Any, *, positive: bool = False) -> float:
    """A finite, non-negative number (``positive``: greater than 0); quoted ones count."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise scope.error(f"expected a number, got {describe(value)}", path)
    if positive and number <= 0:
        raise scope.error(f"must be greater than 0, got {number:g}", path)
    if number < 0:
        raise scope.error(f"must not be negative, got {number:g}", path)
    return number


def to_bool(scope: Scope, path: str, value: Any) -> bool:
    """A boolean: YAML true/false, or a string such as ``"true"``/``"no"`` (env values)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise scope.error(f"expected true or false, got {describe(value)}", path)


def to_secret(scope: Scope, path: str, value: Any) -> Secret | None:
    """A credential, or None for "no key" (null, ``""``, ``"None"``, ``"none"``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        # Never echo the value: it is a credential, however malformed.
        raise scope.error(f"expected a string (quote it in YAML), got {type(value).__name__}",
                          path)
    if value.strip() in NO_KEY_STRINGS:
        return None
    return Secret(value)


def check_keys(scope: Scope, prefix: str, keys: Iterable[str], *, known: Collection[str],
               ignored: Collection[str] = (), strict: bool = False) -> None:
    """Raise on a misspelt key (or any unknown key when ``strict``); note the ignored ones.

    A key close to one batchgate honours is an error, not a note: ``rmp: 60`` silently
    meaning "no rate limit" would cause the very 429s the limit is there to prevent.
    """
    for key in keys:
        if key in known:
            continue
        path = join(prefix, key)
        if key in ignored:
            scope.note(f"ignored: {IGNORED_WHY}", path)
            continue
        guess = suggest(key, known, cutoff=0.6 if strict else TYPO_CUTOFF)
        if guess is not None:
            raise scope.error(f"unknown key; did you mean {guess!r}?", path)
        if strict:
            raise scope.error(f"unknown key; expected one of: {', '.join(known)}", path)
        scope.note("unknown key, ignored", path)


@dataclass(frozen=True)
class Section:
    """One mapping of a config (a section, an entry, its litellm_params) read key by key.

    Values are fetched with ``os.environ/`` references resolved; null counts as absent.
    Only keys that are read get resolved, so a reference in an ignored key never fails.
    """

    scope: Scope
    data: Mapping[str, Any]
    env: Mapping[str, str]
    prefix: str = ""

    def path(self, key: str) -> str:
        """The field path of ``key`` for messages."""
        return join(self.prefix, key)

    def get(self, key: str) -> Any:
        """The value of ``key`` with env references resolved, or None."""
        value = self.data.get(key)
        return None if value is None else resolve_env(self.scope, self.path(key), value, self.env)

    def has(self, key: str) -> bool:
        """Whether ``key`` is given with a non-null value."""
        return self.data.get(key) is not None

    def get_str(self, key: str) -> str | None:
        """``key`` as a non-empty string, or None when absent."""
        value = self.get(key)
        return None if value is None else to_str(self.scope, self.path(key), value)

    def get_int(self, key: str, *, minimum: int = 0, maximum: int | None = None) -> int | None:
        """``key`` as an integer in range, or None when absent."""
        value = self.get(key)
        if value is None:
            return None
        return to_int(self.scope, self.path(key), value, minimum=minimum, maximum=maximum)

    def get_float(self, key: str, *, positive: bool = False) -> float | None:
        """``key`` as a non-negative (or ``positive``) number, or None when absent."""
        value = self.get(key)
        return None if value is None else to_float(self.scope, self.path(key), value,
                                                   positive=positive)

    def get_bool(self, key: str) -> bool | None:
        """``key`` as a boolean, or None when absent."""
        value = self.get(key)
        return None if value is None else to_bool(self.scope, self.path(key), value)

    def get_secret(self, key: str) -> Secret | None:
        """``key`` as a credential, or None for absent or "no key"."""
        return to_secret(self.scope, self.path(key), self.get(key))
