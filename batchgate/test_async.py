"""``batchgate test-async``: the queue's version of LiteLLM's ``litellm --test_async``.

Submits N chat requests to ``POST /queue/requests`` at once (at most ``--concurrency`` in
flight), long-polls each job to its end and reports how long that took and how many succeeded.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import click
import httpx

LONG_POLL_S = 30.0
JOB_ENDED = frozenset({"completed", "failed", "cancelled", "expired"})
MAX_FAILURES_SHOWN = 5


def p50_p95(values: list[float]) -> tuple[float, float]:
    """Median and 95th percentile, linearly interpolated (numpy's default method)."""
    if len(values) < 2:  # quantiles() needs two points before Python 3.13
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return cuts[9], cuts[18]


async def _first_model(client: httpx.AsyncClient) -> str:
    response = await client.get("/v1/models")
    response.raise_for_status()
    models: list[dict[str, Any]] = response.json()["data"]
    if not models:
        raise click.ClickException("the gateway serves no models; give --model")
    return str(models[0]["id"])


async def _one(client: httpx.AsyncClient, body: dict[str, Any], deadline: float) -> float | str:
    """Submit one job and long-poll it to its end: its latency in ms, or why it failed."""
    began = time.monotonic()
    response = await client.post("/queue/requests", json=body)
    job: dict[str, Any] = response.json() if response.status_code == 202 else {}
    while job and job["status"] not in JOB_ENDED:
        wait = min(LONG_POLL_S, deadline - time.monotonic())
        if wait <= 0:
            return f"{job['id']}: still {job['status']} at the timeout"
        response = await client.get(job["url"], params={"wait": f"{wait:.1f}"},
                                    timeout=wait + 10)
        job = response.json() if response.status_code == 200 else {}
    if not job:
        return f"HTTP {response.status_code}: {response.text[:200].strip()}"
    if job["status"] != "completed":
        return f"{job['id']}: {job['status']}: {job.get('error')}"
    return (time.monotonic() - began) * 1000


async def _gated(client: httpx.AsyncClient, body: dict[str, Any], gate: asyncio.Semaphore,
                 deadline: float) -> float | str:
    async with gate:
        try:
            return await _one(client, body, deadline)
        except (httpx.HTTPError, ValueError, KeyError) as exc:  # ValueError: not JSON
            return f"{type(exc).__name__}: {exc}"


async def _run(url: str, num_requests: int, model: str | None, concurrency: int,
               api_key: str | None, timeout: float) -> tuple[list[float | str], float, str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(30.0)) as client:
        model = model or await _first_model(client)
        gate, began = asyncio.Semaphore(concurrency), time.monotonic()
        outcomes = await asyncio.gather(*(
            _gated(client, {"model": model, "messages": [
                {"role": "user", "content": f"test-async request {n + 1} of {num_requests}"}]},
                   gate, began + timeout)
            for n in range(num_requests)))
        return outcomes, time.monotonic() - began, model


@click.command("test-async")
@click.option("--url", default="http://127.0.0.1:4000", envvar="BATCHGATE_URL",
              show_envvar=True, show_default=True, help="Base URL of the gateway.")
@click.option("--num-requests", "-n", type=click.IntRange(min=1), default=10, show_default=True,
              help="Queued chat requests to send.")
@click.option("--model", help="Model group [default: the first one GET /v1/models lists].")
@click.option("--concurrency", type=click.IntRange(min=1),
              help="Requests in flight at most [default: all of them].")
@click.option("--api-key", envvar="BATCHGATE_MASTER_KEY", show_envvar=True,
              help="Sent as 'Authorization: Bearer <key>'.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0,
              show_default=True, help="Seconds for the whole test.")
def test_async_command(url: str, num_requests: int, model: str | None,
                       concurrency: int | None, api_key: str | None, timeout: float) -> None:
    """Send N queued chat requests at once, wait for every result; exit 1 if any failed."""
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--url")
    try:
        outcomes, elapsed, model = asyncio.run(_run(url.rstrip("/"), num_requests, model,
                                                 concurrency or num_requests, api_key, timeout))
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot list models at {url}: {exc}") from None
    latencies = [o for o in outcomes if isinstance(o, float)]
    failures = [o for o in outcomes if isinstance(o, str)]
    ok, failed = len(latencies), len(failures)
    click.echo(f"{num_requests} queued requests to {model!r} at {url}: {elapsed:.2f} s elapsed")
    click.echo(f"succeeded {ok}, failed {failed}")
    if ok:
        p50, p95 = p50_p95(latencies)
        click.echo(f"submit->result latency: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    for failure in failures[:MAX_FAILURES_SHOWN]:
        click.echo(f"  failed: {failure}", err=True)
    sys.exit(0 if failed == 0 else 1)
