"""Fallback chains in LiteLLM's order, and per-request fallback options taken out of bodies."""

from __future__ import annotations

from typing import Any

import pytest

from batchgate.errors import RequestError
from config.settings import RouterSettings
from schedulers.fallbacks import RoutingOptions, fallback_chain, pop_routing_options
from schedulers.retry import ErrorClass

ROUTER = RouterSettings(
    fallbacks={"a": ("b", "c"), "quiet": ()},
    context_window_fallbacks={"a": ("big",)},
    content_policy_fallbacks={"a": ("lenient",)},
    default_fallbacks=("d",),
)
NONE = RoutingOptions(fallbacks=None, disabled=False)


def test_pop_routing_options_takes_the_keys_out_of_the_body() -> None:
    body = {"model": "a", "fallbacks": ["b", {"model": "c"}], "disable_fallbacks": False}
    assert pop_routing_options(body) == RoutingOptions(fallbacks=("b", "c"), disabled=False)
    assert body == {"model": "a"}


def test_a_body_without_options_gives_none_and_stays_as_it_was() -> None:
    body = {"model": "a", "input": "x"}
    assert pop_routing_options(body) == NONE
    assert body == {"model": "a", "input": "x"}


def test_disable_fallbacks_and_an_empty_list_are_kept() -> None:
    assert pop_routing_options({"disable_fallbacks": True}).disabled is True
    assert pop_routing_options({"fallbacks": []}).fallbacks == ()


@pytest.mark.parametrize(("body", "param"), [
    ({"fallbacks": "b"}, "fallbacks"),
    ({"fallbacks": "b,c"}, "fallbacks"),
    ({"fallbacks": {"a": ["b"]}}, "fallbacks"),
    ({"fallbacks": ["b", ""]}, "fallbacks[1]"),
    ({"fallbacks": ["b", 3]}, "fallbacks[1]"),
    ({"fallbacks": [{"model": 3}]}, "fallbacks[0]"),
    ({"fallbacks": [{}]}, "fallbacks[0]"),
    ({"fallbacks": [{"model": "b", "messages": []}]}, "fallbacks[0]"),
    ({"fallbacks": [{"a": ["b"]}]}, "fallbacks[0]"),
    ({"disable_fallbacks": "yes"}, "disable_fallbacks"),
    ({"disable_fallbacks": 1}, "disable_fallbacks"),
])
def test_malformed_options_are_a_400_naming_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        pop_routing_options(body)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert caught.value.code == "invalid_fallbacks"


@pytest.mark.parametrize("error", [ErrorClass.RATE_LIMIT, ErrorClass.TIMEOUT, ErrorClass.SERVER,
                                   ErrorClass.AUTH, ErrorClass.NOT_FOUND])
def test_general_failures_use_the_groups_fallbacks(error: ErrorClass) -> None:
    assert fallback_chain("a", error, ROUTER, NONE) == ("b", "c")


def test_a_group_without_fallbacks_uses_the_default_ones() -> None:
    assert fallback_chain("x", ErrorClass.SERVER, ROUTER, NONE) == ("d",)


def test_a_group_with_an_empty_list_has_no_fallbacks() -> None:
    assert fallback_chain("quiet", ErrorClass.SERVER, ROUTER, NONE) == ()


def test_the_requests_fallbacks_win_over_the_configs() -> None:
    options = RoutingOptions(fallbacks=("z", "y"), disabled=False)
    assert fallback_chain("a", ErrorClass.SERVER, ROUTER, options) == ("z", "y")
    assert fallback_chain("a", ErrorClass.SERVER, ROUTER,
                          RoutingOptions(fallbacks=(), disabled=False)) == ()


def test_context_window_failures_prefer_their_own_fallbacks() -> None:
    assert fallback_chain("a", ErrorClass.CONTEXT_WINDOW, ROUTER, NONE) == ("big",)
    options = RoutingOptions(fallbacks=("z",), disabled=False)
    assert fallback_chain("a", ErrorClass.CONTEXT_WINDOW, ROUTER, options) == ("big",)
    assert fallback_chain("x", ErrorClass.CONTEXT_WINDOW, ROUTER, NONE) == ("d",)


def test_content_policy_failures_prefer_their_own_fallbacks() -> None:
    assert fallback_chain("a", ErrorClass.CONTENT_POLICY, ROUTER, NONE) == ("lenient",)
    assert fallback_chain("x", ErrorClass.CONTENT_POLICY, ROUTER, NONE) == ("d",)


def test_bad_requests_and_disabled_fallbacks_have_no_chain() -> None:
    assert fallback_chain("a", ErrorClass.BAD_REQUEST, ROUTER, NONE) == ()
    disabled = RoutingOptions(fallbacks=("z",), disabled=True)
    assert fallback_chain("a", ErrorClass.CONTEXT_WINDOW, ROUTER, disabled) == ()


def test_the_group_itself_and_repeats_are_dropped_in_order() -> None:
    router = RouterSettings(fallbacks={"a": ("b", "a", "c", "b", "d")})
    assert fallback_chain("a", ErrorClass.SERVER, router, NONE) == ("b", "c", "d")


@pytest.mark.parametrize(("max_fallbacks", "chain"), [
    (5, ("b", "c", "d", "e", "f")), (2, ("b", "c")), (0, ())])
def test_the_chain_is_truncated_to_max_fallbacks(max_fallbacks: int,
                                                 chain: tuple[str, ...]) -> None:
    router = RouterSettings(fallbacks={"a": ("b", "a", "c", "d", "e", "f", "g")},
                            max_fallbacks=max_fallbacks)
    assert fallback_chain("a", ErrorClass.RATE_LIMIT, router, NONE) == chain
