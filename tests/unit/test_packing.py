"""Embedding packing: plans within limits, merged bodies, and answers split back per item."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Deployment, Provider
from schedulers.packing import (
    DEFAULT_MAX_INPUTS,
    DEFAULT_MAX_TOKENS_PER_REQUEST,
    Pack,
    PackLimits,
    limits_for,
    merged_body,
    pack,
    packable,
    share,
    split_response,
    too_large,
)


def test_items_are_packed_in_order_up_to_the_input_limit_exactly() -> None:
    packs = pack([(2, 10), (2, 10), (1, 5), (1, 5)], max_inputs=4, max_tokens=None)
    assert packs == [Pack((0, 1), 20, 4), Pack((2, 3), 10, 2)]


def test_a_pack_may_reach_the_token_limit_but_not_pass_it() -> None:
    packs = pack([(1, 40), (1, 60), (1, 1)], max_inputs=100, max_tokens=100)
    assert packs == [Pack((0, 1), 100, 2), Pack((2,), 1, 1)]


def test_an_item_over_a_limit_alone_gets_a_pack_of_its_own() -> None:
    packs = pack([(1, 5), (1, 500), (1, 5), (9, 5), (1, 5)], max_inputs=4, max_tokens=100)
    assert [p.indexes for p in packs] == [(0,), (1,), (2,), (3,), (4,)]


def test_nothing_to_pack_is_no_packs() -> None:
    assert pack([], max_inputs=1, max_tokens=1) == []


@pytest.mark.parametrize(("max_inputs", "max_tokens"), [(0, None), (1, 0)])
def test_limits_below_one_are_refused(max_inputs: int, max_tokens: int | None) -> None:
    with pytest.raises(ValueError, match="positive"):
        pack([(1, 1)], max_inputs=max_inputs, max_tokens=max_tokens)


items = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 200)), max_size=30)


@given(items, st.integers(1, 25), st.none() | st.integers(1, 300))
def test_packs_keep_order_cover_every_item_and_respect_limits(
        batch: list[tuple[int, int]], max_inputs: int, max_tokens: int | None) -> None:
    packs = pack(batch, max_inputs=max_inputs, max_tokens=max_tokens)
    assert [i for p in packs for i in p.indexes] == list(range(len(batch)))
    for p in packs:
        assert p.inputs == sum(batch[i][0] for i in p.indexes)
        assert p.tokens == sum(batch[i][1] for i in p.indexes)
        if len(p.indexes) > 1:
            assert p.inputs <= max_inputs
            assert max_tokens is None or p.tokens <= max_tokens


LIMITS = PackLimits(max_inputs=4, max_tokens=100, max_input_tokens=30)


@pytest.mark.parametrize(("n_inputs", "tokens", "per_input", "fragment"), [
    (5, 10, [2] * 5, "5 inputs; this deployment takes at most 4"),
    (2, 40, [10, 31], "input 1 has about 31 tokens; this model takes at most 30"),
    (4, 101, [25, 25, 25, 26], "about 101 tokens; this deployment takes at most 100"),
])
def test_too_large_says_why_an_item_can_never_be_sent(
        n_inputs: int, tokens: int, per_input: list[int], fragment: str) -> None:
    reason = too_large(n_inputs, tokens, per_input, LIMITS)
    assert reason is not None
    assert fragment in reason


def test_an_item_exactly_at_every_limit_can_be_sent() -> None:
    assert too_large(4, 100, [30, 30, 30, 10], LIMITS) is None
    assert too_large(9999, 10**9, [10**6], PackLimits(10**4, None, None)) is None


def deployment(**limits: int) -> Deployment:
    return Deployment(id="d", model_name="e", provider=Provider.OPENAI, model="e",
                      api_base="http://h/v1", **limits)


def test_limits_default_to_openais_and_no_per_input_limit() -> None:
    assert limits_for(deployment()) == PackLimits(
        DEFAULT_MAX_INPUTS, DEFAULT_MAX_TOKENS_PER_REQUEST, None)


def test_limits_come_from_the_deployment() -> None:
    declared = deployment(max_inputs_per_request=32, max_tokens_per_request=8192,
                          max_input_tokens=512)
    assert limits_for(declared) == PackLimits(32, 8192, 512)


@pytest.mark.parametrize(("value", "ok"), [
    ("text", True), (["a", "b"], True), ([], False), ([1, 2], False), ([[1], [2]], False),
    (["a", 1], False), (None, False),
])
def test_only_string_inputs_are_packable(value: Any, ok: bool) -> None:
    assert packable({"model": "e", "input": value}) is ok


def test_merged_body_concatenates_inputs_and_keeps_the_first_params() -> None:
    bodies = [{"model": "e", "input": "one", "dimensions": 8},
              {"model": "e", "input": ["two", "three"], "dimensions": 8}]
    assert merged_body(bodies) == {"model": "e", "input": ["one", "two", "three"],
                                   "dimensions": 8}
    assert bodies[0]["input"] == "one"


@pytest.mark.parametrize("bodies", [[], [{"input": "a"}, {"input": [1, 2]}]])
def test_merged_body_refuses_nothing_or_token_inputs(bodies: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="merge"):
        merged_body(bodies)


def embedding(index: int) -> dict[str, Any]:
    return {"object": "embedding", "index": index, "embedding": [float(index)]}


def test_split_response_reorders_renumbers_and_splits_usage_exactly() -> None:
    upstream = {"object": "list", "model": "text-embedding-3-small",
                "data": [embedding(2), embedding(0), embedding(1)],
                "usage": {"prompt_tokens": 10, "total_tokens": 10}}
    first, second = split_response(upstream, counts=[1, 2], tokens=[1, 2])
    assert first == {"object": "list", "data": [embedding(0)],
                     "model": "text-embedding-3-small",
                     "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    assert second["data"] == [{**embedding(1), "index": 0},
                              {**embedding(2), "embedding": [2.0], "index": 1}]
    assert second["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


def test_split_response_without_usage_charges_the_estimates() -> None:
    upstream = {"model": "m", "data": [embedding(0), embedding(1)]}
    parts = split_response(upstream, counts=[1, 1], tokens=[4, 6])
    assert [p["usage"]["total_tokens"] for p in parts] == [4, 6]


@pytest.mark.parametrize("data", [[embedding(0)], [embedding(0)] * 3, None, ["x", "y"]])
def test_split_response_refuses_a_wrong_number_of_embeddings(data: Any) -> None:
    with pytest.raises(ValueError, match="embeddings"):
        split_response({"model": "m", "data": data}, counts=[1, 1], tokens=[1, 1])


def test_split_response_refuses_mismatched_counts_and_tokens() -> None:
    with pytest.raises(ValueError, match="one entry per item"):
        split_response({"data": [embedding(0)]}, counts=[1], tokens=[1, 2])


@given(st.integers(0, 10**6), st.lists(st.integers(0, 10**4), min_size=1, max_size=20))
def test_share_sums_exactly_and_stays_within_one_of_proportional(
        total: int, weights: list[int]) -> None:
    shares = share(total, weights)
    assert sum(shares) == total
    assert all(s >= 0 for s in shares)
    effective = weights if any(weights) else [1] * len(weights)
    for s, w in zip(shares, effective, strict=True):
        assert abs(s - total * w / sum(effective)) < 1


def test_share_gives_the_leftover_to_the_largest_remainders_first() -> None:
    assert share(10, [1, 1, 1]) == [4, 3, 3]
    assert share(10, [1, 2, 3]) == [2, 3, 5]
    assert share(5, [0, 0]) == [3, 2]
