"""Embedding packing: many small embeddings requests sent upstream as a few large ones.

An upstream's rpm is usually the scarcer budget for embeddings: one request may carry up to
2,048 inputs, so packing queued items into one request spends one request where each item
would have spent one. All of it is pure: :func:`pack` plans the packs, :func:`merged_body`
builds one upstream body, :func:`split_response` gives each item its own OpenAI response.

Only string inputs are packed (:func:`packable`): OpenAI refuses a request that mixes strings
with token-id lists, and a bare list of ints is ambiguous once concatenated with others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config.settings import Deployment
from schedulers.tokens import charged_tokens

DEFAULT_MAX_INPUTS = 2048
"""OpenAI's limit of embeddings inputs per request."""
DEFAULT_MAX_TOKENS_PER_REQUEST = 300_000
"""OpenAI's limit of input tokens summed over one embeddings request."""


@dataclass(frozen=True)
class Pack:
    """Items sent upstream as one request: their positions, and what they add up to."""

    indexes: tuple[int, ...]
    tokens: int
    inputs: int


@dataclass(frozen=True)
class PackLimits:
    """What one upstream embeddings request may carry; ``None`` means no such limit."""

    max_inputs: int
    max_tokens: int | None
    max_input_tokens: int | None


def limits_for(deployment: Deployment) -> PackLimits:
    """The limits ``deployment`` declares, OpenAI's where it declares none."""
    return PackLimits(
        max_inputs=deployment.max_inputs_per_request or DEFAULT_MAX_INPUTS,
        max_tokens=deployment.max_tokens_per_request or DEFAULT_MAX_TOKENS_PER_REQUEST,
        # No default: an input's limit depends on the model, and the upstream knows it.
        max_input_tokens=deployment.max_input_tokens,
    )


def pack(items: Sequence[tuple[int, int]], *, max_inputs: int,
         max_tokens: int | None) -> list[Pack]:
    """Group ``(n_inputs, tokens)`` items greedily, in order, into packs within both limits.

    An item over a limit on its own gets a pack of its own; whether to send it at all is the
    caller's call (see :func:`too_large`).
    """
    if max_inputs < 1 or (max_tokens is not None and max_tokens < 1):
        raise ValueError("pack limits must be positive")
    packs: list[Pack] = []
    indexes: list[int] = []
    inputs = tokens = 0
    for index, (n_inputs, n_tokens) in enumerate(items):
        over = inputs + n_inputs > max_inputs or (
            max_tokens is not None and tokens + n_tokens > max_tokens)
        if indexes and over:
            packs.append(Pack(tuple(indexes), tokens, inputs))
            indexes, inputs, tokens = [], 0, 0
        indexes.append(index)
        inputs += n_inputs
        tokens += n_tokens
    if indexes:
        packs.append(Pack(tuple(indexes), tokens, inputs))
    return packs


def too_large(n_inputs: int, tokens: int, per_input_tokens: Sequence[int],
              limits: PackLimits) -> str | None:
    """Why one item can never be sent within ``limits``, or None when it can."""
    if n_inputs > limits.max_inputs:
        return (f"the request has {n_inputs} inputs; this deployment takes at most "
                f"{limits.max_inputs} per request")
    if limits.max_input_tokens is not None:
        for position, count in enumerate(per_input_tokens):
            if count > limits.max_input_tokens:
                return (f"input {position} has about {count} tokens; this model takes at most "
                        f"{limits.max_input_tokens} per input")
    if limits.max_tokens is not None and tokens > limits.max_tokens:
        return (f"the request has about {tokens} tokens; this deployment takes at most "
                f"{limits.max_tokens} per request")
    return None


def packable(body: Mapping[str, Any]) -> bool:
    """Whether an embeddings body can be merged with others: its ``input`` is a string or a
    non-empty list of strings (token-id inputs are sent as they are)."""
    value = body.get("input")
    if isinstance(value, str):
        return True
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def merged_body(bodies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One embeddings request carrying every input of ``bodies``, in order.

    The caller groups bodies that agree on everything but ``input`` (model,
    ``encoding_format``, ``dimensions``, ...); the params are taken from the first.
    """
    if not bodies:
        raise ValueError("nothing to merge")
    inputs: list[Any] = []
    for body in bodies:
        if not packable(body):
            raise ValueError("only string inputs can be merged")
        value = body["input"]
        inputs.extend([value] if isinstance(value, str) else value)
    return {**bodies[0], "input": inputs}


def split_response(body: Mapping[str, Any], counts: Sequence[int],
                   tokens: Sequence[int]) -> list[dict[str, Any]]:
    """The upstream's answer to a merged request, as one OpenAI embeddings response per item.

    ``counts`` are the items' numbers of inputs, in merge order. The upstream's usage is
    shared in proportion to the items' estimated ``tokens``, in whole tokens that add up to
    its total exactly (largest remainder); the estimates stand in when it reports no usage.
    """
    if len(counts) != len(tokens):
        raise ValueError("counts and tokens must have one entry per item")
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(d, Mapping) for d in data):
        raise ValueError("the upstream's response has no list of embeddings")
    if len(data) != sum(counts):
        raise ValueError(f"the upstream returned {len(data)} embeddings for "
                         f"{sum(counts)} inputs")
    # Upstreams may answer out of order; "index" is the input's position in the request.
    ordered = sorted(data, key=_index)
    reported = charged_tokens(body)
    total = sum(tokens) if reported is None else reported
    shares = share(total, tokens if sum(tokens) > 0 else counts)
    out = []
    start = 0
    for count, part in zip(counts, shares, strict=True):
        embeddings = [{**item, "index": i} for i, item in enumerate(ordered[start:start + count])]
        start += count
        out.append({"object": "list", "data": embeddings, "model": body.get("model"),
                    "usage": {"prompt_tokens": part, "total_tokens": part}})
    return out


def share(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` into whole numbers that sum to it exactly
    (largest remainder, earlier first on ties); equal shares when the weights are all 0."""
    weights = [max(0, w) for w in weights]
    if not any(weights):
        weights = [1] * len(weights)
    whole = sum(weights)
    parts = [divmod(total * w, whole) for w in weights]
    shares = [q for q, _ in parts]
    leftover = total - sum(shares)
    by_remainder = sorted(range(len(parts)), key=lambda i: -parts[i][1])
    for i in by_remainder[:leftover]:
        shares[i] += 1
    return shares


def _index(item: Mapping[str, Any]) -> int:
    index = item.get("index")
    # An upstream that leaves "index" out answers in order (sorted() is stable).
    return index if isinstance(index, int) and not isinstance(index, bool) else 0
