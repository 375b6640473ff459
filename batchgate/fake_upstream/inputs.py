"""Reading OpenAI request bodies: pure functions from a decoded JSON body to plain values.

Lenient where OpenAI is lenient (content as a string or a list of parts, token-id inputs),
strict where a gateway bug should show up as a 400 (missing model, wrong input types).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchgate.fake_upstream.errors import invalid_request
from batchgate.fake_upstream.vectors import tokens_key

Body = Mapping[str, Any]

CHAT_KEYS = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "n",
                       "stream", "stream_options"})
COMPLETION_KEYS = frozenset({"model", "prompt", "max_tokens", "n", "stream", "stream_options"})
EMBEDDING_KEYS = frozenset({"model", "input", "encoding_format", "dimensions"})
MODERATION_KEYS = frozenset({"model", "input"})


def extra_keys(body: Body, known: frozenset[str]) -> list[str]:
    """Top-level body keys the fake does not interpret (recorded in the /_stats log)."""
    return sorted(key for key in body if key not in known)


def model_name(body: Body) -> str:
    """The requested model; every name is served but one must be given."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("you must provide a model parameter", param="model")
    return model


def content_text(content: Any) -> str:
    """The text of a message ``content``: a string, a list of parts, or null (tool calls)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content
                        if isinstance(part, dict) and isinstance(part.get("text", ""), str))
    raise invalid_request("message content must be a string or a list of parts",
                          param="messages")


def chat_texts(body: Body) -> tuple[list[str], str]:
    """Every message's text, and the text of the last user message (the reply echoes it)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty array", param="messages")
    texts: list[str] = []
    last_user = ""
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise invalid_request("each message must be an object with a 'role'",
                                  param="messages")
        text = content_text(message.get("content"))
        texts.append(text)
        if message["role"] == "user":
            last_user = text
    return texts, last_user


def _token_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in value)


def text_inputs(value: Any, param: str) -> list[tuple[str, int | None]]:
    """``input``/``prompt``: str | list[str] | list[int] | list[list[int]] -> [(text, tokens)].

    Pre-tokenized inputs carry their exact token count (their length) and a stand-in text for
    hashing; text inputs carry ``None`` and are estimated by the caller.
    """
    if isinstance(value, str):
        return [(value, None)]
    if isinstance(value, list) and value:
        if all(isinstance(x, str) for x in value):
            return [(x, None) for x in value]
        if _token_list(value):
            return [(tokens_key(value), len(value))]
        if all(_token_list(x) and x for x in value):
            return [(tokens_key(x), len(x)) for x in value]
    raise invalid_request(f"'{param}' must be a string, an array of strings, an array of "
                          "token ids, or an array of token-id arrays", param=param)


def moderation_texts(value: Any) -> list[str]:
    """Moderation ``input``: a string, strings, or multimodal parts (text parts are read)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(x, str) for x in value):
            return list(value)
        if all(isinstance(x, dict) for x in value):
            return [content_text([x]) for x in value]
    raise invalid_request("'input' must be a string or an array", param="input")


def positive_int(body: Body, *names: str, default: int | None = None) -> int | None:
    """The first of ``names`` present in ``body`` as a positive integer, else ``default``."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid_request(f"'{name}' must be a positive integer", param=name)
        return value
    return default


def stream_flags(body: Body) -> tuple[bool, bool]:
    """``(stream, include_usage)`` from ``stream`` and ``stream_options.include_usage``."""
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    return stream, include_usage


def encoding_format(body: Body) -> str:
    """``float`` (default) or ``base64``."""
    value = body.get("encoding_format") or "float"
    if value not in ("float", "base64"):
        raise invalid_request("'encoding_format' must be 'float' or 'base64'",
                              param="encoding_format")
    return str(value)
