import random
from collections import Counter

import pytest

from config.settings import Deployment, Provider
from schedulers.picker import WeightedShuffle


def dep(id_: str, *, weight: float = 1.0, order: int | None = None) -> Deployment:
    return Deployment(id=id_, model_name="g", provider=Provider.OPENAI, model="m",
                      api_base="http://u/v1", weight=weight, order=order)


def test_weighted_shuffle_follows_weights() -> None:
    picker = WeightedShuffle(random.Random(7))
    group = [dep("a", weight=3), dep("b", weight=1)]
    counts = Counter(picker.pick(group).id for _ in range(4000))
    assert 0.70 < counts["a"] / 4000 < 0.80


def test_lowest_order_tier_is_used_first() -> None:
    picker = WeightedShuffle(random.Random(1))
    group = [dep("late", order=2), dep("early", order=1), dep("unset")]
    assert {picker.pick(group).id for _ in range(200)} == {"early"}


def test_avoided_deployments_are_skipped_while_others_remain() -> None:
    picker = WeightedShuffle(random.Random(3))
    group = [dep("a"), dep("b")]
    assert {picker.pick(group, avoid={"a"}).id for _ in range(100)} == {"b"}
    assert picker.pick([dep("a")], avoid={"a"}).id == "a"


def test_empty_group_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        WeightedShuffle().pick([])
