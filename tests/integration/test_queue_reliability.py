"""Webhooks, a worker killed mid-job, and secrets kept out of Redis, messages and logs."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks.webhooks import Webhook

from tests.integration.conftest import SERVER_SECRET_KEY, UPSTREAM_KEY, queue_service
from tests.integration.test_queue import HELLO, batch, submit, wait_done
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import ServiceProcess
from tests.support.redis_scan import dump_values
from workers.webhooks.signing import new_secret

pytestmark = pytest.mark.integration


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records what it gets; answers from ``statuses``."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/batchgate?t=tok"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"got {len(self.requests)} of {count} webhooks"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def webhook_state(api: httpx.Client, job_id: str, until: str) -> dict[str, Any]:
    """The job's webhook state once it reaches ``until`` (or as it is after ~5 s)."""
    for _ in range(50):
        state: dict[str, Any] = api.get(f"/queue/response/{job_id}").json()["webhook"]
        if state["state"] == until:
            break
        time.sleep(0.1)
    return state


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_webhook_is_signed_and_verifies_with_the_standard_library(
        api: httpx.Client, receiver: Receiver) -> None:
    secret = new_secret()
    job = submit(api, {"model": "gpt-a", "messages": HELLO,
                       "webhook": {"url": receiver.url, "secret": secret}})
    assert "secret" not in job["webhook"]
    wait_done(api, job["id"])
    receiver.wait_for(1)
    headers, body = receiver.requests[0]
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "job.completed"
    assert payload["data"] == {"id": job["id"], "status": "completed", "request_counts": {
        "total": 1, "completed": 1, "failed": 0, "cancelled": 0, "expired": 0}}
    state = webhook_state(api, job["id"], "delivered")
    assert state["state"] == "delivered"
    assert state["attempts"] == 1
    assert state["url_host"] == "127.0.0.1"


def test_webhook_secret_is_made_and_shown_once_when_not_given(
        api: httpx.Client, receiver: Receiver) -> None:
    job = submit(api, {"model": "gpt-a", "messages": HELLO, "webhook": {"url": receiver.url}})
    secret = job["webhook"]["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in api.get(f"/queue/response/{job['id']}").json()["webhook"]
    receiver.wait_for(1)
    Webhook(secret).verify(receiver.requests[0][1], receiver.requests[0][0])


def test_failed_webhook_deliveries_are_retried_with_the_same_message_id(
        api: httpx.Client) -> None:
    receiver = Receiver(statuses=[500, 503])
    try:
        secret = new_secret()
        job = submit(api, {"model": "gpt-a", "messages": HELLO,
                           "webhook": {"url": receiver.url, "secret": secret}})
        receiver.wait_for(3)
        ids = {headers["webhook-id"] for headers, _ in receiver.requests}
        assert len(ids) == 1
        for headers, body in receiver.requests:
            Webhook(secret).verify(body, headers)
        state = webhook_state(api, job["id"], "delivered")
        assert state["state"] == "delivered"
        assert state["attempts"] == 3
    finally:
        receiver.close()


def test_webhook_gives_up_on_410(api: httpx.Client) -> None:
    receiver = Receiver(statuses=[410])
    try:
        job = submit(api, {"model": "gpt-a", "messages": HELLO,
                           "webhook": {"url": receiver.url}})
        receiver.wait_for(1)
        state = webhook_state(api, job["id"], "failed")
        assert state["state"] == "failed"
        assert state["last_status"] == 410
        time.sleep(1.5)
        assert len(receiver.requests) == 1
    finally:
        receiver.close()


def test_worker_killed_mid_job_every_item_ends_exactly_once(
        fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str) -> None:
    fake_upstream.reset()
    with queue_service(fake_upstream, redis_client, redis_url, queue_workers=0) as gw:
        beat = ServiceProcess(gw, "beat")
        first = ServiceProcess(gw, "worker")
        second = None
        try:
            with httpx.Client(base_url=gw.base_url, timeout=30) as api:
                job = submit(api, batch(1000, model="slow"))
                deadline = time.monotonic() + 30
                while api.get(f"/queue/response/{job['id']}").json()[
                        "request_counts"]["completed"] < 50:
                    assert time.monotonic() < deadline, first.log()
                    time.sleep(0.05)
                first.kill()
                killed_at = api.get(f"/queue/response/{job['id']}").json()["request_counts"]
                assert killed_at["completed"] < 1000
                second = ServiceProcess(gw, "worker")
                done = wait_done(api, job["id"], timeout=90)
            prefix = gw.prefix  # type: ignore[attr-defined]
            results = redis_client.hgetall(f"{prefix}:job:{{{job['id']}}}:results")
            order = redis_client.lrange(f"{prefix}:job:{{{job['id']}}}:done", 0, -1)
        finally:
            for process in (first, second, beat):
                if process is not None:
                    process.stop()
    assert done["status"] == "completed"
    assert done["request_counts"]["completed"] == 1000
    assert len(results) == 1000
    assert len(order) == len(set(order)) == 1000
    # At-least-once execution: the killed worker's unfinished chunks ran again.
    assert fake_upstream.stats()["by_model"]["slow-model"] >= 1000


def test_secrets_never_reach_redis_celery_messages_or_logs(
        fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str,
        receiver: Receiver) -> None:
    webhook_secret = new_secret()
    with queue_service(fake_upstream, redis_client, redis_url, queue_workers=0) as gw, \
            httpx.Client(base_url=gw.base_url, timeout=30) as api:
        prefix = gw.prefix  # type: ignore[attr-defined]
        job = submit(api, {"model": "keyed", "messages": HELLO,
                           "webhook": {"url": receiver.url, "secret": webhook_secret}})
        queued = dump_values(redis_client, prefix)
        assert "batchgate.run_chunk" in queued  # the Celery message itself was scanned
        worker = ServiceProcess(gw, "worker")
        beat = ServiceProcess(gw, "beat")
        try:
            done = wait_done(api, job["id"])
            receiver.wait_for(1)
            finished = dump_values(redis_client, prefix)
            logs = gw.log() + worker.log() + beat.log()
        finally:
            worker.stop()
            beat.stop()
    assert done["status"] == "completed"
    for secret in (UPSTREAM_KEY, webhook_secret, SERVER_SECRET_KEY):
        for text in (queued, finished, logs):
            assert secret not in text
    assert "webhook_secret" not in finished  # dropped once deliveries ended
