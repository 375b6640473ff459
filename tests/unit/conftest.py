"""Fast unit fixtures: the app over an ``httpx.MockTransport`` upstream, no network."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from config.settings import (
    Deployment,
    GeneralSettings,
    Provider,
    RouterSettings,
    Secret,
    Settings,
)
from workers.transports import HttpxTransport
from workers.upstream import UpstreamClient

UPSTREAM_KEY = "sk-upstream-very-secret-0123456789"


def deployment(group: str, id_: str, *, base: str = "http://up.test/v1",
               key: str | None = None, model: str | None = None,
               provider: Provider = Provider.OPENAI) -> Deployment:
    return Deployment(id=id_, model_name=group, provider=provider, model=model or group,
                      api_base=base, api_key=Secret(key) if key else None)


def chat_reply(model: str, text: str = "hi") -> dict[str, object]:
    return {"id": f"chatcmpl-{model}", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@dataclass
class Upstream:
    """A scripted upstream: ``handlers[model]`` answers requests for that upstream model."""

    handlers: dict[str, Callable[[httpx.Request, dict[str, object]], httpx.Response]] = field(
        default_factory=dict)
    seen: list[tuple[httpx.Request, dict[str, object]]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.seen.append((request, body))
        handler = self.handlers.get(str(body["model"]))
        if handler is None:
            return httpx.Response(200, json=chat_reply(str(body["model"])))
        return handler(request, body)


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def make_app(upstream: Upstream) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def build(*deployments: Deployment, master_key: str | None = None,
              max_request_bytes: int | None = None,
              router: RouterSettings | None = None) -> Flask:
        settings = Settings(
            source="<test>",
            deployments=deployments or (deployment("gpt-a", "a1", key=UPSTREAM_KEY),
                                        deployment("gpt-b", "b1"),
                                        deployment("embed", "e1")),
            general=GeneralSettings(master_key=Secret(master_key) if master_key else None),
            router=router or RouterSettings())
        if max_request_bytes is not None:
            from dataclasses import replace
            settings = replace(settings, server=replace(settings.server,
                                                        max_request_bytes=max_request_bytes))
        transport = HttpxTransport(httpx.Client(transport=httpx.MockTransport(upstream)))
        app = create_app(settings, client=UpstreamClient(settings, transport))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["batchgate.gateway"].close()


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()
