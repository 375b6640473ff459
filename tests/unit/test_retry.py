"""Failures classified, retries counted the LiteLLM way, and backoffs that honour Retry-After."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import DEFAULT_NUM_RETRIES, RouterSettings
from schedulers.retry import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    ErrorClass,
    RetryPolicy,
    backoff,
    classify,
)


def error(code: str | None = None, message: str = "bad", **extra: Any) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "param": None, "code": code, **extra}}).encode()


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_success_is_no_error(status: int) -> None:
    assert classify(status, b"") is None


@pytest.mark.parametrize(("status", "cls"), [
    (429, ErrorClass.RATE_LIMIT),
    (408, ErrorClass.TIMEOUT),
    (504, ErrorClass.TIMEOUT),
    (500, ErrorClass.SERVER),
    (502, ErrorClass.SERVER),
    (503, ErrorClass.SERVER),
    (401, ErrorClass.AUTH),
    (403, ErrorClass.AUTH),
    (404, ErrorClass.NOT_FOUND),
    (400, ErrorClass.BAD_REQUEST),
    (422, ErrorClass.BAD_REQUEST),
    (302, ErrorClass.SERVER),
])
def test_status_alone_decides_most_classes(status: int, cls: ErrorClass) -> None:
    assert classify(status, error()) is cls
    assert classify(status, b"<html>oops</html>") is cls


@pytest.mark.parametrize("body", [
    error("context_length_exceeded"),
    error(None, "This model's maximum context length is 4096 tokens. However, you requested 5000"),
    # vLLM's shape: the error fields at the top level.
    json.dumps({"object": "error", "message": "prompt exceeds the context length",
                "type": "BadRequestError", "code": 400}).encode(),
    b"Input is longer than the model's maximum context length",
    json.dumps({"error": "context window exceeded"}).encode(),
])
def test_context_window_is_recognised_by_code_or_message(body: bytes) -> None:
    assert classify(400, body) is ErrorClass.CONTEXT_WINDOW


@pytest.mark.parametrize("body", [
    error("content_policy_violation"),
    error("content_filter"),
    error("invalid_prompt", innererror={"code": "ResponsibleAIPolicyViolation"}),
])
def test_content_policy_is_recognised_by_code(body: bytes) -> None:
    assert classify(400, body) is ErrorClass.CONTENT_POLICY


@pytest.mark.parametrize("body", [b"", b"not json", b"\xff\xfe", b"[1, 2]", b"null",
                                  error("invalid_value", "temperature must be <= 2")])
def test_other_client_errors_are_bad_requests(body: bytes) -> None:
    assert classify(400, body) is ErrorClass.BAD_REQUEST


def test_status_wins_over_body_for_429_and_5xx() -> None:
    assert classify(429, error("context_length_exceeded")) is ErrorClass.RATE_LIMIT
    assert classify(500, error("content_filter")) is ErrorClass.SERVER


def test_default_policy_retries_transient_failures_only() -> None:
    policy = RetryPolicy.of(RouterSettings(), "g")
    for cls in (ErrorClass.RATE_LIMIT, ErrorClass.TIMEOUT, ErrorClass.SERVER):
        assert policy.retries(cls) == DEFAULT_NUM_RETRIES
    for cls in (ErrorClass.BAD_REQUEST, ErrorClass.AUTH, ErrorClass.NOT_FOUND,
                ErrorClass.CONTEXT_WINDOW, ErrorClass.CONTENT_POLICY):
        assert policy.retries(cls) == 0


def test_num_retries_sets_transient_retries() -> None:
    policy = RetryPolicy.of(RouterSettings(num_retries=5), "g")
    assert policy.retries(ErrorClass.TIMEOUT) == 5
    assert policy.retries(ErrorClass.AUTH) == 0


def test_retry_policy_overrides_each_kind() -> None:
    router = RouterSettings(num_retries=3, retry_policy={
        "RateLimitErrorRetries": 7, "TimeoutErrorRetries": 0, "InternalServerErrorRetries": 1,
        "AuthenticationErrorRetries": 2, "BadRequestErrorRetries": 1})
    policy = RetryPolicy.of(router, "g")
    assert policy.retries(ErrorClass.RATE_LIMIT) == 7
    assert policy.retries(ErrorClass.TIMEOUT) == 0
    assert policy.retries(ErrorClass.SERVER) == 1
    assert policy.retries(ErrorClass.AUTH) == 2
    assert policy.retries(ErrorClass.BAD_REQUEST) == 1
    # As in LiteLLM, both are kinds of BadRequestError.
    assert policy.retries(ErrorClass.CONTEXT_WINDOW) == 1
    assert policy.retries(ErrorClass.CONTENT_POLICY) == 1
    assert policy.retries(ErrorClass.NOT_FOUND) == 0


def test_content_policy_key_wins_over_bad_request_key() -> None:
    router = RouterSettings(retry_policy={"BadRequestErrorRetries": 1,
                                          "ContentPolicyViolationErrorRetries": 4})
    assert RetryPolicy.of(router, "g").retries(ErrorClass.CONTENT_POLICY) == 4


def test_a_groups_own_policy_replaces_the_general_one() -> None:
    router = RouterSettings(num_retries=3, retry_policy={"RateLimitErrorRetries": 9,
                                                         "AuthenticationErrorRetries": 1},
                            model_group_retry_policy={"g": {"RateLimitErrorRetries": 2}})
    own = RetryPolicy.of(router, "g")
    assert own.retries(ErrorClass.RATE_LIMIT) == 2
    assert own.retries(ErrorClass.AUTH) == 0
    assert own.retries(ErrorClass.TIMEOUT) == 3
    assert RetryPolicy.of(router, "other").retries(ErrorClass.RATE_LIMIT) == 9


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempt in range(6):
        full = DEFAULT_BACKOFF_BASE * 2 ** attempt
        assert full / 2 <= backoff(attempt, None, rng) <= full
    assert backoff(20, None, rng) <= DEFAULT_BACKOFF_CAP
    assert backoff(10**6, None, rng) <= DEFAULT_BACKOFF_CAP


def test_retry_after_wins_even_above_the_cap() -> None:
    rng = random.Random(1)
    assert backoff(0, 120.0, rng) == 120.0
    assert backoff(0, 0.0, rng) >= DEFAULT_BACKOFF_BASE / 2


@given(st.integers(-5, 2000), st.none() | st.floats(0, 10**5), st.integers(0, 2**32))
def test_backoff_honours_retry_after_and_the_cap(
        attempt: int, retry_after: float | None, seed: int) -> None:
    delay = backoff(attempt, retry_after, random.Random(seed))
    floor = retry_after or 0.0
    assert floor <= delay <= max(DEFAULT_BACKOFF_CAP, floor)
