"""What batchgate's synchronous proxy path adds over calling the upstream directly.

    .venv/bin/python bench/overhead.py [--requests 2000] [--concurrency 1,32] [--rounds 3]
                                       [--peer litellm] [--workers 1] [--json out.json]

One run starts a zero-latency fake upstream, `batchgate up` in front of it and, with
`--peer litellm`, LiteLLM's proxy in front of the same upstream. At each concurrency it runs
interleaved rounds of: direct (A), batchgate, peer, direct (B), so a noisy shared machine
hits every path alike. Direct A and B are an A/A check: equal figures there prove the load
generator is not what limits the proxied paths. See bench/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from _load import LoadResult, Target, run_phase
from _overhead_report import PathResult, build_report, render_report
from _procs import (
    BENCH_MODEL,
    ManagedProcess,
    StartupError,
    start_batchgate,
    start_fake_upstream,
    stop,
    tree_cpu_by_role,
    write_proxy_config,
)
from _run import logs_folder, machine_settings, measured, publish, stop_on_signals

DEFAULT_REQUESTS = 2000
DEFAULT_WARMUP = 100
DEFAULT_ROUNDS = 3
DEFAULT_CONCURRENCY = "1,32"
OVERHEAD_HEADER = "x-batchgate-overhead-ms"
CHAT_PATH = "/v1/chat/completions"
REQUEST_BODY = json.dumps(
    {"model": BENCH_MODEL, "messages": [{"role": "user", "content": "hello"}]}
).encode()


@dataclass
class BenchPath:
    """One way to reach the upstream: directly, or through a proxy whose CPU we charge."""

    key: str
    target: Target
    proxy: ManagedProcess | None = None
    collect_header: str | None = None
    results: dict[int, PathResult] = field(default_factory=dict)  # by concurrency


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--requests",
        type=int,
        default=DEFAULT_REQUESTS,
        help="measured requests per phase (default %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help="unmeasured requests before each phase; at least 4x concurrency",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="interleaved rounds per concurrency (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        default=DEFAULT_CONCURRENCY,
        help="comma-separated requests in flight (default %(default)s)",
    )
    parser.add_argument(
        "--peer",
        choices=["litellm"],
        default=None,
        help="also measure a peer proxy (installed into bench/.peer-venv)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes for batchgate and for the peer (default 1)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="keep server logs here (default: a temporary directory)",
    )
    args = parser.parse_args(argv)
    args.concurrency = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    if args.requests < 1 or args.rounds < 1 or args.workers < 1 or min(args.concurrency) < 1:
        parser.error("--requests, --rounds, --workers and --concurrency must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 if every measured request succeeded, 1 if any failed."""
    args = parse_args(argv)
    stop_on_signals()
    peer_version = None
    load_before = os.getloadavg()[0]
    if args.peer == "litellm":
        # Imported here so a plain run never touches the peer venv.
        from peer_litellm import PeerUnavailable, ensure_installed, peer_version_of

        try:
            ensure_installed()
        except PeerUnavailable as exc:
            print(f"--peer litellm unavailable: {exc}", file=sys.stderr)
            return 2
        peer_version = peer_version_of()
    paths: list[BenchPath] = []

    def run() -> None:
        with _servers(args) as started:
            paths.extend(started)
            _smoke_test(started)
            _run_rounds(started, args)

    if (code := measured(run)) is not None:
        return code
    report = build_report(
        {p.key: p.results for p in paths}, settings=_settings(args, peer_version, load_before)
    )
    publish(report, render_report(report), args.json)
    return 1 if report["errors_total"] else 0


@contextlib.contextmanager
def _servers(args: argparse.Namespace) -> Iterator[list[BenchPath]]:
    """Start upstream, batchgate and the peer; yield the paths to load; always stop them."""
    with contextlib.ExitStack() as stack:
        log_dir = logs_folder(args.log_dir, stack)
        upstream = start_fake_upstream(log_dir)
        stack.callback(stop, upstream)
        config = write_proxy_config(log_dir / "config.yaml", upstream.base_url)
        # The synchronous path only: no Celery worker whose start-up would count as proxy CPU.
        gateway = start_batchgate(config, log_dir, workers=args.workers,
                                  extra_args=["--queue-workers", "0"])
        stack.callback(stop, gateway)
        paths = [
            BenchPath("direct-A", _target(upstream), upstream),
            BenchPath("batchgate", _target(gateway), gateway, OVERHEAD_HEADER),
        ]
        if args.peer == "litellm":
            from peer_litellm import start_litellm

            peer = start_litellm(config, log_dir, workers=args.workers)
            stack.callback(stop, peer)
            paths.append(BenchPath("litellm", _target(peer), peer))
        paths.append(BenchPath("direct-B", _target(upstream), upstream))
        print(f"servers up; logs in {log_dir}", file=sys.stderr)
        yield paths


def _target(proc: ManagedProcess) -> Target:
    return Target(url=proc.base_url + CHAT_PATH, body=REQUEST_BODY)


def _smoke_test(paths: list[BenchPath]) -> None:
    """Send one request down each path and insist on a chat completion, before measuring."""
    for path in paths:
        request = urllib.request.Request(  # noqa: S310 - loopback URL built above
            path.target.url, data=path.target.body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                body = json.loads(response.read())
        except (OSError, ValueError) as exc:
            tail = path.proxy.log_tail() if path.proxy else ""
            raise StartupError(f"{path.key}: first request failed: {exc}\n{tail}") from exc
        if not body.get("choices"):
            raise StartupError(f"{path.key}: answer has no choices: {str(body)[:300]}")


def _run_rounds(paths: list[BenchPath], args: argparse.Namespace) -> None:
    """At each concurrency, run `rounds` rounds visiting every path once, pooling results."""
    upstream = paths[0].proxy
    assert upstream is not None
    middle = paths[1:-1]
    for concurrency in args.concurrency:
        for round_no in range(args.rounds):
            # Alternate which proxy goes first so neither always runs on a "fresher" machine;
            # direct A and B always bracket the round.
            order = [paths[0], *(middle if round_no % 2 == 0 else middle[::-1]), paths[-1]]
            for path in order:
                result = _measure(path, upstream, concurrency, args)
                path.results.setdefault(concurrency, PathResult()).add(result)
                _progress(path.key, concurrency, round_no, args.rounds, result)


def _measure(
    path: BenchPath, upstream: ManagedProcess, concurrency: int, args: argparse.Namespace
) -> LoadResult:
    """One phase on one path; probes charge CPU to the proxy tree and to the upstream."""
    proxy = path.proxy if path.proxy is not upstream else None
    probes = [lambda: tree_cpu_by_role(upstream.pid)]
    if proxy is not None:
        probes.append(lambda: tree_cpu_by_role(proxy.pid))
    return run_phase(
        path.target,
        requests=args.requests,
        concurrency=concurrency,
        warmup=max(args.warmup, 4 * concurrency),
        collect_header=path.collect_header,
        probes=probes,
    )


def _progress(key: str, concurrency: int, round_no: int, rounds: int, r: LoadResult) -> None:
    flag = f"  ERRORS {r.errors}" if r.errors else ""
    print(
        f"  c={concurrency:<3} round {round_no + 1}/{rounds}  {key:<10}"
        f" {r.sent / r.elapsed_s:8.0f} req/s{flag}",
        file=sys.stderr,
        flush=True,
    )


def _settings(
    args: argparse.Namespace, peer_version: str | None, load_before: float
) -> Mapping[str, object]:
    # Load average before and after: other work on a shared machine shows up here first.
    return {
        "requests_per_phase": args.requests,
        "warmup_per_phase": args.warmup,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "peer": args.peer,
        "peer_version": peer_version,
        **machine_settings(load_before),
    }


if __name__ == "__main__":
    sys.exit(main())
