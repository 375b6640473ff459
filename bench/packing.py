"""Embedding many short chunks: one queued batch through batchgate vs a packed direct client.

    .venv/bin/python bench/packing.py [--chunks 200000] [--jobs 1] [--quick]
                                      [--json bench/results/packing.json]

One run starts a zero-latency, unlimited fake upstream (`max_inputs` 2048, `embedding_dim` 16)
and `batchgate up` (one API worker, one Celery worker process, its own embedded Redis) with
one deployment of group `embed` (`model_info.max_inputs_per_request: 2048`) and
`max_batch_requests` / `max_request_bytes` raised to fit the submission. Then, with the
upstream's counters reset before each phase (`POST /_reset`):

1. direct A:  a hand-written asyncio client sends the chunks straight to the upstream,
              2048 inputs per request, `--in-flight` requests at a time;
2. gateway:   the chunks as ONE inline batch job (`--jobs N` splits them into N jobs,
              submitted at once), one `/v1/embeddings` line per chunk; long-poll to the end,
              then read every result (`?order=input`, 1,000 a page);
3. direct B:  direct A again, so a noisy machine shows as an A/B spread.

Each path's time runs from the first byte sent until every vector is in the client's hands.
items/s = chunks / that time; the ratio is gateway / mean(direct A, direct B), target >= 0.8.
Every result is checked: completed, one vector of the upstream's dimension; a sample is also
compared with the vector the fake upstream computes for that chunk's text, so a packer that
returned vectors in the wrong order would be caught.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from _load import JOB_ENDED, batch_results, submit_job, warm_up_queue
from _packing_report import DIM, MAX_INPUTS, Phase, build_report, render_report
from _procs import (
    ManagedProcess,
    deployment,
    private_queue_env,
    reset_upstream,
    start_batchgate,
    start_fake_upstream,
    stop,
    upstream_stats,
    write_gateway_config,
)
from _run import logs_folder, measured, publish, results_path, stop_on_signals

GROUP = "embed"
DEFAULT_CHUNKS, QUICK_CHUNKS = 200_000, 10_000
DEFAULT_IN_FLIGHT = 4
PAGE = 1000
POLL_S = 10.0
TOPICS = ("rivers", "bridges", "tax law", "orbits", "soil", "glaciers", "ferns", "tides")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--chunks", type=int, default=DEFAULT_CHUNKS, help="chunks to embed (200,000)")
    add("--jobs", type=int, default=1, help="split the chunks into this many batch jobs")
    add("--in-flight", type=int, default=DEFAULT_IN_FLIGHT, help="direct requests in flight")
    add("--queue-workers", type=int, default=1, help="Celery worker processes")
    add("--job-timeout", type=float, default=1800.0, help="give the jobs up after (s)")
    add("--quick", action="store_true", help=f"smoke test: {QUICK_CHUNKS:,} chunks")
    add("--json", type=Path, default=None, help="write the figures here")
    add("--log-dir", type=Path, default=None, help="keep server logs here")
    args = parser.parse_args(argv)
    if args.quick:
        args.chunks, args.job_timeout = QUICK_CHUNKS, 300.0
    if min(args.chunks, args.jobs, args.in_flight, args.queue_workers) < 1:
        parser.error("--chunks, --jobs, --in-flight and --queue-workers must be >= 1")
    if args.json is None:
        args.json = results_path("packing", args.quick)
    return args


def chunk_texts(n: int) -> list[str]:
    """`n` short chunks of 8-12 tokens each (the fake upstream counts ceil(chars / 4))."""
    return [f"chunk {i:06d} of a document about {TOPICS[i % len(TOPICS)]}" for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    """Run the three phases; 0 if every vector checked out, 1 if not, 2 if no start."""
    args = parse_args(argv)
    stop_on_signals()
    load_before = os.getloadavg()[0]
    texts = chunk_texts(args.chunks)
    phases: list[Phase] = []

    def run() -> None:
        with _servers(args) as (upstream, gateway):
            warm = texts[: 8 * MAX_INPUTS]  # unmeasured: first-run costs out of direct A
            asyncio.run(_direct(Phase("warm-up", len(warm)), upstream, warm, args.in_flight))
            for name in ("direct A", "gateway", "direct B"):
                reset_upstream(upstream)
                phase = Phase(name, len(texts))
                if name == "gateway":
                    asyncio.run(_via_gateway(phase, gateway, texts, args))
                else:
                    asyncio.run(_direct(phase, upstream, texts, args.in_flight))
                _upstream_figures(phase, upstream)
                print(f"  {name}: {phase.seconds:.2f} s, {phase.vectors_ok:,} vectors ok,"
                      f" {phase.upstream_requests:,} upstream requests", file=sys.stderr)
                phases.append(phase)

    if (code := measured(run)) is not None:
        return code
    report = build_report(phases, args, load_before)
    publish(report, render_report(report), args.json)
    return 0 if report["all_checked_ok"] else 1


@contextlib.contextmanager
def _servers(args: argparse.Namespace) -> Iterator[tuple[ManagedProcess, ManagedProcess]]:
    """The unlimited upstream and `batchgate up` sized for the submission; always stopped."""
    with contextlib.ExitStack() as stack:
        log_dir = logs_folder(args.log_dir, stack)
        behaviour = {"latency_ms": 0, "max_inputs": MAX_INPUTS, "embedding_dim": DIM}
        config = {"defaults": behaviour, "log_size": args.chunks + 10_000}
        upstream = start_fake_upstream(log_dir, config=config)
        stack.callback(stop, upstream)
        info = {"max_inputs_per_request": MAX_INPUTS}
        entry = deployment(GROUP, GROUP, upstream.base_url, model_info=info)
        per_job = math.ceil(args.chunks / args.jobs)
        settings = {"max_batch_requests": max(per_job, 50_000),
                    "max_request_bytes": max(per_job * 200, 10 * 2**20)}
        path = write_gateway_config(log_dir / "config.yaml", [entry], batchgate_settings=settings)
        extra = ["--queue-workers", str(args.queue_workers)]
        gateway = start_batchgate(path, log_dir, extra_args=extra, env=private_queue_env())
        stack.callback(stop, gateway)
        print(f"servers up; logs in {log_dir}", file=sys.stderr)
        warm_up_queue(gateway.base_url, {"model": GROUP, "input": "warm up"})
        yield upstream, gateway


def _session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=900),
        headers={"Content-Type": "application/json"},
    )


async def _direct(phase: Phase, upstream: ManagedProcess, texts: list[str], in_flight: int) -> None:
    """2048 inputs a request, `in_flight` requests at a time, straight to the upstream."""
    starts = iter(range(0, len(texts), MAX_INPUTS))
    url = upstream.base_url + "/v1/embeddings"

    async def sender(session: aiohttp.ClientSession) -> None:
        for start in starts:
            batch = texts[start : start + MAX_INPUTS]
            body = json.dumps({"model": GROUP, "input": batch}).encode()
            async with session.post(url, data=body) as response:
                answer = await response.json(content_type=None)
            if response.status != 200:
                phase.bad[f"HTTP {response.status}"] += len(batch)
                phase.errors.append(str(answer)[:300])
                continue
            for offset, entry in enumerate(answer["data"]):
                phase.check(start + offset, texts[start + offset], entry["embedding"])

    began = time.perf_counter()
    async with _session(in_flight) as session:
        await asyncio.gather(*(sender(session) for _ in range(in_flight)))
    phase.seconds = time.perf_counter() - began


async def _via_gateway(
    phase: Phase, gateway: ManagedProcess, texts: list[str], args: argparse.Namespace
) -> None:
    """Submit the jobs at once, long-poll them to their end, read and check every result."""
    per_job = math.ceil(len(texts) / args.jobs)
    offsets = list(range(0, len(texts), per_job))
    began = time.perf_counter()
    async with _session(2 * len(offsets) + 2) as session:
        submitted = await asyncio.gather(
            *(_submit(session, gateway, texts, o, per_job) for o in offsets)
        )
        phase.submit_s = time.perf_counter() - began
        phase.errors += [s for s in submitted if not s.startswith("/")]
        if phase.errors:
            return
        urls = submitted
        jobs = await asyncio.gather(*(_await_end(session, gateway, u, began, args) for u in urls))
        phase.job_end_s = time.perf_counter() - began
        for offset, url, job in zip(offsets, urls, jobs, strict=True):
            if job.get("status") not in JOB_ENDED:
                phase.errors.append(f"job {job.get('id')} still {job.get('status')}")
            await _read_results(session, gateway.base_url + url, texts, offset, phase)
    phase.seconds = time.perf_counter() - began


async def _submit(
    session: aiohttp.ClientSession, gateway: ManagedProcess, texts: list[str], offset: int,
    size: int,
) -> str:
    """Submit one batch job of `size` chunks from `offset`; its URL, or what went wrong."""
    lines = [{"custom_id": f"c{i}", "body": {"model": GROUP, "input": texts[i]}}
             for i in range(offset, min(offset + size, len(texts)))]
    body = json.dumps({"endpoint": "/v1/embeddings", "requests": lines}).encode()
    status, job = await submit_job(session, gateway.base_url + "/queue/requests", body)
    if status != 202:  # an error text instead of the job's URL
        return (f"submission of {len(lines):,} lines ({len(body) / 2**20:.1f} MiB) answered"
                f" HTTP {status}: {str(job)[:300]}; try --jobs N")
    return str(job["url"])


async def _await_end(
    session: aiohttp.ClientSession, gateway: ManagedProcess, url: str, began: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Long-poll one job until it ends (or the timeout), printing its counts as it goes."""
    while True:
        params = {"wait": str(POLL_S), "limit": "1"}
        async with session.get(gateway.base_url + url, params=params) as response:
            job: dict[str, Any] = await response.json(content_type=None)
        counts = job.get("request_counts", {})
        print(f"    {time.perf_counter() - began:6.1f} s  {job.get('status')}  {counts}",
              file=sys.stderr, flush=True)
        if job.get("status") in JOB_ENDED or time.perf_counter() - began > args.job_timeout:
            return job


async def _read_results(
    session: aiohttp.ClientSession, url: str, texts: list[str], offset: int, phase: Phase
) -> None:
    """Read a job's results in input order, checking each item's vector."""
    async for entry in batch_results(session, url, PAGE):
        index = offset + entry["index"]
        data = (entry.get("response") or {}).get("data") or []
        if entry.get("status") == "completed" and len(data) == 1:
            phase.check(index, texts[index], data[0].get("embedding"))
            continue
        phase.bad[f"{entry.get('status')} {entry.get('status_code') or ''}".strip()] += 1
        if len(phase.errors) < 3:
            phase.errors.append(str(entry)[:300])


def _upstream_figures(phase: Phase, upstream: ManagedProcess) -> None:
    stats = upstream_stats(upstream)
    phase.upstream_requests = stats["requests"]
    phase.upstream_status = stats["by_status"]
    inputs = [entry["inputs"] for entry in stats["log"]]
    phase.inputs_per_request = sum(inputs) / len(inputs) if inputs else None
    phase.bad["missing"] += max(0, phase.items - phase.vectors_ok - sum(phase.bad.values()))


if __name__ == "__main__":
    sys.exit(main())
