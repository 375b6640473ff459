"""``batchgate embed``: embed a large file of text chunks through a server's Batches API.

The input is cut into parts of ``part_size`` lines. Each part is one uploaded input file of
``/v1/embeddings`` requests, whose ``custom_id`` is the line's global index, and one batch;
at most ``in_flight`` parts are submitted at a time. Finished parts are appended to OUT
strictly in input order, so OUT always holds a prefix of the answer.

The state file (OUT + ``.state.json``) records the input's identity and, per part, its batch
and the length of OUT once the part was appended. It is replaced atomically, and only after
OUT was flushed and fsynced, so however a run ends (an error, Ctrl-C, SIGKILL mid-append), a
resumed run truncates OUT to the last recorded length and carries on with the batches
already submitted. Nothing holds the whole input, or more than one part's line positions.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from batchgate.batch_client import Batch, BatchApiError, BatchClient, parse_json_line
from batchgate.embed_input import input_format, plan_parts, read_part
from batchgate.embed_state import (
    EmbedError,
    EmbedState,
    Part,
    PartStatus,
    check_resumable,
    input_identity,
    load_state,
    save_state,
)

ENDPOINT = "/v1/embeddings"
MAX_TRANSIENT_FAILURES = 10

# -- a finished part's output -----------------------------------------------------------------

def line_problem(line: dict[str, Any]) -> str | None:
    """Why one output or error line failed, or None when it holds an answer."""
    error = line.get("error")
    if error:
        if isinstance(error, dict):
            return f"{error.get('code') or 'error'}: {error.get('message')}"
        return str(error)
    response = line.get("response") or {}
    status = response.get("status_code")
    if status == 200:
        return None
    body = response.get("body")
    detail = body.get("error") if isinstance(body, dict) else None
    message = detail.get("message") if isinstance(detail, dict) else body
    return f"HTTP {status}: {message}"


def line_index(line: dict[str, Any], part: Part, where: str) -> int:
    """The global input index a line answers (its ``custom_id``), checked against the part."""
    custom_id = line.get("custom_id")
    if not (isinstance(custom_id, str) and custom_id.isdigit()):
        raise EmbedError(f"{where}: unexpected custom_id {custom_id!r}")
    index = int(custom_id)
    if not part.first <= index < part.first + part.count:
        raise EmbedError(f"{where}: custom_id {index} is not one of the part's {part.lines()}")
    return index


def line_embedding(line: dict[str, Any], where: str) -> list[float]:
    """``response.body.data[0].embedding`` of an output line."""
    try:
        embedding = line["response"]["body"]["data"][0]["embedding"]
    except (KeyError, IndexError, TypeError):
        raise EmbedError(f"{where}: no response.body.data[0].embedding") from None
    if not isinstance(embedding, list):
        raise EmbedError(f"{where}: the embedding is not a list of floats (base64?)")
    return embedding


# -- the run ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmbedJob:
    """What to embed, where to, and how (the defaults are the CLI's, in batch_cli)."""

    input_path: Path
    out_path: Path
    model: str
    part_size: int
    completion_window: str
    in_flight: int
    poll_s: float
    resume: bool = False

    @property
    def state_path(self) -> Path:
        """OUT + ``.state.json``."""
        return self.out_path.with_name(self.out_path.name + ".state.json")


def default_out(input_path: Path) -> Path:
    """INPUT with its suffix replaced by ``.vectors.jsonl``."""
    return input_path.with_suffix(".vectors.jsonl")


def _ignore(*_: object) -> None:
    return None


class Embedder:
    """Runs one :class:`EmbedJob` against a server (see the module docstring)."""

    def __init__(self, job: EmbedJob, client: BatchClient, *,
                 on_progress: Callable[[int, int], None] = _ignore,
                 notify: Callable[[str], None] = _ignore,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.job, self.client = job, client
        self.on_progress, self.notify, self.sleep = on_progress, notify, sleep
        self.state: EmbedState | None = None
        self._transient_failures = 0

    def run(self) -> int:
        """Embed everything into OUT; the number of lines. The state is saved whatever
        happens (including KeyboardInterrupt) and removed once OUT is complete."""
        state = self.state = self._open()
        try:
            while any(p.status is not PartStatus.APPENDED for p in state.parts):
                moved = self._submit_ahead(state)
                self._poll(state)
                moved = self._append_ready(state) or moved
                self.on_progress(self._done(state), state.total)
                if not moved:
                    self.sleep(self.job.poll_s)
        except BaseException:
            self.save()
            raise
        self.job.state_path.unlink()
        return state.total

    def save(self) -> None:
        """Save the state as it is now (a no-op before the run has one)."""
        if self.state is not None:
            save_state(self.state, self.job.state_path)

    def _open(self) -> EmbedState:
        job, out = self.job, self.job.out_path
        if out.resolve() == job.input_path.resolve():
            raise EmbedError(f"{out}: the output cannot be the input")
        if job.resume:
            return self._reopen()
        if job.state_path.exists():
            raise EmbedError(f"{job.state_path} exists: an earlier run did not finish; use "
                             f"--resume to continue it, or delete {job.state_path} and {out} "
                             f"to start over")
        if out.exists():
            raise EmbedError(f"{out} already exists; delete it or choose another --out")
        identity = input_identity(job.input_path)
        total, offsets = plan_parts(job.input_path, job.part_size)
        parts = [Part(first=n * job.part_size, offset=offset,
                      count=min(job.part_size, total - n * job.part_size))
                 for n, offset in enumerate(offsets)]
        state = EmbedState(*identity, model=job.model, part_size=job.part_size, total=total,
                           parts=parts)
        save_state(state, job.state_path)
        out.touch()
        return state

    def _reopen(self) -> EmbedState:
        job, out = self.job, self.job.out_path
        if not job.state_path.exists():
            raise EmbedError(f"nothing to resume: {job.state_path} does not exist")
        state = load_state(job.state_path)
        check_resumable(state, job.input_path, job.model, job.part_size)
        length = state.out_length()
        size = out.stat().st_size if out.exists() else 0
        if size < length:
            raise EmbedError(f"{out} holds {size} bytes, fewer than the {length} already "
                             f"written: it was changed, so the run cannot be resumed")
        if size > length:
            self.notify(f"dropping {size - length} bytes of a part that was being appended")
        with out.open("ab") as handle:
            handle.truncate(length)
            os.fsync(handle.fileno())
        return state

    def _done(self, state: EmbedState) -> int:
        return sum(p.count if p.status is PartStatus.APPENDED else min(p.done, p.count)
                   for p in state.parts)

    def _submit_ahead(self, state: EmbedState) -> bool:
        submitted = False
        in_flight = sum(p.status is PartStatus.SUBMITTED for p in state.parts)
        for number, part in enumerate(state.parts):
            if in_flight >= self.job.in_flight:
                break
            if part.status is PartStatus.PENDING:
                self._submit(part, number, len(state.parts))
                self.save()
                in_flight, submitted = in_flight + 1, True
        return submitted

    def _submit(self, part: Part, number: int, parts: int) -> None:
        job = self.job
        with tempfile.TemporaryFile() as upload:
            for index, text, _ in read_part(job.input_path, part.offset, part.first, part.count):
                request = {"custom_id": str(index), "method": "POST", "url": ENDPOINT,
                           "body": {"model": job.model, "input": text}}
                upload.write(json.dumps(request, ensure_ascii=False).encode() + b"\n")
            upload.seek(0)
            file_id = self.client.upload(upload, f"{job.input_path.stem}.part{number + 1}.jsonl")
        label = f"{job.input_path.name[:400]} part {number + 1}/{parts}"
        batch = self.client.create_batch(file_id, ENDPOINT, job.completion_window,
                                         metadata={"batchgate_embed": label})
        part.input_file_id, part.batch_id = file_id, batch.id
        part.status = PartStatus.SUBMITTED
        self._record(part, batch)

    def _poll(self, state: EmbedState) -> None:
        for number, part in enumerate(state.parts):
            if (part.status is not PartStatus.SUBMITTED or part.batch_id is None
                    or part.batch_status == "completed"):
                continue
            try:
                batch = self.client.batch(part.batch_id)
            except BatchApiError as exc:
                self._poll_failed(exc, part, number)
                continue
            self._transient_failures = 0
            self._record(part, batch)
            if batch.ended and batch.status != "completed":
                failure = batch.error_summary() or "no reason given"
                part.forget_batch()
                raise EmbedError(f"part {number + 1} ({part.lines()}): batch {batch.id} "
                                 f"{batch.status}: {failure}")

    def _poll_failed(self, exc: BatchApiError, part: Part, number: int) -> None:
        if exc.http_status == 404:
            self.notify(f"batch {part.batch_id} of part {number + 1} is unknown to the "
                        f"server; submitting the part again")
            part.forget_batch()
            return
        self._transient_failures += 1
        if not exc.transient or self._transient_failures > MAX_TRANSIENT_FAILURES:
            raise exc
        self.notify(f"{exc.message} (trying again)")

    @staticmethod
    def _record(part: Part, batch: Batch) -> None:
        part.batch_status, part.done = batch.status, batch.completed + batch.failed
        part.output_file_id, part.error_file_id = batch.output_file_id, batch.error_file_id

    def _append_ready(self, state: EmbedState) -> bool:
        appended = False
        for number, part in enumerate(state.parts):
            if part.status is PartStatus.APPENDED:
                continue
            if part.batch_status != "completed":
                break
            part.out_length = self._append(part, number)
            part.status = PartStatus.APPENDED
            self.save()
            appended = True
        return appended

    def _append(self, part: Part, number: int) -> int:
        """Append the part's vectors to OUT, in input order; OUT's length afterwards."""
        with tempfile.TemporaryFile() as spool:
            slots = self._spool(part, number, spool)
            with self.job.out_path.open("ab") as out:
                for offset, length in slots:
                    spool.seek(offset)
                    out.write(spool.read(length))
                out.flush()
                os.fsync(out.fileno())
                return out.tell()

    def _spool(self, part: Part, number: int, spool: IO[bytes]) -> list[tuple[int, int]]:
        """Write the part's OUT lines to ``spool`` as they come; where each one is, by index.
        Raises :class:`EmbedError` naming the first failed line, leaving the part pending."""
        where = f"part {number + 1} (batch {part.batch_id})"
        failure = self._first_failure(part, where)
        ids = self._ids(part)
        slots: list[tuple[int, int] | None] = [None] * part.count
        if failure is None and part.output_file_id is not None:
            with self.client.file_lines(part.output_file_id) as lines:
                for raw in lines:
                    line = parse_json_line(raw, f"{where} output")
                    index = line_index(line, part, f"{where} output")
                    problem = line_problem(line)
                    if problem is not None:
                        failure = min(failure or (index, problem), (index, problem))
                        continue
                    record: dict[str, Any] = {"index": index}
                    if ids and ids[index - part.first] is not None:
                        record["id"] = ids[index - part.first]
                    record["embedding"] = line_embedding(line, f"{where} line {index}")
                    data = json.dumps(record, separators=(",", ":")).encode() + b"\n"
                    slots[index - part.first] = (spool.tell(), len(data))
                    spool.write(data)
        if failure is None and None in slots:
            failure = (part.first + slots.index(None), "no answer in the batch output")
        if failure is not None:
            part.forget_batch()
            raise EmbedError(f"{where}: input line {failure[0]} failed: {failure[1]}")
        return [slot for slot in slots if slot is not None]

    def _first_failure(self, part: Part, where: str) -> tuple[int, str] | None:
        """The lowest-indexed line of the part's error file, with its error."""
        if part.error_file_id is None:
            return None
        first: tuple[int, str] | None = None
        with self.client.file_lines(part.error_file_id) as lines:
            for raw in lines:
                line = parse_json_line(raw, f"{where} errors")
                index = line_index(line, part, f"{where} errors")
                problem = line_problem(line) or "failed"
                first = min(first or (index, problem), (index, problem))
        return first

    def _ids(self, part: Part) -> list[Any] | None:
        """The input's ``id`` of each of the part's lines (JSONL only; None for text)."""
        if not input_format(self.job.input_path):
            return None
        return [chunk_id for _, _, chunk_id in read_part(
            self.job.input_path, part.offset, part.first, part.count)]
