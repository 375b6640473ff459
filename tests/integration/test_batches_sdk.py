"""The official openai SDK's Batch API against ``batchgate up`` (gunicorn, Redis, Celery
workers, beat, the fake upstream): upload, create, poll, download, list, cancel, expire,
malformed files, mixed models, partial results and retry."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import redis
from openai.types import Batch
from standardwebhooks import Webhook

from tests.integration.conftest import queue_service
from tests.integration.test_queue_reliability import Receiver
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess
from tests.support.redis_scan import keys_under
from workers.webhooks.signing import new_secret

pytestmark = pytest.mark.integration

ENDED = ("completed", "failed", "expired", "cancelled")


@pytest.fixture(scope="module")
def batch_gateway(fake_upstream: FakeUpstream, redis_client: redis.Redis,
                  redis_url: str) -> Iterator[GatewayProcess]:
    with tempfile.TemporaryDirectory(prefix="batchgate-files-") as folder, \
            queue_service(fake_upstream, redis_client, redis_url, files_dir=folder,
                          max_batch_lines=500, chunk_size=4, feed_window=16) as gw:
        yield gw


@pytest.fixture
def sdk(batch_gateway: GatewayProcess, upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{batch_gateway.base_url}/v1", api_key="unused",
                       max_retries=0, timeout=60) as client:
        yield client


def line(custom_id: str, model: str, content: str = "hi", *,
         url: str = "/v1/chat/completions", **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": content}]},
            **extra}


def jsonl(lines: list[Any]) -> bytes:
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def upload(sdk: openai.OpenAI, data: bytes, name: str = "input.jsonl") -> str:
    return sdk.files.create(file=(name, data), purpose="batch").id


def submit(sdk: openai.OpenAI, data: bytes, *, endpoint: str = "/v1/chat/completions",
           **options: Any) -> Batch:
    return sdk.batches.create(input_file_id=upload(sdk, data), endpoint=endpoint,  # type: ignore[arg-type]
                              completion_window="24h", **options)


def wait(sdk: openai.OpenAI, batch_id: str, *, statuses: tuple[str, ...] = ENDED,
         timeout: float = 60) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = sdk.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.1)


def read_lines(sdk: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(x) for x in sdk.files.content(file_id).text.splitlines()]


def test_a_batch_runs_end_to_end_with_output_and_error_files(sdk: openai.OpenAI) -> None:
    lines = [line(f"ok-{i}", "gpt-a", f"question {i}") for i in range(6)]
    lines.insert(2, line("too-long", "small", "word " * 200))  # upstream 400: context window
    lines.insert(4, line("unreachable", "broken"))             # no upstream answers
    batch = submit(sdk, jsonl(lines), metadata={"project": "rag"})
    assert batch.status == "validating"
    assert batch.object == "batch"
    assert batch.endpoint == "/v1/chat/completions"
    assert batch.completion_window == "24h"
    assert batch.metadata == {"project": "rag"}
    assert batch.output_file_id is None
    assert batch.errors is None

    done = wait(sdk, batch.id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (8, 6, 2)
    for name in ("in_progress_at", "finalizing_at", "completed_at"):
        assert getattr(done, name) is not None, name
    assert done.failed_at is None
    assert done.cancelled_at is None
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at  # type: ignore[operator]

    output = read_lines(sdk, done.output_file_id)
    assert [x["custom_id"] for x in output] == [f"ok-{i}" for i in range(6)]  # input order
    for x in output:
        assert x["id"].startswith("batch_req_")
        assert x["error"] is None
        assert x["response"]["status_code"] == 200
        assert x["response"]["body"]["object"] == "chat.completion"
        assert x["response"]["request_id"]
    assert sdk.files.retrieve(done.output_file_id).purpose == "batch_output"  # type: ignore[arg-type]

    errors = {x["custom_id"]: x for x in read_lines(sdk, done.error_file_id)}
    assert set(errors) == {"too-long", "unreachable"}
    assert errors["too-long"]["response"]["status_code"] == 400
    assert errors["too-long"]["response"]["body"]["error"]["code"] == "context_length_exceeded"
    assert errors["unreachable"]["response"] is None or \
        errors["unreachable"]["response"]["status_code"] >= 500
    if errors["unreachable"]["response"] is None:
        assert errors["unreachable"]["error"]["code"]


def test_embeddings_batch_output_is_in_input_order(sdk: openai.OpenAI) -> None:
    texts = [f"chunk number {i}" for i in range(120)]
    lines = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "embed", "input": text}} for i, text in enumerate(texts)]
    batch = submit(sdk, jsonl(lines), endpoint="/v1/embeddings")
    done = wait(sdk, batch.id)
    assert done.status == "completed"
    assert done.error_file_id is None
    output = read_lines(sdk, done.output_file_id)
    assert [x["custom_id"] for x in output] == [f"c{i}" for i in range(120)]
    direct = sdk.embeddings.create(model="embed", input=texts[7])
    assert output[7]["response"]["body"]["data"][0]["embedding"] == direct.data[0].embedding


def test_mixed_models_and_comma_separated_models(sdk: openai.OpenAI) -> None:
    lines = [line("a", "gpt-a"), line("b", "gpt-b"), line("both", "gpt-a,gpt-b")]
    done = wait(sdk, submit(sdk, jsonl(lines)).id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert done.request_counts.total == 4
    output = read_lines(sdk, done.output_file_id)
    assert [x["custom_id"] for x in output] == ["a", "b", "both::gpt-a", "both::gpt-b"]
    assert [x["response"]["body"]["model"] for x in output[2:]] == ["gpt-a", "gpt-b"]


def test_list_paginates_newest_first(sdk: openai.OpenAI) -> None:
    made = [submit(sdk, jsonl([line("x", "gpt-a")])).id for _ in range(3)]
    page = sdk.batches.list(limit=2)
    assert [b.id for b in page.data] == made[::-1][:2]
    assert page.has_more
    rest = sdk.batches.list(limit=2, after=page.data[-1].id)
    assert rest.data[0].id == made[0]
    seen = [b.id for b in sdk.batches.list(limit=1)]  # the SDK's auto-pagination
    assert seen[:3] == made[::-1]


def test_cancel_mid_run_keeps_and_publishes_finished_lines(sdk: openai.OpenAI) -> None:
    lines = [line(f"s{i}", "slow", f"q{i}") for i in range(40)]
    batch = submit(sdk, jsonl(lines))
    deadline = time.monotonic() + 30
    while (b := sdk.batches.retrieve(batch.id)).request_counts is None or \
            b.request_counts.completed < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = sdk.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "finalizing", "cancelled")
    done = wait(sdk, batch.id)
    assert done.status == "cancelled"
    assert done.cancelled_at
    assert done.cancelling_at
    output = read_lines(sdk, done.output_file_id)
    errors = read_lines(sdk, done.error_file_id)
    assert len(output) >= 3
    assert {x["error"]["code"] for x in errors} == {"batch_cancelled"}
    assert len(output) + len(errors) == 40
    assert sorted(x["custom_id"] for x in output + errors) == sorted(f"s{i}" for i in range(40))
    with pytest.raises(openai.ConflictError):
        sdk.batches.cancel(batch.id)


def test_expiry_keeps_finished_lines_and_marks_the_rest(sdk: openai.OpenAI) -> None:
    lines = [line(f"e{i}", "slower", f"q{i}") for i in range(64)]
    batch = sdk.batches.create(input_file_id=upload(sdk, jsonl(lines)),
                               endpoint="/v1/chat/completions",
                               completion_window="2s")  # type: ignore[arg-type]
    done = wait(sdk, batch.id, timeout=60)
    assert done.status == "expired"
    assert done.expired_at is not None
    output = read_lines(sdk, done.output_file_id)
    errors = read_lines(sdk, done.error_file_id)
    assert {x["error"]["code"] for x in errors} == {"batch_expired"}
    assert len(output) + len(errors) == 64
    assert all(x["response"]["status_code"] == 200 for x in output)


MALFORMED = {
    "broken JSON line": (jsonl([line("a", "gpt-a")]) + b'{"custom_id": "b", "method": \n',
                         "invalid_json_line", 2),
    "duplicate custom_id": (jsonl([line("same", "gpt-a"), line("other", "gpt-a"),
                                   line("same", "gpt-a")]), "duplicate_custom_id", 3),
    "wrong url": (jsonl([line("a", "gpt-a", url="/v1/embeddings")]), "invalid_url", 1),
    "wrong method": (jsonl([line("a", "gpt-a", method="GET")]), "invalid_method", 1),
    "unknown model": (jsonl([line("a", "gpt-a"), line("b", "no-such-model")]),
                      "model_not_found", 2),
    "custom_id too long": (jsonl([line("x" * 65, "gpt-a")]), "invalid_batch_request", 1),
    "missing custom_id": (jsonl([{"method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "gpt-a", "messages": []}}]),
                          "invalid_batch_request", 1),
    "bad body": (jsonl([line("a", "gpt-a"), {"custom_id": "b", "method": "POST",
                                             "url": "/v1/chat/completions",
                                             "body": {"model": "gpt-a"}}]),
                 "invalid_request_body", 2),
    "non-UTF-8": (jsonl([line("a", "gpt-a")]) + b'{"custom_id": "\xff\xfe"}\n',
                  "invalid_encoding", 2),
    "huge line": (jsonl([line("a", "gpt-a", "x" * (5 * 1024 * 1024))]), "line_too_long", 1),
    "too many requests": (jsonl([line(f"r{i}", "gpt-a") for i in range(501)]),
                          "too_many_requests", 501),
    "blank lines only": (b"\n\n  \n", "empty_file", None),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_files_fail_the_batch_with_openai_errors(
        name: str, sdk: openai.OpenAI, redis_client: redis.Redis,
        batch_gateway: GatewayProcess) -> None:
    data, code, line_number = MALFORMED[name]
    batch = submit(sdk, data)
    done = wait(sdk, batch.id)
    assert done.status == "failed"
    assert done.failed_at is not None
    assert done.errors is not None
    assert done.errors.data
    first = done.errors.data[0]
    assert (first.code, first.line) == (code, line_number), first
    assert first.message
    assert done.output_file_id is None
    assert done.error_file_id is None
    assert done.request_counts is not None
    assert done.request_counts.total == 0
    # nothing half-created: no items, no duplicate-check hash, nothing queued
    prefix = batch_gateway.prefix  # type: ignore[attr-defined]
    left = keys_under(redis_client, f"{prefix}:job:{{{batch.id}}}")
    assert left == [f"{prefix}:job:{{{batch.id}}}"], left


@pytest.mark.parametrize(("make", "status", "code"), [
    (lambda sdk: {"input_file_id": "file-doesnotexist000000000000"}, 400, "invalid_input_file"),
    (lambda sdk: {"endpoint": "/v1/responses"}, 400, "invalid_request_body"),
    (lambda sdk: {"completion_window": "forever"}, 400, None),
    (lambda sdk: {"completion_window": "31d"}, 400, None),
    (lambda sdk: {"metadata": {f"k{i}": "v" for i in range(17)}}, 400, None),
    (lambda sdk: {"extra": 1}, 400, None),
])
def test_create_fails_fast_on_what_cannot_work(make: Any, status: int, code: str | None,
                                              sdk: openai.OpenAI,
                                              batch_gateway: GatewayProcess) -> None:
    body = {"input_file_id": upload(sdk, jsonl([line("a", "gpt-a")])),
            "endpoint": "/v1/chat/completions", "completion_window": "24h", **make(sdk)}
    before = sdk.batches.list(limit=100).data
    answer = httpx.post(f"{batch_gateway.base_url}/v1/batches", json=body, timeout=10)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code
    assert [b.id for b in sdk.batches.list(limit=100).data] == [b.id for b in before]


def test_wrong_purpose_is_refused_at_create(sdk: openai.OpenAI, redis_client: redis.Redis,
                                            batch_gateway: GatewayProcess) -> None:
    done = wait(sdk, submit(sdk, jsonl([line("a", "gpt-a")])).id)
    assert done.output_file_id  # purpose batch_output: not an input
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.batches.create(input_file_id=done.output_file_id, endpoint="/v1/chat/completions",
                           completion_window="24h")
    assert caught.value.code == "invalid_file_purpose"


def test_unknown_batch_is_404_everywhere(sdk: openai.OpenAI) -> None:
    for call in (lambda: sdk.batches.retrieve("batch_nope"),
                 lambda: sdk.batches.cancel("batch_nope"),
                 lambda: sdk.batches.retrieve("x" * 1000)):
        with pytest.raises(openai.NotFoundError):
            call()


def test_partial_results_while_running_then_retry_of_what_failed(
        sdk: openai.OpenAI, batch_gateway: GatewayProcess) -> None:
    lines = [line(f"p{i}", "slow", f"q{i}") for i in range(12)] + [line("bad", "broken")]
    batch = submit(sdk, jsonl(lines))
    base = batch_gateway.base_url
    seen: list[dict[str, Any]] = []
    after = -1
    deadline = time.monotonic() + 60
    while len(seen) < 13:
        assert time.monotonic() < deadline
        page = httpx.get(f"{base}/v1/batches/{batch.id}/results",
                         params={"after": after, "limit": 5}, timeout=10).json()
        seen += page["data"]
        after = page["next_after"] if page["next_after"] is not None else after
        if not page["data"]:
            time.sleep(0.1)
    assert sorted(x["custom_id"] for x in seen) == sorted(x["custom_id"] for x in lines)
    done = wait(sdk, batch.id)
    assert done.progress["percent"] == 100.0  # type: ignore[attr-defined]
    child = httpx.post(f"{base}/v1/batches/{batch.id}/retry", timeout=10)
    assert child.status_code == 200, child.text
    retried = wait(sdk, child.json()["id"])
    assert retried.metadata == {"retry_of": batch.id}
    assert retried.request_counts is not None
    assert retried.request_counts.total == 1
    assert [x["custom_id"] for x in read_lines(sdk, retried.error_file_id)] == ["bad"]
    again = httpx.post(f"{base}/v1/batches/{retried.id}/retry", timeout=10)
    assert again.status_code == 200
    all_ok = wait(sdk, submit(sdk, jsonl([line("z", "gpt-a")])).id)
    ok_child = httpx.post(f"{base}/v1/batches/{all_ok.id}/retry", timeout=10)
    assert ok_child.status_code == 409
    assert ok_child.json()["error"]["code"] == "nothing_to_retry"


def test_a_batch_is_also_a_queue_job(sdk: openai.OpenAI, batch_gateway: GatewayProcess) -> None:
    done = wait(sdk, submit(sdk, jsonl([line("q", "gpt-a")])).id)
    job = httpx.get(f"{batch_gateway.base_url}/queue/response/{done.id}", timeout=10).json()
    assert job["status"] == "completed"
    assert job["kind"] == "batch"
    assert job["data"][0]["custom_id"] == "q"


def test_webhooks_fire_openai_batch_event_types(sdk: openai.OpenAI) -> None:
    receiver = Receiver()
    try:
        secret = new_secret()
        hook = {"webhook": {"url": receiver.url, "secret": secret}}
        ok = submit(sdk, jsonl([line("w", "gpt-a")]), extra_body=hook)
        assert "webhook" not in ok.model_dump()  # the secret is never shown back
        bad = submit(sdk, b"{broken\n", extra_body=hook)
        wait(sdk, ok.id)
        wait(sdk, bad.id)
        receiver.wait_for(2)
        events = {}
        for headers, body in receiver.requests:
            payload = Webhook(secret).verify(body, headers)
            events[payload["data"]["id"]] = payload["type"]
        assert events == {ok.id: "batch.completed", bad.id: "batch.failed"}
    finally:
        receiver.close()
    with pytest.raises(openai.BadRequestError):  # a made-up secret could never be shown
        submit(sdk, jsonl([line("w", "gpt-a")]), extra_body={"webhook": {"url": receiver.url}})
