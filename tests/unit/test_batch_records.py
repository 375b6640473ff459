"""The batch object and output lines, made from job records and stored results."""

from __future__ import annotations

import json
from typing import Any

from openai.types import Batch

from workers.batch_records import batch_object, output_line
from workers.jobs import Item, Job, Outcome, item_result, stopped_error

NOW = 1_800_000_000


def job(**fields: Any) -> Job:
    record = {"id": "batch_1", "kind": "batch", "endpoint": "embeddings", "status": "queued",
              "owner": "o", "created_at": str(NOW - 100), "expires_at": str(NOW + 86_300),
              "total": "10", "completed": "0", "failed": "0", "cancelled": "0",
              "expired": "0", "metadata": "{}", "files": "1", "input_file_id": "file-x",
              "completion_window_text": "24h"}
    record.update({k: str(v) for k, v in fields.items()})
    return Job(record)


def test_a_queued_batch_shows_as_validating_and_parses_as_the_sdks_batch() -> None:
    shown = batch_object(job(), NOW)
    assert shown["status"] == "validating"
    parsed = Batch.model_validate(shown)
    assert parsed.request_counts is not None
    assert parsed.output_file_id is None
    assert parsed.errors is None
    assert parsed.metadata is None
    assert parsed.endpoint == "/v1/embeddings"
    assert parsed.completion_window == "24h"


def test_counts_and_progress_while_running() -> None:
    running = job(status="in_progress", in_progress_at=NOW - 10, completed=4, failed=1)
    shown = batch_object(running, NOW)
    assert shown["request_counts"] == {"total": 10, "completed": 4, "failed": 1}
    assert shown["progress"]["percent"] == 50.0
    assert shown["progress"]["items_per_second"] == 0.5
    assert shown["progress"]["eta_seconds"] == 10.0


def test_cancelled_and_expired_requests_count_as_failed_and_an_ended_batch_has_no_eta() -> None:
    ended = job(status="cancelled", in_progress_at=NOW - 10, finished_at=NOW - 5,
                cancelled_at=NOW - 5, completed=6, cancelled=4, output_file_id="file-o",
                error_file_id="file-e")
    shown = batch_object(ended, NOW)
    assert shown["request_counts"] == {"total": 10, "completed": 6, "failed": 4}
    assert shown["progress"]["eta_seconds"] is None
    assert shown["progress"]["items_per_second"] == 2.0
    assert (shown["output_file_id"], shown["error_file_id"]) == ("file-o", "file-e")
    assert shown["cancelled_at"] == NOW - 5


def test_validation_errors_are_shown_as_openai_lists_them() -> None:
    errors = {"object": "list", "data": [{"code": "invalid_json_line", "line": 3,
                                          "message": "Line 3 is not valid JSON.",
                                          "param": None}]}
    shown = batch_object(job(status="failed", errors=json.dumps(errors)), NOW)
    assert Batch.model_validate(shown).errors.data[0].line == 3  # type: ignore[union-attr,index]


ITEM = Item(3, "doc-3", "embed", {"model": "embed", "input": "x"})


def result(outcome: Outcome, **kwargs: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"status_code": None, "finished_at": NOW}
    defaults.update(kwargs)
    return dict(json.loads(item_result(ITEM, outcome, **defaults)))


def test_a_success_goes_to_the_output_file_with_the_upstream_body() -> None:
    line, failed = output_line("batch_1", result(Outcome.COMPLETED, status_code=200,
                                                 body={"object": "list"}))
    assert not failed
    assert line["custom_id"] == "doc-3"
    assert line["error"] is None
    assert line["response"]["status_code"] == 200
    assert line["response"]["body"] == {
        "object": "list"}
    assert line["id"].startswith("batch_req_")
    assert line["response"]["request_id"]
    again, _ = output_line("batch_1", result(Outcome.COMPLETED, status_code=200, body={}))
    assert again["id"] == line["id"]  # the same line when the files are written twice


def test_an_upstream_error_keeps_its_status_and_body_in_the_error_file() -> None:
    error = {"message": "too long", "type": "invalid_request_error", "param": None,
             "code": "context_length_exceeded"}
    line, failed = output_line("batch_1", result(Outcome.FAILED, status_code=400, error=error))
    assert failed
    assert line["response"]["status_code"] == 400
    assert line["response"]["body"] == {"error": error}
    assert line["error"] is None


def test_work_not_done_gets_an_error_and_no_response() -> None:
    for outcome, code in ((Outcome.CANCELLED, "batch_cancelled"),
                          (Outcome.EXPIRED, "batch_expired")):
        line, failed = output_line("batch_1", result(outcome, error=stopped_error(outcome)))
        assert failed
        assert line["response"] is None
        assert line["error"]["code"] == code
        assert line["error"]["message"]
