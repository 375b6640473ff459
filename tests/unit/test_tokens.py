"""Token estimates of requests before a call, and the charge read from a response after it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedulers import tokens
from schedulers.tokens import (
    DEFAULT_COMPLETION_TOKENS,
    DEFAULT_COMPLETIONS_MAX_TOKENS,
    charged_tokens,
    estimate,
    input_tokens,
    text_tokens,
)

REAL_ENCODER = tokens._encoder


@pytest.fixture(autouse=True)
def fallback_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact counts below are the fallback's, whether or not tiktoken is installed."""
    monkeypatch.setattr(tokens, "_encoder", lambda: None)


@pytest.mark.parametrize(("text", "count"), [
    ("", 0),
    ("a", 1),
    ("abcd", 1),
    ("abcde", 2),
    ("hello world!", 3),
    ("日本語", 3),
    ("ab日本", 3),
    ("é", 1),
])
def test_fallback_counts_ascii_by_quarters_and_other_characters_whole(
        text: str, count: int) -> None:
    assert text_tokens(text) == count


def test_tiktoken_is_used_when_it_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    encode: Callable[[str], list[int]] = lambda text: [0] * len(text.split())  # noqa: E731
    monkeypatch.setattr(tokens, "_encoder", lambda: encode)
    assert text_tokens("one two three") == 3


def test_loading_tiktoken_is_tried_once_and_never_raises() -> None:
    first = REAL_ENCODER()
    assert REAL_ENCODER() is first
    assert REAL_ENCODER.cache_info().misses <= 1


def test_a_tiktoken_that_cannot_load_its_encoding_means_the_fallback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str) -> Any:
        raise OSError(f"cannot download {name}")

    monkeypatch.setattr(tokens.importlib, "import_module", offline)
    assert REAL_ENCODER.__wrapped__() is None


def chat(*contents: Any, **params: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": c} for c in contents],
            **params}


def test_chat_counts_content_message_overhead_and_max_tokens() -> None:
    # 2 + 1 tokens of content, 3 per message, 3 to prime the reply, 50 to complete.
    assert estimate("chat/completions", chat("abcdefgh", "abcd", max_tokens=50)) == 3 + 6 + 3 + 50


def test_chat_max_completion_tokens_wins_and_n_multiplies() -> None:
    body = chat("abcd", max_completion_tokens=10, max_tokens=999, n=3)
    assert estimate("chat/completions", body) == 1 + 3 + 3 + 30


def test_chat_without_a_limit_assumes_the_default_completion() -> None:
    assert estimate("chat/completions", chat("abcd")) == 1 + 3 + 3 + DEFAULT_COMPLETION_TOKENS


def test_chat_counts_text_parts_and_skips_images() -> None:
    parts = [{"type": "text", "text": "abcdefgh"},
             {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
             {"type": "text", "text": 5}, "stray"]
    assert estimate("chat/completions", chat(parts, max_tokens=1)) == 2 + 3 + 3 + 1


def test_chat_counts_names_and_tool_call_arguments() -> None:
    body = {"messages": [{"role": "assistant", "name": "abcd", "content": None,
                          "tool_calls": [{"function": {"name": "f", "arguments": "abcdefgh"}}]}],
            "max_tokens": 1}
    assert estimate("chat/completions", body) == 1 + 1 + 2 + 3 + 3 + 1


@pytest.mark.parametrize(("prompt", "prompt_tokens"), [
    ("abcdefgh", 2),
    (["abcd", "abcdefgh"], 3),
    ([1, 2, 3, 4, 5], 5),
    ([[1, 2], [3, 4, 5]], 5),
])
def test_completions_counts_every_prompt_shape(prompt: Any, prompt_tokens: int) -> None:
    assert estimate("completions", {"prompt": prompt, "max_tokens": 7}) == prompt_tokens + 7


def test_completions_default_to_openais_16_tokens_times_n_or_best_of() -> None:
    assert estimate("completions", {"prompt": "abcd"}) == 1 + DEFAULT_COMPLETIONS_MAX_TOKENS
    assert estimate("completions", {"prompt": "abcd", "max_tokens": 10, "n": 2}) == 21
    assert estimate("completions", {"prompt": "abcd", "max_tokens": 10, "best_of": 3}) == 31


@pytest.mark.parametrize(("value", "counts"), [
    ("abcdefgh", [2]),
    (["abcd", "abcdefgh", ""], [1, 2, 0]),
    ([1, 2, 3], [3]),
    ([[1, 2], [3, 4, 5]], [2, 3]),
    ([], []),
    (None, []),
    (42, []),
    (["abcd", {"odd": 1}], [1, 0]),
])
def test_input_tokens_of_every_embeddings_input_shape(value: Any, counts: list[int]) -> None:
    assert input_tokens(value) == counts


def test_embeddings_estimate_sums_inputs() -> None:
    assert estimate("embeddings", {"input": ["abcd", "abcdefgh"]}) == 3
    assert estimate("embeddings", {"input": [[1] * 10, [2] * 5]}) == 15


def test_moderations_count_strings_and_text_parts() -> None:
    assert estimate("moderations", {"input": "abcdefgh"}) == 2
    assert estimate("moderations", {"input": ["abcd", "abcdefgh"]}) == 3
    parts = [{"type": "text", "text": "abcdefgh"}, {"type": "image_url", "image_url": {}}]
    assert estimate("moderations", {"input": parts}) == 2


@pytest.mark.parametrize(("endpoint", "body"), [
    ("embeddings", {}),
    ("embeddings", {"input": ""}),
    ("chat/completions", {"messages": "not a list", "max_tokens": -4}),
    ("completions", {"prompt": {"odd": True}, "max_tokens": 0}),
    ("moderations", {"input": None}),
    ("images/generations", {"prompt": "abcd"}),
])
def test_odd_shapes_never_raise_and_estimate_at_least_one(endpoint: str, body: Any) -> None:
    assert estimate(endpoint, body) >= 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@given(st.sampled_from(["chat/completions", "completions", "embeddings", "moderations"]),
       st.dictionaries(st.sampled_from(["messages", "prompt", "input", "max_tokens", "n",
                                        "best_of", "max_completion_tokens"]), json_values))
def test_estimate_never_raises_on_any_json_body(endpoint: str, body: dict[str, Any]) -> None:
    assert estimate(endpoint, body) >= 1


@pytest.mark.parametrize(("body", "charged"), [
    ({"usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}, 12),
    ({"usage": {"prompt_tokens": 5, "completion_tokens": 7}}, 12),
    ({"usage": {"prompt_tokens": 9}}, 9),
    ({"usage": {"total_tokens": 0}}, 0),
    ({"usage": {"total_tokens": -1, "prompt_tokens": 3}}, 3),
    ({"usage": {"total_tokens": True, "prompt_tokens": 3}}, 3),
    ({"usage": None}, None),
    ({"usage": {"total_tokens": "12"}}, None),
    ({"usage": {"prompt_tokens": 1, "completion_tokens": "x"}}, None),
    ({}, None),
    ([], None),
    ("text", None),
    (None, None),
])
def test_charged_tokens_reads_usage_or_says_none(body: Any, charged: int | None) -> None:
    assert charged_tokens(body) == charged
