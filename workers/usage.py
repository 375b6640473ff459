"""The tokens an upstream charged, read from its response body without decoding all of it.

An embeddings answer may be megabytes of floats; ``usage`` sits at its end in every
OpenAI-compatible server, so only the text from the last ``"usage"`` key on is decoded.
"""

from __future__ import annotations

import json
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
