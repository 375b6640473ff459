"""Failure drills with real processes: workers SIGKILLed, Redis restarted, the upstream down,
the API killed mid-upload. Each job must end with every item's result exactly once.

Set ``BATCHGATE_DRILL_FIGURES=/path/file.jsonl`` to keep the measured figures (items, kills,
lost, duplicated, seconds) of each drill.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.integration.conftest import SERVER_SECRET_KEY, queue_config
from tests.integration.test_queue import batch, submit, wait_done
from tests.support.drills import Cluster, Figures, RedisServer, tally, wait_until
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import free_port
from tests.support.redis_scan import delete_under, keys_under
from workers.file_service import FileService
from workers.files import FileCatalog
from workers.filestore import LocalDirectoryStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UPSTREAM_LATENCY_MS = 20
ITEMS = 5000
KILLS = 10
OUTAGE_S = 30.0
REDIS_DOWN_S = 3.0
DRILL_LEASE = 2
"""item_lease of the kill drills: a killed worker's chunks come back after 2 s once started,
after 2 x (chunk_size + 1) = 18 s when they were still waiting in its prefetch."""
DRILL_TIMEOUT_S = 240
ENDED = ("completed", "failed", "expired", "cancelled")


class Upstream:
    """The fake upstream on a fixed port, so it can go down and come back at one address."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.current: FakeUpstream | None = None

    def start(self) -> FakeUpstream:
        self.current = FakeUpstream({"defaults": {"latency_ms": UPSTREAM_LATENCY_MS},
                                     "log_size": 100},
                                    args=["--port", str(self.port)]).start()
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None

    def calls(self) -> int:
        assert self.current is not None
        return int(self.current.stats(include_log=False)["requests"])


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    up.start()
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
def live_upstream(upstream: Upstream) -> Upstream:
    """The drills' upstream, running, with its counters cleared."""
    if upstream.current is None:
        upstream.start()
    assert upstream.current is not None
    upstream.current.reset()
    return upstream


@pytest.fixture(scope="module")
def figures() -> Figures:
    path = os.environ.get("BATCHGATE_DRILL_FIGURES")
    return Figures(Path(path) if path else None)


@contextlib.contextmanager
def drill_cluster(upstream: Upstream, redis_url: str, **settings: Any) -> Iterator[Cluster]:
    """A cluster on a fresh key prefix of ``redis_url``, in a temporary folder; its keys
    are deleted afterwards."""
    prefix = f"bgdrill-{uuid.uuid4().hex[:10]}"
    config = queue_config(upstream.base_url, redis_url, prefix, **settings)
    with tempfile.TemporaryDirectory(prefix="batchgate-drill-") as folder:
        try:
            with Cluster(config, Path(folder),
                         env={"BATCHGATE_SECRET_KEY": SERVER_SECRET_KEY}) as cluster:
                yield cluster
        finally:
            with contextlib.suppress(redis.ConnectionError):
                client = redis.Redis.from_url(redis_url, decode_responses=True)
                delete_under(client, prefix)
                client.close()


def completed(api: httpx.Client, job_id: str) -> int:
    counts: dict[str, int] = api.get(f"/queue/response/{job_id}",
                                     params={"limit": 1}).json()["request_counts"]
    return counts["completed"] + counts["failed"]


def reached(api: httpx.Client, job_id: str, goal: int) -> Callable[[], bool]:
    """A condition: the job has ended ``goal`` items."""
    return lambda: completed(api, job_id) >= goal


def ids(n: int) -> list[str]:
    return [f"c{i}" for i in range(n)]


@pytest.mark.timeout(DRILL_TIMEOUT_S)
def test_worker_sigkilled_ten_times_mid_job_every_item_ends_exactly_once(
        live_upstream: Upstream, redis_client: redis.Redis, redis_url: str,
        figures: Figures) -> None:
    step = ITEMS // (KILLS + 2)
    with drill_cluster(live_upstream, redis_url, max_batch_requests=ITEMS,
                       item_lease=DRILL_LEASE) as cluster, \
            httpx.Client(base_url=cluster.base_url, timeout=30) as api:
        cluster.start_api()
        cluster.start_beat()
        worker = cluster.start_worker()
        started = time.monotonic()
        job = submit(api, batch(ITEMS))
        kills: list[int] = []
        for _ in range(KILLS):
            # Each kill lands while the latest worker is mid-work: it has finished some items.
            wait_until(reached(api, job["id"], completed(api, job["id"]) + step), 90,
                       lambda: f"progress after {len(kills)} kills\n{cluster.logs()}")
            kills.append(completed(api, job["id"]))
            worker.kill()
            worker = cluster.start_worker()
        last_kill = time.monotonic()
        done = wait_done(api, job["id"], timeout=150)
        ended = time.monotonic()
        counted = tally(api, redis_client, cluster.keys, job["id"], ids(ITEMS))
    calls = live_upstream.calls()
    figures.record("worker_kill", kills=len(kills), completed_at_kills=kills,
                   seconds=round(ended - started, 1),
                   seconds_after_last_kill=round(ended - last_kill, 1),
                   upstream_calls=calls, **counted.as_dict())
    assert done["status"] == "completed"
    assert len(kills) == KILLS
    assert kills[-1] < ITEMS
    assert counted.as_dict() == {"items": ITEMS, "results": ITEMS, "lost": 0,
                                 "duplicated": 0, "failed": 0}
    assert done["request_counts"]["completed"] == ITEMS
    assert calls >= ITEMS  # at-least-once: a killed worker's unfinished chunks ran again


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/health/readiness").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(DRILL_TIMEOUT_S)
def test_redis_sigkilled_and_restarted_mid_job_nothing_lost_or_duplicated(
        live_upstream: Upstream, figures: Figures) -> None:
    # appendfsync always: every write Redis acknowledged is on disk, so even SIGKILL loses
    # nothing the gateway was told had been stored.
    n = 2000
    with tempfile.TemporaryDirectory(prefix="batchgate-redis-") as folder:
        server = RedisServer(Path(folder), appendfsync="always").start()
        try:
            with drill_cluster(live_upstream, server.url, max_batch_requests=n,
                               item_lease=DRILL_LEASE) as cluster, \
                    httpx.Client(base_url=cluster.base_url, timeout=30) as api, \
                    redis.Redis.from_url(server.url, decode_responses=True) as client:
                cluster.start_api()
                beat = cluster.start_beat()
                worker = cluster.start_worker()
                started = time.monotonic()
                job = submit(api, batch(n))
                wait_until(lambda: completed(api, job["id"]) >= n // 4, 60,
                           lambda: f"progress\n{cluster.logs()}")
                at_kill = completed(api, job["id"])
                server.kill(signal.SIGKILL)
                down_at = time.monotonic()
                # While Redis is down, callers hear 503s they can retry, never a hang or a 500.
                refused = [api.get("/health/readiness"),
                           api.get(f"/queue/response/{job['id']}"),
                           api.post("/queue/requests", json=batch(1))]
                time.sleep(max(0.0, REDIS_DOWN_S - (time.monotonic() - down_at)))  # the outage
                server.start()
                back_at = time.monotonic()
                wait_until(lambda: _answers(api), 30, lambda: f"API back\n{cluster.logs()}")
                done = wait_done(api, job["id"], timeout=120)
                recovered = time.monotonic() - back_at
                counted = tally(api, client, cluster.keys, job["id"], ids(n))
                after = wait_done(api, submit(api, batch(3))["id"], timeout=30)
                alive = worker.alive and beat.alive
                logs = cluster.logs()
        finally:
            server.stop()
    figures.record("redis_restart", signal="SIGKILL", appendfsync="always",
                   completed_at_kill=at_kill, down_seconds=round(back_at - down_at, 1),
                   while_down=[r.status_code for r in refused],
                   seconds_to_complete_after_restart=round(recovered, 1),
                   seconds=round(time.monotonic() - started, 1), **counted.as_dict())
    assert refused[0].status_code == 503, refused[0].text
    for response in refused[1:]:
        assert response.status_code == 503, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert int(response.headers["retry-after"]) >= 1
    assert done["status"] == "completed", logs
    assert counted.as_dict() == {"items": n, "results": n, "lost": 0, "duplicated": 0,
                                 "failed": 0}
    assert after["status"] == "completed"  # API and workers reconnected by themselves
    assert alive, logs  # nobody had to restart the worker or beat


def _failed(api: httpx.Client, job_id: str) -> int:
    counts: dict[str, int] = api.get(f"/queue/response/{job_id}",
                                     params={"limit": 1}).json()["request_counts"]
    return counts["failed"]


def _chat(api: httpx.Client, **extra: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = api.post("/v1/chat/completions", timeout=40, json={
        "model": "gpt-a", "messages": [{"role": "user", "content": "anyone there?"}], **extra})
    return response, time.monotonic() - started


@pytest.mark.timeout(DRILL_TIMEOUT_S)
def test_upstream_down_30s_queued_work_waits_and_sync_callers_get_503(
        live_upstream: Upstream, redis_url: str, redis_client: redis.Redis,
        figures: Figures) -> None:
    n = 2000
    # outage_wait unset: queued items wait as long as their completion window lasts.
    with drill_cluster(live_upstream, redis_url, max_batch_requests=n,
                       outage_wait=None) as cluster, \
            httpx.Client(base_url=cluster.base_url, timeout=30) as api:
        cluster.start_api()
        cluster.start_beat()
        cluster.start_worker()
        job = submit(api, batch(n))
        wait_until(lambda: completed(api, job["id"]) >= n // 4, 60,
                   lambda: f"progress\n{cluster.logs()}")
        live_upstream.stop()
        down_at = time.monotonic()
        at_stop = completed(api, job["id"])
        patient, patient_s = _chat(api)         # retries within its (default) timeout
        hurried, hurried_s = _chat(api, timeout=3)  # cannot wait for the cooldown
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))  # the outage itself
        during = completed(api, job["id"])
        failed_in_outage = _failed(api, job["id"])
        live_upstream.start()
        back_at = time.monotonic()
        first_result = wait_until(lambda: completed(api, job["id"]) > during, 60,
                                  lambda: f"progress after the outage\n{cluster.logs()}")
        done = wait_done(api, job["id"], timeout=120)
        recovered = time.monotonic() - back_at
        counted = tally(api, redis_client, cluster.keys, job["id"], ids(n))
        logs = cluster.logs()
    figures.record("upstream_outage", outage_seconds=round(back_at - down_at, 1),
                   completed_at_stop=at_stop, completed_at_restart=during,
                   sync_status=patient.status_code, sync_seconds=round(patient_s, 2),
                   sync_retry_after=patient.headers.get("retry-after"),
                   sync_short_timeout_status=hurried.status_code,
                   sync_short_timeout_seconds=round(hurried_s, 2),
                   sync_short_timeout_retry_after=hurried.headers.get("retry-after"),
                   seconds_to_first_result_after_restart=round(first_result, 1),
                   seconds_to_complete_after_restart=round(recovered, 1), **counted.as_dict())
    for response, seconds, limit in ((patient, patient_s, 35.0), (hurried, hurried_s, 5.0)):
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert response.json()["error"]["code"] == "upstream_unavailable"
        assert seconds < limit
    assert failed_in_outage == 0, logs
    assert done["status"] == "completed"
    assert counted.as_dict() == {"items": n, "results": n, "lost": 0, "duplicated": 0,
                                 "failed": 0}


class SlowBody:
    """A multipart upload whose body stops halfway until told to go on."""

    def __init__(self, total: int, boundary: str) -> None:
        self.head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
                     f"batch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                     f"filename=\"big.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
                     ).encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.total = total
        self.halfway = threading.Event()
        self.resume = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        chunk = b'{"custom_id": "x", "padding": "' + b"x" * 65400 + b'"}\n'
        sent = 0
        while sent < self.total:
            if sent >= self.total // 2 and not self.halfway.is_set():
                self.halfway.set()
                self.resume.wait(30)
            yield chunk
            sent += len(chunk)
        yield self.tail


def big_batch_file(lines: int, pad: int) -> bytes:
    """A batch input file of ``lines`` chat requests, each padded to about ``pad`` bytes."""
    return "".join(json.dumps({
        "custom_id": f"big-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt-a", "messages": [{"role": "user", "content": f"q{i} " + "y" * pad}]},
    }) + "\n" for i in range(lines)).encode()


def _upload_while_killed(cluster: Cluster, files_dir: Path, total: int) -> BaseException | None:
    """Send ``total`` bytes to POST /v1/files, SIGKILL the API (master and workers) once
    half of them are in the store's temporary body; what the client got."""
    boundary = uuid.uuid4().hex
    body = SlowBody(total, boundary)
    outcome: list[BaseException | httpx.Response] = []

    def send() -> None:
        try:
            outcome.append(httpx.post(
                f"{cluster.base_url}/v1/files", content=iter(body), timeout=60,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert body.halfway.wait(30)
        partials = files_dir / ".partial"
        wait_until(lambda: any(p.stat().st_size > 0 for p in partials.iterdir()), 10,
                   "the upload's bytes reaching the store")
        assert cluster.api is not None
        cluster.api.kill()
    finally:
        body.resume.set()
        sender.join(30)
    assert len(outcome) == 1
    assert not isinstance(outcome[0], httpx.Response), outcome[0].text
    return outcome[0]


@pytest.mark.timeout(DRILL_TIMEOUT_S)
def test_api_killed_mid_upload_leaves_no_file_and_the_upload_works_after_restart(
        live_upstream: Upstream, redis_url: str, redis_client: redis.Redis,
        figures: Figures) -> None:
    total = 64 * 1024 * 1024
    lines = 64
    with tempfile.TemporaryDirectory(prefix="batchgate-files-") as folder, \
            drill_cluster(live_upstream, redis_url, files_dir=folder) as cluster, \
            httpx.Client(base_url=cluster.base_url, timeout=60) as api:
        files_dir = Path(folder)
        cluster.start_api()
        cluster.start_beat()
        cluster.start_worker()
        _upload_while_killed(cluster, files_dir, total)
        killed_at = time.monotonic()
        bodies = [p.name for p in files_dir.iterdir() if p.name != ".partial"]
        records = [k for k in keys_under(redis_client, cluster.prefix)
                   if ":file" in k or ":batch" in k or ":job" in k]
        cluster.start_api()
        restart_s = time.monotonic() - killed_at
        listed = api.get("/v1/files").json()["data"]
        batches = api.get("/v1/batches").json()["data"]
        data = big_batch_file(lines, 256 * 1024)
        uploaded = api.post("/v1/files", files={"file": ("big.jsonl", data)},
                            data={"purpose": "batch"})
        assert uploaded.status_code == 200, uploaded.text
        created = api.post("/v1/batches", json={
            "input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"})
        assert created.status_code == 200, created.text
        batch_id = created.json()["id"]
        wait_until(lambda: api.get(f"/v1/batches/{batch_id}").json()["status"] in ENDED, 90,
                   lambda: f"batch\n{cluster.logs()}")
        ended = api.get(f"/v1/batches/{batch_id}").json()
        # The killed upload's temporary body is invisible; once stale, upkeep removes it.
        partials = list((files_dir / ".partial").iterdir())
        for partial in partials:
            os.utime(partial, (time.time() - 7200, time.time() - 7200))
        FileService(FileCatalog(redis_client, cluster.keys),
                    LocalDirectoryStore(files_dir)).expire_due()
        swept = list((files_dir / ".partial").iterdir())
    figures.record("api_kill_mid_upload", upload_bytes=total, killed_after_bytes=total // 2,
                   bodies_after_kill=len(bodies), records_after_kill=len(records),
                   partials_after_kill=len(partials), partials_after_sweep=len(swept),
                   api_restart_seconds=round(restart_s, 1), rerun_bytes=len(data),
                   rerun_status=ended["status"], rerun_counts=ended["request_counts"])
    assert bodies == []
    assert records == []
    assert listed == []
    assert batches == []
    assert len(partials) == 1
    assert swept == []
    assert ended["status"] == "completed"
    assert ended["request_counts"] == {"total": lines, "completed": lines, "failed": 0}
