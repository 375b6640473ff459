"""The aiohttp application: the request pipeline and the routes.

Every API request goes the same way, cheapest refusals first::

    read JSON -> auth (401) -> body errors (400) -> context window (400) -> content policy (400)
    -> rpm/tpm (429, immediately) -> injected fault picked -> latency (+ hang) -> fault or answer

Refusals (401, 400, 429 over the limits) answer at once, as real upstreams do; injected 500,
503 and 429 wait out the latency first, like a server that tried. Paths are served with and
without ``/v1``, and under Azure's ``/openai/deployments/{name}/`` (the model defaults to the
deployment name there).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from batchgate.fake_upstream import control, payloads
from batchgate.fake_upstream.behaviour import (
    CONTENT_POLICY,
    Fault,
    has_random_faults,
    pick_fault,
    scan_triggers,
)
from batchgate.fake_upstream.endpoints import ENDPOINTS, Endpoint, Plan
from batchgate.fake_upstream.errors import (
    FakeUpstreamError,
    content_policy_violation,
    context_length_exceeded,
    injected,
    invalid_request,
    method_not_allowed,
    missing_api_key,
    not_found,
    rate_limited,
    wrong_api_key,
)
from batchgate.fake_upstream.inputs import extra_keys, model_name
from batchgate.fake_upstream.ratelimit import ratelimit_headers
from batchgate.fake_upstream.settings import FakeSettings, ModelBehaviour
from batchgate.fake_upstream.state import STATE, FakeState
from batchgate.fake_upstream.stats import CLIENT_CLOSED, Call

MAX_BODY_BYTES = 256 * 1024 * 1024
"""Large on purpose: 2,048 long embedding inputs exceed aiohttp's 1 MiB default."""

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(obj: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """A compact JSON response."""
    return web.Response(body=payloads.dumps(obj), status=status, headers=headers,
                        content_type="application/json")


def error_response(exc: FakeUpstreamError) -> web.Response:
    """The OpenAI error envelope for ``exc``."""
    return json_response(exc.envelope(), exc.status, exc.headers())


def credential(request: web.Request) -> str | None:
    """The API key sent as ``Authorization: Bearer <key>`` (OpenAI) or ``api-key`` (Azure)."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, key = header.partition(" ")
        return key.strip() if scheme.lower() == "bearer" else header
    return request.headers.get("api-key")


def check_auth(behaviour: ModelBehaviour, key: str | None) -> None:
    """401 unless the model needs no key or ``key`` is its key."""
    if behaviour.api_key is None:
        return
    if not key:
        raise missing_api_key()
    if key != behaviour.api_key:
        raise wrong_api_key()


def parse_body(raw: bytes) -> tuple[dict[str, Any], FakeUpstreamError | None]:
    """The JSON object in ``raw``, or ``{}`` and the 400 to answer once auth has passed."""
    try:
        body = json.loads(raw)
    except ValueError:  # also UnicodeDecodeError
        return {}, invalid_request("We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return {}, invalid_request("The request body must be a JSON object.")
    return body, None


async def answer(request: web.Request, state: FakeState, call: Call, endpoint: Endpoint,
                 key: str | None) -> web.StreamResponse:
    """Run the pipeline of this module's docstring for one POST request."""
    body, problem = parse_body(await request.read())
    if "model" not in body:
        body["model"] = request.match_info.get("deployment", endpoint.default_model)
    model = body["model"] if isinstance(body["model"], str) else None
    call.model = model
    behaviour = state.settings.behaviour(model)
    check_auth(behaviour, key)
    if problem is not None:
        raise problem
    model = model_name(body)
    call.extra_keys = tuple(extra_keys(body, endpoint.known_keys))
    plan = endpoint.planner(body, model, behaviour, state.serial(), int(call.t))
    call.inputs = plan.inputs
    triggers = scan_triggers(plan.texts, behaviour.content_policy_trigger)
    window = behaviour.context_window
    if window is not None and plan.context_tokens > window:
        raise context_length_exceeded(window, plan.context_tokens, plan.context_param)
    if plan.policed and CONTENT_POLICY in triggers:
        raise content_policy_violation()
    admission = state.admit(model, behaviour, plan.charge)
    headers = ratelimit_headers(admission)
    if not admission.admitted:
        raise rate_limited(model, admission, headers)
    fault = None
    if triggers or has_random_faults(behaviour):
        fault = pick_fault(triggers, behaviour, state.rng.random())
    if fault is Fault.HANG:
        await asyncio.sleep(behaviour.hang_s)
    delay = behaviour.latency_ms
    if behaviour.jitter_ms:
        delay += state.rng.uniform(0, behaviour.jitter_ms)
    if delay > 0:  # a zero sleep still costs an event-loop turn
        await asyncio.sleep(delay / 1000)
    if fault is not None:
        raise injected(fault, behaviour.retry_after_s, headers)
    return await respond(request, plan, headers, behaviour.stream_interval_ms)


async def respond(request: web.Request, plan: Plan, headers: dict[str, str],
                  interval_ms: float) -> web.StreamResponse:
    """Send the planned answer: one JSON body, or an SSE stream ending in ``[DONE]``."""
    if plan.events is None:
        return json_response(plan.body(), headers=headers)
    response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    events = plan.events()
    if interval_ms <= 0:
        await response.write(payloads.sse(events))  # one write: cheapest for the server
    else:
        for event in events:
            await response.write(payloads.sse_event(event))
            await asyncio.sleep(interval_ms / 1000)
        await response.write(payloads.SSE_DONE)
    await response.write_eof()
    return response


def api_handler(endpoint: Endpoint | None) -> Handler:
    """Wrap the pipeline with accounting: in-flight, status counts, the request log."""
    name = endpoint.name if endpoint is not None else "models"

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        key = credential(request)
        call = state.stats.begin(time.time(), name, key)
        response: web.StreamResponse
        try:
            try:
                if endpoint is None:
                    response = list_models(request, state, key)
                else:
                    response = await answer(request, state, call, endpoint, key)
            except FakeUpstreamError as exc:
                response = error_response(exc)
            except web.HTTPException as exc:  # from aiohttp itself, e.g. 413 on a huge body
                response = error_response(FakeUpstreamError(
                    exc.status, exc.reason, type="invalid_request_error"))
            except Exception:  # a bug here must still answer in the envelope, never a trace
                logger.exception("fake upstream failed on %s", request.path)
                response = error_response(FakeUpstreamError(
                    500, "internal error in the fake upstream", type="server_error"))
            call.status = response.status
            return response
        except asyncio.CancelledError:
            call.status = CLIENT_CLOSED
            raise
        finally:
            state.stats.end(call)

    return handle


def list_models(request: web.Request, state: FakeState, key: str | None) -> web.Response:
    """``GET /v1/models`` (every configured model) and ``GET /v1/models/{model}`` (any name).

    No model is named in the request, so the ``defaults`` block's ``api_key`` guards these.
    """
    check_auth(state.settings.defaults, key)
    wanted = request.match_info.get("model")
    if wanted is not None:
        return json_response(payloads.model_object(wanted, state.created))
    return json_response(payloads.model_list(state.settings.models, state.created))


async def unknown_route(request: web.Request) -> web.Response:
    """404 (or 405 on a known path) in the OpenAI envelope rather than aiohttp's plain text."""
    known = request.app[KNOWN_PATHS]
    exc = (method_not_allowed(request.method, request.path) if request.path in known
           else not_found(request.path))
    return error_response(exc)


KNOWN_PATHS = web.AppKey("known_paths", frozenset[str])


def build_app(settings: FakeSettings) -> web.Application:
    """The fake upstream as an aiohttp application, for :func:`serve` or in-process use."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE] = FakeState(settings)
    known: set[str] = set()
    for prefix in ("/v1", ""):
        for endpoint in ENDPOINTS:
            app.router.add_post(f"{prefix}/{endpoint.name}", api_handler(endpoint))
            known.add(f"{prefix}/{endpoint.name}")
        app.router.add_get(f"{prefix}/models", api_handler(None))
        app.router.add_get(prefix + "/models/{model}", api_handler(None))
        known.add(f"{prefix}/models")
    for endpoint in ENDPOINTS:
        app.router.add_post(f"/openai/deployments/{{deployment}}/{endpoint.name}",
                            api_handler(endpoint))
    control.add_routes(app)
    app[KNOWN_PATHS] = frozenset(known | control.PATHS)
    app.router.add_route("*", "/{tail:.*}", unknown_route)
    return app
