"""The fake upstream: pure decisions in microseconds, then the real server as a subprocess."""

from __future__ import annotations

import ast
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import batchgate.fake_upstream
from batchgate.errors import ConfigError
from batchgate.fake_upstream.behaviour import (
    Fault,
    estimate_tokens,
    pick_fault,
    reply_words,
    scan_triggers,
)
from batchgate.fake_upstream.ratelimit import SlidingWindow, admit, format_duration
from batchgate.fake_upstream.settings import ModelBehaviour, parse_settings
from batchgate.fake_upstream.vectors import embedding_vector, from_base64, to_base64
from tests.support.fake_upstream import FakeUpstream

# ---------------------------------------------------------------- pure behaviour


def test_sliding_window_forgets_amounts_older_than_its_span() -> None:
    window = SlidingWindow(60)
    window.add(5, now=0.0)
    window.add(3, now=30.0)
    assert window.used(59.9) == 8
    assert window.used(60.0) == 3
    assert window.reset_in(60.0) == pytest.approx(30.0)


def test_sliding_window_wait_is_until_enough_old_entries_expire() -> None:
    window = SlidingWindow(60)
    window.add(4, now=0.0)
    window.add(4, now=10.0)
    assert window.wait_for(2, limit=10, now=20.0) == 0.0
    assert window.wait_for(4, limit=10, now=20.0) == pytest.approx(40.0)
    assert window.wait_for(11, limit=10, now=20.0) == math.inf


def test_admit_refuses_over_rpm_without_counting_the_refusal() -> None:
    requests, tokens = SlidingWindow(), SlidingWindow()
    assert admit(requests, tokens, 2, None, 10, now=0.0).admitted
    second = admit(requests, tokens, 2, None, 10, now=1.0)
    assert second.admitted
    assert second.requests is not None
    assert second.requests.remaining == 0
    refused = admit(requests, tokens, 2, None, 10, now=2.0)
    assert not refused.admitted
    assert refused.exceeded == "requests"
    assert refused.retry_after_s == pytest.approx(58.0)
    assert requests.used(2.0) == 2
    assert admit(requests, tokens, 2, None, 10, now=60.0).admitted


def test_admit_refuses_over_tpm_and_names_tokens() -> None:
    requests, tokens = SlidingWindow(), SlidingWindow()
    assert admit(requests, tokens, None, 100, 80, now=0.0).admitted
    refused = admit(requests, tokens, None, 100, 30, now=5.0)
    assert (refused.admitted, refused.exceeded, refused.used) == (False, "tokens", 80)
    assert refused.retry_after_s == pytest.approx(55.0)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.02, "20ms"), (0.0001, "1ms"), (1, "1s"), (1.5, "1.5s"),
    (59.988, "59.988s"), (60, "1m0s"), (63, "1m3s"), (3723, "1h2m3s"),
])
def test_format_duration_uses_openai_reset_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("abcd", 1), ("abcde", 2),
                                               ("x" * 400, 100)])
def test_estimate_tokens_is_ceil_of_chars_over_four(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_embedding_vectors_are_deterministic_unit_and_distinct() -> None:
    first = embedding_vector("hello", 16)
    assert first == embedding_vector("hello", 16)
    assert first != embedding_vector("hello!", 16)
    assert len(first) == 16
    assert math.hypot(*first) == pytest.approx(1.0, abs=1e-6)


def test_base64_embedding_round_trips_bit_for_bit() -> None:
    vector = embedding_vector("round trip", 64)
    assert from_base64(to_base64(vector)) == vector


def test_input_trigger_wins_over_random_rates() -> None:
    behaviour = ModelBehaviour(fail_rate_503=1.0)
    triggers = scan_triggers(["ok", "boom [[fail:500]]"], behaviour.content_policy_trigger)
    assert triggers == {"fail:500"}
    assert pick_fault(triggers, behaviour, roll=0.0) is Fault.SERVER_ERROR


def test_random_faults_are_stacked_on_the_unit_interval() -> None:
    behaviour = ModelBehaviour(fail_rate_500=0.1, fail_rate_503=0.1, rate_429=0.1,
                               timeout_rate=0.1)
    picks = [pick_fault(frozenset(), behaviour, roll) for roll in (0.05, 0.15, 0.25, 0.35, 0.45)]
    assert picks == [Fault.SERVER_ERROR, Fault.OVERLOADED, Fault.RATE_LIMITED, Fault.HANG, None]


def test_custom_content_policy_trigger_is_found_without_brackets() -> None:
    assert scan_triggers(["say BADWORD now"], "BADWORD") == {"content_policy"}


def test_reply_is_cut_to_max_tokens_words() -> None:
    assert reply_words("m", "one two three", None) == (["[m]", "one", "two", "three"], False)
    assert reply_words("m", "one two three", 2) == (["[m]", "one"], True)


def test_model_blocks_override_defaults_field_by_field() -> None:
    settings = parse_settings({"defaults": {"latency_ms": 5, "rpm": 10},
                               "models": {"a": {"rpm": 3}}})
    assert settings.behaviour("a") == ModelBehaviour(latency_ms=5, rpm=3)
    assert settings.behaviour("anything-else") == ModelBehaviour(latency_ms=5, rpm=10)


def test_runtime_update_replaces_given_blocks_and_keeps_other_models() -> None:
    settings = parse_settings({"defaults": {"rpm": 10}, "models": {"a": {"tpm": 5},
                                                                   "b": {"tpm": 6}}})
    updated = settings.updated({"defaults": {"latency_ms": 1}, "models": {"a": None}})
    assert updated.to_dict()["models"] == {"b": {"tpm": 6}}
    assert updated.behaviour("b") == ModelBehaviour(latency_ms=1, tpm=6)


@pytest.mark.parametrize("config", [
    {"defaults": {"rmp": 3}}, {"models": {"a": {"rpm": 0}}}, {"models": {"a": {"rpm": True}}},
    {"defaults": {"fail_rate_500": 0.7, "fail_rate_503": 0.7}}, {"other": 1},
])
def test_invalid_settings_are_rejected(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_settings(config)


def test_fake_upstream_imports_no_gateway_package() -> None:
    package = Path(batchgate.fake_upstream.__file__).parent
    imported: set[str] = set()
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert not imported & {"api", "workers", "schedulers", "config"}


# ---------------------------------------------------------------- the real server

CONFIG = {
    "models": {
        "limited": {"rpm": 2},
        "small": {"context_window": 10},
        "locked": {"api_key": "sk-secret"},
        "narrow": {"embedding_dim": 8, "max_inputs": 3},
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(CONFIG) as server:
        yield server


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[httpx.Client]:
    upstream.reset(config=True)
    with httpx.Client(base_url=upstream.base_url, trust_env=False, timeout=10) as http:
        yield http


def chat(text: str, model: str = "gpt-test", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.mark.integration
def test_chat_echoes_last_user_message_with_usage(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("hello there", n=2))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-test"
    assert [c["message"]["content"] for c in body["choices"]] == ["[gpt-test] hello there"] * 2
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}


@pytest.mark.integration
def test_chat_stream_sends_role_words_finish_usage_then_done(client: httpx.Client) -> None:
    body = chat("a b", stream=True, stream_options={"include_usage": True})
    response = client.post("/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "[gpt-test] a b"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.integration
def test_embeddings_float_and_base64_carry_the_same_vectors(client: httpx.Client) -> None:
    inputs = ["alpha", "beta"]
    floats = client.post("/embeddings", json={"model": "narrow", "input": inputs}).json()
    b64 = client.post("/embeddings", json={"model": "narrow", "input": inputs,
                                           "encoding_format": "base64"}).json()
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert [len(d["embedding"]) for d in floats["data"]] == [8, 8]
    assert [from_base64(d["embedding"]) for d in b64["data"]] == [
        d["embedding"] for d in floats["data"]]
    assert floats["data"][0]["embedding"] == embedding_vector("alpha", 8)
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # ceil(5/4) + ceil(4/4)


@pytest.mark.integration
def test_embeddings_over_max_inputs_is_a_400_envelope(client: httpx.Client) -> None:
    response = client.post("/embeddings", json={"model": "narrow", "input": ["a"] * 4})
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.integration
def test_models_lists_configured_models(client: httpx.Client) -> None:
    body = client.get("/models").json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} == set(CONFIG["models"])
    assert body["data"][0]["owned_by"] == "fake-upstream"


@pytest.mark.integration
def test_over_rpm_is_429_with_retry_and_ratelimit_headers(client: httpx.Client) -> None:
    ok = [client.post("/chat/completions", json=chat("hi", "limited")) for _ in range(2)]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in ok] == ["1", "0"]
    refused = client.post("/chat/completions", json=chat("hi", "limited"))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert int(refused.headers["retry-after-ms"]) > 59_000
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert client.post("/chat/completions", json=chat("hi", "other")).status_code == 200


@pytest.mark.integration
def test_fail_trigger_answers_500_in_the_envelope(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("x [[fail:500]]"))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


@pytest.mark.integration
def test_prompt_over_context_window_is_context_length_exceeded(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("y" * 41, "small"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "context_length_exceeded")
    assert "maximum context length is 10 tokens" in error["message"]


@pytest.mark.integration
def test_content_policy_trigger_is_a_400_and_flags_moderation(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat("bad [[content_policy]]"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation"
    moderation = client.post("/moderations", json={"input": ["fine", "[[content_policy]]"]})
    assert [r["flagged"] for r in moderation.json()["results"]] == [False, True]


@pytest.mark.integration
def test_model_with_api_key_requires_it_as_bearer_or_api_key(client: httpx.Client) -> None:
    body = chat("hi", "locked")
    assert client.post("/chat/completions", json=body).status_code == 401
    wrong = client.post("/chat/completions", json=body, headers={"api-key": "nope"})
    assert wrong.status_code == 401
    assert "sk-" not in wrong.text
    bearer = {"Authorization": "Bearer sk-secret"}
    assert client.post("/chat/completions", json=body, headers=bearer).status_code == 200


@pytest.mark.integration
def test_malformed_json_is_a_400_envelope(client: httpx.Client) -> None:
    response = client.post("/chat/completions", content=b"{not json",
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.integration
def test_stats_count_requests_and_log_extra_keys_and_key_hash(
        client: httpx.Client, upstream: FakeUpstream) -> None:
    client.post("/chat/completions", json=chat("hi", metadata={"a": 1}, tools=[]),
                headers={"Authorization": "Bearer k1"})
    # Without the /v1 prefix too.
    client.post(upstream.root_url + "/embeddings", json={"model": "e", "input": ["a", "b"]})
    client.post("/chat/completions", json=chat("[[fail:503]]"))
    stats = upstream.stats()
    assert stats["requests"] == 3
    assert stats["by_endpoint"] == {"chat/completions": 2, "embeddings": 1}
    assert stats["by_status"] == {"200": 2, "503": 1}
    assert stats["by_model"] == {"gpt-test": 2, "e": 1}
    assert stats["in_flight"] == 0
    first, second = stats["log"][:2]
    assert first["extra_keys"] == ["metadata", "tools"]
    assert first["auth"] == hashlib.sha256(b"k1").hexdigest()[:12]
    assert (second["endpoint"], second["inputs"], second["auth"]) == ("embeddings", 2, None)


@pytest.mark.integration
def test_reset_clears_counters_log_and_windows(
        client: httpx.Client, upstream: FakeUpstream) -> None:
    for _ in range(3):
        client.post("/chat/completions", json=chat("hi", "limited"))
    upstream.reset()
    assert upstream.stats()["requests"] == 0
    assert upstream.stats()["log"] == []
    assert client.post("/chat/completions", json=chat("hi", "limited")).status_code == 200


@pytest.mark.integration
def test_runtime_config_changes_behaviour_until_reset_restores_it(
        client: httpx.Client, upstream: FakeUpstream) -> None:
    shown = upstream.configure({"models": {"gpt-test": {"context_window": 1}}})
    assert shown["models"]["locked"]["api_key"] == "***"
    assert client.post("/chat/completions", json=chat("long prompt")).status_code == 400
    upstream.reset(config=True)
    assert client.post("/chat/completions", json=chat("long prompt")).status_code == 200
