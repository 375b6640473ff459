"""What an upstream failure means, how often to retry it, and how long to wait first.

Pure decisions: :func:`classify` reads a status and body, :class:`RetryPolicy` says how many
retries a kind of failure gets (LiteLLM's ``num_retries`` and ``retry_policy`` semantics),
and :func:`backoff` computes the delay a retry carries; nothing here sleeps.
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config.settings import RouterSettings

DEFAULT_BACKOFF_BASE = 0.5
"""Seconds before the first retry, before jitter."""
DEFAULT_BACKOFF_CAP = 30.0
"""The longest backoff of our own; an upstream's ``Retry-After`` may ask for more."""
MAX_EXPONENT = 32
"""Attempts past this back off no further (the cap is reached long before)."""

CONTEXT_WINDOW_CODES = frozenset({"context_length_exceeded"})
CONTEXT_WINDOW_PHRASES = ("maximum context length", "context length", "context window")
"""Message fragments of OpenAI, Azure and vLLM for a prompt longer than the model takes."""
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter",
                                  "ResponsibleAIPolicyViolation"})
"""OpenAI's code, and Azure's (``content_filter``, and its ``innererror.code``)."""
MAX_TEXT_BODY = 4096
"""Bytes of a non-JSON error body searched for a context-window message."""


class ErrorClass(enum.StrEnum):
    """The kinds of upstream failure that retries and fallbacks tell apart."""

    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    SERVER = "server"
    CONTEXT_WINDOW = "context_window"
    CONTENT_POLICY = "content_policy"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    NOT_FOUND = "not_found"


TRANSIENT = frozenset({ErrorClass.RATE_LIMIT, ErrorClass.TIMEOUT, ErrorClass.SERVER})
"""Failures that may pass on a retry; the others are retried only when a policy says so."""
POLICY_KEYS: Mapping[ErrorClass, tuple[str, ...]] = {
    ErrorClass.RATE_LIMIT: ("RateLimitErrorRetries",),
    ErrorClass.TIMEOUT: ("TimeoutErrorRetries",),
    ErrorClass.SERVER: ("InternalServerErrorRetries",),
    ErrorClass.AUTH: ("AuthenticationErrorRetries",),
    # LiteLLM's ContentPolicyViolationError and ContextWindowExceededError are
    # BadRequestErrors: BadRequestErrorRetries covers them unless a closer key is set.
    ErrorClass.CONTENT_POLICY: ("ContentPolicyViolationErrorRetries", "BadRequestErrorRetries"),
    ErrorClass.CONTEXT_WINDOW: ("BadRequestErrorRetries",),
    ErrorClass.BAD_REQUEST: ("BadRequestErrorRetries",),
    ErrorClass.NOT_FOUND: (),
}
"""The ``retry_policy`` keys that set each class's retries, the first one set winning."""


def classify(status: int, body: bytes) -> ErrorClass | None:
    """The kind of failure an upstream answer is; None for a 2xx (a success)."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return ErrorClass.RATE_LIMIT
    if status in (408, 504):
        return ErrorClass.TIMEOUT
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 404:
        return ErrorClass.NOT_FOUND
    if not 400 <= status < 500:
        # 5xx, and anything else an upstream should not send (1xx, 3xx): its fault, not ours.
        return ErrorClass.SERVER
    codes, message = _error_details(body)
    if codes & CONTEXT_WINDOW_CODES or any(p in message for p in CONTEXT_WINDOW_PHRASES):
        return ErrorClass.CONTEXT_WINDOW
    if codes & CONTENT_POLICY_CODES:
        return ErrorClass.CONTENT_POLICY
    return ErrorClass.BAD_REQUEST


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries each kind of failure gets, for one model group."""

    num_retries: int
    overrides: Mapping[str, int] = field(default_factory=dict)
    """LiteLLM ``retry_policy`` keys (``RateLimitErrorRetries``, ...) -> retries."""

    def retries(self, cls: ErrorClass) -> int:
        """Retries for a failure of kind ``cls`` (not counting the first try)."""
        for key in POLICY_KEYS[cls]:
            if key in self.overrides:
                return self.overrides[key]
        return self.num_retries if cls in TRANSIENT else 0

    @classmethod
    def of(cls, router: RouterSettings, group: str) -> RetryPolicy:
        """The policy for ``group``: its ``model_group_retry_policy`` when it has one (which
        replaces ``retry_policy`` whole, as in LiteLLM), else ``retry_policy``; kinds neither
        sets get ``num_retries`` when transient, else 0."""
        overrides = router.model_group_retry_policy.get(group, router.retry_policy)
        return cls(router.num_retries, dict(overrides))


def backoff(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (from 0): exponential, with jitter,
    capped at :data:`DEFAULT_BACKOFF_CAP`, and never less than the upstream's ``retry_after``
    (which wins even above the cap: asking again sooner only earns another 429)."""
    exponent = min(max(attempt, 0), MAX_EXPONENT)
    # Jitter in [0.5, 1): retries of many items that failed together spread out.
    delay = min(DEFAULT_BACKOFF_BASE * 2.0 ** exponent * rng.uniform(0.5, 1.0),
                DEFAULT_BACKOFF_CAP)
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay


def _error_details(body: bytes) -> tuple[frozenset[str], str]:
    """The error codes and lowercased message of an OpenAI-style (or vLLM-style) error body;
    a body that is not JSON is all message (some servers answer in plain text)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return frozenset(), body[:MAX_TEXT_BODY].decode("utf-8", "replace").lower()
    error: Any = data.get("error", data) if isinstance(data, Mapping) else None
    if isinstance(error, str):  # {"error": "message"}: Ollama, TEI and others
        return frozenset(), error.lower()
    if not isinstance(error, Mapping):
        return frozenset(), ""
    inner = error.get("innererror")
    candidates = [error.get("code"), inner.get("code") if isinstance(inner, Mapping) else None]
    message = error.get("message")
    return (frozenset(c for c in candidates if isinstance(c, str)),
            message.lower() if isinstance(message, str) else "")
