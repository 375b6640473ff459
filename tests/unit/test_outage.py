"""An upstream that cannot be reached: queued work waits for it, sync callers hear 503."""

from __future__ import annotations

import time

import httpx
import pytest

from batchgate.errors import UpstreamDownError
from config.settings import QueueSettings, RouterSettings, Settings
from schedulers.fallbacks import RoutingOptions
from schedulers.journey import Journey
from schedulers.memory import MemoryBudgets
from schedulers.scheduler import Scheduler
from schedulers.state import Priority
from tests.unit.conftest import chat_reply, deployment
from workers.answers import Answer
from workers.gateway import Deferred, Gateway
from workers.transports import HttpxTransport
from workers.upstream import UpstreamClient

BODY = {"messages": [{"role": "user", "content": "hi"}]}
NO_OPTIONS = RoutingOptions(fallbacks=None, disabled=False)


class Switch:
    """An upstream that refuses connections until turned on."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if not self.up:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, json=chat_reply("gpt-a"))


def gateway(switch: Switch, *, outage_wait: float | None = None, num_retries: int = 1,
            cooldown_time: float = 5.0) -> Gateway:
    settings = Settings(source="<test>", deployments=(deployment("gpt-a", "a1"),),
                        router=RouterSettings(num_retries=num_retries, allowed_fails=0,
                                              cooldown_time=cooldown_time),
                        queue=QueueSettings(outage_wait=outage_wait))
    client = UpstreamClient(settings, HttpxTransport(httpx.Client(
        transport=httpx.MockTransport(switch))))
    return Gateway(settings, client, Scheduler(settings, MemoryBudgets()))


def queued(gw: Gateway, journey: Journey) -> Answer | Deferred:
    result = gw.run(journey, "chat/completions", dict(BODY), NO_OPTIONS,
                    priority=Priority.BULK, patience=0.0, defer=True)
    assert isinstance(result, Answer | Deferred)  # no streams in the queue
    return result


def test_queued_work_waits_out_an_unreachable_upstream_then_completes() -> None:
    switch = Switch()
    gw = gateway(switch, num_retries=0)
    first = queued(gw, Journey.start("gpt-a"))
    assert isinstance(first, Deferred)
    assert first.journey.down_since is not None
    assert 0 < first.delay <= 5.0
    # Restored from the queue's record, as a later run of the chunk would.
    again = Journey.load(first.journey.dump())
    assert again == first.journey
    switch.up = True
    gw.scheduler.budgets = MemoryBudgets()  # the cooldown is over
    done = queued(gw, again)
    assert isinstance(done, Answer)
    assert done.status == 200


def test_outage_wait_bounds_the_wait_then_the_item_fails_with_503() -> None:
    gw = gateway(Switch(), outage_wait=60.0, num_retries=0)
    journey = Journey.start("gpt-a")
    long_ago = Journey.load(journey.dump().replace('"down_since":null',
                                                   f'"down_since":{time.time() - 61}'))
    done = queued(gw, long_ago)
    assert isinstance(done, Answer)
    assert done.status == 503
    assert done.headers["Retry-After"] == "5"


def test_a_sync_caller_gets_503_with_retry_after_while_the_upstream_is_down() -> None:
    switch = Switch()
    gw = gateway(switch, num_retries=0)
    answer = gw.complete("gpt-a", "chat/completions", dict(BODY))
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    # The deployment now cools down: a caller who cannot wait that long hears 503 at once
    # (it is down), not 429 (busy).
    started = time.monotonic()
    with pytest.raises(UpstreamDownError) as cooling:
        gw.complete("gpt-a", "chat/completions", dict(BODY), timeout=1)
    assert time.monotonic() - started < 1
    assert cooling.value.status == 503
    assert cooling.value.code == "upstream_unavailable"
    assert int(cooling.value.headers()["Retry-After"]) >= 1
    assert switch.calls == 1
