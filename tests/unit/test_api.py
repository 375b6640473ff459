"""The synchronous routes against a scripted upstream (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from config.settings import Provider, RouterSettings
from tests.unit.conftest import UPSTREAM_KEY, Upstream, chat_reply, deployment

CHAT = {"model": "gpt-a", "messages": [{"role": "user", "content": "hello"}]}
ROUTES = ["/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions",
          "/v1/embeddings", "/embeddings", "/v1/moderations", "/moderations"]


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_chat_is_forwarded_with_the_deployment_model_and_extra_keys_untouched(
        client: FlaskClient, upstream: Upstream) -> None:
    body = {**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}],
            "metadata": {"k": "v"}, "top_k": 3}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.get_json()["choices"][0]["message"]["content"] == "hi"
    request, sent = upstream.seen[0]
    assert str(request.url) == "http://up.test/v1/chat/completions"
    assert sent == {**body, "model": "gpt-a"}
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert response.headers["x-batchgate-model-group"] == "gpt-a"
    assert response.headers["x-batchgate-deployment"] == "a1"
    assert float(response.headers["x-batchgate-overhead-ms"]) >= 0


def test_routes_without_v1_prefix_are_served(client: FlaskClient) -> None:
    assert client.post("/chat/completions", json=CHAT).status_code == 200


def test_compare_returns_one_answer_per_model_in_request_order(
        client: FlaskClient, upstream: Upstream) -> None:
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-b, gpt-a"})
    assert response.status_code == 200
    assert [r["model"] for r in response.get_json()] == ["gpt-b", "gpt-a"]
    assert response.headers["x-batchgate-model-group"] == "gpt-b,gpt-a"
    assert len(upstream.seen) == 2


def test_compare_keeps_answering_when_one_model_fails(
        client: FlaskClient, upstream: Upstream) -> None:
    upstream.handlers["gpt-b"] = lambda r, b: httpx.Response(
        500, json={"error": {"message": "boom", "type": "server_error"}})
    answers = client.post("/v1/chat/completions",
                          json={**CHAT, "model": "gpt-a,gpt-b"}).get_json()
    assert answers[0]["object"] == "chat.completion"
    assert answers[1]["model"] == "gpt-b"
    assert answers[1]["status_code"] == 502
    assert answers[1]["error"]["code"] == "upstream_500"
    assert "boom" in answers[1]["error"]["message"]


def test_compare_refuses_streaming(client: FlaskClient, upstream: Upstream) -> None:
    response = client.post("/v1/chat/completions",
                           json={**CHAT, "model": "gpt-a,gpt-b", "stream": True})
    assert response.status_code == 400
    assert error_of(response)["param"] == "stream"
    assert upstream.seen == []


def test_unknown_model_is_404_and_nothing_is_sent(client: FlaskClient,
                                                  upstream: Upstream) -> None:
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-a,nope"})
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found"
    assert "nope" in error["message"]
    assert upstream.seen == []


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("data", "content_type"), [
    (b"{not json", "application/json"),
    (b"", "application/json"),
    (b"[1,2]", "application/json"),
    (b'"text"', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),
])
def test_malformed_bodies_are_400_envelopes(client: FlaskClient, upstream: Upstream, route: str,
                                             data: bytes, content_type: str) -> None:
    response = client.post(route, data=data, content_type=content_type)
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"
    assert upstream.seen == []


@pytest.mark.parametrize(("route", "body", "param"), [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, "model"),
    ("/v1/chat/completions", {"model": "gpt-a"}, "messages"),
    ("/v1/chat/completions", {"model": "gpt-a", "messages": []}, "messages"),
    ("/v1/chat/completions", {"model": "gpt-a", "messages": "hello"}, "messages"),
    ("/v1/chat/completions", {"model": "gpt-a", "messages": [{"content": "x"}]},
     "messages.0.role"),
    ("/v1/chat/completions", {"model": 42, "messages": [{"role": "user"}]}, "model"),
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
    ("/v1/completions", {"model": "gpt-a"}, "prompt"),
    ("/v1/completions", {"model": "gpt-a", "prompt": {"a": 1}}, "prompt"),
    ("/v1/embeddings", {"model": "embed", "input": []}, "input"),
    ("/v1/embeddings", {"model": "embed", "input": ["ok", ""]}, "input"),
    ("/v1/embeddings", {"model": "embed", "input": 3}, "input"),
    ("/v1/embeddings", {"model": "embed", "input": "x", "encoding_format": "hex"},
     "encoding_format"),
    ("/v1/moderations", {"model": "gpt-a"}, "input"),
])
def test_invalid_fields_are_400_naming_the_field(client: FlaskClient, upstream: Upstream,
                                                 route: str, body: dict, param: str) -> None:
    response = client.post(route, json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param
    assert param.split(".")[0] in error["message"]
    assert upstream.seen == []


@pytest.mark.parametrize("route", ROUTES)
def test_bodies_over_the_configured_limit_are_413(make_app: Callable[..., Flask],
                                                  upstream: Upstream, route: str) -> None:
    client = make_app(max_request_bytes=1024).test_client()
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
    response = client.post(route, json=big)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    assert upstream.seen == []


def test_unknown_route_and_wrong_method_are_json_errors(client: FlaskClient) -> None:
    assert error_of(client.get("/v1/nothing"))["code"] == "not_found"
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_caller_errors_from_the_upstream_pass_through(client: FlaskClient,
                                                      upstream: Upstream) -> None:
    error = {"error": {"message": "too long", "type": "invalid_request_error",
                       "param": "messages", "code": "context_length_exceeded"}}
    upstream.handlers["gpt-a"] = lambda r, b: httpx.Response(400, json=error)
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 400
    assert response.get_json() == error


def test_upstream_429_passes_through_with_retry_after_when_retries_are_off(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    client = make_app(router=RouterSettings(num_retries=0)).test_client()
    upstream.handlers["gpt-a"] = lambda r, b: httpx.Response(
        429, headers={"retry-after": "7", "x-ratelimit-remaining-requests": "0"},
        json={"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                        "code": "rate_limit_exceeded"}})
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(("upstream_status", "status"), [(500, 502), (503, 503), (401, 502),
                                                          (404, 502)])
def test_upstream_failures_become_gateway_errors(client: FlaskClient, upstream: Upstream,
                                                 upstream_status: int, status: int) -> None:
    upstream.handlers["gpt-a"] = lambda r, b: httpx.Response(upstream_status, text="<html>")
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == status
    assert error_of(response)["code"] == f"upstream_{upstream_status}"


@pytest.mark.parametrize(("exc", "status", "code"), [
    (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
    (httpx.ConnectError("refused"), 503, "upstream_unavailable"),
])
def test_transport_failures_become_gateway_errors(client: FlaskClient, upstream: Upstream,
                                                  exc: Exception, status: int,
                                                  code: str) -> None:
    def fail(request: httpx.Request, body: object) -> httpx.Response:
        raise exc

    upstream.handlers["gpt-a"] = fail
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == status
    assert error_of(response)["code"] == code


def test_upstream_key_never_reaches_the_caller(client: FlaskClient, upstream: Upstream) -> None:
    upstream.handlers["gpt-a"] = lambda r, b: httpx.Response(
        400, json={"error": {"message": f"bad key {UPSTREAM_KEY}", "type": "x"}})
    response = client.post("/v1/chat/completions", json=CHAT)
    assert UPSTREAM_KEY.encode() not in response.data
    upstream.handlers["gpt-a"] = lambda r, b: httpx.Response(500, text=f"key={UPSTREAM_KEY}")
    response = client.post("/v1/chat/completions", json=CHAT)
    assert UPSTREAM_KEY.encode() not in response.data
    health = client.get("/health")
    assert UPSTREAM_KEY.encode() not in health.data


def test_stream_is_passed_through(client: FlaskClient, upstream: Upstream) -> None:
    sse = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
    upstream.handlers["gpt-a"] = lambda r, b: httpx.Response(
        200, content=sse, headers={"content-type": "text/event-stream"})
    response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.data == sse


def test_azure_deployments_get_their_url_and_header(make_app: Callable[..., Flask],
                                                    upstream: Upstream) -> None:
    azure = deployment("az", "z1", base="https://r.openai.azure.com/", key="azk",
                       model="my-dep", provider=Provider.AZURE)
    client = make_app(azure).test_client()
    assert client.post("/v1/chat/completions", json={**CHAT, "model": "az"}).status_code == 200
    request, _ = upstream.seen[0]
    assert request.url.path == "/openai/deployments/my-dep/chat/completions"
    assert request.url.params["api-version"]
    assert request.headers["api-key"] == "azk"
    assert "authorization" not in request.headers


def test_master_key_guards_every_route_but_liveliness(make_app: Callable[..., Flask]) -> None:
    client = make_app(master_key="sk-master").test_client()
    assert client.get("/health/liveliness").status_code == 200
    for path in ("/v1/models", "/health/readiness", "/health"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert error_of(response)["code"] == "invalid_api_key"
    wrong = client.post("/v1/chat/completions", json=CHAT,
                        headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401
    ok = client.post("/v1/chat/completions", json=CHAT,
                     headers={"Authorization": "Bearer sk-master"})
    assert ok.status_code == 200


def test_models_lists_every_group(client: FlaskClient) -> None:
    body = client.get("/v1/models").get_json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gpt-a", "gpt-b", "embed"]


def test_health_reports_each_deployment_without_keys(client: FlaskClient,
                                                     upstream: Upstream) -> None:
    upstream.handlers["gpt-b"] = lambda r, b: httpx.Response(500, text="down")
    upstream.handlers["embed"] = lambda r, b: httpx.Response(
        200, json={"object": "list", "data": [], "model": "embed"})
    body = client.get("/health").get_json()
    assert body["healthy_count"] == 2
    assert body["unhealthy_count"] == 1
    assert body["unhealthy_endpoints"][0]["id"] == "b1"
    assert "api_key" not in json.dumps(body)
    probed = {b["model"]: str(r.url) for r, b in upstream.seen}
    assert probed["embed"].endswith("/embeddings")


def test_readiness_reports_config_and_redis(client: FlaskClient) -> None:
    body = client.get("/health/readiness").get_json()
    assert body["status"] == "healthy"
    assert body["redis"] == "not configured"
    assert body["deployments"] == 3


def test_moderations_default_to_the_openai_default_model(client: FlaskClient) -> None:
    response = client.post("/v1/moderations", json={"input": "x"})
    assert response.status_code == 404
    assert "omni-moderation-latest" in error_of(response)["message"]


def test_reply_example_is_a_chat_completion() -> None:
    assert chat_reply("m")["object"] == "chat.completion"
