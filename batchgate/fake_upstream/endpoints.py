"""Per-endpoint planning: from a request body to what the answer will be, before answering.

A :class:`Plan` says which texts to scan for triggers, how many tokens to check against the
context window and to charge against tpm, and how to build the body (lazily: a request that is
refused never pays for building its answer). Pure; :mod:`app` does the I/O and the waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from batchgate.fake_upstream import inputs, payloads
from batchgate.fake_upstream.behaviour import estimate_tokens, reply_words
from batchgate.fake_upstream.errors import invalid_request
from batchgate.fake_upstream.inputs import Body
from batchgate.fake_upstream.settings import ModelBehaviour
from batchgate.fake_upstream.vectors import embedding_vector, to_base64

MAX_CHOICES = 128  # OpenAI's own bound on ``n``
MAX_DIMENSIONS = 65_536
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"

Events = Callable[[], list[dict[str, Any]]]


@dataclass(slots=True)
class Plan:
    """What one admitted request will answer, and what must be checked first."""

    texts: Sequence[str]
    """Input texts, scanned for triggers."""
    inputs: int
    context_tokens: int
    """Tokens compared with ``context_window``: the whole prompt, or the longest input."""
    context_param: str
    charge: int
    """Tokens charged against ``tpm``: the ``usage.total_tokens`` the answer reports."""
    body: Callable[[], dict[str, Any]]
    events: Events | None = None
    """Set when the answer is an SSE stream."""
    policed: bool = True
    """Whether the content-policy trigger is a 400 (moderations flag it instead)."""


Planner = Callable[[Body, str, ModelBehaviour, str, int], Plan]


def _choices(body: Body) -> int:
    n = inputs.positive_int(body, "n", default=1) or 1
    if n > MAX_CHOICES:
        raise invalid_request(f"'n' must be at most {MAX_CHOICES}", param="n")
    return n


def plan_chat(body: Body, model: str, behaviour: ModelBehaviour, serial: str,
              created: int) -> Plan:
    """``POST /v1/chat/completions``: echo the last user message, word by word."""
    texts, last_user = inputs.chat_texts(body)
    max_tokens = inputs.positive_int(body, "max_completion_tokens", "max_tokens")
    n = _choices(body)
    stream, include_usage = inputs.stream_flags(body)
    prompt_tokens = sum(map(estimate_tokens, texts))
    words, cut = reply_words(model, last_user, max_tokens)
    finish = "length" if cut else "stop"
    use = payloads.usage(prompt_tokens, len(words) * n)
    rid = "chatcmpl-" + serial
    content = " ".join(words)
    events: Events | None = None
    if stream:
        def events() -> list[dict[str, Any]]:
            return payloads.chat_chunks(rid, created, model, words, finish, n,
                                        use if include_usage else None)
    return Plan(texts, 1, prompt_tokens, "messages", use["total_tokens"],
                lambda: payloads.chat_completion(rid, created, model, content, finish, n, use),
                events)


def plan_completion(body: Body, model: str, behaviour: ModelBehaviour, serial: str,
                    created: int) -> Plan:
    """``POST /v1/completions``: one echo per prompt, ``n`` choices each."""
    prompts = inputs.text_inputs(body.get("prompt"), "prompt")
    max_tokens = inputs.positive_int(body, "max_tokens")
    n = _choices(body)
    stream, include_usage = inputs.stream_flags(body)
    counts = [tokens if tokens is not None else estimate_tokens(text) for text, tokens in prompts]
    texts: list[tuple[str, str]] = []
    completion_tokens = 0
    for text, _ in prompts:
        words, cut = reply_words(model, text, max_tokens)
        texts.append((" ".join(words), "length" if cut else "stop"))
        completion_tokens += len(words) * n
    use = payloads.usage(sum(counts), completion_tokens)
    rid = "cmpl-" + serial
    events: Events | None = None
    if stream:
        def events() -> list[dict[str, Any]]:
            return payloads.text_chunks(rid, created, model, texts, n,
                                        use if include_usage else None)
    return Plan([text for text, _ in prompts], len(prompts), max(counts), "prompt",
                use["total_tokens"],
                lambda: payloads.text_completion(rid, created, model, texts, n, use), events)


def plan_embeddings(body: Body, model: str, behaviour: ModelBehaviour, serial: str,
                    created: int) -> Plan:
    """``POST /v1/embeddings``: one deterministic unit vector per input, in input order."""
    items = inputs.text_inputs(body.get("input"), "input")
    if len(items) > behaviour.max_inputs:
        raise invalid_request(f"Too many inputs: {len(items)}. The max number of inputs is "
                              f"{behaviour.max_inputs}.", param="input")
    dim = inputs.positive_int(body, "dimensions", default=behaviour.embedding_dim)
    if dim is None or dim > MAX_DIMENSIONS:
        raise invalid_request(f"'dimensions' must be at most {MAX_DIMENSIONS}",
                              param="dimensions")
    base64 = inputs.encoding_format(body) == "base64"
    counts = [tokens if tokens is not None else estimate_tokens(text) for text, tokens in items]
    texts = [text for text, _ in items]
    total = sum(counts)

    def build() -> dict[str, Any]:
        vectors = (embedding_vector(text, dim) for text in texts)
        data = (to_base64(v) for v in vectors) if base64 else vectors
        return payloads.embedding_list(model, data, total)

    return Plan(texts, len(items), max(counts), "input", total, build)


def plan_moderation(body: Body, model: str, behaviour: ModelBehaviour, serial: str,
                    created: int) -> Plan:
    """``POST /v1/moderations``: flagged exactly when an input holds the content trigger."""
    texts = inputs.moderation_texts(body.get("input"))
    trigger = behaviour.content_policy_trigger
    charge = sum(map(estimate_tokens, texts))
    return Plan(texts, len(texts), 0, "input", charge,
                lambda: payloads.moderation("modr-" + serial, model,
                                            [trigger in text for text in texts]),
                policed=False)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A POST endpoint: its name in /_stats, the body keys it reads, and its planner."""

    name: str
    known_keys: frozenset[str]
    planner: Planner
    default_model: str | None = None


ENDPOINTS = (
    Endpoint("chat/completions", inputs.CHAT_KEYS, plan_chat),
    Endpoint("completions", inputs.COMPLETION_KEYS, plan_completion),
    Endpoint("embeddings", inputs.EMBEDDING_KEYS, plan_embeddings),
    Endpoint("moderations", inputs.MODERATION_KEYS, plan_moderation, DEFAULT_MODERATION_MODEL),
)
