"""What asking three models at once costs over asking the slowest of them alone.

    .venv/bin/python bench/compare.py [--requests 50] [--quick] [--json bench/results/compare.json]

One run starts a fake upstream whose models `a`, `b` and `c` answer after 100, 300 and 600 ms,
and `batchgate up` (one API worker, one Celery worker process, its own embedded Redis) with
one model group per upstream model. It then measures, at concurrency 1, in interleaved rounds
(each round sends one request of every kind; the order alternates every round):

- sync compare:  `POST /v1/chat/completions` with `"model": "a,b,c"`;
- sync single:   the same body with `"model": "c"`, the slowest single model;
- queue compare: `POST /queue/requests` with `"model": "a,b,c"`, then
                 `GET /queue/response/<id>?wait=30` until the job ends;
- queue single:  the same with `"model": "c"`.

The models run in parallel, so a comparison should take as long as its slowest model: the
ratio compare / single (p50 and p95, same route) should be <= 1.1. A request counts only if
every model answered (an array of three completions, or a completed job with three results).
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
from pathlib import Path
from typing import Any

import aiohttp
from _load import JOB_ENDED, await_job, submit_job
from _procs import (
    ManagedProcess,
    StartupError,
    deployment,
    private_queue_env,
    start_batchgate,
    start_fake_upstream,
    stop,
    write_gateway_config,
)
from _run import logs_folder, machine_settings, measured, publish, results_path, stop_on_signals
from _stats import fmt, format_table, ratio, summarize

LATENCIES_MS = {"a": 100.0, "b": 300.0, "c": 600.0}
SLOWEST = "c"
COMPARE = ",".join(LATENCIES_MS)
DEFAULT_REQUESTS = 50
QUICK_REQUESTS = 5
WARMUP = 2
WAIT_S = 30.0
JOB_TIMEOUT_S = 60.0
TARGET_RATIO = 1.1
PATHS = ("sync compare", "sync single", "queue compare", "queue single")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--requests", type=int, default=DEFAULT_REQUESTS, help="measured requests per path")
    add("--quick", action="store_true", help=f"smoke test: {QUICK_REQUESTS} requests per path")
    add("--json", type=Path, default=None, help="write the figures here")
    add("--log-dir", type=Path, default=None, help="keep server logs here")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = QUICK_REQUESTS
    if args.requests < 1:
        parser.error("--requests must be >= 1")
    if args.json is None:
        args.json = results_path("compare", args.quick)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 if every request succeeded, 1 if not, 2 if a server did not start."""
    args = parse_args(argv)
    stop_on_signals()
    load_before = os.getloadavg()[0]
    samples: dict[str, list[float]] = {path: [] for path in PATHS}
    errors: dict[str, list[str]] = {path: [] for path in PATHS}

    def run() -> None:
        with _gateway(args) as gateway:
            asyncio.run(_measure(gateway, args.requests, samples, errors))

    if (code := measured(run)) is not None:
        return code
    report = build_report(samples, errors, args, load_before)
    publish(report, render_report(report), args.json)
    return 1 if report["errors_total"] else 0


@contextlib.contextmanager
def _gateway(args: argparse.Namespace) -> Iterator[ManagedProcess]:
    """The upstream (a/b/c latencies) and `batchgate up` in front of it; always stopped."""
    with contextlib.ExitStack() as stack:
        log_dir = logs_folder(args.log_dir, stack)
        models = {name: {"latency_ms": ms} for name, ms in LATENCIES_MS.items()}
        upstream = start_fake_upstream(log_dir, config={"models": models})
        stack.callback(stop, upstream)
        entries = [deployment(name, name, upstream.base_url) for name in LATENCIES_MS]
        config = write_gateway_config(log_dir / "config.yaml", entries)
        gateway = start_batchgate(
            config, log_dir, extra_args=["--queue-workers", "1"], env=private_queue_env()
        )
        stack.callback(stop, gateway)
        print(f"servers up; logs in {log_dir}", file=sys.stderr)
        yield gateway


def _body(model: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()


async def _measure(
    gateway: ManagedProcess,
    requests: int,
    samples: dict[str, list[float]],
    errors: dict[str, list[str]],
) -> None:
    """Warm every path up (the first job also waits for the Celery worker), then measure."""
    timeout = aiohttp.ClientTimeout(total=WAIT_S + 15)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        for warm in range(WARMUP):
            for path in PATHS:
                problem, _ = await _one(session, gateway.base_url, path)
                if problem and warm == WARMUP - 1:
                    raise StartupError(f"{path}: warm-up failed: {problem}\n{gateway.log_tail()}")
        for round_no in range(requests):
            order = PATHS if round_no % 2 == 0 else PATHS[::-1]
            for path in order:
                problem, took_ms = await _one(session, gateway.base_url, path)
                if problem:
                    errors[path].append(problem)
                else:
                    samples[path].append(took_ms)
            if (round_no + 1) % 10 == 0 or round_no + 1 == requests:
                print(f"  round {round_no + 1}/{requests}", file=sys.stderr, flush=True)


async def _one(session: aiohttp.ClientSession, base: str, path: str) -> tuple[str | None, float]:
    """Send one request down `path`; (what went wrong or None, latency ms)."""
    route, kind = path.split()
    model = COMPARE if kind == "compare" else SLOWEST
    began = time.perf_counter()
    try:
        if route == "sync":
            async with session.post(base + "/v1/chat/completions", data=_body(model)) as r:
                status, answer = r.status, await r.json(content_type=None)
            problem = None if status == 200 else f"HTTP {status}: {str(answer)[:200]}"
            problem = problem or _check_sync(answer, kind)
        else:
            status, job = await submit_job(session, base + "/queue/requests", _body(model))
            if status != 202:
                return f"submit HTTP {status}: {str(job)[:200]}", 0.0
            deadline = began + JOB_TIMEOUT_S
            job = await await_job(session, base + job["url"], wait_s=WAIT_S, deadline=deadline)
            problem = _check_job(job, kind)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}", 0.0
    return problem, (time.perf_counter() - began) * 1000.0


def _completion(answer: Any) -> bool:
    return isinstance(answer, dict) and bool(answer.get("choices"))


def _check_sync(answer: Any, kind: str) -> str | None:
    if kind == "single":
        return None if _completion(answer) else f"not a completion: {str(answer)[:200]}"
    if isinstance(answer, list) and len(answer) == 3 and all(map(_completion, answer)):
        return None
    return f"not three completions: {str(answer)[:200]}"


def _check_job(job: dict[str, Any], kind: str) -> str | None:
    if job.get("status") not in JOB_ENDED:
        return f"job still {job.get('status')} after {JOB_TIMEOUT_S:.0f} s"
    if job.get("status") != "completed":
        return f"job ended {job.get('status')}: {str(job)[:200]}"
    if kind == "single":
        return None if _completion(job.get("result")) else f"no completion: {str(job)[:200]}"
    results = job.get("results")
    if isinstance(results, list) and len(results) == 3 and all(map(_completion, results)):
        return None
    return f"not three results: {str(job)[:200]}"


def build_report(
    samples: dict[str, list[float]],
    errors: dict[str, list[str]],
    args: argparse.Namespace,
    load_before: float,
) -> dict[str, Any]:
    """Per path: latency summary; per route: the ratios compare / single."""
    paths = {}
    for path in PATHS:
        sent = len(samples[path]) + len(errors[path])
        summary = summarize(samples[path], 1.0, sent, len(errors[path])).as_dict()
        summary.pop("req_per_s")
        paths[path] = {**summary, "error_samples": errors[path][:3]}
    ratios = {}
    for route in ("sync", "queue"):
        compare, single = paths[f"{route} compare"], paths[f"{route} single"]
        p50 = ratio(compare["p50_ms"], single["p50_ms"])
        p95 = ratio(compare["p95_ms"], single["p95_ms"])
        ratios[route] = {
            "p50": p50,
            "p95": p95,
            "target_met": p50 is not None and p95 is not None and max(p50, p95) <= TARGET_RATIO,
        }
    return {
        "settings": {
            "requests_per_path": args.requests,
            "upstream_latency_ms": LATENCIES_MS,
            "concurrency": 1,
            **machine_settings(load_before),
        },
        "paths": paths,
        "ratios": ratios,
        "target_ratio": TARGET_RATIO,
        "errors_total": sum(len(e) for e in errors.values()),
    }


def render_report(report: dict[str, Any]) -> str:
    """The plain-text report: latencies per path, then the ratios against their targets."""
    st = report["settings"]
    headers = ["path", "model", "p50 ms", "p95 ms", "max ms", "ok", "errors"]
    rows = []
    for path, s in report["paths"].items():
        model = COMPARE if path.endswith("compare") else SLOWEST
        bad = s["errors"]
        rows.append([path, model, fmt(s["p50_ms"], 1), fmt(s["p95_ms"], 1), fmt(s["max_ms"], 1),
                     str(s["requests"] - bad), f"{bad}{' !' if bad else ''}"])
    lines = [
        f"compare: upstream a/b/c = {'/'.join(f'{v:.0f}' for v in LATENCIES_MS.values())} ms,"
        f" {st['requests_per_path']} requests per path at concurrency 1, interleaved;"
        f" {st['cpus']} CPUs, load {st['loadavg_1min_before_after']}",
        "",
        format_table(headers, rows),
        "",
        f"ratio compare / slowest single (target <= {report['target_ratio']}, printed, not"
        " asserted):",
    ]
    for route, r in report["ratios"].items():
        verdict = "met" if r["target_met"] else "NOT met"
        lines.append(f"  {route:<5}  p50 {fmt(r['p50'], 3)}  p95 {fmt(r['p95'], 3)}: {verdict}")
    for path, s in report["paths"].items():
        lines += [f"  ERROR {path}: {sample}" for sample in s["error_samples"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
