"""OpenAI-compatible synchronous routes: chat, completions, embeddings, moderations, models.

Each route is served at ``/v1/<endpoint>`` and at ``/<endpoint>`` (LiteLLM's proxy does the
same). ``"model": "a,b"`` sends the request to every named group in parallel and answers a
JSON array in request order; a failed model's slot holds
``{"model": "<group>", "status_code": <int>, "error": {...OpenAI error object...}}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request

from api.auth import caller, caller_owner, caller_principal, check_models
from batchgate.errors import BatchgateError, PayloadTooLargeError, RequestError
from workers import json_text
from workers.answers import Answer
from workers.credentialed_client import from_body
from workers.gateway import Gateway
from workers.schemas import SCHEMAS
from workers.upstream import UpstreamStream
from workers.usage import Usage, answer_usage
from workers.virtual_keys import OWNER_PREFIX

bp = Blueprint("openai", __name__)

TIMEOUT_HEADER = "x-litellm-timeout"
MAX_CALLER_TIMEOUT = 3600.0
CALLER_TIMEOUT_SHARE = 0.9
"""Of the caller's timeout, the share batchgate may spend waiting: the answer must arrive
before the caller gives up."""

_BAD_JSON = ("We could not parse the JSON body of your request. The body must be a JSON "
             "object, sent with 'Content-Type: application/json'.")


def gateway() -> Gateway:
    """This app's gateway (built by the app factory)."""
    gw: Gateway = current_app.extensions["batchgate.gateway"]
    return gw


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    raw = request.get_data(cache=False)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # werkzeug ends a chunked body at the limit without a word: the rest was never read.
        raise PayloadTooLargeError(f"The request body is larger than {limit} bytes.")
    if not raw.strip():
        raise RequestError(f"{_BAD_JSON} The body is empty.", code="invalid_json")
    try:
        body = json_text.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError included: OpenAI takes UTF-8 only
        raise RequestError(f"{_BAD_JSON} ({exc})", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError(_BAD_JSON, code="invalid_json")
    return body


def _headers(answers: list[Answer], start: float) -> dict[str, str]:
    upstream = max((a.upstream_elapsed for a in answers), default=0.0)
    overhead_ms = max(0.0, (time.perf_counter() - start - upstream) * 1000)
    return {
        "x-batchgate-model-group": ",".join(a.group for a in answers),
        "x-batchgate-deployment": ",".join(a.deployment.id if a.deployment else ""
                                           for a in answers),
        "x-batchgate-overhead-ms": f"{overhead_ms:.2f}",
    }


def _single(answer: Answer, start: float) -> Response:
    headers = {k: v for k, v in answer.headers.items() if k != "content-type"}
    headers.update(answer.routing_headers)
    headers.update(_headers([answer], start))
    return Response(answer.body, status=answer.status, headers=headers,
                    content_type=answer.headers.get("content-type", "application/json"))


def _slot(answer: Answer) -> bytes:
    if answer.ok:
        return answer.body
    try:
        error = json.loads(answer.body)["error"]
    except (ValueError, KeyError, TypeError):
        error = {"message": answer.body.decode("utf-8", "replace"), "type": "upstream_error",
                 "param": None, "code": None}
    return json.dumps({"model": answer.group, "status_code": answer.status, "error": error}
                      ).encode()


def _many(answers: list[Answer], start: float) -> Response:
    body = b"[" + b",".join(_slot(a) for a in answers) + b"]"
    return Response(body, status=200, headers=_headers(answers, start),
                    content_type="application/json")


def _sse_error(error: BatchgateError) -> bytes:
    return b"data: " + json.dumps(error.envelope()).encode() + b"\n\n"


def _stream(stream: UpstreamStream, start: float) -> Response:
    def relay() -> Iterator[bytes]:
        try:
            yield from stream.iter_bytes()
        except BatchgateError as exc:
            # The status line is gone already; tell the client in-band, as OpenAI does.
            yield _sse_error(exc)

    answer = Answer(stream.deployment.model_name, stream.status, b"", stream.headers,
                    stream.deployment, stream.elapsed)
    headers = {k: v for k, v in stream.headers.items() if k != "content-type"}
    headers.update(stream.routing_headers)
    headers.update(_headers([answer], start))
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
    response = Response(relay(), status=stream.status, headers=headers,
                        content_type=stream.headers.get("content-type", "text/event-stream"))
    response.call_on_close(stream.close)
    return response


def caller_timeout(body: dict[str, Any]) -> float | None:
    """How long the caller will wait, when it says: LiteLLM's ``timeout`` body field (taken
    out of the body) or ``x-litellm-timeout`` header. Waits for room and retries stay within
    it, so the caller hears a 429 with ``Retry-After`` instead of timing out."""
    raw = body.pop("timeout", None)
    if raw is None:
        raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise RequestError("'timeout' must be a number of seconds", param="timeout") from None
    if isinstance(raw, bool) or not 0 < seconds <= MAX_CALLER_TIMEOUT:
        raise RequestError(f"'timeout' must be between 0 and {MAX_CALLER_TIMEOUT:.0f} seconds",
                           param="timeout")
    return seconds * CALLER_TIMEOUT_SHARE


def proxy(endpoint: str) -> Response:
    """Validate the body, route it to its model group(s), answer like OpenAI would."""
    start = time.perf_counter()
    body = read_json_object()
    timeout = caller_timeout(body)
    loaded = SCHEMAS[endpoint].load(body)
    gw = from_body(gateway(), body)  # a caller's own api_key/api_base, never forwarded as JSON
    groups = gw.resolve(loaded["model"])
    check_models(groups)
    principal = caller_principal()
    if len(groups) > 1:
        if body.get("stream") is True:
            raise RequestError("'stream': true cannot be combined with several models",
                               param="stream")
        answers = gw.complete_many(groups, endpoint, body, timeout, principal)
        _count(answers)
        return _many(answers, start)
    if body.get("stream") is True:
        result = gw.open_stream(groups[0], endpoint, body, timeout, principal)
        if isinstance(result, UpstreamStream):
            _count([])
            return _stream(result, start)
        _count([result])
        return _single(result, start)
    answer = gw.complete(groups[0], endpoint, body, timeout, principal)
    _count([answer])
    return _single(answer, start)


def _count(answers: list[Answer]) -> None:
    """Count a virtual key's usage (a stream counts as one request: its tokens are not read)."""
    owner = caller_owner()
    if not owner.startswith(OWNER_PREFIX):
        return
    usage = sum((answer_usage(a.body, answered=a.deployment is not None) for a in answers),
                Usage(requests=0 if answers else 1))
    current_app.extensions["batchgate.runtime"].key_store.add_usage(owner, usage)


def _route(endpoint: str) -> None:
    def view() -> Response:
        return proxy(endpoint)

    name = endpoint.replace("/", "_")
    for prefix in ("/v1", ""):
        bp.add_url_rule(f"{prefix}/{endpoint}", f"{name}{prefix.replace('/', '_')}", view,
                        methods=["POST"])


for _endpoint in SCHEMAS:
    _route(_endpoint)


@bp.get("/v1/models")
@bp.get("/models")
def list_models() -> Response:
    """The model groups (and visible aliases) callers may name, OpenAI's list shape."""
    settings = gateway().settings
    created = current_app.extensions["batchgate.started_at"]
    names = list(settings.groups()) + [a for a in settings.router.model_group_alias
                                       if a not in settings.groups()]
    key = caller().key
    if key is not None and key.models:
        names = [n for n in names if settings.resolve_group(n) in key.models]
    data = [{"id": n, "object": "model", "created": created, "owned_by": "batchgate"}
            for n in names]
    return Response(json.dumps({"object": "list", "data": data}),
                    content_type="application/json")
