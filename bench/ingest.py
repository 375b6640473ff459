"""A big embeddings file through the Batch API: upload, validate, run, download, vs direct.

    .venv/bin/python bench/ingest.py [--lines 1000000] [--quick]
                                     [--json bench/results/ingest.json]

One run writes N lines of `{"custom_id": "c<i>", "method": "POST", "url": "/v1/embeddings",
"body": {"model": "embed", "input": "<~200 chars>"}}` to a temporary file (~300 MB for 1M),
starts a zero-latency, unlimited fake upstream (`max_inputs` 2048, `embedding_dim` 16) and
`batchgate up` (one API worker, `--queue-workers` Celery workers, beat, its own embedded Redis;
`max_file_bytes` / `max_batch_lines` raised to fit, files kept in the temporary folder). Then,
with the upstream's counters reset before each phase (`POST /_reset`):

1. direct A:  packing.py's hand-packed direct client (2048 inputs per request, `--in-flight`
              at a time) embeds the same N texts straight from the upstream;
2. gateway:   `POST /v1/files` (multipart, streamed from disk), `POST /v1/batches`, polls of
              `GET /v1/batches/<id>` every 0.25 s until `completed`, then the output file is
              downloaded (streamed) and every line parsed and checked;
3. direct B:  direct A again, so a noisy machine shows as an A/B spread.

Meanwhile a thread samples the API workers' and the Celery worker's RSS (/proc) and Redis's
`used_memory` every 50 ms. Reported: upload and validation rates, memory growth (API target
< 100 MB), Redis bytes per item, where the end-to-end time went, and end-to-end items/s over
the mean of the direct runs (target >= 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis
from _ingest_report import MB, Ingest, build_report, render_report, server_timings
from _load import warm_up_queue
from _packing_report import DIM, MAX_INPUTS, Phase
from _procs import (
    ManagedProcess,
    StartupError,
    celery_worker_pids,
    deployment,
    private_queue_env,
    queue_cpu_by_role,
    queue_role,
    reset_upstream,
    start_batchgate,
    start_fake_upstream,
    stop,
    tree_cpu_seconds,
    tree_pids,
    write_gateway_config,
)
from _run import logs_folder, measured, publish, results_path, stop_on_signals

# packing.py's direct client, so the ratio here is comparable with the one printed there.
from packing import _direct, _upstream_figures

from config.keys import Keys

GROUP = "embed"
KEY_PREFIX = "bench-ingest"
DEFAULT_LINES, QUICK_LINES = 1_000_000, 50_000
WARM_LINES = 100
POLL_S = 0.25
SAMPLE_S = 0.05
READ_BYTES = 1 << 20
HTTP_TIMEOUT = httpx.Timeout(900.0, connect=10.0)
STOP_TIMEOUT_S = 40.0
PHRASES = tuple(
    f"{a} {b} of the {c}" for a in ("notes on", "a survey of", "measuring", "the history of",
                                    "rules for", "maps of", "costs of", "failures in")
    for b in ("tides", "bridges", "soil", "glaciers", "ferns", "orbits", "tax law", "rivers")
    for c in ("northern coast", "old harbour", "valley", "delta", "plateau", "city archive",
              "river basin", "mountain pass")
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--lines", type=int, default=DEFAULT_LINES, help="input file lines (1,000,000)")
    add("--in-flight", type=int, default=4, help="the direct client's requests in flight")
    add("--queue-workers", type=int, default=1, help="Celery worker processes")
    add("--job-timeout", type=float, default=3600.0, help="give the batch up after (s)")
    add("--quick", action="store_true", help=f"smoke test: {QUICK_LINES:,} lines")
    add("--json", type=Path, default=None, help="write the figures here")
    add("--log-dir", type=Path, default=None, help="keep server logs here")
    args = parser.parse_args(argv)
    if args.quick:
        args.lines, args.job_timeout = QUICK_LINES, 600.0
    if min(args.lines, args.in_flight, args.queue_workers) < 1:
        parser.error("--lines, --in-flight and --queue-workers must be >= 1")
    if args.json is None:
        args.json = results_path("ingest", args.quick)
    return args


def text(i: int) -> str:
    """Line i's input: ~200 characters, varied, the same on every run."""
    n = len(PHRASES)
    parts = (PHRASES[(i * k + k * k) % n] for k in (7, 13, 29, 31, 37))
    return f"passage {i}: " + "; ".join(parts)


def write_input(path: Path, texts: list[str]) -> int:
    """Stream the batch input file to `path`; its size in bytes."""
    head = '{"custom_id": "c%d", "method": "POST", "url": "/v1/embeddings", "body": '
    with path.open("w", encoding="utf-8", buffering=READ_BYTES) as out:
        for i, words in enumerate(texts):  # plain words: no JSON escaping needed
            out.write(f'{head % i}{{"model": "{GROUP}", "input": "{words}"}}}}\n')
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    """Run the three phases; 0 if every line checked out, 1 if not, 2 if no start."""
    args = parse_args(argv)
    stop_on_signals()
    load_before = os.getloadavg()[0]
    run = Ingest(args.lines)
    phases: list[Phase] = []

    def measure() -> None:
        with contextlib.ExitStack() as stack:
            folder = logs_folder(None, stack)  # input and files: always removed at the end
            began = time.perf_counter()
            texts = [text(i) for i in range(args.lines)]
            run.file_bytes = write_input(folder / "input.jsonl", texts)
            run.generate_s = time.perf_counter() - began
            print(f"input: {args.lines:,} lines, {run.file_bytes / MB:,.0f} MiB in"
                  f" {run.generate_s:.1f} s", file=sys.stderr)
            servers = _servers(args, folder, run.file_bytes, stack)
            _phases(args, servers, folder / "input.jsonl", texts, run, phases)

    if (code := measured(measure)) is not None:
        return code
    report = build_report(run, phases, args, load_before)
    publish(report, render_report(report), args.json)
    return 0 if report["all_checked_ok"] else 1


def _servers(args: argparse.Namespace, folder: Path, file_bytes: int,
             stack: contextlib.ExitStack) -> tuple[ManagedProcess, ManagedProcess, str]:
    """The unlimited upstream and `batchgate up` sized for the file, stopped with `stack`;
    also the URL of batchgate's embedded Redis."""
    log_dir = logs_folder(args.log_dir, stack)
    behaviour = {"latency_ms": 0, "max_inputs": MAX_INPUTS, "embedding_dim": DIM}
    upstream = start_fake_upstream(log_dir, config={"defaults": behaviour})
    stack.callback(stop, upstream)
    info = {"max_inputs_per_request": MAX_INPUTS}
    entry = deployment(GROUP, GROUP, upstream.base_url, model_info=info)
    settings = {"key_prefix": KEY_PREFIX, "files_dir": str(folder / "files"),
                "max_file_bytes": file_bytes + MB, "max_batch_lines": max(args.lines, 10**6)}
    path = write_gateway_config(log_dir / "config.yaml", [entry], batchgate_settings=settings)
    extra = ["--queue-workers", str(args.queue_workers)]
    gateway = start_batchgate(path, log_dir, extra_args=extra, env=private_queue_env())
    # Its API workers take gunicorn's whole graceful timeout (10 s) to exit; stopped within the
    # default 10 s the group is killed before `batchgate up` removes its Redis/beat folders.
    stack.callback(stop, gateway, STOP_TIMEOUT_S)
    print(f"servers up; logs in {log_dir}", file=sys.stderr)
    found = re.search(r"embedded redis on (redis://\S+)", gateway.log_path.read_text())
    if found is None:
        raise StartupError("batchgate up did not say where its embedded Redis is")
    return upstream, gateway, found.group(1)


def _phases(args: argparse.Namespace, servers: tuple[ManagedProcess, ManagedProcess, str],
            path: Path, texts: list[str], run: Ingest, phases: list[Phase]) -> None:
    """Warm up, then direct A, the gateway, direct B."""
    upstream, gateway, redis_url = servers
    warm_up_queue(gateway.base_url, {"model": GROUP, "input": "warm up"})
    warm = texts[: 8 * MAX_INPUTS]
    asyncio.run(_direct(Phase("warm-up", len(warm)), upstream, warm, args.in_flight))
    with httpx.Client(base_url=gateway.base_url, timeout=HTTP_TIMEOUT) as client:
        small = path.with_name("warm.jsonl")
        write_input(small, texts[:WARM_LINES])  # the Files/Batches code paths, once
        warm_run = Ingest(WARM_LINES)
        _batch(client, small, warm_run, Phase("warm", WARM_LINES), texts, None, 120.0)
        if warm_run.errors or warm_run.output.lines != WARM_LINES:
            raise StartupError(f"the warm-up batch failed: {warm_run.errors or warm_run.output}")
        for name in ("direct A", "gateway", "direct B"):
            reset_upstream(upstream)
            phase = Phase(name, len(texts))
            if name == "gateway":
                with Gauges(gateway.pid, upstream.pid, redis_url) as gauges:
                    _batch(client, path, run, phase, texts, gauges, args.job_timeout)
                log = gateway.log_path.read_text(errors="replace")
                run.server_log = server_timings(log, run.batch.get("id", ""))
            else:
                asyncio.run(_direct(phase, upstream, texts, args.in_flight))
            _upstream_figures(phase, upstream)
            print(f"  {name}: {phase.seconds:.2f} s, {phase.vectors_ok:,} vectors ok,"
                  f" {phase.upstream_requests:,} upstream requests", file=sys.stderr)
            phases.append(phase)


# --- memory gauges -------------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _sum_mb(pids: list[int], field: str = "VmRSS") -> float:
    return sum(_status_kb(pid, field) for pid in pids) / 1024


class Gauges:
    """API-worker and Celery-worker RSS (MB) and Redis used_memory (bytes), sampled by a
    thread every SAMPLE_S; `open(name)` starts tracking the peak of each, `close` ends it."""

    def __init__(self, root: int, upstream: int, redis_url: str) -> None:
        self.root, self.upstream = root, upstream
        self.api = [p for p in tree_pids(root)[1:] if queue_role(p) == "api"]
        self.worker = celery_worker_pids(root)
        self.redis = redis.Redis.from_url(redis_url)
        self._peaks: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Gauges:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.redis.close()

    def read(self) -> dict[str, float]:
        """One sample of every gauge."""
        used = self.redis.info("memory")["used_memory"]
        return {"api": _sum_mb(self.api), "worker": _sum_mb(self.worker), "redis": used}

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: batchgate's processes by role, the upstream, this client."""
        return {**queue_cpu_by_role(self.root), "upstream": tree_cpu_seconds(self.upstream),
                "client": time.process_time()}

    def reset_api_peak(self) -> None:
        """Reset the API workers' VmHWM (`clear_refs` 5), so it holds this window's peak."""
        for pid in self.api:
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")

    def open(self, name: str) -> dict[str, float]:
        """Start a window; its baseline sample."""
        baseline = self.read()
        with self._lock:
            self._peaks[name] = dict(baseline)
        return baseline

    def close(self, name: str) -> dict[str, float]:
        """End a window; the peak of each gauge within it."""
        last = self.read()
        with self._lock:
            peak = self._peaks.pop(name)
        return {key: max(value, last[key]) for key, value in peak.items()}

    def _sample(self) -> None:
        while not self._done.wait(SAMPLE_S):
            sample = self.read()
            with self._lock:
                for peak in self._peaks.values():
                    for key, value in sample.items():
                        peak[key] = max(peak[key], value)


# --- the gateway path ----------------------------------------------------------------------


def _batch(client: httpx.Client, path: Path, run: Ingest, phase: Phase, texts: list[str],
           gauges: Gauges | None, timeout: float) -> None:
    """Upload, create, follow to the end, download and check; figures into `run`/`phase`."""
    before: dict[str, float] = {}
    if gauges:
        gauges.reset_api_peak()
        before = gauges.open("upload")
        gauges.open("run")
    began = time.perf_counter()
    _mark(run, "start", began, gauges)
    try:
        file_id = _upload(client, path)
        _mark(run, "uploaded", began, gauges)
        reply = client.post("/v1/batches", json={
            "input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"})
        reply.raise_for_status()
        _mark(run, "created", began, gauges)
        batch_id = reply.json()["id"]
        run.batch = _follow(client, batch_id, began + timeout, began, run, gauges, before)
        if run.batch.get("status") != "completed":
            run.errors.append(f"batch ended {run.batch.get('status')}: {run.batch}"[:600])
            return
        _download(client, run, phase, texts)
        _mark(run, "downloaded", began, gauges)
        phase.seconds = run.marks["downloaded"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        detail = exc.response.text[:300] if isinstance(exc, httpx.HTTPStatusError) else ""
        run.errors.append(f"{type(exc).__name__}: {exc} {detail}".strip())
    finally:
        if gauges:
            _memory_at_end(run, gauges, before)


def _mark(run: Ingest, name: str, began: float, gauges: Gauges | None) -> None:
    """Note when `name` was first seen (s since `began`) and the CPU used by then."""
    if name in run.marks:
        return
    run.marks[name] = time.perf_counter() - began
    if gauges:
        run.cpu[name] = gauges.cpu()


def _upload(client: httpx.Client, path: Path) -> str:
    """POST /v1/files, the file part streamed from disk (httpx reads it 64 KiB at a time)."""
    with path.open("rb") as body:
        reply = client.post("/v1/files", data={"purpose": "batch"},
                            files={"file": (path.name, body, "application/jsonl")})
    reply.raise_for_status()
    return str(reply.json()["id"])


STAGES = ("validated", "in_progress", "finalizing", "completed")
ENDED_OTHERWISE = frozenset({"failed", "expired", "cancelling", "cancelled"})


def _stage(batch: dict[str, Any]) -> int:
    """How far the batch is along STAGES (-1: still reading its file)."""
    status = batch["status"]
    if status == "validating":
        return 0 if batch["request_counts"]["total"] else -1
    return STAGES.index(status) if status in STAGES else len(STAGES)


def _follow(client: httpx.Client, batch_id: str, deadline: float, began: float, run: Ingest,
            gauges: Gauges | None, before: dict[str, float]) -> dict[str, Any]:
    """Poll the batch until it ends (or `deadline`, perf_counter), marking when each stage
    was first seen (a stage skipped between two polls gets the later one's time)."""
    shown = 0.0
    while True:
        reply = client.get(f"/v1/batches/{batch_id}")
        reply.raise_for_status()
        batch: dict[str, Any] = reply.json()
        stage = _stage(batch)
        if stage >= 0 and "validated" not in run.marks:
            counts = batch["request_counts"]
            run.finished_at_validated = counts["completed"] + counts["failed"]
            if gauges:
                _memory_at_validated(run, gauges, before)
        for name in STAGES[: stage + 1]:
            _mark(run, name, began, gauges)
        now = time.perf_counter() - began
        if now - shown >= 5.0 or stage >= len(STAGES) - 1:
            shown = now
            print(f"    {now:6.1f} s  {batch['status']}  {batch['request_counts']}",
                  file=sys.stderr, flush=True)
        if stage >= len(STAGES) - 1 or time.perf_counter() > deadline:
            return batch
        time.sleep(POLL_S)


def _download(client: httpx.Client, run: Ingest, phase: Phase, texts: list[str]) -> None:
    """Stream the output file, checking each line; count the error file's lines."""
    seen = bytearray(run.lines)
    for line in _lines(client, run.batch["output_file_id"]):
        run.output.check(json.loads(line), phase, texts, seen)
    run.output.missing = seen.count(0)
    if run.batch.get("error_file_id"):
        run.output.error_file_lines = sum(1 for _ in _lines(client, run.batch["error_file_id"]))


def _lines(client: httpx.Client, file_id: str) -> Iterator[bytes]:
    with client.stream("GET", f"/v1/files/{file_id}/content") as reply:
        reply.raise_for_status()
        rest = b""
        for chunk in reply.iter_bytes(READ_BYTES):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from lines
        if rest.strip():
            yield rest


def _memory_at_validated(run: Ingest, gauges: Gauges, before: dict[str, float]) -> None:
    peak = gauges.close("upload")
    now = gauges.read()
    run.memory.update({
        "api_before_mb": before["api"], "api_growth_mb": peak["api"] - before["api"],
        "api_hwm_growth_mb": _sum_mb(gauges.api, "VmHWM") - before["api"],
        "worker_before_mb": before["worker"],
        "worker_growth_mb": peak["worker"] - before["worker"],
        "redis_before_bytes": before["redis"], "redis_validated_bytes": now["redis"],
        "redis_bytes_per_item": (now["redis"] - before["redis"]) / run.lines,
        "redis_peak_bytes_per_item": (peak["redis"] - before["redis"]) / run.lines,
    })


def _memory_at_end(run: Ingest, gauges: Gauges, before: dict[str, float]) -> None:
    """Whole-run worker peak, and what the batch's hashes hold (MEMORY USAGE, every field)."""
    peak = gauges.close("run")
    run.memory["worker_run_growth_mb"] = peak["worker"] - before["worker"]
    run.memory["redis_run_peak_bytes"] = peak["redis"]
    batch_id = run.batch.get("id")
    if not batch_id:
        return
    keys = Keys(KEY_PREFIX)
    for name, key in (("items", keys.items(batch_id)), ("results", keys.results(batch_id))):
        used = gauges.redis.memory_usage(key, samples=0) or 0
        run.memory[f"{name}_hash_bytes"] = used
        run.memory[f"{name}_hash_bytes_per_item"] = used / run.lines


if __name__ == "__main__":
    sys.exit(main())
