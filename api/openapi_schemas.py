"""marshmallow schemas of what batchgate answers, for the OpenAPI document only.

Requests are validated by the schemas in :mod:`workers.schemas` and :mod:`api.queue_schemas`;
responses are built as dicts by the routes (``Job.public()``, ``batch_object()``,
``FileRecord.public()``), so these schemas only describe them. Every object allows more
properties than it lists: extensions are additive, and the sync routes pass an upstream's own
response through. ``tests/integration/test_openapi_fuzz.py`` checks the real answers against
them, so a shape changed in a route and not here fails there.
"""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

from workers.jobs import JobKind, JobStatus, Outcome

JOB_STATUSES = [s.value for s in JobStatus]
BATCH_STATUSES = [s.value for s in JobStatus if s is not JobStatus.QUEUED]
"""A job waiting for capacity (``queued``) shows as ``validating`` on ``/v1/batches``."""
ITEM_STATUSES = [*(o.value for o in Outcome), "pending"]


def _nullable_int() -> fields.Integer:
    return fields.Integer(required=True, allow_none=True)


def _nullable_str() -> fields.String:
    return fields.String(required=True, allow_none=True)


class _Out(Schema):
    class Meta:
        unknown = INCLUDE  # additionalProperties: true (extensions are additive)


# -- errors -----------------------------------------------------------------------------

class ErrorObjectSchema(_Out):
    """OpenAI's error object."""

    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(required=True, allow_none=True)
    # An upstream's own 4xx passes through; providers differ on the type of ``code``.
    code = fields.Raw(required=True, allow_none=True)


class ErrorSchema(_Out):
    """Every error batchgate answers: ``{"error": {message, type, param, code}}``."""

    error = fields.Nested(ErrorObjectSchema, required=True)


# -- the sync routes ----------------------------------------------------------------------

class UpstreamResponseSchema(_Out):
    """The upstream's own response object (chat.completion, text_completion, list of
    embeddings, moderation), passed through with ``model`` as the deployment named it."""

    id = fields.String()
    object = fields.String()
    model = fields.String()


class CompareSlotErrorSchema(_Out):
    """A failed model's slot in a ``"model": "a,b"`` answer."""

    model = fields.String(required=True)
    status_code = fields.Integer(required=True)
    error = fields.Nested(ErrorObjectSchema, required=True)


class ModelSchema(_Out):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.OneOf(["model"]))
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True)


class ModelListSchema(_Out):
    object = fields.String(required=True, validate=validate.OneOf(["list"]))
    data = fields.List(fields.Nested(ModelSchema), required=True)


# -- the queue ----------------------------------------------------------------------------

class RequestCountsSchema(_Out):
    total = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    cancelled = fields.Integer()
    expired = fields.Integer()


class WebhookStateSchema(_Out):
    """A job's webhook as shown back: only the URL's host, never the secret (except the
    ``secret`` batchgate made, shown once in the 202)."""

    url_host = fields.String(required=True)
    state = fields.String(allow_none=True)
    attempts = fields.Integer()
    last_status = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = fields.Integer(allow_none=True)
    secret = fields.String()


class QueueJobSchema(_Out):
    """The ``queue.job`` object."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.OneOf(["queue.job"]))
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in JobKind]))
    endpoint = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(JOB_STATUSES))
    url = fields.String(required=True)
    created_at = fields.Integer(required=True)
    expires_at = fields.Integer(required=True)
    priority = fields.Integer(required=True)
    request_counts = fields.Nested(RequestCountsSchema, required=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    in_progress_at = _nullable_int()
    cancelling_at = _nullable_int()
    finished_at = _nullable_int()
    completed_at = _nullable_int()
    failed_at = _nullable_int()
    cancelled_at = _nullable_int()
    expired_at = _nullable_int()
    models = fields.List(fields.String())
    webhook = fields.Nested(WebhookStateSchema)
    eta = fields.Integer(metadata={"description": "``/queue/request`` (LiteLLM's path) only"})


class ItemResultSchema(_Out):
    """One item's stored result (``status: pending`` for one not ended, ``?order=input``)."""

    index = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ITEM_STATUSES))
    custom_id = fields.String()
    model = fields.String()
    status_code = fields.Integer(allow_none=True)
    response = fields.Raw(allow_none=True)
    error = fields.Nested(ErrorObjectSchema, allow_none=True)
    deployment = fields.String(allow_none=True)
    attempts = fields.Integer(allow_none=True)
    fallback = fields.String(allow_none=True)
    finished_at = fields.Integer()


class QueueJobResultsSchema(QueueJobSchema):
    """``GET /queue/response/<id>``: the job and its results: ``result`` (single), ``results``
    (compare, in request order), ``data`` (batch, paged)."""

    result = fields.Raw(allow_none=True)
    error = fields.Nested(ErrorObjectSchema, allow_none=True)
    status_code = fields.Integer(allow_none=True)
    results = fields.List(fields.Raw(allow_none=True))
    data = fields.List(fields.Nested(ItemResultSchema))
    has_more = fields.Boolean()
    next_after = fields.Integer(allow_none=True)


class LegacyPollSchema(_Out):
    """``?format=litellm``: LiteLLM's old queue answer."""

    status = fields.String(required=True, validate=validate.OneOf(["queued", "finished"]))
    result = fields.Raw(allow_none=True)


class _ListSchema(_Out):
    object = fields.String(required=True, validate=validate.OneOf(["list"]))
    has_more = fields.Boolean(required=True)
    first_id = _nullable_str()
    last_id = _nullable_str()


class QueueJobListSchema(_ListSchema):
    data = fields.List(fields.Nested(QueueJobSchema), required=True)


# -- files --------------------------------------------------------------------------------

class FileSchema(_Out):
    """OpenAI's file object."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.OneOf(["file"]))
    bytes = fields.Integer(required=True)
    created_at = fields.Integer(required=True)
    filename = fields.String(required=True)
    purpose = fields.String(required=True, validate=validate.OneOf(["batch", "batch_output"]))
    status = fields.String(required=True)
    expires_at = _nullable_int()
    status_details = fields.String(required=True, allow_none=True)


class FileDeletedSchema(_Out):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.OneOf(["file"]))
    deleted = fields.Boolean(required=True)


class FileListSchema(_ListSchema):
    data = fields.List(fields.Nested(FileSchema), required=True)


class FileUploadSchema(Schema):
    """``POST /v1/files``: a ``multipart/form-data`` form."""

    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})
    purpose = fields.String(required=True, validate=validate.OneOf(["batch"]))
    expires_after_anchor = fields.String(data_key="expires_after[anchor]",
                                         validate=validate.OneOf(["created_at"]))
    expires_after_seconds = fields.Integer(data_key="expires_after[seconds]",
                                           validate=validate.Range(min=3600, max=2_592_000))


# -- batches ------------------------------------------------------------------------------

class BatchErrorSchema(_Out):
    code = fields.String(required=True)
    message = fields.String(required=True)
    line = fields.Integer(allow_none=True)
    param = fields.String(allow_none=True)


class BatchErrorsSchema(_Out):
    object = fields.String(required=True, validate=validate.OneOf(["list"]))
    data = fields.List(fields.Nested(BatchErrorSchema), required=True)


class BatchRequestCountsSchema(_Out):
    total = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)


class ProgressSchema(_Out):
    """An extension: how far the batch is and, from its rate so far, when it should end."""

    percent = fields.Float(required=True)
    eta_seconds = fields.Float(required=True, allow_none=True)
    items_per_second = fields.Float(required=True, allow_none=True)
    counts = fields.Nested(RequestCountsSchema, required=True)


class BatchSchema(_Out):
    """OpenAI's batch object, plus ``progress``."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.OneOf(["batch"]))
    endpoint = fields.String(required=True)
    errors = fields.Nested(BatchErrorsSchema, required=True, allow_none=True)
    input_file_id = fields.String(required=True)
    completion_window = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(BATCH_STATUSES))
    output_file_id = _nullable_str()
    error_file_id = _nullable_str()
    created_at = fields.Integer(required=True)
    expires_at = fields.Integer(required=True)
    in_progress_at = _nullable_int()
    finalizing_at = _nullable_int()
    completed_at = _nullable_int()
    failed_at = _nullable_int()
    expired_at = _nullable_int()
    cancelling_at = _nullable_int()
    cancelled_at = _nullable_int()
    request_counts = fields.Nested(BatchRequestCountsSchema, required=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                           allow_none=True)
    progress = fields.Nested(ProgressSchema, required=True)


class BatchListSchema(_ListSchema):
    data = fields.List(fields.Nested(BatchSchema), required=True)


class OutputResponseSchema(_Out):
    status_code = fields.Integer(required=True)
    request_id = fields.String(required=True)
    body = fields.Raw(required=True)


class OutputErrorSchema(_Out):
    code = fields.String(required=True)
    message = fields.String(required=True)


class OutputLineSchema(_Out):
    """A line of a batch's output or error file."""

    id = fields.String(required=True)
    custom_id = fields.String(required=True)
    response = fields.Nested(OutputResponseSchema, required=True, allow_none=True)
    error = fields.Nested(OutputErrorSchema, required=True, allow_none=True)


class BatchResultsSchema(_Out):
    object = fields.String(required=True, validate=validate.OneOf(["list"]))
    data = fields.List(fields.Nested(OutputLineSchema), required=True)
    has_more = fields.Boolean(required=True)
    next_after = fields.Integer(required=True, allow_none=True)


# -- health -------------------------------------------------------------------------------

class LivelinessSchema(_Out):
    status = fields.String(required=True)


class ReadinessSchema(_Out):
    status = fields.String(required=True, validate=validate.OneOf(["healthy", "unhealthy"]))
    config = fields.String(required=True)
    model_groups = fields.Integer(required=True)
    deployments = fields.Integer(required=True)
    redis = fields.String(required=True)


class HealthSchema(_Out):
    healthy_endpoints = fields.List(fields.Dict(), required=True)
    unhealthy_endpoints = fields.List(fields.Dict(), required=True)
    healthy_count = fields.Integer(required=True)
    unhealthy_count = fields.Integer(required=True)


class BudgetsSchema(_Out):
    object = fields.String(required=True, validate=validate.OneOf(["budgets"]))
    model_groups = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True)


# -- virtual keys (admin) -----------------------------------------------------------------

class KeyUsageSchema(_Out):
    prompt_tokens = fields.Integer()
    completion_tokens = fields.Integer()
    total_tokens = fields.Integer()
    requests = fields.Integer()


class KeyInfoSchema(_Out):
    """A virtual key as ``/key/info`` shows it: its hash (``token``), never the key."""

    token = fields.String(required=True)
    key_name = fields.String()
    key_alias = fields.String(allow_none=True)
    models = fields.List(fields.String())
    rpm_limit = fields.Integer(allow_none=True)
    tpm_limit = fields.Integer(allow_none=True)
    max_parallel_requests = fields.Integer(allow_none=True)
    expires = fields.String(allow_none=True)
    expires_at = fields.Integer(allow_none=True)
    metadata = fields.Dict()
    created_at = fields.Integer()
    usage = fields.Nested(KeyUsageSchema)
    spend = fields.Float()


class KeyGeneratedSchema(KeyInfoSchema):
    """``/key/generate``: the key in clear, shown this once, and its info."""

    key = fields.String(required=True)


class KeyViewSchema(_Out):
    key = fields.String(required=True, metadata={"description": "the key's token (hash)"})
    info = fields.Nested(KeyInfoSchema, required=True)


class KeysDeletedSchema(_Out):
    deleted_keys = fields.List(fields.String(), required=True)
