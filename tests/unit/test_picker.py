import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import Deployment, Provider
from schedulers.picker import Strategy, Wait, choose
from schedulers.state import Bucket, DeploymentState, Limits, Snapshot
from schedulers.window import bucket_expiry, bucket_of

NOW = 1_000_000.0


def dep(id_: str, *, weight: float = 1.0, order: int | None = None, rpm: int | None = None,
        tpm: int | None = None, parallel: int | None = None) -> Deployment:
    return Deployment(id=id_, model_name="g", provider=Provider.OPENAI, model="m",
                      api_base="http://u/v1", weight=weight, order=order, rpm=rpm, tpm=tpm,
                      max_parallel_requests=parallel)


def used(requests: int = 0, tokens: int = 0, **kw: object) -> DeploymentState:
    bucket = Bucket(bucket_expiry(bucket_of(NOW - 10)), requests, tokens)
    return DeploymentState(buckets=(bucket,), **kw)  # type: ignore[arg-type]


def snap(**states: DeploymentState) -> Snapshot:
    return Snapshot(NOW, states)


def first(group: list[Deployment], snapshot: Snapshot, strategy: str = Strategy.SIMPLE_SHUFFLE,
          rng: random.Random | None = None, tokens: int = 1,
          avoid: tuple[str, ...] = ()) -> str:
    got = choose(group, snapshot, tokens, strategy, rng or random.Random(1), avoid)
    assert not isinstance(got, Wait)
    return got[0].id


def test_simple_shuffle_follows_weights() -> None:
    rng = random.Random(7)
    group = [dep("a", weight=3), dep("b", weight=1)]
    counts = Counter(first(group, snap(), rng=rng) for _ in range(4000))
    assert 0.70 < counts["a"] / 4000 < 0.80


def test_simple_shuffle_uses_rpm_as_weights_when_no_weight_is_set() -> None:
    rng = random.Random(3)
    group = [dep("a", rpm=900), dep("b", rpm=100)]
    counts = Counter(first(group, snap(), rng=rng) for _ in range(4000))
    assert 0.86 < counts["a"] / 4000 < 0.94


def test_lowest_order_tier_is_used_first() -> None:
    group = [dep("late", order=2), dep("early", order=1), dep("unset")]
    assert {first(group, snap(), rng=random.Random(i)) for i in range(100)} == {"early"}


def test_next_tier_serves_when_the_first_is_out_of_budget() -> None:
    group = [dep("early", order=1, rpm=2), dep("late", order=2, rpm=10)]
    assert first(group, snap(early=used(requests=2))) == "late"


def test_avoided_deployments_are_used_only_when_nothing_else_has_room() -> None:
    group = [dep("a", rpm=5), dep("b", rpm=5)]
    assert {first(group, snap(), rng=random.Random(i), avoid=("a",)) for i in range(50)} == {"b"}
    assert first(group, snap(b=used(requests=5)), avoid=("a",)) == "a"


def test_least_busy_prefers_fewest_in_flight() -> None:
    group = [dep("a"), dep("b"), dep("c")]
    s = snap(a=DeploymentState(in_flight=4), b=DeploymentState(in_flight=1),
             c=DeploymentState(in_flight=2))
    assert first(group, s, Strategy.LEAST_BUSY) == "b"


def test_usage_based_prefers_the_least_used_share_of_its_limits() -> None:
    group = [dep("a", rpm=100), dep("b", rpm=10)]
    s = snap(a=used(requests=50), b=used(requests=2))
    assert first(group, s, Strategy.USAGE_BASED) == "b"


def test_latency_based_prefers_fastest_and_measures_unknown_ones_first() -> None:
    group = [dep("a"), dep("b"), dep("c")]
    s = snap(a=DeploymentState(latency=0.5), b=DeploymentState(latency=0.1))
    assert first(group, s, Strategy.LATENCY_BASED) == "c"
    s = snap(a=DeploymentState(latency=0.5), b=DeploymentState(latency=0.1),
             c=DeploymentState(latency=0.9))
    assert first(group, s, Strategy.LATENCY_BASED) == "b"


def test_everything_full_means_wait_until_the_earliest_frees_up() -> None:
    group = [dep("a", rpm=1), dep("b", rpm=1)]
    a = DeploymentState(buckets=(Bucket(NOW + 30, 1, 0),))
    b = DeploymentState(buckets=(Bucket(NOW + 12, 1, 0),))
    assert choose(group, snap(a=a, b=b), 1) == Wait(NOW + 12)


def test_cooling_deployments_are_skipped_and_waited_for() -> None:
    group = [dep("a"), dep("b")]
    s = snap(a=DeploymentState(blocked_until=NOW + 5))
    assert first(group, s) == "b"
    s = snap(a=DeploymentState(blocked_until=NOW + 5), b=DeploymentState(blocked_until=NOW + 3))
    assert choose(group, s, 1) == Wait(NOW + 3)


def test_a_request_bigger_than_every_tpm_never_fits() -> None:
    got = choose([dep("a", tpm=100)], snap(), 101)
    assert isinstance(got, Wait)
    assert math.isinf(got.until)


def test_empty_group_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty model group"):
        choose([], snap(), 1)


limits = st.builds(Limits, rpm=st.none() | st.integers(1, 50), tpm=st.none() | st.integers(1, 5000),
                   max_parallel=st.none() | st.integers(1, 8))


@st.composite
def states(draw: st.DrawFn) -> DeploymentState:
    n = draw(st.integers(0, 4))
    buckets = tuple(sorted(
        (Bucket(NOW + draw(st.floats(0.01, 60.5)), draw(st.integers(0, 20)),
                draw(st.integers(0, 2000))) for _ in range(n)),
        key=lambda b: b.expires_at))
    return DeploymentState(buckets=buckets, in_flight=draw(st.integers(0, 10)),
                           blocked_until=draw(st.sampled_from([0.0, NOW - 1, NOW + 3])))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(limits, states()), min_size=1, max_size=4), st.integers(1, 3000),
       st.sampled_from(list(Strategy)), st.integers(0, 1000))
def test_a_chosen_deployment_never_exceeds_a_declared_budget(
        group_spec: list[tuple[Limits, DeploymentState]], tokens: int, strategy: Strategy,
        seed: int) -> None:
    group = [dep(f"d{i}", rpm=lim.rpm, tpm=lim.tpm, parallel=lim.max_parallel)
             for i, (lim, _s) in enumerate(group_spec)]
    snapshot = Snapshot(NOW, {f"d{i}": s for i, (_l, s) in enumerate(group_spec)})
    got = choose(group, snapshot, tokens, strategy, random.Random(seed))
    if isinstance(got, Wait):
        assert got.until > NOW
        return
    assert got, "a choice is never empty"
    for d in got:
        s = snapshot.of(d.id)
        assert s.blocked_until <= NOW
        assert d.rpm is None or s.requests + 1 <= d.rpm
        assert d.tpm is None or s.tokens + tokens <= d.tpm
        assert d.max_parallel_requests is None or s.in_flight < d.max_parallel_requests
