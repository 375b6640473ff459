"""A closed-loop HTTP load runner on aiohttp's client.

Why aiohttp: on this 2-core machine it drives ~3,000+ req/s at 32 in flight against a
zero-latency local server, roughly 10x what httpx's async client manages, so the load
generator stays far from being the bottleneck (benchmarks prove it with an A/A run).

The model is closed-loop: `concurrency` coroutines share one counter of requests to send and
each sends its next request as soon as its previous one completes. A fixed count (not a fixed
duration) keeps phases comparable and bounded; a deadline bounds them in time as well.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_PHASE_DEADLINE_S = 600.0
MAX_ERROR_SAMPLES = 3
ERROR_SAMPLE_CHARS = 300

# A probe reads named cumulative counters (e.g. CPU seconds per process role of a server's
# tree); a phase reports how much each grew during the measured part only, so warm-up work
# is never charged to requests.
Probe = Callable[[], Mapping[str, float]]


@dataclass
class LoadResult:
    """What one measured run of requests produced."""

    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # successful (200) requests only
    elapsed_s: float = 0.0
    errors: int = 0
    unsent: int = 0  # requests skipped because the phase deadline passed
    outcomes: Counter[str] = field(default_factory=Counter)  # "200", "502", "ClientOSError", ...
    error_samples: list[str] = field(default_factory=list)
    header_values: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    probe_deltas: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """One HTTP endpoint to load: a URL, a JSON body already encoded, optional extra headers."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def run_phase(
    target: Target,
    *,
    requests: int,
    concurrency: int,
    warmup: int = 0,
    collect_header: str | None = None,
    probes: Sequence[Probe] = (),
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    deadline_s: float = DEFAULT_PHASE_DEADLINE_S,
) -> LoadResult:
    """Send `warmup` then `requests` POSTs at `concurrency` in flight; measure only the latter.

    Warm-up runs on the same session, so the measured part starts with every keep-alive
    connection already open and the server's code paths already hot.
    """
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be >= 1")
    return asyncio.run(
        _run_phase(
            target,
            requests=requests,
            concurrency=concurrency,
            warmup=warmup,
            collect_header=collect_header,
            probes=probes,
            request_timeout_s=request_timeout_s,
            deadline_s=deadline_s,
        )
    )


async def _run_phase(
    target: Target,
    *,
    requests: int,
    concurrency: int,
    warmup: int,
    collect_header: str | None,
    probes: Sequence[Probe],
    request_timeout_s: float,
    deadline_s: float,
) -> LoadResult:
    # The pool is sized to the concurrency so every coroutine keeps its own connection alive;
    # a smaller pool would make coroutines queue inside the client and inflate latencies.
    connector = aiohttp.TCPConnector(
        limit=concurrency, limit_per_host=concurrency, keepalive_timeout=60
    )
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    headers = {"Content-Type": "application/json", **target.headers}
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers, auto_decompress=False
    ) as session:
        if warmup:
            await _drive(session, target, warmup, concurrency, None, deadline_s)
        before = [probe() for probe in probes]
        result = await _drive(session, target, requests, concurrency, collect_header, deadline_s)
        result.probe_deltas = [_delta(b, probe()) for probe, b in zip(probes, before, strict=True)]
    return result


async def _drive(
    session: aiohttp.ClientSession,
    target: Target,
    requests: int,
    concurrency: int,
    collect_header: str | None,
    deadline_s: float,
) -> LoadResult:
    result = LoadResult()
    remaining = requests  # shared by the coroutines; safe, as they interleave only at awaits
    cpu_start = time.process_time()
    start = time.perf_counter()
    deadline = start + deadline_s

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            if time.perf_counter() > deadline:
                return
            remaining -= 1
            await _one_request(session, target, collect_header, result)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    result.elapsed_s = time.perf_counter() - start
    result.client_cpu_s = time.process_time() - cpu_start
    result.unsent = remaining
    return result


async def _one_request(
    session: aiohttp.ClientSession,
    target: Target,
    collect_header: str | None,
    result: LoadResult,
) -> None:
    result.sent += 1
    began = time.perf_counter()
    try:
        async with session.post(target.url, data=target.body) as response:
            payload = await response.read()
            status = response.status
            header = response.headers.get(collect_header) if collect_header else None
    except (aiohttp.ClientError, TimeoutError) as exc:
        _record_error(result, type(exc).__name__, f"{type(exc).__name__}: {exc}")
        return
    took_ms = (time.perf_counter() - began) * 1000.0
    if status != 200:
        _record_error(result, str(status), f"HTTP {status}: {payload[:ERROR_SAMPLE_CHARS]!r}")
        return
    result.outcomes["200"] += 1
    result.latencies_ms.append(took_ms)
    if header is not None:
        try:
            result.header_values.append(float(header))
        except ValueError:
            result.outcomes[f"bad {collect_header}"] += 1


def _record_error(result: LoadResult, outcome: str, sample: str) -> None:
    result.errors += 1
    result.outcomes[outcome] += 1
    if len(result.error_samples) < MAX_ERROR_SAMPLES:
        result.error_samples.append(sample[:ERROR_SAMPLE_CHARS])


def _delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    # A counter absent before (a process born mid-phase) started from zero.
    return {key: value - before.get(key, 0.0) for key, value in after.items()}
