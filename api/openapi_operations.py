"""The table of documented routes: one :class:`Operation` per Flask endpoint.

**Adding a route?** Add its endpoint name (``"<blueprint>.<view function>"``, as in
``app.url_map``) to :data:`OPERATIONS`. Every path the view is served at (``/v1/files`` and
``/files``, say) gets the same operation. ``tests/unit/test_openapi.py`` fails for a route
missing here, and until it is added ``/openapi.json`` shows it as ``x-undocumented``.

Request and response bodies are marshmallow schemas (the request ones are those the routes
validate with); error statuses name a shared response with the OpenAI error envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from api import openapi_schemas as out
from api.key_schemas import KeyDeleteSchema, KeyGenerateSchema, KeyUpdateSchema
from api.queue_schemas import BatchCreateSchema, SubmissionSchema
from workers.schemas import (
    ChatCompletionSchema,
    CompletionSchema,
    EmbeddingSchema,
    ModerationSchema,
)

JSON = "application/json"
SSE = "text/event-stream"
SchemaRef = type[Schema] | dict[str, Any]
"""A marshmallow schema class, or a raw OpenAPI schema (for ``anyOf`` and the like)."""


def ref(name: str) -> dict[str, str]:
    """A reference to a named component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Reply:
    """A success response: its body schema and media types (None: no body schema). A
    ``text/event-stream`` body is always described as one event."""

    description: str
    schema: SchemaRef | None = None
    media: tuple[str, ...] = (JSON,)


@dataclass(frozen=True)
class Param:
    """A query (or header) parameter."""

    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"


@dataclass(frozen=True)
class Operation:
    """How one endpoint is documented. ``errors``: statuses answered with the error envelope
    (401 is added to every operation that is not ``public``)."""

    summary: str
    tag: str
    replies: Mapping[int | str, Reply]
    errors: tuple[int | str, ...] = ()
    body: SchemaRef | None = None
    body_media: str = JSON
    params: tuple[Param, ...] = ()
    public: bool = False
    """Served without a key (``security: []``)."""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _limit(default: int, maximum: int) -> Param:
    return Param("limit", {"type": "integer", "minimum": 1, "maximum": maximum,
                           "default": default}, "Page size.")


_AFTER_ID = Param("after", {"type": "string"}, "List after this id (the last one of the "
                                               "previous page).")
_AFTER_POS = Param("after", {"type": "integer", "minimum": -1},
                   "Results after this position (``next_after`` of the previous page).")

# -- the sync routes ---------------------------------------------------------------------

_SYNC_REPLY = Reply(
    "The upstream's answer; a JSON array, one slot per model, for ``\"model\": \"a,b\"``; "
    "server-sent events for ``stream: true``.",
    {"anyOf": [ref("UpstreamResponse"),
               {"type": "array", "items": {"anyOf": [ref("UpstreamResponse"),
                                                      ref("CompareSlotError")]}}]},
    (JSON, SSE))
_SYNC_ERRORS: tuple[int | str, ...] = (400, 404, 413, 429, 502, 503, 504, "4XX")
_SYNC = {
    "chat/completions": ("Create a chat completion", ChatCompletionSchema),
    "completions": ("Create a completion", CompletionSchema),
    "embeddings": ("Create embeddings", EmbeddingSchema),
    "moderations": ("Classify input with a moderation model", ModerationSchema),
}


def _sync_operations() -> dict[str, Operation]:
    ops: dict[str, Operation] = {}
    for endpoint, (summary, schema) in _SYNC.items():
        name = endpoint.replace("/", "_")
        op = Operation(summary, "openai", {200: _SYNC_REPLY}, _SYNC_ERRORS, body=schema,
                       description="Routed to a deployment of the named model group, with "
                                   "retries, fallbacks and rate budgets. An upstream's 4xx "
                                   "passes through as it came.")
        ops[f"openai.{name}_v1"] = ops[f"openai.{name}"] = op
    return ops


# -- the queue ----------------------------------------------------------------------------

_SUBMISSION_BODY: dict[str, Any] = {"anyOf": [
    {"allOf": [ref("QueueSubmission"), ref(name)]}
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest",
                 "ModerationRequest")
] + [{"allOf": [ref("QueueSubmission"), {"type": "object", "required": ["requests"]}]}]}


def _submit(summary: str, reply: Reply) -> Operation:
    return Operation(
        summary, "queue", {202: reply}, (400, 404, 409, 413, 503), body=_SUBMISSION_BODY,
        params=(Param("Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": 255},
                      "The same key and body give back the same job; another body is a 409.",
                      where="header"),),
        description="Any sync request body (``endpoint`` given, or inferred from "
                    "``messages``/``prompt``/``input``), or a batch (``requests``), plus the "
                    "job's ``metadata``, ``webhook``, ``priority`` and ``completion_window``.")


_JOB_RESULT = {"anyOf": [ref("QueueJobResults"), ref("LegacyPoll")]}

_QUEUE: dict[str, Operation] = {
    "queue.submit_request": _submit(
        "Queue a request, a comparison or an inline batch",
        Reply("The job, queued.", out.QueueJobSchema)),
    "queue.submit_request_legacy": _submit(
        "Queue a request (LiteLLM's old ``--use_queue`` path)",
        Reply("The job, plus ``eta`` and a ``url`` answering in LiteLLM's shape.",
              out.QueueJobSchema)),
    "queue.job_response": Operation(
        "A job with its results (long-polls with ``?wait=``)", "queue",
        {200: Reply("The job and its results (``?format=litellm``: LiteLLM's shape).",
                    _JOB_RESULT)},
        (400, 404),
        params=(Param("wait", {"type": "number", "minimum": 0},
                      "Seconds to wait for the job to end (capped by ``max_wait``)."),
                Param("format", {"type": "string", "enum": ["litellm"]},
                      "Answer in LiteLLM's old queue shape."),
                Param("order", {"type": "string", "enum": ["input"]},
                      "A batch's results in input order (default: completion order)."),
                _AFTER_POS, _limit(100, 1000))),
    "queue.list_jobs": Operation(
        "The caller's jobs, newest first", "queue",
        {200: Reply("A page of jobs.", out.QueueJobListSchema)}, (400, 404),
        params=(_limit(20, 100), _AFTER_ID,
                Param("status", {"type": "string", "enum": out.JOB_STATUSES},
                      "Only jobs with this status."))),
    "queue.cancel_job": Operation(
        "Cancel a job (finished items are kept)", "queue",
        {200: Reply("The job, cancelling or cancelled.", out.QueueJobSchema)},
        (404, 409)),
    "queue.job_events": Operation(
        "A job's events as server-sent events", "queue",
        {200: Reply("``job`` snapshot, ``item.<outcome>`` per item, ``job.<status>`` at the "
                    "end.", media=(SSE,))},
        (404,)),
}

# -- files and batches --------------------------------------------------------------------

_FILES: dict[str, Operation] = {
    "files.upload": Operation(
        "Upload a batch input file", "files", {200: Reply("The file object.", out.FileSchema)},
        (400, 413), body=out.FileUploadSchema, body_media="multipart/form-data",
        description="Streamed to the file store; stored under its generated id, never under "
                    "the client's filename."),
    "files.list_files": Operation(
        "The caller's files", "files", {200: Reply("A page of files.", out.FileListSchema)},
        (400, 404),
        params=(_limit(10_000, 10_000), _AFTER_ID,
                Param("order", {"type": "string", "enum": ["asc", "desc"]}, "By created_at."),
                Param("purpose", {"type": "string"}, "Only files with this purpose."))),
    "files.retrieve": Operation(
        "A file object", "files", {200: Reply("The file object.", out.FileSchema)},
        (404,)),
    "files.content": Operation(
        "A file's bytes", "files",
        {200: Reply("The bytes, streamed.", {"type": "string", "format": "binary"},
                    ("application/octet-stream",))},
        (404,)),
    "files.delete": Operation(
        "Delete a file", "files", {200: Reply("Deleted.", out.FileDeletedSchema)}, (404,)),
}

_BATCH = Reply("The batch object.", out.BatchSchema)
_BATCHES: dict[str, Operation] = {
    "batches.create": Operation(
        "Create a batch from an uploaded file", "batches", {200: _BATCH},
        (400, 413, 503), body=BatchCreateSchema),
    "batches.retrieve": Operation("A batch", "batches", {200: _BATCH}, (404,)),
    "batches.list_batches": Operation(
        "The caller's batches, newest first", "batches",
        {200: Reply("A page of batches.", out.BatchListSchema)}, (400, 404),
        params=(_limit(20, 100), _AFTER_ID)),
    "batches.cancel": Operation(
        "Cancel a batch (finished lines are kept)", "batches", {200: _BATCH}, (404, 409)),
    "batches.results": Operation(
        "Finished lines so far, in completion order (extension)", "batches",
        {200: Reply("A page of output-file lines.", out.BatchResultsSchema)},
        (400, 404), params=(_AFTER_POS, _limit(100, 1000))),
    "batches.retry": Operation(
        "A new batch of the lines that did not succeed (extension)", "batches",
        {200: Reply("The new batch.", out.BatchSchema)}, (404, 409)),
}

# -- health and this document -------------------------------------------------------------

_HEALTH: dict[str, Operation] = {
    "health.liveliness": Operation(
        "The process is up", "health", {200: Reply("Alive.", out.LivelinessSchema)},
        public=True),
    "health.readiness": Operation(
        "Config loaded and Redis answering", "health",
        {200: Reply("Ready.", out.ReadinessSchema),
         503: Reply("Not ready (Redis does not answer).", out.ReadinessSchema)}),
    "health.health": Operation(
        "Probe every deployment", "health", {200: Reply("Probe results.", out.HealthSchema)}),
    "health.budgets": Operation(
        "Rate-limit budgets as the scheduler sees them", "health",
        {200: Reply("Budgets per model group and deployment.", out.BudgetsSchema)}),
    "openapi.spec": Operation(
        "This OpenAPI document", "meta", {200: Reply("OpenAPI 3.0.", {"type": "object"})},
        public=True),
    "openapi.docs": Operation(
        "API docs (Swagger UI)", "meta",
        {200: Reply("An HTML page.", {"type": "string"}, ("text/html",))}, public=True),
}

# -- virtual keys (admin: the master key) and metrics ---------------------------------------

_KEY_VIEW = Reply("The key's token and info.", out.KeyViewSchema)
_KEYS: dict[str, Operation] = {
    "keys.generate": Operation(
        "Make a virtual key (master key only)", "keys",
        {200: Reply("The new key, in clear this once, and its info.", out.KeyGeneratedSchema)},
        (400, 403, 404, 409, 413), body=KeyGenerateSchema),
    "keys.info": Operation(
        "A key's settings and usage", "keys", {200: _KEY_VIEW}, (400, 404),
        params=(Param("key", {"type": "string"},
                      "The key or its token (default: the caller's own key)."),)),
    "keys.update": Operation(
        "Change a key (master key only)", "keys", {200: _KEY_VIEW}, (400, 403, 404, 409, 413),
        body=KeyUpdateSchema),
    "keys.delete": Operation(
        "Delete keys (master key only)", "keys",
        {200: Reply("The tokens of the deleted keys.", out.KeysDeletedSchema)},
        (400, 403, 404, 413), body=KeyDeleteSchema),
    "metrics.metrics_route": Operation(
        "Prometheus metrics", "health",
        {200: Reply("Prometheus text exposition.", {"type": "string"}, ("text/plain",))}),
}

OPERATIONS: dict[str, Operation] = {
    **_sync_operations(),
    "openai.list_models": Operation(
        "The model groups", "openai", {200: Reply("OpenAI's model list.", out.ModelListSchema)}),
    **_QUEUE, **_FILES, **_BATCHES, **_HEALTH, **_KEYS,
}
"""Endpoint name -> how it is documented."""

COMPONENTS: dict[str, type[Schema]] = {
    "ChatCompletionRequest": ChatCompletionSchema,
    "CompletionRequest": CompletionSchema,
    "EmbeddingRequest": EmbeddingSchema,
    "ModerationRequest": ModerationSchema,
    "QueueSubmission": SubmissionSchema,
    "BatchCreateRequest": BatchCreateSchema,
    "FileUpload": out.FileUploadSchema,
    "Error": out.ErrorSchema,
    "UpstreamResponse": out.UpstreamResponseSchema,
    "CompareSlotError": out.CompareSlotErrorSchema,
    "QueueJob": out.QueueJobSchema,
    "QueueJobResults": out.QueueJobResultsSchema,
    "LegacyPoll": out.LegacyPollSchema,
}
"""Schemas named here first, so raw schemas above can ``ref()`` them; nested ones are
named by the plugin (class name without ``Schema``)."""
