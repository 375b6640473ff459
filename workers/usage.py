"""The tokens an upstream charged, read from its response body without decoding all of it.

An embeddings answer may be megabytes of floats; ``usage`` sits at its end in every
OpenAI-compatible server, so only the text from the last ``"usage"`` key on is decoded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schedulers.tokens import charged_tokens

_USAGE = b'"usage"'
_DECODER = json.JSONDecoder()


def usage_object(body: bytes) -> dict[str, Any] | None:
    """The top-level ``usage`` object of a JSON response body, or ``None``."""
    at = body.rfind(_USAGE)
    if at < 0:
        return None
    tail = body[at + len(_USAGE):].decode("utf-8", "replace")
    colon = tail.find(":")
    if colon < 0:
        return None
    start = colon + 1
    while start < len(tail) and tail[start].isspace():
        start += 1
    try:
        value, _end = _DECODER.raw_decode(tail, start)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def usage_tokens(body: bytes) -> int | None:
    """The tokens the upstream charged (:func:`schedulers.tokens.charged_tokens`'s rule), or
    ``None`` when its answer says nothing usable."""
    return charged_tokens({"usage": usage_object(body)})


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and upstream requests spent: per job (its record) and per virtual key."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens,
                     self.total_tokens + other.total_tokens, self.requests + other.requests)

    def __bool__(self) -> bool:
        return bool(self.total_tokens or self.requests or self.prompt_tokens
                    or self.completion_tokens)

    def as_dict(self) -> dict[str, int]:
        """The JSON shape callers see."""
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens, "requests": self.requests}

    @classmethod
    def of_fields(cls, fields: Mapping[str, str], prefix: str = "") -> Usage:
        """Read back from a Redis hash (``prefix`` before each name)."""
        def n(name: str) -> int:
            return int(fields.get(prefix + name) or 0)

        return cls(n("prompt_tokens"), n("completion_tokens"), n("total_tokens"),
                   n("requests"))


_ANSWERED = re.compile(rb'"status_code":\d')


def answer_usage(body: bytes, *, answered: bool = True) -> Usage:
    """What one upstream answer's body says it used (a request, when ``answered``)."""
    usage = usage_object(body) or {}

    def n(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) and value > 0 else 0

    prompt = n("prompt_tokens") or n("input_tokens")
    completion = n("completion_tokens") or n("output_tokens")
    total = n("total_tokens") or prompt + completion
    return Usage(prompt, completion, total, 1 if answered else 0)


def result_usage(result: str) -> str:
    """An item result's usage as ``finish_item.lua`` takes it (``''``: no upstream answered)."""
    raw = result.encode()
    if not _ANSWERED.search(raw, 0, 4096):
        return ""
    u = answer_usage(raw)
    return f"{u.prompt_tokens} {u.completion_tokens} {u.total_tokens} {u.requests}"
