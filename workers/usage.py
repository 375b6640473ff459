"""The tokens an upstream charged, read from its response body without decoding all of it.

An embeddings answer may be megabytes of floats; ``usage`` sits at its end in every
OpenAI-compatible server, so only the text from the last ``"usage"`` key on is decoded.
"""

from __future__ import annotations

import json
from typing import Any

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
    """``usage.total_tokens`` (or prompt + completion tokens), or ``None`` when absent."""
    usage = usage_object(body)
    if usage is None:
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    counted = [p for p in parts if isinstance(p, int) and not isinstance(p, bool) and p >= 0]
    return sum(counted) if counted else None
