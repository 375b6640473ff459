"""marshmallow schemas of the admin key routes (LiteLLM's ``/key/generate`` etc.).

Fields batchgate does not implement (``max_budget``, ``team_id``, ...) are refused with a 400
naming them, rather than accepted and ignored: a budget that silently does nothing is worse
than none.
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from config.durations import parse_duration

MAX_MODELS = 256
MAX_KEYS_PER_DELETE = 100
MAX_METADATA_BYTES = 16_384
MAX_DURATION = 10 * 365 * 24 * 3600
NAME = validate.Regexp(r"^[^\x00-\x1f\x7f]{1,128}$",
                       error="1 to 128 characters, no control characters")


class Duration(fields.Field):  # type: ignore[type-arg]
    """LiteLLM's ``duration`` (``30s``, ``30m``, ``30h``, ``30d``, or seconds) -> seconds;
    ``null`` = never expires."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationError("a duration such as '30d', '12h' or a number of seconds")
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise ValidationError(
                "a duration such as '30d', '12h' or a number of seconds") from None
        if seconds > MAX_DURATION:
            raise ValidationError("at most 10 years")
        return seconds


class FreeMetadata(fields.Dict):
    """Key metadata: any JSON object up to 16 KiB (LiteLLM's is free-form)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.String(validate=NAME), validate=self._check, **kwargs)

    @staticmethod
    def _check(value: dict[str, Any]) -> None:
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValidationError(f"at most {MAX_METADATA_BYTES} bytes of JSON")


def _limit() -> fields.Integer:
    return fields.Integer(strict=True, allow_none=True,
                          validate=validate.Range(min=1, max=1_000_000_000))


class KeySettingsSchema(Schema):
    """What a key may be given and changed."""

    key_alias = fields.String(allow_none=True, validate=NAME)
    duration = Duration(allow_none=True)
    models = fields.List(fields.String(validate=NAME), validate=validate.Length(max=MAX_MODELS))
    rpm_limit = _limit()
    tpm_limit = _limit()
    max_parallel_requests = _limit()
    metadata = FreeMetadata()


class KeyGenerateSchema(KeySettingsSchema):
    key = fields.String(validate=validate.Regexp(
        r"^sk-[A-Za-z0-9_\-]{16,200}$",
        error="a custom key is 'sk-' and 16 to 200 letters, digits, '-' or '_'"))


class KeyUpdateSchema(KeySettingsSchema):
    key = fields.String(required=True, validate=validate.Length(min=1, max=256))


class KeyDeleteSchema(Schema):
    keys = fields.List(fields.String(validate=validate.Length(min=1, max=256)),
                       validate=validate.Length(max=MAX_KEYS_PER_DELETE))
    key_aliases = fields.List(fields.String(validate=NAME),
                              validate=validate.Length(max=MAX_KEYS_PER_DELETE))

    @validates_schema
    def _some(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("keys") and not data.get("key_aliases"):
            raise ValidationError("name the keys to delete in 'keys' or 'key_aliases'")


KEY_GENERATE = KeyGenerateSchema()
KEY_UPDATE = KeyUpdateSchema()
KEY_DELETE = KeyDeleteSchema()
