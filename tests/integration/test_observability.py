"""Observability on real processes: /metrics adds up across gunicorn and Celery workers, the
request id follows queued work into the worker, and every log line is JSON without secrets."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import (
    MASTER_KEY,
    SERVER_SECRET_KEY,
    UPSTREAM_KEY,
    gateway_config,
    queue_config,
)
from tests.integration.test_queue import HELLO, submit, wait_done
from tests.integration.test_queue_reliability import Receiver
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess
from tests.support.redis_scan import delete_under
from workers.webhooks.signing import new_secret

pytestmark = pytest.mark.integration

SYNC_CALLS = 12
QUEUED_JOBS = 3
CHAT_ROUTE = "/v1/chat/completions"


@contextlib.contextmanager
def service(fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str, *,
            workers: int, extra_args: list[str], master_key: str | None = None
            ) -> Iterator[GatewayProcess]:
    """``batchgate up`` with ``workers`` gunicorn processes and a Celery worker, on a fresh
    key prefix that is deleted afterwards."""
    prefix = f"bgtest-{uuid.uuid4().hex[:10]}"
    config = queue_config(fake_upstream.base_url, redis_url, prefix)
    if master_key:
        config["general_settings"] = gateway_config(
            fake_upstream.base_url, master_key=master_key)["general_settings"]
    try:
        with GatewayProcess(config, workers=workers,
                            extra_args=["--queue-workers", "1", *extra_args],
                            env={"BATCHGATE_SECRET_KEY": SERVER_SECRET_KEY}) as gw:
            yield gw
    finally:
        delete_under(redis_client, prefix)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page, by name and label set."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in page.items() if n == name and wanted <= ls)


def log_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines; anything else must be one of the few lines click prints at start."""
    lines = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if raw.startswith("{"):
            lines.append(json.loads(raw))
        else:
            assert raw.startswith(("batchgate ", "embedded redis on ", "files in ")), raw
    return lines


def test_metrics_add_up_across_gunicorn_and_celery_worker_processes(
        fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str) -> None:
    with service(fake_upstream, redis_client, redis_url, workers=2, extra_args=[]) as gw:
        for _ in range(SYNC_CALLS):
            # A new connection each time, so both gunicorn workers get some.
            with httpx.Client(base_url=gw.base_url, timeout=30) as api:
                reply = api.post(CHAT_ROUTE, json={"model": "gpt-a", "messages": HELLO})
                assert reply.status_code == 200
        with httpx.Client(base_url=gw.base_url, timeout=60) as api:
            jobs = []
            for n in range(QUEUED_JOBS):
                answer = api.post("/queue/requests", json={"model": "gpt-b", "messages": HELLO},
                                  headers={"x-request-id": f"trace-{n}"})
                assert answer.status_code == 202, answer.text
                assert answer.headers["x-request-id"] == f"trace-{n}"
                jobs.append(answer.json())
            for job in jobs:
                assert wait_done(api, job["id"])["status"] == "completed"
            page = samples(api.get("/metrics").text)
        logs = log_lines(gw.log())
    assert value(page, "batchgate_http_requests_total", route=CHAT_ROUTE, method="POST",
                 status="200") == SYNC_CALLS
    assert value(page, "batchgate_http_requests_total", route="/queue/requests",
                 method="POST", status="202") == QUEUED_JOBS
    # gpt-a was called by the API processes, gpt-b only by the Celery worker.
    assert value(page, "batchgate_upstream_requests_total", model_group="gpt-a",
                 status="200") == SYNC_CALLS
    assert value(page, "batchgate_upstream_requests_total", model_group="gpt-b",
                 status="200") == QUEUED_JOBS
    assert value(page, "batchgate_http_request_duration_seconds_count",
                 route=CHAT_ROUTE) == SYNC_CALLS
    assert value(page, "batchgate_redis_up") == 1
    assert value(page, "batchgate_jobs", state="active") == 0
    assert ("batchgate_queue_depth", frozenset({("queue", "bulk")})) in page
    # The request id of each submission is on the worker's lines for its job.
    for n, job in enumerate(jobs):
        worker_lines = [line for line in logs if line.get("job_id") == job["id"]]
        assert worker_lines, f"no worker log line names {job['id']}"
        assert {line.get("request_id") for line in worker_lines} == {f"trace-{n}"}


def test_no_secret_reaches_a_log_line_at_debug_and_every_line_is_json(
        fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str) -> None:
    receiver = Receiver()
    webhook_secret = new_secret()
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    try:
        with service(fake_upstream, redis_client, redis_url, workers=1,
                     extra_args=["--detailed-debug"], master_key=MASTER_KEY) as gw, \
                httpx.Client(base_url=gw.base_url, timeout=60, headers=auth) as api:
            reply = api.post(CHAT_ROUTE, json={"model": "keyed", "messages": HELLO},
                             headers={"x-request-id": "sync-1"})
            assert reply.status_code == 200
            assert reply.headers["x-request-id"] == "sync-1"
            refused = httpx.post(f"{gw.base_url}{CHAT_ROUTE}", json={"model": "keyed"},
                                 headers={"Authorization": "Bearer sk-wrong"})
            assert refused.status_code == 401
            assert refused.headers["x-request-id"]
            job = submit(api, {"model": "keyed", "messages": HELLO,
                               "webhook": {"url": receiver.url, "secret": webhook_secret}})
            assert wait_done(api, job["id"])["status"] == "completed"
            receiver.wait_for(1)
            text = gw.log()
    finally:
        receiver.close()
    for secret in (MASTER_KEY, UPSTREAM_KEY, webhook_secret, SERVER_SECRET_KEY):
        assert secret not in text
    lines = log_lines(text)
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any(line.get("request_id") == "sync-1" for line in lines)
    assert any(line["level"] == "DEBUG" for line in lines)
    assert any(line.get("job_id") == job["id"] for line in lines)
