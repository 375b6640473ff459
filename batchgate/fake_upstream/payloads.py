"""OpenAI response bodies, as plain dicts, plus SSE framing. Pure and cheap: no I/O, no clock."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

SYSTEM_FINGERPRINT = "fp_fake_upstream"
OWNED_BY = "fake-upstream"
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)
FLAGGED_CATEGORY = "violence"
"""The category a flagged input is flagged for; any one would do, this one is stable."""

# ensure_ascii (the default) keeps lone surrogates from the input encodable on the way out.
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return _dumps(obj).encode("ascii")


def usage(prompt_tokens: int, completion_tokens: int | None = None) -> dict[str, int]:
    """A ``usage`` object; embeddings have no completion tokens."""
    if completion_tokens is None:
        return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(rid: str, created: int, model: str, content: str, finish: str, n: int,
                    usage_: dict[str, int]) -> dict[str, Any]:
    """A ``chat.completion`` with ``n`` identical choices."""
    return {
        "id": rid, "object": "chat.completion", "created": created, "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": content, "refusal": None},
             "logprobs": None, "finish_reason": finish}
            for i in range(n)
        ],
        "usage": usage_, "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def chat_chunks(rid: str, created: int, model: str, words: Sequence[str], finish: str, n: int,
                usage_: dict[str, int] | None) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events: a role chunk, one per word, a finish chunk, and a
    usage chunk (empty choices) when ``usage_`` is given, as OpenAI's include_usage does."""
    head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT}
    if usage_ is not None:
        head["usage"] = None  # OpenAI sends usage: null on every chunk but the last

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None,
                  "finish_reason": finish_reason}
        return {**head, "choices": [choice]}

    chunks: list[dict[str, Any]] = []
    for i in range(n):
        chunks.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}, None))
        chunks.extend(chunk(i, {"content": word if j == 0 else " " + word}, None)
                      for j, word in enumerate(words))
        chunks.append(chunk(i, {}, finish))
    if usage_ is not None:
        chunks.append({**head, "choices": [], "usage": usage_})
    return chunks


def text_completion(rid: str, created: int, model: str, texts: Sequence[tuple[str, str]],
                    n: int, usage_: dict[str, int]) -> dict[str, Any]:
    """A ``text_completion``: ``n`` choices per prompt, as OpenAI orders them."""
    choices = [
        {"text": text, "index": p * n + i, "logprobs": None, "finish_reason": finish}
        for p, (text, finish) in enumerate(texts) for i in range(n)
    ]
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": choices, "usage": usage_, "system_fingerprint": SYSTEM_FINGERPRINT}


def text_chunks(rid: str, created: int, model: str, texts: Sequence[tuple[str, str]], n: int,
                usage_: dict[str, int] | None) -> list[dict[str, Any]]:
    """Streamed ``text_completion`` events: one per word per choice, then the finish events."""
    head = {"id": rid, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT}
    chunks: list[dict[str, Any]] = []
    for p, (text, finish) in enumerate(texts):
        for i in range(n):
            index = p * n + i
            chunks.extend(
                {**head, "choices": [{"text": word if j == 0 else " " + word, "index": index,
                                      "logprobs": None, "finish_reason": None}]}
                for j, word in enumerate(text.split()))
            chunks.append({**head, "choices": [{"text": "", "index": index, "logprobs": None,
                                                "finish_reason": finish}]})
    if usage_ is not None:
        chunks.append({**head, "choices": [], "usage": usage_})
    return chunks


def embedding_list(model: str, data: Iterable[list[float] | str],
                   prompt_tokens: int) -> dict[str, Any]:
    """A ``list`` of ``embedding`` objects, in input order (float lists or base64 strings)."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(data)],
        "model": model,
        "usage": usage(prompt_tokens),
    }


def moderation(rid: str, model: str, flagged: Sequence[bool]) -> dict[str, Any]:
    """A moderation object: one result per input, flagged for :data:`FLAGGED_CATEGORY`."""
    def result(hit: bool) -> dict[str, Any]:
        return {
            "flagged": hit,
            "categories": {c: hit and c == FLAGGED_CATEGORY for c in MODERATION_CATEGORIES},
            "category_scores": {c: 0.99 if hit and c == FLAGGED_CATEGORY else 0.0001
                                for c in MODERATION_CATEGORIES},
        }
    return {"id": rid, "model": model, "results": [result(hit) for hit in flagged]}


def model_list(names: Iterable[str], created: int) -> dict[str, Any]:
    """``GET /v1/models``."""
    return {"object": "list", "data": [model_object(name, created) for name in names]}


def model_object(name: str, created: int) -> dict[str, Any]:
    """One ``model`` object."""
    return {"id": name, "object": "model", "created": created, "owned_by": OWNED_BY}


def sse(events: Iterable[dict[str, Any]]) -> bytes:
    """Events framed as ``data: {json}\\n\\n``, terminated by ``data: [DONE]\\n\\n``."""
    return b"".join([*(b"data: " + dumps(e) + b"\n\n" for e in events), b"data: [DONE]\n\n"])


def sse_event(event: dict[str, Any]) -> bytes:
    """One framed event (for paced streams)."""
    return b"data: " + dumps(event) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
