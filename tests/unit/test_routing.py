"""Retries, fallbacks, budgets and routing headers on the sync routes (in-process budgets)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import httpx
from flask import Flask

from config.settings import RouterSettings
from tests.unit.conftest import Upstream, chat_reply, deployment

CHAT = {"model": "gpt-a", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


def error(status: int, code: str | None = None, headers: dict[str, str] | None = None
          ) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, json={"error": {
        "message": "nope", "type": "server_error", "param": None, "code": code}})


def flaky(times: int, response: Callable[[], httpx.Response], model: str
          ) -> Callable[[httpx.Request, dict[str, object]], httpx.Response]:
    calls: list[float] = []

    def handler(_r: httpx.Request, _b: dict[str, object]) -> httpx.Response:
        calls.append(time.monotonic())
        return response() if len(calls) <= times else httpx.Response(200, json=chat_reply(model))

    handler.calls = calls  # type: ignore[attr-defined]
    return handler


def test_a_5xx_is_retried_and_the_attempts_are_reported(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    upstream.handlers["gpt-a"] = flaky(2, lambda: error(500), "gpt-a")
    response = make_app().test_client().post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.headers["x-batchgate-attempts"] == "3"
    assert "x-batchgate-fallback" not in response.headers


def test_retry_waits_at_least_what_the_upstream_asked(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    handler = flaky(1, lambda: error(429, headers={"retry-after-ms": "400"}), "gpt-a")
    upstream.handlers["gpt-a"] = handler
    response = make_app().test_client().post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    first, second = handler.calls  # type: ignore[attr-defined]
    assert second - first >= 0.4


def test_a_retry_moves_to_another_deployment_of_the_group(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    upstream.handlers["bad"] = lambda r, b: error(503)
    upstream.handlers["good"] = lambda r, b: httpx.Response(200, json=chat_reply("good"))
    app = make_app(deployment("gpt-a", "d-bad", model="bad"),
                   deployment("gpt-a", "d-good", model="good"))
    for _ in range(5):
        response = app.test_client().post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 200
        assert int(response.headers["x-batchgate-attempts"]) <= 2


def test_fallbacks_answer_after_retries_and_say_so(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    upstream.handlers["gpt-a"] = lambda r, b: error(500)
    upstream.handlers["gpt-b"] = lambda r, b: httpx.Response(200, json=chat_reply("gpt-b"))
    router = RouterSettings(num_retries=1, fallbacks={"gpt-a": ("gpt-b",)})
    response = make_app(router=router).test_client().post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.headers["x-batchgate-fallback"] == "gpt-b"
    assert response.headers["x-batchgate-attempts"] == "3"
    assert response.get_json()["model"] == "gpt-b"


def test_context_window_errors_use_their_own_fallbacks_without_retrying(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    upstream.handlers["gpt-a"] = lambda r, b: error(400, "context_length_exceeded")
    upstream.handlers["embed"] = lambda r, b: httpx.Response(200, json=chat_reply("embed"))
    router = RouterSettings(num_retries=3, fallbacks={"gpt-a": ("gpt-b",)},
                            context_window_fallbacks={"gpt-a": ("embed",)})
    response = make_app(router=router).test_client().post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.headers["x-batchgate-fallback"] == "embed"
    assert response.headers["x-batchgate-attempts"] == "2"


def test_per_request_fallbacks_and_disable_fallbacks(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    upstream.handlers["gpt-a"] = lambda r, b: error(500)
    upstream.handlers["gpt-b"] = lambda r, b: httpx.Response(200, json=chat_reply("gpt-b"))
    client = make_app(router=RouterSettings(num_retries=0)).test_client()
    response = client.post("/v1/chat/completions", json={**CHAT, "fallbacks": ["gpt-b"]})
    assert response.status_code == 200
    assert response.headers["x-batchgate-fallback"] == "gpt-b"
    assert all("fallbacks" not in body for _r, body in upstream.seen)
    router = RouterSettings(num_retries=0, fallbacks={"gpt-a": ("gpt-b",)})
    client = make_app(router=router).test_client()
    response = client.post("/v1/chat/completions", json={**CHAT, "disable_fallbacks": True})
    assert response.status_code == 500 or response.status_code == 502
    unknown = client.post("/v1/chat/completions", json={**CHAT, "fallbacks": ["nope"]})
    assert unknown.status_code == 404


def test_the_callers_own_mistake_is_neither_retried_nor_sent_elsewhere(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    upstream.handlers["gpt-a"] = lambda r, b: error(400, "invalid_value")
    router = RouterSettings(num_retries=3, fallbacks={"gpt-a": ("gpt-b",)})
    response = make_app(router=router).test_client().post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 400
    assert response.headers["x-batchgate-attempts"] == "1"
    assert len(upstream.seen) == 1


def test_declared_rpm_is_never_exceeded_and_the_caller_hears_an_honest_retry_after(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    upstream.handlers["gpt-a"] = lambda r, b: httpx.Response(200, json=chat_reply("gpt-a"))
    limited = replace(deployment("gpt-a", "a1"), rpm=2, timeout=1.0)
    client = make_app(limited).test_client()
    statuses = [client.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[0].headers["x-ratelimit-limit-requests"] == "2"
    assert statuses[0].headers["x-ratelimit-remaining-requests"] == "1"
    assert statuses[1].headers["x-ratelimit-remaining-requests"] == "0"
    assert 55 <= int(statuses[2].headers["retry-after"]) <= 62
    assert len(upstream.seen) == 2


def test_a_request_larger_than_every_tpm_fails_clearly(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    client = make_app(replace(deployment("gpt-a", "a1"), tpm=50)).test_client()
    response = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 1000})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "request_too_large"
    assert upstream.seen == []


def test_a_cooling_deployment_is_skipped(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    upstream.handlers["bad"] = lambda r, b: error(500)
    upstream.handlers["good"] = lambda r, b: httpx.Response(200, json=chat_reply("good"))
    router = RouterSettings(num_retries=0, allowed_fails=1, cooldown_time=30)
    app = make_app(deployment("gpt-a", "d-bad", model="bad"),
                   deployment("gpt-a", "d-good", model="good"), router=router)
    client = app.test_client()
    for _ in range(30):
        client.post("/v1/chat/completions", json=CHAT)
    bad_calls = sum(1 for request, _b in upstream.seen if b'"bad"' in request.content)
    assert bad_calls <= 3


def test_budgets_show_use_and_what_was_learned(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    upstream.handlers["gpt-a"] = lambda r, b: httpx.Response(200, json=chat_reply("gpt-a"))
    client = make_app(replace(deployment("gpt-a", "a1"), rpm=10, tpm=1000)).test_client()
    client.post("/v1/chat/completions", json=CHAT)
    view = client.get("/health/budgets").get_json()
    budget = view["model_groups"]["gpt-a"]["a1"]
    assert budget["limits"] == {"rpm": 10, "tpm": 1000, "max_parallel": None}
    assert budget["requests"] == 1
    assert budget["tokens"] == 2  # the estimate, corrected by the upstream's usage
    assert budget["in_flight"] == 0
    assert budget["latency"] is not None


def test_router_retry_after_is_the_least_a_retry_waits(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    handler = flaky(1, lambda: error(500), "gpt-a")
    upstream.handlers["gpt-a"] = handler
    app = make_app(router=RouterSettings(retry_after=0.8))
    assert app.test_client().post("/v1/chat/completions", json=CHAT).status_code == 200
    first, second = handler.calls  # type: ignore[attr-defined]
    assert second - first >= 0.8  # the backoff alone would be 0.25-0.5 s
