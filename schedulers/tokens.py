"""Token estimates before an upstream call, and the tokens it was charged after.

The estimate reserves tpm budget before the call; :func:`charged_tokens` corrects it once the
upstream's ``usage`` is known. So it should be close, and when unsure, high: an estimate that
is too low lets a burst through that the upstream then answers with 429s.

The tokenizer: ``tiktoken`` is not a dependency, since it downloads its encodings on first
use, which cannot work offline. When it is installed and ``cl100k_base``
(:data:`DEFAULT_ENCODING`) loads, it is used; whether it loads is tried once per process.
Otherwise the fallback counts every ASCII character as 1/4 token (:data:`ASCII_PER_TOKEN`,
rounded up per text) and every other character as 1 token: about right for English, and
conservative for CJK and other scripts, where tokenizers spend about a token per character.

Request shapes follow OpenAI's API. Nothing here raises on an odd shape: a part it does not
understand counts 0 tokens (the upstream will judge the request), and an estimate is >= 1.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_ENCODING = "cl100k_base"
ASCII_PER_TOKEN = 4
"""Fallback tokenizer: ASCII characters per token (OpenAI's rule of thumb for English)."""
DEFAULT_COMPLETION_TOKENS = 256
"""Chat: completion tokens assumed when the request sets no ``max_completion_tokens`` or
``max_tokens`` (the real default is "up to the context window"; that would block all)."""
DEFAULT_COMPLETIONS_MAX_TOKENS = 16
"""Legacy completions: OpenAI's default ``max_tokens``."""
TOKENS_PER_MESSAGE = 3
"""Chat: tokens each message costs beyond its content (OpenAI's cookbook count)."""
TOKENS_PER_REPLY = 3
"""Chat: tokens priming the reply (``<|start|>assistant<|message|>``)."""


def text_tokens(text: str) -> int:
    """Tokens in ``text``: tiktoken's count when it loads, else the fallback's."""
    encode = _encoder()
    if encode is not None:
        return len(encode(text))
    ascii_chars = sum(1 for char in text if char.isascii())
    return math.ceil(ascii_chars / ASCII_PER_TOKEN) + (len(text) - ascii_chars)


def estimate(endpoint: str, body: Mapping[str, Any]) -> int:
    """Tokens one request to ``endpoint`` (``chat/completions``, ``embeddings``, ...) will
    likely cost, prompt and completion together; at least 1."""
    counter = _COUNTERS.get(endpoint)
    if counter is None or not isinstance(body, Mapping):
        return 1
    return max(1, counter(body))


def input_tokens(value: Any) -> list[int]:
    """Tokens of each input of an embeddings ``input``: a string is one input, a list of
    strings many; a list of token ids is one input, a list of such lists many."""
    if isinstance(value, str):
        return [text_tokens(value)]
    if not isinstance(value, list):
        return []
    if value and all(_is_int(item) for item in value):
        return [len(value)]
    return [_one_input(item) for item in value]


def charged_tokens(body: Any) -> int | None:
    """The tokens a decoded response says it used: ``usage.total_tokens``, else
    ``prompt_tokens`` + ``completion_tokens``; None when it says nothing usable."""
    usage = body.get("usage") if isinstance(body, Mapping) else None
    if not isinstance(usage, Mapping):
        return None
    total = _count(usage.get("total_tokens"))
    if total is not None:
        return total
    prompt, completion = _count(usage.get("prompt_tokens")), _count(
        usage.get("completion_tokens", 0))
    return None if prompt is None or completion is None else prompt + completion


@functools.cache
def _encoder() -> Callable[[str], list[int]] | None:
    """tiktoken's encode for :data:`DEFAULT_ENCODING`, or None; tried once per process."""
    try:
        tiktoken = importlib.import_module("tiktoken")
        encoding = tiktoken.get_encoding(DEFAULT_ENCODING)
        encoding.encode("probe")
    except Exception:  # missing module, no network, a corrupt cache: all mean the fallback
        return None

    def encode(text: str) -> list[int]:
        # Special-token text in a prompt is just text to the upstream: count it, never raise.
        tokens: list[int] = encoding.encode(text, disallowed_special=())
        return tokens

    return encode


def _chat(body: Mapping[str, Any]) -> int:
    messages = body.get("messages")
    prompt = TOKENS_PER_REPLY
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, Mapping):
            prompt += TOKENS_PER_MESSAGE + _message_tokens(message)
    limit = _positive(body.get("max_completion_tokens")) or _positive(body.get("max_tokens"))
    return prompt + (limit or DEFAULT_COMPLETION_TOKENS) * _choices(body)


def _message_tokens(message: Mapping[str, Any]) -> int:
    """Content, name and tool-call arguments: the parts of a message that are real text."""
    tokens = _content_tokens(message.get("content"))
    name = message.get("name")
    if isinstance(name, str):
        tokens += text_tokens(name)
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            tokens += sum(text_tokens(function[key]) for key in ("name", "arguments")
                          if isinstance(function.get(key), str))
    return tokens


def _content_tokens(content: Any) -> int:
    """A string, or a list of parts of which the ``{"type": "text", "text": ...}`` count."""
    if isinstance(content, str):
        return text_tokens(content)
    if not isinstance(content, list):
        return 0
    return sum(text_tokens(part["text"]) for part in content
               if isinstance(part, Mapping) and part.get("type") == "text"
               and isinstance(part.get("text"), str))


def _completions(body: Mapping[str, Any]) -> int:
    prompt = sum(input_tokens(body.get("prompt")))
    limit = _positive(body.get("max_tokens"))
    # best_of completions are generated (and charged) even though n are returned.
    choices = max(_choices(body), _positive(body.get("best_of")) or 1)
    return prompt + (DEFAULT_COMPLETIONS_MAX_TOKENS if limit is None else limit) * choices


def _embeddings(body: Mapping[str, Any]) -> int:
    return sum(input_tokens(body.get("input")))


def _moderations(body: Mapping[str, Any]) -> int:
    value = body.get("input")
    # A string, a list of strings, or a list of multimodal parts of which the text ones count.
    items = value if isinstance(value, list) else [value]
    return sum(text_tokens(item) if isinstance(item, str) else _content_tokens([item])
               for item in items)


_COUNTERS: Mapping[str, Callable[[Mapping[str, Any]], int]] = {
    "chat/completions": _chat,
    "completions": _completions,
    "embeddings": _embeddings,
    "moderations": _moderations,
}


def _one_input(item: Any) -> int:
    if isinstance(item, str):
        return text_tokens(item)
    if isinstance(item, list):
        return len(item)
    return 0


def _choices(body: Mapping[str, Any]) -> int:
    return _positive(body.get("n")) or 1


def _positive(value: Any) -> int | None:
    """A positive integer request field, else None."""
    return value if _is_int(value) and value > 0 else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> int | None:
    """A non-negative integer usage field, else None."""
    return value if _is_int(value) and value >= 0 else None
