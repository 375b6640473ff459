"""How many upstream calls ONE Celery worker process keeps in flight on a slow upstream.

    .venv/bin/python bench/inflight.py [--items 2000] [--latency-ms 1000] [--singles]
                                       [--chunk-size default,1] [--json out.json]

One run starts a fake upstream that answers after `--latency-ms` (1 s), and for each
`--chunk-size` value a `batchgate up` with one API worker, ONE Celery worker process
(`--queue-workers 1`, concurrency from `batchgate_settings.worker_concurrency`, default 256)
and its own embedded Redis. It submits `--items` requests as one inline batch job (and, with
`--singles`, as that many single jobs) and, while the work runs, reads the upstream's
`GET /_stats` every `--sample-ms`: `in_flight` is how many calls the worker has open.

With a 1 s upstream, a worker that keeps C calls open finishes N items in about N / C
seconds; the ideal is N / worker_concurrency. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _load import JOB_ENDED, LoadResult, Target, await_job, run_queue_phase, submit_job
from _procs import (
    BENCH_MODEL,
    ManagedProcess,
    StartupError,
    celery_worker_pids,
    pids_cpu_seconds,
    private_queue_env,
    queue_cpu_by_role,
    start_batchgate,
    start_fake_upstream,
    stop,
    write_proxy_config,
)
from _run import logs_folder, machine_settings, measured, publish, stop_on_signals
from _stats import fmt, format_table, summarize_samples

from config.settings import DEFAULT_CHUNK_SIZE, DEFAULT_WORKER_CONCURRENCY

DEFAULT_ITEMS = 2000
DEFAULT_LATENCY_MS = 1000.0
DEFAULT_SAMPLE_MS = 100.0
DEFAULT_JOB_TIMEOUT_S = 150.0
SMOKE_TIMEOUT_S = 60.0
SUBMITTERS = 32  # --singles: submissions in flight
POLLERS = 64  # --singles: long polls open at once (gunicorn allows 1,000 connections)
LONG_POLL_S = 30.0
TARGET_SUSTAINED_IN_FLIGHT = 200
CHAT_BODY = {"model": BENCH_MODEL, "messages": [{"role": "user", "content": "hello"}]}


@dataclass
class Scenario:
    """One measured run: a mode (batch or singles) under one chunk size."""

    mode: str
    chunk_size: int | None  # None: the server's default
    items: int
    wall_s: float = 0.0
    submit_s: float = 0.0
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (s since submit, in flight)
    max_in_flight: int = 0
    upstream_requests: int = 0
    first_call_ms: float | None = None
    worker_cpu_s: float = 0.0
    cpu_by_role: dict[str, float] = field(default_factory=dict)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--items", type=int, default=DEFAULT_ITEMS, help="requests per job (default 2000)")
    add("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="upstream latency")
    add("--singles", action="store_true", help="also submit the items as single jobs")
    add("--chunk-size", default="default", help="comma-separated, e.g. default,1")
    add("--worker-concurrency", type=int, default=None, help="default: the server's (256)")
    add("--feed-window", type=int, default=None, help="default: the server's (2048)")
    add("--sample-ms", type=float, default=DEFAULT_SAMPLE_MS, help="/_stats sampling period")
    add("--json", type=Path, default=None, help="also write the figures here")
    add("--log-dir", type=Path, default=None, help="keep server logs here")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.chunk_size.split(",") if s.strip()]
    try:
        args.chunk_sizes = [None if s == "default" else int(s) for s in sizes]
    except ValueError:
        parser.error("--chunk-size takes integers or 'default', comma-separated")
    if args.items < 1 or any(c is not None and c < 1 for c in args.chunk_sizes):
        parser.error("--items and --chunk-size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every scenario; 0 if every item completed, 1 if not, 2 if a server did not start."""
    args = parse_args(argv)
    stop_on_signals()
    load_before = os.getloadavg()[0]
    scenarios: list[Scenario] = []
    def run() -> None:
        with contextlib.ExitStack() as stack:
            log_dir = logs_folder(args.log_dir, stack)
            upstream_config = {"defaults": {"latency_ms": args.latency_ms}}
            upstream = start_fake_upstream(log_dir, config=upstream_config)
            stack.callback(stop, upstream)
            for chunk_size in args.chunk_sizes:
                modes = ["batch", "singles"] if args.singles else ["batch"]
                with _gateway(args, upstream, log_dir, chunk_size) as gateway:
                    for mode in modes:
                        scenario = Scenario(mode, chunk_size, args.items)
                        asyncio.run(_measure(scenario, upstream, gateway, args))
                        _progress(scenario)
                        scenarios.append(scenario)

    if (code := measured(run)) is not None:
        return code
    report = build_report(scenarios, _settings(args, load_before))
    publish(report, render_report(report), args.json)
    return 1 if any(s["failed"] or s["errors"] for s in report["scenarios"]) else 0


@contextlib.contextmanager
def _gateway(
    args: argparse.Namespace, upstream: ManagedProcess, log_dir: Path, chunk_size: int | None
) -> Iterator[ManagedProcess]:
    """`batchgate up` with one Celery worker process and these queue settings; always stopped."""
    settings: dict[str, int] = {"max_batch_requests": max(args.items, 50_000)}
    for name, value in (
        ("chunk_size", chunk_size),
        ("worker_concurrency", args.worker_concurrency),
        ("feed_window", args.feed_window),
    ):
        if value is not None:
            settings[name] = value
    label = f"chunk-{chunk_size or 'default'}"
    run_dir = log_dir / label
    run_dir.mkdir(parents=True, exist_ok=True)
    config = write_proxy_config(
        run_dir / "config.yaml", upstream.base_url, batchgate_settings=settings
    )
    gateway = start_batchgate(
        config, run_dir, workers=1, extra_args=["--queue-workers", "1"], env=private_queue_env()
    )
    try:
        print(f"batchgate up ({label}); logs in {run_dir}", file=sys.stderr)
        _smoke_test(gateway)
        yield gateway
    finally:
        stop(gateway)


def _smoke_test(gateway: ManagedProcess) -> None:
    """One queued job must complete (it also waits for the Celery worker to be up)."""
    result: LoadResult = run_queue_phase(
        _submit_target(gateway), requests=1, concurrency=1, job_timeout_s=SMOKE_TIMEOUT_S
    )
    if result.errors or result.unsent:
        raise StartupError(f"first queued job failed: {result.error_samples}\n{gateway.log_tail()}")


def _submit_target(gateway: ManagedProcess) -> Target:
    return Target(gateway.base_url + "/queue/requests", json.dumps(CHAT_BODY).encode())


async def _measure(
    scenario: Scenario, upstream: ManagedProcess, gateway: ManagedProcess, args: argparse.Namespace
) -> None:
    """Reset the upstream, sample it while the work runs, and record what happened."""
    timeout = aiohttp.ClientTimeout(total=LONG_POLL_S + 15)
    connector = aiohttp.TCPConnector(limit=POLLERS + SUBMITTERS)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers) as s:
        async with s.post(upstream.base_url + "/_reset") as response:
            response.raise_for_status()
        cpu_before = _worker_cpu(gateway), queue_cpu_by_role(gateway.pid)
        done = asyncio.Event()
        began, began_unix = time.perf_counter(), time.time()
        sampler = asyncio.create_task(_sample(s, upstream, args.sample_ms / 1000, began, done))
        try:
            run = _run_batch if scenario.mode == "batch" else _run_singles
            await run(s, gateway, scenario, began)
        finally:
            scenario.wall_s = time.perf_counter() - began
            done.set()
            scenario.samples = await sampler
        scenario.worker_cpu_s = _worker_cpu(gateway) - cpu_before[0]
        after = queue_cpu_by_role(gateway.pid)
        scenario.cpu_by_role = {k: v - cpu_before[1].get(k, 0.0) for k, v in after.items()}
        async with s.get(upstream.base_url + "/_stats") as response:
            stats = await response.json()
    scenario.max_in_flight = stats["max_in_flight"]
    scenario.upstream_requests = stats["requests"]
    arrivals = [entry["t"] for entry in stats["log"]]
    if arrivals:
        scenario.first_call_ms = (min(arrivals) - began_unix) * 1000


def _worker_cpu(gateway: ManagedProcess) -> float:
    return pids_cpu_seconds(celery_worker_pids(gateway.pid))


async def _sample(
    session: aiohttp.ClientSession,
    upstream: ManagedProcess,
    period_s: float,
    began: float,
    done: asyncio.Event,
) -> list[tuple[float, int]]:
    """Read the upstream's in_flight every period (on a fixed grid, so no drift) until done."""
    samples: list[tuple[float, int]] = []
    tick = 0
    while not done.is_set():
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(upstream.base_url + "/_stats", params={"log": "0"}) as r:
                stats = await r.json()
            samples.append((time.perf_counter() - began, int(stats["in_flight"])))
        tick += 1
        delay = began + tick * period_s - time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.0, delay))
    return samples


async def _run_batch(
    session: aiohttp.ClientSession, gateway: ManagedProcess, scenario: Scenario, began: float
) -> None:
    """Submit all items as one inline batch; long-poll it to its end."""
    lines = [{"custom_id": f"r{i}", "body": CHAT_BODY} for i in range(scenario.items)]
    body = json.dumps({"endpoint": "/v1/chat/completions", "requests": lines}).encode()
    status, job = await submit_job(session, gateway.base_url + "/queue/requests", body)
    scenario.submit_s = time.perf_counter() - began
    if status != 202:
        scenario.errors.append(f"submit HTTP {status}: {str(job)[:300]}")
        return
    url = gateway.base_url + job["url"]
    job = await await_job(session, url, wait_s=LONG_POLL_S, deadline=began + DEFAULT_JOB_TIMEOUT_S)
    _count(scenario, job)


async def _run_singles(
    session: aiohttp.ClientSession, gateway: ManagedProcess, scenario: Scenario, began: float
) -> None:
    """Submit every item as its own job (SUBMITTERS at a time), then wait for all to end."""
    urls: list[str] = []
    pending = list(range(scenario.items))
    submit_url = gateway.base_url + "/queue/requests"
    body = json.dumps(CHAT_BODY).encode()

    async def submitter() -> None:
        while pending:
            pending.pop()
            status, job = await submit_job(session, submit_url, body)
            if status == 202:
                urls.append(gateway.base_url + job["url"])
            else:
                scenario.errors.append(f"submit HTTP {status}: {str(job)[:300]}")

    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
    scenario.submit_s = time.perf_counter() - began
    # Jobs end roughly in submission order; POLLERS long polls walk the list in that order
    # (one shared iterator: coroutines only interleave at awaits).
    to_poll = iter(urls)

    async def poller() -> None:
        for url in to_poll:
            job = await await_job(
                session, url, wait_s=LONG_POLL_S, deadline=began + DEFAULT_JOB_TIMEOUT_S
            )
            _count(scenario, job)

    await asyncio.gather(*(poller() for _ in range(POLLERS)))


def _count(scenario: Scenario, job: dict[str, Any]) -> None:
    counts = job.get("request_counts", {})
    scenario.completed += counts.get("completed", 0)
    scenario.failed += counts.get("total", 0) - counts.get("completed", 0)
    if job.get("status") not in JOB_ENDED:
        scenario.errors.append(f"job {job.get('id')} still {job.get('status')} at the deadline")


def _progress(s: Scenario) -> None:
    print(
        f"  {s.mode:<7} chunk={s.chunk_size or 'default':<7} {s.wall_s:6.2f} s"
        f"  {s.completed}/{s.items} completed  max_in_flight={s.max_in_flight}",
        file=sys.stderr,
        flush=True,
    )


def build_report(scenarios: list[Scenario], settings: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready figures per scenario."""
    concurrency = settings["worker_concurrency"] or DEFAULT_WORKER_CONCURRENCY
    rows = []
    for s in scenarios:
        ideal_s = s.items / concurrency * settings["upstream_latency_ms"] / 1000
        in_flight = summarize_samples([float(n) for _, n in s.samples])
        rows.append(
            {
                "mode": s.mode,
                "chunk_size": s.chunk_size,
                "items": s.items,
                "completed": s.completed,
                "failed": s.failed,
                "errors": s.errors,
                "wall_s": s.wall_s,
                "submit_s": s.submit_s,
                "items_per_s": s.items / s.wall_s if s.wall_s else None,
                "ideal_wall_s": ideal_s,
                "wall_vs_ideal": s.wall_s / ideal_s if ideal_s else None,
                "in_flight": in_flight.as_dict(),
                "max_in_flight": s.max_in_flight,
                "upstream_requests": s.upstream_requests,
                "first_upstream_call_ms": s.first_call_ms,
                "worker_cpu_ms_per_item": s.worker_cpu_s * 1000 / s.items,
                "cpu_ms_per_item_by_role": {
                    role: cpu * 1000 / s.items for role, cpu in s.cpu_by_role.items()
                },
                "target_met": in_flight.median >= TARGET_SUSTAINED_IN_FLIGHT,
                "samples_s_in_flight": [[round(t, 3), n] for t, n in s.samples],
            }
        )
    return {"settings": settings, "scenarios": rows}


def render_report(report: dict[str, Any]) -> str:
    """The plain-text report."""
    st = report["settings"]
    concurrency = st["worker_concurrency"] or DEFAULT_WORKER_CONCURRENCY
    headers = ["mode", "chunk", "in-flight p50", "p90", "max", "items/s", "wall s", "ideal s"]
    headers += ["x ideal", "submit s", "1st call ms", "worker CPU ms/item", "done", "failed"]
    table = []
    targets = []
    for r in report["scenarios"]:
        chunk = str(r["chunk_size"] or f"{st['server_chunk_size']} (default)")
        table.append(
            [
                r["mode"],
                chunk,
                fmt(r["in_flight"]["median"], 0),
                fmt(r["in_flight"]["p90"], 0),
                str(r["max_in_flight"]),
                fmt(r["items_per_s"], 1),
                fmt(r["wall_s"]),
                fmt(r["ideal_wall_s"]),
                fmt(r["wall_vs_ideal"]),
                fmt(r["submit_s"]),
                fmt(r["first_upstream_call_ms"], 0),
                fmt(r["worker_cpu_ms_per_item"]),
                str(r["completed"]),
                f"{r['failed'] + len(r['errors'])}{' !' if r['failed'] or r['errors'] else ''}",
            ]
        )
        verdict = "met" if r["target_met"] else "NOT met"
        sustained = fmt(r["in_flight"]["median"], 0)
        targets.append(
            f"  {r['mode']}, chunk {chunk}: sustained in-flight p50 {sustained}"
            f" (target >= {TARGET_SUSTAINED_IN_FLIGHT}): {verdict}"
        )
    lines = [
        f"in-flight: {st['items']} items, upstream {st['upstream_latency_ms']:.0f} ms,"
        f" ONE Celery worker process (concurrency {concurrency}), 1 API worker,"
        f" {st['cpus']} CPUs, load {st['loadavg_1min_before_after']}",
        f"in-flight = the upstream's in_flight, sampled every {st['sample_ms']:.0f} ms from"
        " submit to job end; ideal = items / concurrency x latency",
        "",
        format_table(headers, table),
        "",
        "target (printed, not asserted):",
        *targets,
    ]
    for r in report["scenarios"]:
        for error in r["errors"][:3]:
            lines.append(f"  ERROR {r['mode']} chunk {r['chunk_size']}: {error}")
    return "\n".join(lines)


def _settings(args: argparse.Namespace, load_before: float) -> dict[str, Any]:
    return {
        "items": args.items,
        "upstream_latency_ms": args.latency_ms,
        "chunk_sizes": args.chunk_sizes,
        "server_chunk_size": DEFAULT_CHUNK_SIZE,
        "worker_concurrency": args.worker_concurrency,
        "feed_window": args.feed_window,
        "sample_ms": args.sample_ms,
        "singles": args.singles,
        **machine_settings(load_before),
    }


if __name__ == "__main__":
    sys.exit(main())
