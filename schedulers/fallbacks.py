"""Which model groups to try once a group has failed: LiteLLM's fallbacks, as pure decisions.

The chain comes from the config (``router_settings.fallbacks`` and its context-window and
content-policy variants, ``default_fallbacks``) or from the request itself: LiteLLM's proxy
lets a caller send ``fallbacks`` and ``disable_fallbacks`` in the body, so batchgate does too,
and takes them out before the body goes upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchgate.errors import RequestError
from config.settings import RouterSettings
from schedulers.retry import ErrorClass

FALLBACKS = "fallbacks"
DISABLE_FALLBACKS = "disable_fallbacks"
INVALID_FALLBACKS = "invalid_fallbacks"
"""The error ``code`` of a request whose fallback options are malformed."""


@dataclass(frozen=True)
class RoutingOptions:
    """A request's own say on fallbacks."""

    fallbacks: tuple[str, ...] | None = None
    """Model names to fall back to, in order, instead of the config's; ``()`` for none,
    ``None`` when the request does not say."""
    disabled: bool = False


NO_OPTIONS = RoutingOptions()


def pop_routing_options(body: dict[str, Any]) -> RoutingOptions:
    """Take ``fallbacks`` and ``disable_fallbacks`` out of ``body`` (so they never reach an
    upstream) and check them; raises :class:`RequestError` when they are malformed.

    ``fallbacks`` is a list of model names, or of ``{"model": name}`` objects as LiteLLM also
    accepts. The names are not resolved here: the caller knows the groups and aliases.
    """
    raw_fallbacks = body.pop(FALLBACKS, None)
    raw_disabled = body.pop(DISABLE_FALLBACKS, None)
    if raw_disabled is not None and not isinstance(raw_disabled, bool):
        raise _invalid(f"{DISABLE_FALLBACKS} must be true or false", DISABLE_FALLBACKS)
    fallbacks = None if raw_fallbacks is None else _names(raw_fallbacks)
    return RoutingOptions(fallbacks=fallbacks, disabled=bool(raw_disabled))


def fallback_chain(group: str, error: ErrorClass, router: RouterSettings,
                   options: RoutingOptions = NO_OPTIONS) -> tuple[str, ...]:
    """The groups to try, in order, after ``group`` failed with ``error`` (retries spent).

    As in LiteLLM: a context-window or content-policy failure uses that kind's fallbacks for
    the group when the config has any, else the general chain, which is the request's own
    ``fallbacks``, else the group's ``fallbacks``, else ``default_fallbacks``. A bad request
    has none: the caller's mistake would fail on any model. ``group`` itself and repeats are
    dropped, and at most ``max_fallbacks`` are kept.
    """
    if options.disabled or error is ErrorClass.BAD_REQUEST:
        return ()
    special = {ErrorClass.CONTEXT_WINDOW: router.context_window_fallbacks,
               ErrorClass.CONTENT_POLICY: router.content_policy_fallbacks}.get(error, {})
    chain = special.get(group) or _general(group, router, options)
    out: list[str] = []
    for name in chain:
        if name != group and name not in out:
            out.append(name)
    return tuple(out[:max(router.max_fallbacks, 0)])


def _general(group: str, router: RouterSettings, options: RoutingOptions) -> tuple[str, ...]:
    if options.fallbacks is not None:
        return options.fallbacks
    if group in router.fallbacks:
        return router.fallbacks[group]
    return router.default_fallbacks


def _names(raw: Any) -> tuple[str, ...]:
    """The model names of a request's ``fallbacks``."""
    if not isinstance(raw, list):
        raise _invalid(f"{FALLBACKS} must be a list of model names", FALLBACKS)
    names = []
    for index, item in enumerate(raw):
        param = f"{FALLBACKS}[{index}]"
        if isinstance(item, Mapping):
            extra = sorted(str(key) for key in item if key != "model")
            if extra:
                # LiteLLM lets these override request params per fallback; batchgate does
                # not, and silently ignoring them would answer a different question.
                raise _invalid(f"{param} may only name a model; "
                               f"unsupported: {', '.join(extra)}", param)
            item = item.get("model")
        if not isinstance(item, str) or not item.strip():
            raise _invalid(f"{param} must be a model name", param)
        names.append(item.strip())
    return tuple(names)


def _invalid(message: str, param: str) -> RequestError:
    return RequestError(message, param=param, code=INVALID_FALLBACKS)
