"""The official openai SDK against batchgate under gunicorn and a real fake upstream."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.integration.conftest import MASTER_KEY, UPSTREAM_KEY
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess

pytestmark = pytest.mark.integration
HELLO = [{"role": "user", "content": "hello there"}]


def test_chat_completion_answers_through_the_sdk(client: openai.OpenAI,
                                                  upstream: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-a", messages=HELLO)
    completion = raw.parse()
    assert "hello there" in (completion.choices[0].message.content or "")
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0
    assert raw.headers["x-batchgate-model-group"] == "gpt-a"
    assert raw.headers["x-batchgate-deployment"]
    assert float(raw.headers["x-batchgate-overhead-ms"]) >= 0
    assert upstream.stats()["by_model"] == {"gpt-a": 1}


def test_extra_body_keys_reach_the_upstream(client: openai.OpenAI,
                                            upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="gpt-a", messages=HELLO,
                                   extra_body={"top_k": 5, "provider_flag": {"x": 1}},
                                   metadata={"team": "rag"}, store=False)
    extra = upstream.stats()["log"][-1]["extra_keys"]
    assert {"top_k", "provider_flag", "metadata", "store"} <= set(extra)


def test_streaming_passes_sse_through(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-a", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "hello there" in text
    assert chunks[-1].usage is not None


def test_embeddings_match_a_direct_call(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    via_gateway = client.embeddings.create(model="embed", input=["alpha", "beta"])
    with openai.OpenAI(base_url=upstream.base_url, api_key="x", max_retries=0) as direct:
        expected = direct.embeddings.create(model="embed-model", input=["alpha", "beta"])
    assert [e.embedding for e in via_gateway.data] == [e.embedding for e in expected.data]
    assert len(via_gateway.data[0].embedding) == 8


def test_completions_and_moderations_are_routed(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-b", prompt="once upon")
    assert "once upon" in completion.choices[0].text
    moderation = client.moderations.create(model="gpt-a", input="harmless")
    assert moderation.results[0].flagged is False


def test_models_lists_the_groups(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:4] == ["gpt-a", "gpt-b", "slow", "slower"]


def test_compare_returns_one_answer_per_model_in_order(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-b,gpt-a,embed",
                                                           messages=HELLO)
    answers = json.loads(raw.http_response.content)
    assert [a["model"] for a in answers] == ["gpt-b", "gpt-a", "embed-model"]
    assert all(a["object"] == "chat.completion" for a in answers)
    assert raw.headers["x-batchgate-model-group"] == "gpt-b,gpt-a,embed"


def test_compare_runs_models_in_parallel_and_keeps_failures_in_their_slot(
        client: openai.OpenAI) -> None:
    start = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model="slow,broken,gpt-a", messages=HELLO)
    elapsed = time.perf_counter() - start
    answers = json.loads(raw.http_response.content)
    assert answers[0]["object"] == "chat.completion"
    assert answers[1]["model"] == "broken"
    assert answers[1]["status_code"] == 503
    assert answers[1]["error"]["code"] == "upstream_unavailable"
    assert answers[2]["object"] == "chat.completion"
    # slow takes 0.3 s; run one after another, the three would take longer than that plus
    # the broken deployment's connect failure. Generous bound: the machine is shared.
    assert elapsed < 2.0


def test_unknown_model_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert info.value.code == "model_not_found"


def test_upstream_rate_limit_is_mapped_through_once_the_callers_timeout_is_near(
        client: openai.OpenAI) -> None:
    for _ in range(2):
        client.chat.completions.create(model="limited", messages=HELLO)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="limited", messages=HELLO,
                                       extra_headers={"x-litellm-timeout": "3"})
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert time.monotonic() - started < 3


def test_context_window_error_keeps_its_code(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="small", messages=[{"role": "user", "content": "word " * 400}])
    assert info.value.code == "context_length_exceeded"


def test_upstream_failure_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-a",
                                       messages=[{"role": "user", "content": "[[fail:500]]"}])
    assert info.value.status_code == 502


def test_upstream_key_is_sent_upstream_but_never_shown(client: openai.OpenAI,
                                                       gateway: GatewayProcess,
                                                       upstream: FakeUpstream) -> None:
    assert client.chat.completions.create(model="keyed", messages=HELLO).choices
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="wrong-key", messages=HELLO)
    assert info.value.status_code == 502
    assert info.value.code == "upstream_401"
    health = httpx.get(f"{gateway.base_url}/health", timeout=20).text
    for text in (health, info.value.response.text, gateway.log()):
        assert UPSTREAM_KEY not in text
        assert "sk-not-the-right-one" not in text


def test_master_key_is_required(keyed_gateway: GatewayProcess) -> None:
    base = f"{keyed_gateway.base_url}/v1"
    with openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0) as sdk, \
            pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="gpt-a", messages=HELLO)
    with openai.OpenAI(base_url=base, api_key=MASTER_KEY, max_retries=0) as sdk:
        assert sdk.chat.completions.create(model="gpt-a", messages=HELLO).choices
    assert httpx.get(f"{keyed_gateway.base_url}/health/liveliness").status_code == 200
    assert MASTER_KEY not in keyed_gateway.log()


def test_health_probes_every_deployment(gateway: GatewayProcess) -> None:
    body = httpx.get(f"{gateway.base_url}/health", timeout=30).json()
    unhealthy = {e["model_name"] for e in body["unhealthy_endpoints"]}
    assert unhealthy == {"broken", "wrong-key"}
    assert body["healthy_count"] == len(body["healthy_endpoints"]) == 8
