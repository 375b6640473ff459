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
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
from _procs import StartupError

DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_PHASE_DEADLINE_S = 600.0
DEFAULT_QUEUE_WAIT_S = 30.0  # ?wait= of each long poll (the server caps it at its max_wait)
DEFAULT_JOB_TIMEOUT_S = 120.0  # a queued job not ended by then counts as an error
LONG_POLL_GRACE_S = 15.0  # client timeout of one long poll beyond the wait it asked for
JOB_ENDED = frozenset({"completed", "failed", "cancelled", "expired"})
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

    async def send(session: aiohttp.ClientSession, result: LoadResult, measured: bool) -> None:
        header = collect_header if measured else None
        await _one_request(session, target, header, result)

    return asyncio.run(
        _run_phase(
            send,
            headers=target.headers,
            requests=requests,
            concurrency=concurrency,
            warmup=warmup,
            probes=probes,
            request_timeout_s=request_timeout_s,
            deadline_s=deadline_s,
        )
    )


def run_queue_phase(
    submit: Target,
    *,
    requests: int,
    concurrency: int,
    warmup: int = 0,
    wait_s: float = DEFAULT_QUEUE_WAIT_S,
    probes: Sequence[Probe] = (),
    job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
    deadline_s: float = DEFAULT_PHASE_DEADLINE_S,
) -> LoadResult:
    """Like `run_phase`, but each request is a queued job: submit it, then long-poll it.

    `submit` is the `POST /queue/requests` target. A request's latency runs from sending the
    submission to reading the ended job (`GET <job url>?wait=wait_s`, repeated until the job
    ends or `job_timeout_s` passes); it succeeds only when the job ended `completed`.
    """
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be >= 1")

    async def send(session: aiohttp.ClientSession, result: LoadResult, measured: bool) -> None:
        await _one_queued(session, submit, wait_s, job_timeout_s, result)

    return asyncio.run(
        _run_phase(
            send,
            headers=submit.headers,
            requests=requests,
            concurrency=concurrency,
            warmup=warmup,
            probes=probes,
            # One HTTP exchange of a job may be a long poll of up to wait_s.
            request_timeout_s=wait_s + LONG_POLL_GRACE_S,
            deadline_s=deadline_s,
        )
    )


# Sends one request of a phase and records its outcome; `measured` is False during warm-up.
Send = Callable[[aiohttp.ClientSession, LoadResult, bool], Awaitable[None]]


async def _run_phase(
    send: Send,
    *,
    headers: Mapping[str, str],
    requests: int,
    concurrency: int,
    warmup: int,
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
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"Content-Type": "application/json", **headers},
        auto_decompress=False,
    ) as session:
        if warmup:
            await _drive(session, send, warmup, concurrency, deadline_s, measured=False)
        before = [probe() for probe in probes]
        result = await _drive(session, send, requests, concurrency, deadline_s, measured=True)
        result.probe_deltas = [_delta(b, probe()) for probe, b in zip(probes, before, strict=True)]
    return result


async def _drive(
    session: aiohttp.ClientSession,
    send: Send,
    requests: int,
    concurrency: int,
    deadline_s: float,
    *,
    measured: bool,
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
            await send(session, result, measured)

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


async def _one_queued(
    session: aiohttp.ClientSession,
    submit: Target,
    wait_s: float,
    job_timeout_s: float,
    result: LoadResult,
) -> None:
    result.sent += 1
    began = time.perf_counter()
    try:
        status, job = await submit_job(session, submit.url, submit.body)
        if status != 202 or not isinstance(job, dict):
            _record_error(result, str(status), f"submit HTTP {status}: {job!r}")
            return
        job = await await_job(
            session, urljoin(submit.url, job["url"]), wait_s=wait_s, deadline=began + job_timeout_s
        )
    except JobPollError as exc:
        _record_error(result, "poll error", str(exc))
        return
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
        _record_error(result, type(exc).__name__, f"{type(exc).__name__}: {exc}")
        return
    took_ms = (time.perf_counter() - began) * 1000.0
    if job.get("status") != "completed":
        _record_error(result, f"job {job.get('status')}", f"job ended as: {job!s}")
        return
    result.outcomes["completed"] += 1
    result.latencies_ms.append(took_ms)


# --- the queue's two calls, shared by the queue benchmarks -----------------------------------


class JobPollError(RuntimeError):
    """Reading a job's state answered something other than 200."""


async def submit_job(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    """POST a submission; return (HTTP status, parsed JSON body or, failing that, its text)."""
    async with session.post(url, data=body) as response:
        raw = await response.read()
        status = response.status
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw[:ERROR_SAMPLE_CHARS].decode(errors="replace")


async def await_job(
    session: aiohttp.ClientSession, job_url: str, *, wait_s: float, deadline: float
) -> dict[str, Any]:
    """Long-poll `job_url` until the job ends or `deadline` (perf_counter) passes; return it.

    Each poll asks the server to hold it up to `wait_s` (never past the deadline), and the
    server answers as soon as the job ends, so the return comes within a few ms of the end.
    """
    while True:
        left = deadline - time.perf_counter()
        params = {"wait": f"{max(0.0, min(wait_s, left)):.3f}"}
        async with session.get(job_url, params=params) as response:
            raw = await response.read()
            if response.status != 200:
                raise JobPollError(f"poll HTTP {response.status}: {raw[:ERROR_SAMPLE_CHARS]!r}")
        job: dict[str, Any] = json.loads(raw)
        if job.get("status") in JOB_ENDED or time.perf_counter() >= deadline:
            return job


def _record_error(result: LoadResult, outcome: str, sample: str) -> None:
    result.errors += 1
    result.outcomes[outcome] += 1
    if len(result.error_samples) < MAX_ERROR_SAMPLES:
        result.error_samples.append(sample[:ERROR_SAMPLE_CHARS])


def _delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    # A counter absent before (a process born mid-phase) started from zero.
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


async def batch_results(
    session: aiohttp.ClientSession, job_url: str, page: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    """Every result of a batch job, in input order (`?order=input`), `page` per request."""
    after = -1
    while True:
        params = {"order": "input", "after": str(after), "limit": str(page)}
        async with session.get(job_url, params=params) as response:
            raw = await response.read()
            if response.status != 200:
                raise JobPollError(f"read HTTP {response.status}: {raw[:ERROR_SAMPLE_CHARS]!r}")
        body = json.loads(raw)
        for entry in body.get("data", []):
            yield entry
        if not body.get("has_more") or body.get("next_after") is None:
            return
        after = body["next_after"]


def warm_up_queue(gateway_url: str, body: Mapping[str, Any], timeout_s: float = 60.0) -> None:
    """Send one queued job and insist it completes: the first also waits for Celery to start.

    Raises `StartupError` (exit code 2 through `_run.measured`) when it does not.
    """
    target = Target(gateway_url + "/queue/requests", json.dumps(body).encode())
    result = run_queue_phase(target, requests=1, concurrency=1, job_timeout_s=timeout_s)
    if result.errors or result.unsent:
        raise StartupError(f"the first queued job failed: {result.error_samples}")
