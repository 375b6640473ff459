"""What the queue adds to one request: submit, run on a Celery worker, read the result.

    .venv/bin/python bench/queue_latency.py [--requests 300] [--concurrency 1,32] [--rounds 3]
                                            [--latency-ms 50] [--json out.json]

One run starts a fake upstream that answers after `--latency-ms`, and `batchgate up` in front
of it with one API worker, one Celery worker process and its own embedded Redis. At each
concurrency it runs interleaved rounds of two paths:

- direct: `POST /v1/chat/completions` to the upstream itself;
- queue:  `POST /queue/requests`, then `GET /queue/response/<id>?wait=30` until the job ends;
          the latency runs from the submission to reading the ended job.

The difference of their percentiles is what the queue adds. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _load import LoadResult, Target, run_phase, run_queue_phase
from _overhead_report import PathResult
from _procs import (
    BENCH_MODEL,
    ManagedProcess,
    StartupError,
    private_queue_env,
    queue_cpu_by_role,
    start_batchgate,
    start_fake_upstream,
    stop,
    tree_cpu_seconds,
    write_proxy_config,
)
from _run import logs_folder, machine_settings, measured, publish, stop_on_signals
from _stats import fmt, format_table, summarize

DEFAULT_REQUESTS = 300
DEFAULT_WARMUP = 20
DEFAULT_ROUNDS = 3
DEFAULT_CONCURRENCY = "1,32"
DEFAULT_LATENCY_MS = 50.0
DEFAULT_WAIT_S = 30.0
DEFAULT_JOB_TIMEOUT_S = 30.0  # 600x the upstream latency: a job still open then is lost
SMOKE_TIMEOUT_S = 60.0  # the first job also waits for the Celery worker to start
TARGET_ADDED_P50_MS = 15.0
PATHS = ("direct", "queue")
CHAT_BODY = {"model": BENCH_MODEL, "messages": [{"role": "user", "content": "hello"}]}


@dataclass
class Servers:
    """The running upstream and gateway."""

    upstream: ManagedProcess
    gateway: ManagedProcess
    log_dir: Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--requests", type=int, default=DEFAULT_REQUESTS, help="measured requests per phase")
    add("--warmup", type=int, default=DEFAULT_WARMUP, help="unmeasured requests per phase")
    add("--rounds", type=int, default=DEFAULT_ROUNDS, help="interleaved rounds per concurrency")
    add("--concurrency", default=DEFAULT_CONCURRENCY, help="comma-separated, e.g. 1,32")
    add("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="upstream latency")
    add("--wait", type=float, default=DEFAULT_WAIT_S, help="?wait= of each long poll (s)")
    add("--job-timeout", type=float, default=DEFAULT_JOB_TIMEOUT_S, help="give a job up after (s)")
    add("--queue-workers", type=int, default=1, help="Celery worker processes")
    add("--json", type=Path, default=None, help="also write the figures here")
    add("--log-dir", type=Path, default=None, help="keep server logs here")
    args = parser.parse_args(argv)
    args.concurrency = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    if min(args.requests, args.rounds, args.queue_workers, *args.concurrency) < 1:
        parser.error("--requests, --rounds, --queue-workers and --concurrency must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 if every measured request succeeded, 1 if not, 2 if no start."""
    args = parse_args(argv)
    stop_on_signals()
    load_before = os.getloadavg()[0]
    results: dict[str, dict[int, PathResult]] = {path: {} for path in PATHS}
    def run() -> None:
        with _servers(args) as servers:
            _smoke_test(servers)
            _run_rounds(servers, args, results)

    if (code := measured(run)) is not None:
        return code
    report = build_report(results, _settings(args, load_before))
    publish(report, render_report(report), args.json)
    return 1 if report["errors_total"] else 0


@contextlib.contextmanager
def _servers(args: argparse.Namespace) -> Iterator[Servers]:
    """Start the upstream and `batchgate up` (private Redis); always stop both."""
    with contextlib.ExitStack() as stack:
        log_dir = logs_folder(args.log_dir, stack)
        upstream_config = {"defaults": {"latency_ms": args.latency_ms}}
        upstream = start_fake_upstream(log_dir, config=upstream_config)
        stack.callback(stop, upstream)
        config = write_proxy_config(log_dir / "config.yaml", upstream.base_url)
        gateway = start_batchgate(
            config,
            log_dir,
            workers=1,
            extra_args=["--queue-workers", str(args.queue_workers)],
            env=private_queue_env(),
        )
        stack.callback(stop, gateway)
        print(f"servers up; logs in {log_dir}", file=sys.stderr)
        yield Servers(upstream, gateway, log_dir)


def _direct(servers: Servers) -> Target:
    return Target(
        servers.upstream.base_url + "/v1/chat/completions", json.dumps(CHAT_BODY).encode()
    )


def _queue(servers: Servers) -> Target:
    return Target(servers.gateway.base_url + "/queue/requests", json.dumps(CHAT_BODY).encode())


def _smoke_test(servers: Servers) -> None:
    """One direct call and one queued job must succeed before anything is measured."""
    direct = run_phase(_direct(servers), requests=1, concurrency=1)
    queued = run_queue_phase(
        _queue(servers), requests=1, concurrency=1, job_timeout_s=SMOKE_TIMEOUT_S
    )
    checks = (("direct", direct, servers.upstream), ("queue", queued, servers.gateway))
    for name, result, proc in checks:
        if result.errors or result.unsent:
            samples = result.error_samples
            raise StartupError(f"{name}: first request failed: {samples}\n{proc.log_tail()}")


def _run_rounds(
    servers: Servers, args: argparse.Namespace, results: dict[str, dict[int, PathResult]]
) -> None:
    """At each concurrency, `rounds` rounds of direct and queue (order swapped every round)."""

    def upstream_cpu() -> dict[str, float]:
        return {"upstream": tree_cpu_seconds(servers.upstream.pid)}

    def gateway_cpu() -> dict[str, float]:
        return queue_cpu_by_role(servers.gateway.pid)

    for concurrency in args.concurrency:
        warmup = max(args.warmup, 4 * concurrency)
        for round_no in range(args.rounds):
            order = PATHS if round_no % 2 == 0 else PATHS[::-1]
            for path in order:
                if path == "direct":
                    result = run_phase(
                        _direct(servers),
                        requests=args.requests,
                        concurrency=concurrency,
                        warmup=warmup,
                        probes=[upstream_cpu],
                    )
                else:
                    result = run_queue_phase(
                        _queue(servers),
                        requests=args.requests,
                        concurrency=concurrency,
                        warmup=warmup,
                        wait_s=args.wait,
                        job_timeout_s=args.job_timeout,
                        probes=[upstream_cpu, gateway_cpu],
                    )
                results[path].setdefault(concurrency, PathResult()).add(result)
                _progress(path, concurrency, round_no, args.rounds, result)


def _progress(path: str, concurrency: int, round_no: int, rounds: int, r: LoadResult) -> None:
    flag = f"  ERRORS {r.errors}" if r.errors else ""
    print(
        f"  c={concurrency:<3} round {round_no + 1}/{rounds}  {path:<7}"
        f" {r.sent / r.elapsed_s:7.1f} req/s{flag}",
        file=sys.stderr,
        flush=True,
    )


def build_report(
    results: dict[str, dict[int, PathResult]], settings: dict[str, Any]
) -> dict[str, Any]:
    """Per concurrency: both paths' figures, the queue's added latency and CPU per job."""
    rows: list[dict[str, Any]] = []
    for concurrency in sorted(results["direct"]):
        direct = _summary(results["direct"][concurrency])
        queue = _summary(results["queue"][concurrency])
        pooled = results["queue"][concurrency]
        cpu = {
            role: seconds * 1000.0 / pooled.sent if pooled.sent else None
            for role, seconds in pooled.proxy_cpu_by_role.items()
        }
        added_p50 = queue["p50_ms"] - direct["p50_ms"]
        rows.append(
            {
                "concurrency": concurrency,
                "direct": direct,
                "queue": queue,
                "added_p50_ms": added_p50,
                "added_p95_ms": queue["p95_ms"] - direct["p95_ms"],
                "queue_cpu_ms_per_job_by_role": cpu,
                # The target is read at the lowest concurrency only (see render_report).
                "target_added_p50_met": added_p50 <= TARGET_ADDED_P50_MS,
            }
        )
    errors = sum(r[p]["errors"] + r[p]["unsent"] for r in rows for p in PATHS)
    return {"settings": settings, "rows": rows, "errors_total": errors}


def _summary(res: PathResult) -> dict[str, Any]:
    summary = summarize(res.latencies_ms, res.elapsed_s, res.sent, res.errors).as_dict()
    return {
        **summary,
        "unsent": res.unsent,
        "outcomes": dict(res.outcomes),
        "error_samples": res.error_samples,
        "upstream_cpu_ms_per_req": res.upstream_cpu_s * 1000.0 / res.sent if res.sent else None,
        "client_cpu_ms_per_req": res.client_cpu_s * 1000.0 / res.sent if res.sent else None,
    }


def render_report(report: dict[str, Any]) -> str:
    """The plain-text report: one table of both paths, CPU per job, targets."""
    settings = report["settings"]
    headers = ["path", "c", "p50 ms", "p95 ms", "+p50 ms", "+p95 ms", "req/s", "errors"]
    table: list[list[str]] = []
    cpu_rows: list[list[str]] = []
    targets: list[str] = []
    for row in report["rows"]:
        c = str(row["concurrency"])
        for path in PATHS:
            s = row[path]
            bad = s["errors"] + s["unsent"]
            added = path == "queue"
            table.append(
                [
                    path,
                    c,
                    fmt(s["p50_ms"]),
                    fmt(s["p95_ms"]),
                    fmt(row["added_p50_ms"]) if added else "-",
                    fmt(row["added_p95_ms"]) if added else "-",
                    fmt(s["req_per_s"], 1),
                    f"{bad}{' !' if bad else ''}",
                ]
            )
        by_role = row["queue_cpu_ms_per_job_by_role"]
        total = sum(v for v in by_role.values() if v is not None)
        cpu_rows.append([c, *(fmt(by_role.get(r)) for r in _roles(report)), fmt(total)])
        if row is report["rows"][0]:
            verdict = "met" if row["target_added_p50_met"] else "NOT met"
            targets.append(
                f"  c={c}: queue adds p50 {fmt(row['added_p50_ms'])} ms"
                f" (target <= {TARGET_ADDED_P50_MS:.0f} ms at the lowest concurrency): {verdict}"
            )
        else:
            targets.append(
                f"  c={c}: queue adds p50 {fmt(row['added_p50_ms'])} ms (no target: at"
                f" {fmt(row['queue']['req_per_s'], 0)} jobs/s it is mostly waiting for CPU;"
                " compare req/s and CPU per job)"
            )
    lines = [
        f"queue latency: upstream {settings['upstream_latency_ms']:.0f} ms,"
        f" {settings['requests_per_phase']} requests/phase x {settings['rounds']} rounds,"
        f" {settings['queue_workers']} Celery worker process(es), 1 API worker, {settings['cpus']}"
        f" CPUs, load {settings['loadavg_1min_before_after']}",
        "",
        format_table(headers, table),
        "",
        "queue path CPU ms per job, by process role (batchgate up tree):",
        format_table(["c", *_roles(report), "total"], cpu_rows),
        "",
        "target (printed, not asserted):",
        *targets,
    ]
    lines += _error_lines(report)
    return "\n".join(lines)


def _roles(report: dict[str, Any]) -> list[str]:
    rows = report["rows"]
    return list(rows[0]["queue_cpu_ms_per_job_by_role"]) if rows else []


def _error_lines(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for row in report["rows"]:
        for path in PATHS:
            s = row[path]
            if s["errors"] or s["unsent"]:
                out.append(f"  c={row['concurrency']} {path}: {s['outcomes']} unsent={s['unsent']}")
                out += [f"    {sample}" for sample in s["error_samples"]]
    return ["", "ERRORS", *out] if out else []


def _settings(args: argparse.Namespace, load_before: float) -> dict[str, Any]:
    return {
        "requests_per_phase": args.requests,
        "warmup_per_phase": args.warmup,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "upstream_latency_ms": args.latency_ms,
        "wait_s": args.wait,
        "job_timeout_s": args.job_timeout,
        "queue_workers": args.queue_workers,
        **machine_settings(load_before),
    }


if __name__ == "__main__":
    sys.exit(main())
