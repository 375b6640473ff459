"""marshmallow schemas for ``POST /queue/requests``: the job wrapper around a request body."""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from workers.batch_lines import ENDPOINT_ALIASES

WRAPPER_FIELDS = ("endpoint", "requests", "metadata", "webhook", "priority",
                  "completion_window")
"""Keys that describe the job, never sent upstream."""
WEBHOOK_EVENTS = ("job.completed", "job.failed", "job.cancelled", "job.expired")
MAX_METADATA_PAIRS = 16


BATCH_WEBHOOK_EVENTS = ("batch.completed", "batch.failed", "batch.cancelled", "batch.expired")
"""What a ``/v1/batches`` job's webhook fires: OpenAI's event types."""


class WebhookSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    secret = fields.String(validate=validate.Length(max=200))
    events = fields.List(fields.String(validate=validate.OneOf(WEBHOOK_EVENTS)),
                         validate=validate.Length(min=1))


class BatchWebhookSchema(WebhookSchema):
    events = fields.List(fields.String(validate=validate.OneOf(BATCH_WEBHOOK_EVENTS)),
                         validate=validate.Length(min=1))


class Metadata(fields.Dict):
    """OpenAI's ``metadata``: at most 16 pairs, keys up to 64 and values up to 512 chars."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.String(validate=validate.Length(max=64)),
                         values=fields.String(validate=validate.Length(max=512)),
                         validate=self._check,
                         metadata={"maxProperties": MAX_METADATA_PAIRS}, **kwargs)

    @staticmethod
    def _check(value: dict[str, Any]) -> None:
        if len(value) > MAX_METADATA_PAIRS:
            raise ValidationError(f"at most {MAX_METADATA_PAIRS} key-value pairs")
        for key, text in value.items():
            if any(ord(c) < 32 for c in key + text):
                raise ValidationError("keys and values must not contain control characters")


class SubmissionSchema(Schema):
    """The wrapper; the rest of the body (a sync request) passes through."""

    class Meta:
        unknown = INCLUDE

    endpoint = fields.String(validate=validate.OneOf(sorted(ENDPOINT_ALIASES)))
    requests = fields.List(fields.Raw(), validate=validate.Length(min=1))
    metadata = Metadata()
    webhook = fields.Nested(WebhookSchema)
    priority = fields.Integer(strict=True, validate=validate.Range(min=0, max=9))
    completion_window = fields.Raw()


SUBMISSION = SubmissionSchema()


class BatchCreateSchema(Schema):
    """``POST /v1/batches``: OpenAI's fields, plus ``webhook`` (an extension)."""

    input_file_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    endpoint = fields.String(required=True, validate=validate.OneOf(
        sorted(e for e in ENDPOINT_ALIASES if e.startswith("/v1/"))))
    completion_window = fields.String(load_default="24h", validate=validate.Length(max=32))
    metadata = Metadata(allow_none=True)
    webhook = fields.Nested(BatchWebhookSchema)


BATCH_CREATE = BatchCreateSchema()
