"""marshmallow schemas for ``POST /queue/requests``: the job wrapper around a request body."""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates

from workers.batch_lines import ENDPOINT_ALIASES

WRAPPER_FIELDS = ("endpoint", "requests", "metadata", "webhook", "priority",
                  "completion_window")
"""Keys that describe the job, never sent upstream."""
WEBHOOK_EVENTS = ("job.completed", "job.failed", "job.cancelled", "job.expired")
MAX_METADATA_PAIRS = 16


class WebhookSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    secret = fields.String(validate=validate.Length(max=200))
    events = fields.List(fields.String(validate=validate.OneOf(WEBHOOK_EVENTS)),
                         validate=validate.Length(min=1))


class SubmissionSchema(Schema):
    """The wrapper; the rest of the body (a sync request) passes through."""

    class Meta:
        unknown = INCLUDE

    endpoint = fields.String(validate=validate.OneOf(sorted(ENDPOINT_ALIASES)))
    requests = fields.List(fields.Raw(), validate=validate.Length(min=1))
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(max=64)),
                           values=fields.String(validate=validate.Length(max=512)))
    webhook = fields.Nested(WebhookSchema)
    priority = fields.Integer(strict=True, validate=validate.Range(min=0, max=9))
    completion_window = fields.Raw()

    @validates("metadata")
    def _metadata(self, value: dict[str, Any], **_: Any) -> None:
        if len(value) > MAX_METADATA_PAIRS:
            raise ValidationError(f"at most {MAX_METADATA_PAIRS} key-value pairs")
        for key, text in value.items():
            if any(ord(c) < 32 for c in key + text):
                raise ValidationError("keys and values must not contain control characters")


SUBMISSION = SubmissionSchema()
