"""``batchgate embed`` and ``batchgate batch`` against an in-memory Files + Batches API played
through ``httpx.MockTransport``: parts, input order, state, resume, failures, interrupts."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from batchgate import batch_cli
from batchgate.batch_client import BatchApiError, BatchClient, split_lines
from batchgate.cli import main
from batchgate.embed import Embedder, EmbedError, EmbedJob, load_state
from batchgate.fake_upstream.vectors import embedding_vector

BASE = "http://batchgate.test"
DIM = 4


def vector(text: str) -> list[float]:
    return embedding_vector(text, DIM)


class FakeBatchServer:
    """The OpenAI Files + Batches API in memory. Each look at a batch moves it a step on
    (validating -> in_progress -> completed); outputs come back in reverse order."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.uploads: list[list[dict[str, Any]]] = []
        self.lines_of: dict[str, list[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.reverse = True
        self.fail_index: int | None = None
        self.fail_in = "output"
        self.outcome = "completed"
        self.interrupt: Callable[[httpx.Request], bool] = lambda request: False
        self.open_batches = self.max_open_batches = 0
        self.downloaded: set[str] = set()
        self.auth: list[str | None] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def client(self) -> BatchClient:
        return BatchClient(BASE, "sk-test", transport=self.transport())

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.interrupt(request):
            raise KeyboardInterrupt
        self.auth.append(request.headers.get("authorization"))
        path, method = request.url.path, request.method
        if (method, path) == ("POST", "/v1/files"):
            return self._upload(request)
        if (method, path) == ("POST", "/v1/batches"):
            return self._create(json.loads(request.content))
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "batches"] and len(parts) == 3 and parts[2] in self.batches:
            return httpx.Response(200, json=self._step(self.batches[parts[2]]))
        if parts[:2] == ["v1", "batches"] and parts[3:] == ["cancel"]:
            batch = self.batches[parts[2]]
            batch["status"] = "cancelling"
            return httpx.Response(200, json=batch)
        if parts[:2] == ["v1", "files"] and parts[3:] == ["content"] and parts[2] in self.files:
            if parts[2] not in self.downloaded:
                self.downloaded.add(parts[2])
                self.open_batches -= 1
            return httpx.Response(200, content=self.files[parts[2]])
        return httpx.Response(404, json={"error": {
            "message": f"No such object: {path}", "type": "invalid_request_error",
            "param": "id", "code": "not_found"}})

    def _upload(self, request: httpx.Request) -> httpx.Response:
        boundary = request.headers["content-type"].split("boundary=")[1].encode()
        fields = {}
        for section in request.content.split(b"--" + boundary)[1:-1]:
            head, _, body = section.partition(b"\r\n\r\n")
            name = head.split(b'name="')[1].split(b'"')[0].decode()
            fields[name] = body.removesuffix(b"\r\n")
        assert fields["purpose"] == b"batch"
        file_id = f"file-{next(self.ids)}"
        lines = [json.loads(line) for line in fields["file"].splitlines()]
        self.files[file_id], self.lines_of[file_id] = fields["file"], lines
        self.uploads.append(lines)
        return httpx.Response(200, json={"id": file_id, "object": "file", "purpose": "batch",
                                         "bytes": len(fields["file"]), "status": "processed"})

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        assert body["endpoint"] == "/v1/embeddings"
        batch_id = f"batch_{next(self.ids)}"
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"], "status": "validating",
            "completion_window": body["completion_window"], "output_file_id": None,
            "error_file_id": None, "errors": None, "metadata": body.get("metadata"),
            "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        self.open_batches += 1
        self.max_open_batches = max(self.max_open_batches, self.open_batches)
        return httpx.Response(200, json=self.batches[batch_id])

    def _step(self, batch: dict[str, Any]) -> dict[str, Any]:
        lines = self.lines_of[batch["input_file_id"]]
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
            batch["request_counts"] = {"total": len(lines), "completed": len(lines) // 2,
                                       "failed": 0}
        elif batch["status"] == "in_progress" and self.outcome != "completed":
            batch["status"] = self.outcome
            if self.outcome == "failed":
                batch["errors"] = {"object": "list", "data": [{
                    "code": "model_not_found", "line": 2, "param": "body.model",
                    "message": "no model group 'nope'"}]}
        elif batch["status"] == "in_progress":
            self._finish(batch, lines)
        return batch

    def _finish(self, batch: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        good, bad = [], []
        for line in lines:
            out: dict[str, Any] = {"id": f"req_{line['custom_id']}",
                                   "custom_id": line["custom_id"], "error": None}
            if int(line["custom_id"]) == self.fail_index:
                out["response"] = {"status_code": 400, "body": {"error": {
                    "message": "input is too long"}}}
                (bad if self.fail_in == "errors" else good).append(out)
                continue
            out["response"] = {"status_code": 200, "request_id": "r", "body": {
                "object": "list", "model": line["body"]["model"],
                "data": [{"object": "embedding", "index": 0,
                          "embedding": vector(line["body"]["input"])}]}}
            good.append(out)
        if self.reverse:
            good.reverse()
        batch["status"] = "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(lines) - len(bad),
                                   "failed": len(bad)}
        batch["output_file_id"] = self._store(good)
        batch["error_file_id"] = self._store(bad) if bad else None

    def _store(self, lines: list[dict[str, Any]]) -> str:
        file_id = f"file-{next(self.ids)}"
        self.files[file_id] = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        return file_id


TEXTS = [f"chunk number {i} " + "x" * (i % 5) for i in range(10)]


@pytest.fixture
def server() -> FakeBatchServer:
    return FakeBatchServer()


@pytest.fixture
def text_input(tmp_path: Path) -> Path:
    path = tmp_path / "chunks.txt"
    path.write_text("".join(text + "\n" for text in TEXTS), encoding="utf-8")
    return path


def job(input_path: Path, **changes: Any) -> EmbedJob:
    settings: dict[str, Any] = {
        "input_path": input_path, "out_path": input_path.with_suffix(".vectors.jsonl"),
        "model": "embed", "part_size": 3, "completion_window": "24h", "in_flight": 4,
        "poll_s": 0.0, **changes}
    return EmbedJob(**settings)


def run(server: FakeBatchServer, the_job: EmbedJob, **kwargs: Any) -> int:
    with server.client() as client:
        return Embedder(the_job, client, **kwargs).run()


def out_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def expected(texts: list[str]) -> list[dict[str, Any]]:
    return [{"index": i, "embedding": vector(text)} for i, text in enumerate(texts)]


# -- parts and order --------------------------------------------------------------------------

def test_each_part_is_one_upload_of_embedding_requests_with_global_custom_ids(
        server: FakeBatchServer, text_input: Path) -> None:
    run(server, job(text_input))
    assert [len(lines) for lines in server.uploads] == [3, 3, 3, 1]
    flat = list(itertools.chain.from_iterable(server.uploads))
    assert [line["custom_id"] for line in flat] == [str(i) for i in range(10)]
    assert {(line["method"], line["url"]) for line in flat} == {("POST", "/v1/embeddings")}
    assert [line["body"] for line in flat] == [{"model": "embed", "input": t} for t in TEXTS]
    assert len(server.batches) == 4
    assert {b["completion_window"] for b in server.batches.values()} == {"24h"}
    assert set(server.auth) == {"Bearer sk-test"}


def test_out_holds_one_vector_per_line_in_input_order_though_answers_come_reversed(
        server: FakeBatchServer, text_input: Path) -> None:
    the_job = job(text_input)
    assert run(server, the_job) == 10
    assert out_lines(the_job.out_path) == expected(TEXTS)
    assert not the_job.state_path.exists()


def test_jsonl_input_takes_strings_text_or_input_and_keeps_ids(
        server: FakeBatchServer, tmp_path: Path) -> None:
    path = tmp_path / "chunks.jsonl"
    rows = ['"plain string"', '{"text": "with text", "id": "doc-1#0"}',
            '{"input": "with input", "id": 7}', '{"text": "no id"}']
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    the_job = job(path)
    run(server, the_job)
    assert out_lines(the_job.out_path) == [
        {"index": 0, "embedding": vector("plain string")},
        {"index": 1, "id": "doc-1#0", "embedding": vector("with text")},
        {"index": 2, "id": 7, "embedding": vector("with input")},
        {"index": 3, "embedding": vector("no id")}]


def test_no_more_than_in_flight_parts_are_submitted_at_once(
        server: FakeBatchServer, text_input: Path) -> None:
    run(server, job(text_input, part_size=1, in_flight=3))
    assert len(server.batches) == 10
    assert server.max_open_batches == 3


def test_progress_rises_to_the_total(server: FakeBatchServer, text_input: Path) -> None:
    seen: list[tuple[int, int]] = []
    run(server, job(text_input), on_progress=lambda done, total: seen.append((done, total)))
    assert {total for _, total in seen} == {10}
    dones = [done for done, _ in seen]
    assert dones == sorted(dones)
    assert 0 < dones[0] < 10
    assert dones[-1] == 10


@pytest.mark.parametrize(("content", "suffix", "names"), [
    ("one\n\nthree\n", ".txt", ["line 2", "empty"]),
    ('"ok"\n{"text": ""}\n', ".jsonl", ["line 2", '"text"']),
    ('"ok"\n"ok"\n{not json\n', ".jsonl", ["line 3", "not JSON"]),
    ('"ok"\n[1, 2]\n', ".jsonl", ["line 2"]),
    ("a\n", ".csv", [".txt or .jsonl"]),
    ("", ".txt", ["empty"]),
])
def test_bad_input_is_refused_naming_the_line_before_anything_is_uploaded(
        server: FakeBatchServer, tmp_path: Path, content: str, suffix: str,
        names: list[str]) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EmbedError) as caught:
        run(server, job(path))
    for name in [str(path), *names]:
        assert name in caught.value.message
    assert server.uploads == []
    assert not job(path).state_path.exists()


# -- state and resume -------------------------------------------------------------------------

def interrupt_at_content_of_batch(server: FakeBatchServer, number: int) -> None:
    """Ctrl-C as the output of the ``number``-th batch (from 0) is fetched."""
    def hit(request: httpx.Request) -> bool:
        batches = list(server.batches.values())
        if len(batches) <= number or batches[number]["output_file_id"] is None:
            return False
        return request.url.path == f"/v1/files/{batches[number]['output_file_id']}/content"

    server.interrupt = hit


def test_ctrl_c_saves_the_state_with_every_submitted_batch(
        server: FakeBatchServer, text_input: Path) -> None:
    the_job = job(text_input)
    interrupt_at_content_of_batch(server, 1)
    with pytest.raises(KeyboardInterrupt):
        run(server, the_job)
    state = load_state(the_job.state_path)
    assert [p.status for p in state.parts] == ["appended", "submitted", "submitted",
                                                "submitted"]
    assert [p.batch_id for p in state.parts] == list(server.batches)
    assert [p.input_file_id for p in state.parts] == [
        b["input_file_id"] for b in server.batches.values()]
    assert state.parts[0].out_length == the_job.out_path.stat().st_size
    assert (state.model, state.part_size, state.total) == ("embed", 3, 10)
    assert state.input_path == str(text_input.resolve())
    assert len(out_lines(the_job.out_path)) == 3


@pytest.mark.parametrize("torn", ["nothing", "half a part", "the whole part"])
def test_resume_after_a_crash_mid_append_truncates_and_writes_each_line_once(
        server: FakeBatchServer, text_input: Path, tmp_path: Path, torn: str) -> None:
    reference = job(text_input, out_path=tmp_path / "reference.jsonl")
    run(FakeBatchServer(), reference)
    answer = reference.out_path.read_bytes()

    the_job = job(text_input)
    interrupt_at_content_of_batch(server, 1)
    with pytest.raises(KeyboardInterrupt):
        run(server, the_job)
    # What a SIGKILL while appending part 2 leaves behind: some of its lines, no record.
    after_first, after_second = (sum(len(line) for line in answer.splitlines(True)[:n])
                                 for n in (3, 6))
    torn_end = {"nothing": after_first, "half a part": after_first + 40,
                "the whole part": after_second}[torn]
    the_job.out_path.write_bytes(answer[:torn_end])
    uploads = len(server.uploads)

    server.interrupt = lambda request: False
    notes: list[str] = []
    assert run(server, job(text_input, resume=True), notify=notes.append) == 10
    assert the_job.out_path.read_bytes() == answer
    assert out_lines(the_job.out_path) == expected(TEXTS)
    assert len(server.uploads) == uploads  # re-attached, nothing submitted again
    assert not the_job.state_path.exists()
    assert bool(notes) == (torn != "nothing")


def test_a_state_left_behind_refuses_a_fresh_run(server: FakeBatchServer,
                                                  text_input: Path) -> None:
    the_job = job(text_input)
    interrupt_at_content_of_batch(server, 1)
    with pytest.raises(KeyboardInterrupt):
        run(server, the_job)
    server.interrupt = lambda request: False
    with pytest.raises(EmbedError, match="use --resume") as caught:
        run(server, the_job)
    assert str(the_job.state_path) in caught.value.message


def test_an_existing_out_is_never_overwritten(server: FakeBatchServer,
                                              text_input: Path) -> None:
    the_job = job(text_input)
    the_job.out_path.write_text("precious\n")
    with pytest.raises(EmbedError, match="already exists"):
        run(server, the_job)
    assert the_job.out_path.read_text() == "precious\n"
    assert server.uploads == []


@pytest.mark.parametrize(("change", "names"), [
    ({"model": "other"}, ["--model embed", "other"]),
    ({"part_size": 4}, ["--part-size 3", "4"]),
    ({"input": "edited"}, ["changed"]),
])
def test_resume_refuses_another_input_model_or_part_size(
        server: FakeBatchServer, text_input: Path, change: dict[str, Any],
        names: list[str]) -> None:
    the_job = job(text_input)
    interrupt_at_content_of_batch(server, 1)
    with pytest.raises(KeyboardInterrupt):
        run(server, the_job)
    saved = the_job.state_path.read_bytes()
    if change.pop("input", None):
        with text_input.open("a") as handle:
            handle.write("one more line\n")
    with pytest.raises(EmbedError) as caught:
        run(server, job(text_input, resume=True, **change))
    for name in names:
        assert name in caught.value.message
    assert the_job.state_path.read_bytes() == saved


def test_resume_refuses_an_out_shorter_than_recorded(server: FakeBatchServer,
                                                     text_input: Path) -> None:
    the_job = job(text_input)
    interrupt_at_content_of_batch(server, 1)
    with pytest.raises(KeyboardInterrupt):
        run(server, the_job)
    os.truncate(the_job.out_path, 10)
    with pytest.raises(EmbedError, match="was changed"):
        run(server, job(text_input, resume=True))


def test_a_batch_the_server_forgot_is_submitted_again_on_resume(
        server: FakeBatchServer, text_input: Path) -> None:
    the_job = job(text_input)
    server.interrupt = lambda request: request.url.path.startswith("/v1/batches/")
    with pytest.raises(KeyboardInterrupt):
        run(server, the_job)  # every part submitted, none seen since
    forgotten = list(server.batches)[2]
    del server.batches[forgotten]  # as a server that lost its Redis would
    server.interrupt = lambda request: False
    notes: list[str] = []
    run(server, job(text_input, resume=True), notify=notes.append)
    assert out_lines(the_job.out_path) == expected(TEXTS)
    assert len(server.uploads) == 5
    assert any(forgotten in note for note in notes)


# -- failures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fail_in", ["output", "errors"])
def test_a_failed_line_stops_the_run_naming_it_and_resume_submits_its_part_again(
        server: FakeBatchServer, text_input: Path, fail_in: str) -> None:
    server.fail_index, server.fail_in = 4, fail_in
    the_job = job(text_input)
    with pytest.raises(EmbedError) as caught:
        run(server, the_job)
    assert "input line 4 failed" in caught.value.message
    assert "input is too long" in caught.value.message
    assert out_lines(the_job.out_path) == expected(TEXTS)[:3]
    state = load_state(the_job.state_path)
    assert [p.status for p in state.parts][:2] == ["appended", "pending"]

    server.fail_index = None
    run(server, job(text_input, resume=True))
    assert out_lines(the_job.out_path) == expected(TEXTS)
    assert sum(any(line["custom_id"] == "4" for line in lines) for lines in server.uploads) == 2


@pytest.mark.parametrize(("outcome", "names"), [
    ("failed", ["failed", "model_not_found", "line 2", "no model group 'nope'"]),
    ("expired", ["expired"]),
    ("cancelled", ["cancelled"]),
])
def test_a_batch_that_ends_badly_stops_the_run_and_keeps_the_state(
        server: FakeBatchServer, text_input: Path, outcome: str, names: list[str]) -> None:
    server.outcome = outcome
    the_job = job(text_input)
    with pytest.raises(EmbedError) as caught:
        run(server, the_job)
    for name in ["part 1", "lines 0-2", *names]:
        assert name in caught.value.message
    assert load_state(the_job.state_path).parts[0].status == "pending"
    assert the_job.out_path.read_bytes() == b""


# -- the HTTP client --------------------------------------------------------------------------

def test_an_error_envelope_becomes_one_error_with_the_servers_message() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {
            "message": "endpoint: must be one of ...", "type": "invalid_request_error",
            "param": "endpoint", "code": "invalid_value"}})

    with BatchClient(BASE, transport=httpx.MockTransport(answer)) as client, \
            pytest.raises(BatchApiError) as caught:
        client.batch("batch_1")
    assert caught.value.message == "endpoint: must be one of ..."
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (
        400, "invalid_value", "endpoint")
    assert not caught.value.transient


def test_a_refused_connection_names_the_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with BatchClient(BASE + "/v1/", transport=httpx.MockTransport(refuse)) as client, \
            pytest.raises(BatchApiError) as caught:
        client.batch("batch_1")
    assert f"cannot connect to batchgate at {BASE} " in caught.value.message
    assert caught.value.transient


def test_a_non_envelope_error_still_reads_clearly() -> None:
    answer = httpx.MockTransport(lambda request: httpx.Response(502, text="Bad Gateway"))
    with BatchClient(BASE, transport=answer) as client, pytest.raises(BatchApiError) as caught:
        client.cancel("batch_1")
    assert caught.value.message == "HTTP 502: Bad Gateway"
    assert caught.value.transient


def test_lines_split_only_at_newlines_across_chunks() -> None:
    chunks = [b'{"a": "x\xe2\x80', b'\xa8y"}\n{"b"', b": 1}\n", b'{"c": 2}']
    assert list(split_lines(iter(chunks))) == [
        '{"a": "x\u2028y"}'.encode(), b'{"b": 1}', b'{"c": 2}']


# -- the commands -----------------------------------------------------------------------------

@pytest.fixture
def cli(server: FakeBatchServer, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(batch_cli, "make_client", lambda base_url, api_key: BatchClient(
        base_url, api_key, transport=server.transport()))
    return CliRunner()


def test_embed_command_writes_out_and_says_where(cli: CliRunner, text_input: Path) -> None:
    result = cli.invoke(main, ["embed", str(text_input), "--model", "embed", "--part-size", "4",
                               "--poll", "0.05"])
    out = text_input.with_suffix(".vectors.jsonl")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"10 vectors in {out}\n"
    assert out_lines(out) == expected(TEXTS)


def test_embed_command_exits_130_on_ctrl_c_with_the_command_that_resumes(
        cli: CliRunner, server: FakeBatchServer, text_input: Path) -> None:
    interrupt_at_content_of_batch(server, 1)
    out = text_input.with_name("vectors out.jsonl")
    result = cli.invoke(main, ["embed", str(text_input), "--model", "embed", "--part-size", "3",
                               "--out", str(out), "--poll", "0.05"])
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.stderr
    assert (f"batchgate embed {text_input} --model embed --out '{out}' --part-size 3 "
            f"--resume") in result.stderr
    assert Path(str(out) + ".state.json").exists()

    server.interrupt = lambda request: False
    result = cli.invoke(main, ["embed", str(text_input), "--model", "embed", "--part-size", "3",
                               "--out", str(out), "--poll", "0.05", "--resume"])
    assert result.exit_code == 0, result.output
    assert out_lines(out) == expected(TEXTS)


def test_embed_command_failure_exits_1_with_one_clear_message(
        cli: CliRunner, server: FakeBatchServer, text_input: Path) -> None:
    server.outcome = "expired"
    result = cli.invoke(main, ["embed", str(text_input), "--model", "embed", "--poll", "0.05"])
    assert result.exit_code == 1
    messages = [line for line in result.stderr.splitlines() if line.startswith("batchgate:")]
    assert messages == ["batchgate: part 1 (lines 0-9): batch batch_2 expired: no reason given"]
    assert "--resume" in result.stderr
    assert "Traceback" not in result.output


def test_batch_commands_submit_wait_status_results_and_cancel(
        cli: CliRunner, server: FakeBatchServer, tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps({
        "custom_id": str(i), "method": "POST", "url": "/v1/embeddings",
        "body": {"model": "embed", "input": text}}) + "\n" for i, text in enumerate(TEXTS)))
    result = cli.invoke(main, ["batch", "submit", str(requests), "--endpoint", "/v1/embeddings",
                               "--metadata", "team=rag", "--wait", "--poll", "0.05"])
    assert result.exit_code == 0, result.output
    batch_id, final = result.stdout.splitlines()
    assert final == f"{batch_id}: completed (10 completed, 0 failed of 10)"
    assert server.batches[batch_id]["metadata"] == {"team": "rag"}

    status = cli.invoke(main, ["batch", "status", batch_id])
    assert json.loads(status.stdout)["status"] == "completed"

    saved = tmp_path / "results.jsonl"
    result = cli.invoke(main, ["batch", "results", batch_id, "--out", str(saved)])
    assert result.exit_code == 0, result.output
    assert saved.read_bytes() == server.files[server.batches[batch_id]["output_file_id"]]
    printed = cli.invoke(main, ["batch", "results", batch_id])
    assert printed.stdout_bytes == saved.read_bytes()

    missing = cli.invoke(main, ["batch", "results", batch_id, "--errors"])
    assert missing.exit_code == 1
    assert missing.stderr == f"batchgate: batch {batch_id} has no error file " \
                             f"(status: completed)\n"
    cancelled = cli.invoke(main, ["batch", "cancel", batch_id])
    assert cancelled.stdout == f"{batch_id}: cancelling\n"


def test_batch_command_prints_the_servers_error_and_exits_1(cli: CliRunner) -> None:
    result = cli.invoke(main, ["batch", "status", "batch_nope"])
    assert result.exit_code == 1
    assert result.stderr == "batchgate: No such object: /v1/batches/batch_nope\n"


def test_bad_metadata_is_a_usage_error(cli: CliRunner, tmp_path: Path) -> None:
    requests = tmp_path / "r.jsonl"
    requests.write_text("{}\n")
    result = cli.invoke(main, ["batch", "submit", str(requests), "--metadata", "novalue"])
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.stderr


def test_sigterm_stops_like_ctrl_c_only_while_inside() -> None:
    def terminated() -> None:
        with batch_cli.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # cut short by the signal's KeyboardInterrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        terminated()
    assert signal.getsignal(signal.SIGTERM) == before
