"""Pure decisions: token estimates, input triggers, which fault (if any) to inject, reply text.

Deterministic triggers let tests provoke every failure without randomness; they may appear
anywhere in any input text (a chat message, a prompt, one embedding input):

    [[fail:500]]  -> 500 server_error           [[fail:429]] -> 429 with Retry-After retry_after_s
    [[fail:503]]  -> 503 overloaded             [[hang]]     -> no answer for hang_s (then 504)
    content_policy_trigger (default [[content_policy]]) -> 400 content_policy_violation
                                                  (moderations flag the input instead)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from batchgate.fake_upstream.settings import ModelBehaviour

CHARS_PER_TOKEN = 4
REPLY_MAX_CHARS = 200
CONTENT_POLICY = "content_policy"


class Fault(enum.StrEnum):
    """A failure injected instead of an answer."""

    SERVER_ERROR = "fail:500"
    OVERLOADED = "fail:503"
    RATE_LIMITED = "fail:429"
    HANG = "hang"


_TRIGGERS = {f"[[{fault.value}]]": fault for fault in Fault}


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``: ceil(len/4), OpenAI's rule of thumb for English (no tokenizer: cheap)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def scan_triggers(texts: Iterable[str], content_policy_trigger: str) -> frozenset[str]:
    """The trigger names found in ``texts``: :class:`Fault` values and ``"content_policy"``."""
    found: set[str] = set()
    custom_policy = not content_policy_trigger.startswith("[[")
    for text in texts:
        # Nearly every input has no trigger; one substring search rules them all out.
        if "[[" in text:
            found.update(fault.value for marker, fault in _TRIGGERS.items() if marker in text)
            if content_policy_trigger in text:
                found.add(CONTENT_POLICY)
        elif custom_policy and content_policy_trigger in text:
            found.add(CONTENT_POLICY)
    return frozenset(found)


def pick_fault(triggers: frozenset[str], behaviour: ModelBehaviour, roll: float) -> Fault | None:
    """The fault to inject: a trigger in the input wins, else ``roll`` in [0, 1) picks by rate.

    The rates are stacked on [0, 1): a roll below fail_rate_500 is a 500, the next
    fail_rate_503 is a 503, then rate_429, then timeout_rate; above their sum, no fault.
    """
    for fault in Fault:
        if fault.value in triggers:
            return fault
    edge = 0.0
    for fault, rate in (
        (Fault.SERVER_ERROR, behaviour.fail_rate_500),
        (Fault.OVERLOADED, behaviour.fail_rate_503),
        (Fault.RATE_LIMITED, behaviour.rate_429),
        (Fault.HANG, behaviour.timeout_rate),
    ):
        edge += rate
        if roll < edge:
            return fault
    return None


def has_random_faults(behaviour: ModelBehaviour) -> bool:
    """Whether a random roll is needed at all (skipping it keeps the common path cheap)."""
    return bool(behaviour.fail_rate_500 or behaviour.fail_rate_503 or behaviour.rate_429
                or behaviour.timeout_rate)


def reply_words(model: str, prompt: str, max_tokens: int | None) -> tuple[list[str], bool]:
    """The words of the deterministic reply, and whether ``max_tokens`` cut it short.

    The reply is ``"[model] "`` + the prompt's first 200 characters. One word counts as one
    completion token, so ``usage.completion_tokens <= max_tokens`` holds exactly.
    """
    words = f"[{model}] {prompt[:REPLY_MAX_CHARS]}".split()
    if max_tokens is not None and len(words) > max_tokens:
        return words[:max_tokens], True
    return words, False
