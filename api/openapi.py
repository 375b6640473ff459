"""``GET /openapi.json`` (OpenAPI 3.0, made by apispec from the marshmallow schemas) and
``GET /docs`` (Swagger UI).

The document is built from ``app.url_map``: every rule is looked up by endpoint name in
:data:`api.openapi_operations.OPERATIONS`, so a route cannot be left out of it. One that is
not in the table yet still appears, flagged ``x-undocumented`` (and the unit test fails).

Both routes are public, as LiteLLM's proxy serves them (FastAPI's defaults): the document
describes the API, never the config (no model name, no deployment, no key).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify
from werkzeug.routing import Rule

from api import openapi_schemas as out
from api.openapi_operations import COMPONENTS, JSON, OPERATIONS, SSE, Operation, Param, Reply

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.0.3"
SPEC_PATH = "/openapi.json"
DOCS_PATH = "/docs"
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
_IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
_RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

ERROR_RESPONSES: dict[int | str, tuple[str, str]] = {
    400: ("BadRequest", "Malformed JSON, a wrong or missing field (``param`` names it)."),
    401: ("Unauthorized", "A key is required and missing or wrong, or the key may not use "
                          "this model."),
    403: ("Forbidden", "This key may not do this (admin routes take the master key)."),
    404: ("NotFound", "Unknown route, id or model group, or another owner's object."),
    409: ("Conflict", "The object's state forbids it (already ended, Idempotency-Key reused "
                      "with another body)."),
    413: ("PayloadTooLarge", "Body, file or batch over its limit."),
    429: ("RateLimited", "Rate limited: retry after ``Retry-After`` seconds."),
    502: ("UpstreamError", "An upstream failed (or refused batchgate's own credentials)."),
    503: ("Unavailable", "An upstream or the queue is unavailable."),
    504: ("UpstreamTimeout", "No upstream answer within the deployment's timeout."),
    "4XX": ("UpstreamClientError", "An upstream's own 4xx, passed through as it came."),
}
_UNDOCUMENTED = Operation("Not documented yet", "undocumented",
                          {"default": Reply("Any answer.", {})},
                          extra={"x-undocumented": True})


def openapi_path(rule: Rule) -> str:
    """A werkzeug rule as an OpenAPI path: ``/v1/files/<file_id>`` -> ``/v1/files/{file_id}``."""
    return _RULE_ARG.sub(r"{\1}", rule.rule)


def documented_rules(app: Flask) -> Iterable[Rule]:
    """The rules the document covers: all of them."""
    return sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))


def undocumented_endpoints(app: Flask) -> list[str]:
    """Endpoints served by ``app`` with no entry in ``OPERATIONS``."""
    return sorted({r.endpoint for r in documented_rules(app) if r.endpoint not in OPERATIONS})


SSE_EVENT = {"type": "object", "description": "One server-sent event.",
             "properties": {"event": {"type": "string"}, "data": {"type": "string"},
                            "id": {"type": "string"}}}
"""A ``text/event-stream`` body is described event by event (as schemathesis reads it)."""


def _content(media: Iterable[str], schema: Any) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for m in media:
        shown = SSE_EVENT if m == SSE else schema
        content[m] = {"schema": shown} if shown is not None else {}
    return content


def _parameter(param: Param) -> dict[str, Any]:
    return {"name": param.name, "in": param.where, "required": False,
            "description": param.description, "schema": param.schema}


def _operation(op: Operation, rule: Rule, method: str) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): {"description": reply.description,
                      "content": _content(reply.media, reply.schema)}
        for status, reply in op.replies.items()}
    errors = [*op.errors] if op.public else [*op.errors, 401]
    for status in errors:
        responses[str(status)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
    path_params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                   for name in sorted(rule.arguments)]
    doc: dict[str, Any] = {
        "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', openapi_path(rule))}"
                       .rstrip("_"),
        "summary": op.summary, "tags": [op.tag], "responses": responses,
        "parameters": path_params + [_parameter(p) for p in op.params],
        **op.extra}
    if op.description:
        doc["description"] = op.description
    if op.public:
        doc["security"] = []
    if op.body is not None:
        doc["requestBody"] = {"required": True, "content": {op.body_media: {"schema": op.body}}}
    return doc


def _components(spec: APISpec) -> None:
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("api-key", {"type": "apiKey", "in": "header",
                                                 "name": "api-key"})
    for name, schema in COMPONENTS.items():
        spec.components.schema(name, schema=schema)
    for status, (name, description) in ERROR_RESPONSES.items():
        response: dict[str, Any] = {"description": description,
                                    "content": {JSON: {"schema": out.ErrorSchema}}}
        if status == 429:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                   "description": "Seconds to wait."}}
        spec.components.response(name, response)


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every route ``app`` serves."""
    spec = APISpec(title="batchgate", version="0.1.0", openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Queue-based batch gateway for LLM deployments, "
                                        "OpenAI-compatible. Errors are OpenAI's envelope "
                                        "``{error: {message, type, param, code}}``."},
                   security=[{"bearer": []}, {"api-key": []}])
    _components(spec)
    paths: dict[str, dict[str, Any]] = {}
    for rule in documented_rules(app):
        op = OPERATIONS.get(rule.endpoint, _UNDOCUMENTED)
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            paths.setdefault(openapi_path(rule), {})[method.lower()] = _operation(op, rule,
                                                                                  method)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def app_spec() -> dict[str, Any]:
    """This app's document, built on first use (every blueprint is registered by then)."""
    cached: dict[str, Any] | None = current_app.extensions.get("batchgate.openapi")
    if cached is None:
        cached = current_app.extensions["batchgate.openapi"] = build_spec(current_app)
    return cached


@bp.get(SPEC_PATH)
def spec() -> Response:
    """The OpenAPI document."""
    return jsonify(app_spec())


_DOCS_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>batchgate API</title>
<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css">
</head>
<body>
<div id="docs"></div>
<script src="{SWAGGER_UI}/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({{url: "{SPEC_PATH}", dom_id: "#docs", persistAuthorization: true}});
</script>
</body>
</html>
"""


@bp.get(DOCS_PATH)
def docs() -> Response:
    """Swagger UI over ``/openapi.json``; the UI itself comes from a CDN (jsDelivr)."""
    return Response(_DOCS_HTML, content_type="text/html; charset=utf-8")
