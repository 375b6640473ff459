"""Request ids, the JSON log format, the metrics and the Celery context hooks (no processes)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from api.observe import MAX_REQUEST_ID, request_id_from
from batchgate.logs import JsonFormatter
from config.keys import Keys
from tests.unit.conftest import UPSTREAM_KEY, Upstream, deployment
from workers import logcontext, task_context

CHAT = {"model": "gpt-a", "messages": [{"role": "user", "content": "hello"}]}
GENERATED = re.compile(r"req_[0-9a-f]{32}")


# -- request ids -------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "7f0c2a4e-1b2d-4c3e-9f00-123456789abc",
                                   "req_01H:trace/span=1+x", "x" * MAX_REQUEST_ID])
def test_a_callers_printable_request_id_is_kept(value: str) -> None:
    assert request_id_from(value) == value


@pytest.mark.parametrize("value", [None, "", "x" * (MAX_REQUEST_ID + 1), "a\r\nSet-Cookie: x",
                                   "a\nb", "with space", "tab\tid", "caf\u00e9", "nul\x00"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(value: str | None) -> None:
    new = request_id_from(value)
    assert GENERATED.fullmatch(new)
    assert new != request_id_from(value)


def test_every_response_carries_the_request_id_errors_too(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    client = make_app(master_key="sk-master").test_client()
    auth = {"Authorization": "Bearer sk-master"}
    ok = client.post("/v1/chat/completions", json=CHAT, headers={**auth, "x-request-id": "r-1"})
    refused = client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "r-2"})
    missing = client.get("/no/such/route", headers=auth)
    bad_json = client.post("/v1/chat/completions", data="{", headers=auth)
    assert (ok.status_code, ok.headers["x-request-id"]) == (200, "r-1")
    assert (refused.status_code, refused.headers["x-request-id"]) == (401, "r-2")
    assert missing.status_code == 404
    assert GENERATED.fullmatch(missing.headers["x-request-id"])
    assert bad_json.status_code == 400
    assert GENERATED.fullmatch(bad_json.headers["x-request-id"])


def test_an_unsafe_request_id_is_not_echoed(client: FlaskClient) -> None:
    response = client.get("/health/liveliness", headers={"x-request-id": "x" * 200})
    assert GENERATED.fullmatch(response.headers["x-request-id"])


def test_the_request_id_is_in_the_requests_log_lines_and_gone_after(
        client: FlaskClient) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("api.observe")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        client.get("/health/liveliness", headers={"x-request-id": "trace-me"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert (line["request_id"], line["route"], line["status"]) == (
        "trace-me", "/health/liveliness", 200)
    assert logcontext.REQUEST_ID.get() is None


# -- the JSON formatter ------------------------------------------------------------------

def _format(record: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("workers.execute", logging.WARNING, __file__, 1, message, args,
                               None)
    record.__dict__.update(extra)
    return record


def test_a_log_line_is_one_json_object_with_time_level_logger_message() -> None:
    line = _format(_record("chunk %s of %s", "0:4", "job_x"))
    assert line["message"] == "chunk 0:4 of job_x"
    assert (line["level"], line["logger"]) == ("WARNING", "workers.execute")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))
    assert "request_id" not in line
    assert "job_id" not in line


def test_a_log_line_names_the_request_and_job_it_is_about() -> None:
    with logcontext.bound(request_id="req_1", job_id="job_1", chunk="0:8"):
        line = _format(_record("working", status=200))
    assert (line["request_id"], line["job_id"], line["chunk"]) == ("req_1", "job_1", "0:8")
    assert line["status"] == 200  # extra= fields are kept
    assert "request_id" not in _format(_record("after"))


def test_an_exception_is_inside_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    line = _format(record)
    assert "ValueError: boom" in str(line["exc_info"])


# -- metrics -----------------------------------------------------------------------------

def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_requests_are_counted_by_url_rule_never_by_path(
        make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    rule = {"route": "/v1/chat/completions", "method": "POST", "status": "200"}
    before = _value("batchgate_http_requests_total", **rule)
    missing = _value("batchgate_http_requests_total", route="<unmatched>", method="GET",
                     status="404")
    for _ in range(3):
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    client.get("/queue/response/job_abc")  # no queue here: any status, one rule
    client.get("/some/random/path/123")
    assert _value("batchgate_http_requests_total", **rule) == before + 3
    assert _value("batchgate_http_requests_total", route="<unmatched>", method="GET",
                  status="404") == missing + 1
    text = client.get("/metrics").get_data(as_text=True)
    assert "/some/random/path" not in text
    assert "job_abc" not in text
    assert 'route="/queue/response/<job_id>"' in text


def test_upstream_calls_and_429s_are_counted_by_deployment_without_its_url_or_key(
        make_app: Callable[..., Flask], upstream: Upstream) -> None:
    client = make_app().test_client()
    upstream.handlers["gpt-b"] = lambda r, b: httpx.Response(
        429, json={"error": {"message": "slow down", "type": "rate_limit"}},
        headers={"retry-after": "0"})
    ok = {"model_group": "gpt-a", "deployment": "a1", "status": "200"}
    limited = {"model_group": "gpt-b", "deployment": "b1"}
    before_ok = _value("batchgate_upstream_requests_total", **ok)
    before_429 = _value("batchgate_upstream_rate_limited_total", **limited)
    client.post("/v1/chat/completions", json=CHAT)
    client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-b", "timeout": 0.5})
    assert _value("batchgate_upstream_requests_total", **ok) == before_ok + 1
    assert _value("batchgate_upstream_rate_limited_total", **limited) >= before_429 + 1
    text = client.get("/metrics").get_data(as_text=True)
    assert "up.test" not in text
    assert UPSTREAM_KEY not in text


def test_metrics_show_each_deployments_budget_at_scrape_time(
        make_app: Callable[..., Flask]) -> None:
    client = make_app(replace(deployment("gpt-a", "a1"), rpm=100)).test_client()
    client.post("/v1/chat/completions", json=CHAT)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'batchgate_deployment_requests_in_window{deployment="a1",model_group="gpt-a"} 1.0' \
        in text
    assert 'batchgate_deployment_limit{deployment="a1",limit="rpm",model_group="gpt-a"} 100.0' \
        in text
    assert "batchgate_deployment_in_flight" in text
    assert "batchgate_queue_depth" not in text  # no Redis here: no queue gauges


def test_metrics_need_the_master_key_when_one_is_set(make_app: Callable[..., Flask]) -> None:
    client = make_app(master_key="sk-master").test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer sk-master"}
                      ).status_code == 200


def test_broker_queue_keys_cover_every_kombu_priority_step() -> None:
    keys = Keys("bg").broker_queues("bulk")
    assert keys[0] == "bg:celery:bulk"
    assert keys[1:] == ["bg:celery:bulk\x06\x163", "bg:celery:bulk\x06\x166",
                        "bg:celery:bulk\x06\x169"]


# -- Celery hooks ------------------------------------------------------------------------

def test_publishing_inside_a_request_carries_its_id_in_a_header() -> None:
    headers: dict[str, object] = {}
    task_context._on_publish(headers=headers)
    assert headers == {}
    with logcontext.bound(request_id="req_9"):
        task_context._on_publish(headers=headers)
    assert headers == {task_context.HEADER: "req_9"}


def test_a_task_binds_its_request_job_and_chunk_then_forgets_them() -> None:
    task = SimpleNamespace(name="batchgate.run_chunk",
                           request=SimpleNamespace(**{task_context.HEADER: "req_5"}))
    try:
        task_context._on_prerun(task=task, args=["job_7", 0, 16])
        assert logcontext.current() == {"request_id": "req_5", "job_id": "job_7",
                                        "chunk": "0:16"}
        task_context._on_postrun()
        assert logcontext.current() == {}
        beat_task = SimpleNamespace(name="batchgate.recover", request=SimpleNamespace())
        task_context._on_prerun(task=beat_task, args=[])
        assert logcontext.current() == {}
    finally:
        logcontext.bind()
