"""Declared rpm/tpm budgets: spent fully, never overshot, interactive requests kept fast.

Does the gateway spend the declared budget fully, never overshoot it (no upstream 429), and
keep interactive requests fast while bulk work runs?

    .venv/bin/python bench/budget.py [--quick] [--embed-items 20000] [--chat-items 2000]
                                     [--embed-tpm 60000] [--chat-rpm 400] [--json out.json]

Setup. A fake upstream with 2 x `--deployments` (3) models, `embed-1..3` and `chat-1..3`,
each enforcing its own rpm/tpm on a sliding 60 s window (a request over them gets a 429), and
`batchgate up` (one API worker, one Celery worker process, its own Redis) whose config
declares exactly the same limits: group `embed` on the embed models, group `chat` on the chat
models (separate upstream models, because the upstream counts per model while the gateway
counts per deployment: two deployments on one model would declare twice what it allows).

Default sizes, chosen so each group needs about two windows, i.e. ~60 s from empty windows:
- embed: 20,000 items of 10-20 tokens (~300k tokens) vs tpm 60,000 x 3 = 180,000: tokens bind
  (180k at once, the rest when the window slides at 60 s). Packed up to 2,048 inputs a request
  (`model_info.max_inputs_per_request`), they need ~10 requests: rpm 300 x 3 never binds.
- chat: 2,000 items (~13 prompt + 10 completion tokens, `max_tokens` 16) plus the interactive
  requests (~2 a second) vs rpm 400 x 3 = 1,200: requests bind; tpm 60,000 x 3 never does.

Phases. The upstream's counters and windows are reset; then (1) baseline: `--baseline`
interactive requests (`POST /v1/chat/completions`, model `chat`, one every `--interval` s) with
nothing else running; (2) bulk: both batch jobs are submitted at once while the same
interactive client keeps sending, until both jobs end.

Figures.
- ideal / actual (target >= 0.97). Achieved throughput over the declared budget, defined as
  the best finish time any client could reach under the declared limits divided by the
  measured one. The best time comes from `_window.ideal_finish`: per group and per dimension
  (embed tokens, embed requests at the packed minimum, chat requests, chat tokens), the
  demand (bulk items + the interactive requests answered before the bulk ended) is released
  at the bulk's submission against the group's summed limit, after the baseline's admissions
  at their own times; the slowest dimension, plus one upstream latency, is the ideal. Raw
  rate / limit would mislead: from empty windows a 60 s run may spend up to twice the limit.
  The demand is counted with the fake upstream's own rules (tokens = ceil(chars / 4)).
- actual: from the bulk submission until the long poll saw both jobs end.
- tokens/min (embed) and requests/min (chat) achieved over the actual time, beside the sums.
- upstream 429s from `GET /_stats` over both phases (target 0).
- interactive p50/p95 latency during the bulk vs the baseline; non-200 answers are errors.
Exit code: 0 when every item completed and every interactive request got a 200, else 1.
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
from _budget_report import (
    MAX_INPUTS,
    Call,
    build_report,
    bulk_chat_text,
    chat_body,
    chat_tokens,
    embed_text,
    render_report,
)
from _load import await_job, submit_job, warm_up_queue
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

FULL = {"embed_items": 20_000, "chat_items": 2_000, "embed_rpm": 300, "embed_tpm": 60_000,
        "chat_rpm": 400, "chat_tpm": 60_000, "baseline": 20, "job_timeout": 600.0}
HELP = {"embed_items": "bulk embedding items", "chat_items": "bulk chat items",
        "embed_rpm": "rpm of each embed deployment", "embed_tpm": "tpm of each embed deployment",
        "chat_rpm": "rpm of each chat deployment", "chat_tpm": "tpm of each chat deployment",
        "baseline": "interactive requests before the bulk", "job_timeout": "give bulk up after (s)"}
QUICK = {"embed_items": 1_500, "chat_items": 200, "embed_rpm": 60, "embed_tpm": 6_000,
         "chat_rpm": 100, "chat_tpm": 6_000, "baseline": 6, "job_timeout": 300.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse command-line options (sizes default to FULL, or QUICK with --quick)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    for name, value in FULL.items():
        add(f"--{name.replace('_', '-')}", type=type(value), default=None,
            help=f"{HELP[name]}; default {value:,} ({QUICK[name]:,} with --quick)")
    add("--deployments", type=int, default=3, help="deployments per group")
    add("--interval", type=float, default=0.5, help="seconds between interactive requests")
    add("--max-tokens", type=int, default=16, help="max_tokens of every chat request")
    add("--latency-ms", type=float, default=100.0, help="upstream latency")
    add("--quick", action="store_true", help="smoke test: small sizes (still ~80 s: 60 s windows)")
    add("--json", type=Path, default=None, help="write the figures here")
    add("--log-dir", type=Path, default=None, help="keep server logs here")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if min(args.embed_items, args.chat_items, args.deployments, args.max_tokens) < 1:
        parser.error("item counts, --deployments and --max-tokens must be >= 1")
    args.json = args.json or results_path("budget", args.quick)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run both phases; 0 if all work succeeded, 1 if not, 2 if a server did not start."""
    args = parse_args(argv)
    stop_on_signals()
    load_before = os.getloadavg()[0]
    out: dict[str, Any] = {}

    def run() -> None:
        with _servers(args) as (upstream, gateway):
            reset_upstream(upstream)
            asyncio.run(_phases(gateway, args, out))
            out["stats"] = upstream_stats(upstream)

    if (code := measured(run)) is not None:
        return code
    report = build_report(out, args, load_before)
    publish(report, render_report(report), args.json)
    return 0 if report["all_ok"] else 1


@contextlib.contextmanager
def _servers(args: argparse.Namespace) -> Iterator[tuple[ManagedProcess, ManagedProcess]]:
    """Upstream models with limits, the gateway declaring the same ones; always stopped."""
    with contextlib.ExitStack() as stack:
        log_dir = logs_folder(args.log_dir, stack)
        limits = {g: {"rpm": getattr(args, f"{g}_rpm"), "tpm": getattr(args, f"{g}_tpm")}
                  for g in ("embed", "chat")}
        names = {g: [f"{g}-{n + 1}" for n in range(args.deployments)] for g in limits}
        models = {m: limits[g] for g in limits for m in names[g]}
        config = {"defaults": {"latency_ms": args.latency_ms, "max_inputs": MAX_INPUTS},
                  "models": models, "log_size": 3 * (args.embed_items + args.chat_items)}
        upstream = start_fake_upstream(log_dir, config=config)
        stack.callback(stop, upstream)
        entries = [deployment(g, m, upstream.base_url, **limits[g],
                              model_info={"id": m, "max_inputs_per_request": MAX_INPUTS})
                   for g in limits for m in names[g]]
        settings = {"max_batch_requests": max(args.embed_items, args.chat_items, 50_000),
                    "max_request_bytes": max(200 * args.embed_items, 10 * 2**20)}
        path = write_gateway_config(log_dir / "config.yaml", entries, batchgate_settings=settings)
        gateway = start_batchgate(path, log_dir, extra_args=["--queue-workers", "1"],
                                  env=private_queue_env())
        stack.callback(stop, gateway)
        print(f"servers up; logs in {log_dir}", file=sys.stderr)
        warm_up_queue(gateway.base_url, {"model": "embed", "input": "warm"})
        yield upstream, gateway


async def _phases(gateway: ManagedProcess, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Baseline interactive alone, then bulk with interactive beside it."""
    timeout = aiohttp.ClientTimeout(total=args.job_timeout)
    headers = {"Content-Type": "application/json"}
    # No connection limit: interactive requests held back by the gateway must neither queue
    # inside the client nor hold up the bulk jobs' long polls (aiohttp's default is 100).
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        timeout=timeout, headers=headers, connector=connector
    ) as session:
        out["baseline"] = await _interactive(session, gateway, args, args.baseline)
        out["t0"], stop_event = time.perf_counter(), asyncio.Event()
        sender = asyncio.create_task(_interactive(session, gateway, args, None, stop_event))
        try:
            out["jobs"] = await _bulk(session, gateway, args, out["t0"])
        finally:
            out["actual_s"] = time.perf_counter() - out["t0"]
            stop_event.set()
            out["during"] = await sender


async def _interactive(
    session: aiohttp.ClientSession, gateway: ManagedProcess, args: argparse.Namespace,
    count: int | None, stop_event: asyncio.Event | None = None,
) -> list[Call]:
    """Open loop: one request every interval, `count` of them or until `stop_event` is set."""
    url = gateway.base_url + "/v1/chat/completions"
    stop_event = stop_event or asyncio.Event()

    async def one(n: int) -> Call:
        text = f"Interactive question {n}: how are you?"
        body = json.dumps(chat_body(text, args.max_tokens)).encode()
        sent = time.perf_counter()
        try:
            async with session.post(url, data=body) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        took_ms = (time.perf_counter() - sent) * 1000
        return Call(sent, took_ms, status, chat_tokens(text, args.max_tokens))

    tasks: list[asyncio.Task[Call]] = []
    while not stop_event.is_set() and (count is None or len(tasks) < count):
        tasks.append(asyncio.create_task(one(len(tasks))))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), args.interval)
    return list(await asyncio.gather(*tasks))


async def _bulk(
    session: aiohttp.ClientSession, gateway: ManagedProcess, args: argparse.Namespace,
    began: float,
) -> dict[str, dict[str, Any]]:
    """Submit both batch jobs at once; long-poll both to their end; their final states."""
    lines = {
        "embed": [{"custom_id": f"e{i}", "body": {"model": "embed", "input": embed_text(i)}}
                  for i in range(args.embed_items)],
        "chat": [{"custom_id": f"c{i}", "body": chat_body(bulk_chat_text(i), args.max_tokens)}
                 for i in range(args.chat_items)],
    }
    endpoints = {"embed": "/v1/embeddings", "chat": "/v1/chat/completions"}

    async def run(group: str) -> dict[str, Any]:
        body = json.dumps({"endpoint": endpoints[group], "requests": lines[group]}).encode()
        status, job = await submit_job(session, gateway.base_url + "/queue/requests", body)
        if status != 202:
            return {"status": f"submit HTTP {status}", "error": str(job)[:300]}
        url, deadline = gateway.base_url + job["url"], began + args.job_timeout
        ended = await await_job(session, url, wait_s=30, deadline=deadline)
        print(f"  {group}: {ended.get('status')} after {time.perf_counter() - began:.1f} s"
              f" {ended.get('request_counts')}", file=sys.stderr, flush=True)
        return ended

    results = await asyncio.gather(run("embed"), run("chat"))
    return dict(zip(("embed", "chat"), results, strict=True))


if __name__ == "__main__":
    sys.exit(main())
