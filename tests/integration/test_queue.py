"""The queue with real processes: gunicorn API, Celery worker and beat, Redis, fake upstream."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import redis

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess
from tests.support.redis_scan import keys_under

pytestmark = pytest.mark.integration
HELLO = [{"role": "user", "content": "hello queue"}]
ENDED = {"completed", "failed", "cancelled", "expired"}


def submit(api: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = api.post("/queue/requests", json=body, headers=headers)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_done(api: httpx.Client, job_id: str, timeout: float = 60,
              params: dict[str, Any] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(f"/queue/response/{job_id}",
                                      params={"wait": 10, **(params or {})}).json()
        if job["status"] in ENDED:
            return job
    raise AssertionError(f"job {job_id} did not end within {timeout} s")


def batch(n: int, *, model: str = "gpt-a", text: str = "line") -> dict[str, Any]:
    return {"endpoint": "/v1/chat/completions", "requests": [
        {"custom_id": f"c{i}", "body": {"model": model, "messages": [
            {"role": "user", "content": f"{text} {i}"}]}} for i in range(n)]}


def test_single_request_is_answered_with_the_openai_response(api: httpx.Client) -> None:
    job = submit(api, {"model": "gpt-a", "messages": HELLO, "metadata": {"team": "rag"}})
    assert job["object"] == "queue.job"
    assert job["status"] == "queued"
    assert job["url"] == f"/queue/response/{job['id']}"
    assert job["request_counts"]["total"] == 1
    done = wait_done(api, job["id"])
    assert done["status"] == "completed"
    assert done["result"]["object"] == "chat.completion"
    assert "hello queue" in done["result"]["choices"][0]["message"]["content"]
    assert done["metadata"] == {"team": "rag"}
    assert done["request_counts"]["completed"] == 1


def test_compare_keeps_answering_when_one_model_fails(api: httpx.Client) -> None:
    job = submit(api, {"model": "gpt-b,broken,gpt-a", "messages": HELLO})
    done = wait_done(api, job["id"])
    assert done["status"] == "completed"
    first, failed, last = done["results"]
    assert first["model"] == "gpt-b"
    assert failed["model"] == "broken"
    assert failed["status_code"] == 503
    assert failed["error"]["code"] == "upstream_unavailable"
    assert last["model"] == "gpt-a"
    assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1,
                                      "cancelled": 0, "expired": 0}


def test_inline_batch_of_1000_items_ends_each_exactly_once(
        api: httpx.Client, upstream: FakeUpstream, queue_gateway: GatewayProcess,
        redis_client: redis.Redis) -> None:
    job = submit(api, batch(1000))
    done = wait_done(api, job["id"], timeout=90)
    assert done["status"] == "completed"
    assert done["request_counts"]["completed"] == 1000
    seen: list[str] = []
    after = -1
    while True:
        page = api.get(f"/queue/response/{job['id']}",
                       params={"after": after, "limit": 300}).json()
        seen += [item["custom_id"] for item in page["data"]]
        if not page["has_more"]:
            break
        after = page["next_after"]
    assert sorted(seen) == sorted(f"c{i}" for i in range(1000))
    in_order = api.get(f"/queue/response/{job['id']}",
                       params={"order": "input", "limit": 5, "after": 9}).json()
    assert [item["custom_id"] for item in in_order["data"]] == [f"c{i}" for i in range(10, 15)]
    assert in_order["data"][0]["response"]["choices"][0]["message"]["content"].endswith("line 10")
    prefix = queue_gateway.prefix  # type: ignore[attr-defined]
    done_list = redis_client.lrange(f"{prefix}:job:{{{job['id']}}}:done", 0, -1)
    assert len(done_list) == len(set(done_list)) == 1000


def test_long_poll_returns_as_soon_as_the_job_ends(api: httpx.Client) -> None:
    job = submit(api, {"model": "slow", "messages": HELLO})
    start = time.monotonic()
    done = api.get(f"/queue/response/{job['id']}", params={"wait": 20}).json()
    elapsed = time.monotonic() - start
    assert done["status"] == "completed"
    assert elapsed < 5  # the slow model answers in 0.3 s; the wait allowed 20 s


def test_long_poll_gives_up_after_its_wait(api: httpx.Client) -> None:
    job = submit(api, {"model": "gpt-a", "messages": [{"role": "user", "content": "[[hang]]"}]})
    start = time.monotonic()
    pending = api.get(f"/queue/response/{job['id']}", params={"wait": 1}).json()
    assert 0.9 < time.monotonic() - start < 5
    assert pending["status"] in ("queued", "in_progress")
    api.post(f"/queue/jobs/{job['id']}/cancel")


def test_cancel_keeps_finished_results_and_cancels_the_rest(api: httpx.Client) -> None:
    job = submit(api, batch(300, model="slow"))
    deadline = time.monotonic() + 30
    while api.get(f"/queue/response/{job['id']}").json()["request_counts"]["completed"] < 5:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled = api.post(f"/queue/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] in ("cancelling", "cancelled")
    done = wait_done(api, job["id"])
    counts = done["request_counts"]
    assert done["status"] == "cancelled"
    assert counts["completed"] >= 5
    assert counts["cancelled"] > 0
    assert counts["completed"] + counts["failed"] + counts["cancelled"] == 300
    finished = api.get(f"/queue/response/{job['id']}", params={"limit": 1000}).json()["data"]
    completed = [r for r in finished if r["status"] == "completed"]
    assert len(completed) == counts["completed"]
    assert all(r["response"]["object"] == "chat.completion" for r in completed)
    again = api.post(f"/queue/jobs/{job['id']}/cancel")
    assert again.status_code == 409


def test_idempotency_key_replays_the_same_job_and_refuses_another_body(
        api: httpx.Client) -> None:
    body = {"model": "gpt-a", "messages": HELLO}
    first = submit(api, body, **{"Idempotency-Key": "run-42"})
    replay = api.post("/queue/requests", json=body, headers={"Idempotency-Key": "run-42"})
    assert replay.status_code == 202
    assert replay.json()["id"] == first["id"]
    assert replay.headers["idempotent-replayed"] == "true"
    other = api.post("/queue/requests", json={**body, "temperature": 0.5},
                     headers={"Idempotency-Key": "run-42"})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_jobs_are_listed_newest_first_and_filtered_by_status(api: httpx.Client) -> None:
    ids = [submit(api, {"model": "gpt-a", "messages": HELLO})["id"] for _ in range(3)]
    for job_id in ids:
        wait_done(api, job_id)
    page = api.get("/queue/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    rest = api.get("/queue/jobs", params={"limit": 1, "after": page["last_id"]}).json()
    assert rest["data"][0]["id"] == ids[0]
    completed = api.get("/queue/jobs", params={"status": "completed", "limit": 100}).json()
    assert {j["status"] for j in completed["data"]} == {"completed"}


def test_events_stream_reports_items_and_the_end(api: httpx.Client) -> None:
    job = submit(api, batch(5, model="slow"))
    events = []
    with api.stream("GET", f"/queue/jobs/{job['id']}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
    assert events[0] == "job"
    assert events.count("item.completed") == 5
    assert events[-1] == "job.completed"


def test_legacy_litellm_queue_client_runs_unchanged(queue_gateway: GatewayProcess) -> None:
    # What scripts written for LiteLLM's removed --use_queue mode did.
    base = queue_gateway.base_url
    response = httpx.post(f"{base}/queue/request", json={
        "model": "gpt-a", "messages": [{"role": "user", "content": "old client"}]}).json()
    assert response["status"] == "queued"
    assert response["eta"] > 0
    url = base + response["url"]
    for _ in range(100):
        polled = httpx.get(url).json()
        if polled["status"] == "finished":
            break
        assert polled == {"status": "queued"}
        time.sleep(0.1)
    assert polled["status"] == "finished"
    assert "old client" in polled["result"]["choices"][0]["message"]["content"]


def test_expired_job_keeps_finished_work(api: httpx.Client) -> None:
    # 5 chunks of 8 items at 1.5 s each: when the job expires (2 s window, checked every
    # 5 s) every chunk still holds items that never started.
    job = submit(api, {**batch(40, model="slower"), "completion_window": "2s",
                       "priority": 9})
    done = wait_done(api, job["id"], timeout=40)
    counts = done["request_counts"]
    assert done["status"] == "expired"
    assert counts["expired"] > 0
    assert counts["completed"] + counts["expired"] + counts["failed"] == 40
    finished = api.get(f"/queue/response/{job['id']}", params={"limit": 100}).json()["data"]
    assert sum(r["status"] == "completed" for r in finished) == counts["completed"]


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "nope", "messages": HELLO}, 404, "model"),
    ({"model": "gpt-a"}, 400, "endpoint"),
    ({"model": "gpt-a", "messages": HELLO, "stream": True}, 400, "stream"),
    ({"model": "gpt-a", "messages": HELLO, "webhook": {"url": "http://10.1.2.3/hook"}}, 400,
     "webhook.url"),
    ({"model": "gpt-a", "messages": HELLO, "webhook": {"url": "file:///etc/passwd"}}, 400,
     "webhook.url"),
    ({"model": "gpt-a", "messages": HELLO, "webhook": {"url": "http://127.0.0.1:9/h",
                                                        "secret": "short"}}, 400,
     "webhook.secret"),
    ({"model": "gpt-a", "messages": HELLO, "priority": "high"}, 400, "priority"),
    ({"model": "gpt-a", "messages": HELLO, "completion_window": "soon"}, 400,
     "completion_window"),
    ({"model": "gpt-a", "messages": HELLO, "metadata": {"k": "a\r\nSet-Cookie: x"}}, 400,
     "metadata"),
    ({"requests": [{"custom_id": "a", "body": {"model": "gpt-a", "messages": HELLO}},
                   {"custom_id": "a", "body": {"model": "gpt-a", "messages": HELLO}}]}, 400,
     "requests[1].custom_id"),
    ({"requests": [{"custom_id": "x" * 65, "body": {}}]}, 400, "requests[0].custom_id"),
    ({"requests": [{"custom_id": "a", "body": {"model": "nope", "messages": HELLO}}]}, 404,
     "requests[0].body.model"),
    ({"requests": [{"custom_id": "a", "body": {"model": "gpt-a"}}]}, 400,
     "requests[0].body.messages"),
    ({"requests": [{"custom_id": "a", "url": "/v1/embeddings",
                    "body": {"model": "gpt-a", "messages": HELLO}}]}, 400, "requests[0].url"),
    ({"requests": ["not an object"]}, 400, "requests[0]"),
    (batch(2001), 413, "requests"),
])
def test_bad_submissions_are_refused_and_leave_nothing_behind(
        api: httpx.Client, queue_gateway: GatewayProcess, redis_client: redis.Redis,
        body: dict[str, Any], status: int, param: str) -> None:
    prefix = queue_gateway.prefix  # type: ignore[attr-defined]
    before = [k for k in keys_under(redis_client, prefix) if ":celery:" not in k]
    response = api.post("/queue/requests", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["message"]
    after = [k for k in keys_under(redis_client, prefix) if ":celery:" not in k]
    assert after == before


@pytest.mark.parametrize("path", ["/queue/response/job_doesnotexist",
                                  "/queue/jobs/job_doesnotexist/events",
                                  "/queue/response/" + "x" * 300])
def test_unknown_jobs_are_404(api: httpx.Client, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "id"


@pytest.mark.parametrize("wait", ["soon", "-1", "nan", "inf"])
def test_bad_wait_is_400(api: httpx.Client, wait: str) -> None:
    job = submit(api, {"model": "gpt-a", "messages": HELLO})
    response = api.get(f"/queue/response/{job['id']}", params={"wait": wait})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "wait"


def test_malformed_json_is_400_and_writes_nothing(api: httpx.Client,
                                                  queue_gateway: GatewayProcess,
                                                  redis_client: redis.Redis) -> None:
    prefix = queue_gateway.prefix  # type: ignore[attr-defined]
    before = keys_under(redis_client, prefix)
    response = api.post("/queue/requests", content=b'{"model": "gpt-a", "messages": [',
                        headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert json.loads(response.text)["error"]["code"] == "invalid_json"
    assert keys_under(redis_client, prefix) == before


def test_test_async_command_polls_every_request_to_the_end(
        queue_gateway: GatewayProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "batchgate", "test-async", "--url", queue_gateway.base_url,
         "--num-requests", "20", "--model", "gpt-a"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded 20, failed 0" in result.stdout
