"""marshmallow schemas for the OpenAI-compatible request bodies.

They check what batchgate itself relies on (``model``, the input of each endpoint, ``stream``)
and let every other key through untouched (``unknown = INCLUDE``): tools, metadata and
provider-specific parameters are the upstream's business. The body forwarded upstream is the
caller's own JSON object, not the schema's output, so nothing is reordered or coerced.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


class StrictBoolean(fields.Boolean):
    """A JSON ``true``/``false`` only: ``"yes"`` or ``1`` is a mistake, not a boolean."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value)


class _Body(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    stream = StrictBoolean()
    user = fields.String()


class ChatMessageSchema(Schema):
    class Meta:
        unknown = INCLUDE

    role = fields.String(required=True, validate=validate.Length(min=1, max=64))
    content = fields.Raw(allow_none=True)

    @validates("content")
    def _content(self, value: Any, **_: Any) -> None:
        if value is None or isinstance(value, str):
            return
        if isinstance(value, list) and all(isinstance(p, dict) for p in value):
            return
        raise ValidationError("must be a string, a list of content parts, or null")


class ChatCompletionSchema(_Body):
    messages = fields.List(fields.Nested(ChatMessageSchema), required=True,
                           validate=validate.Length(min=1))


class CompletionSchema(_Body):
    prompt = fields.Raw(required=True)

    @validates("prompt")
    def _prompt(self, value: Any, **_: Any) -> None:
        if isinstance(value, str) or _is_token_list(value):
            return
        if isinstance(value, list) and value and (
                all(isinstance(p, str) for p in value) or all(_is_token_list(p) for p in value)):
            return
        raise ValidationError("must be a string, a list of strings, or token arrays")


class EmbeddingSchema(_Body):
    input = fields.Raw(required=True)
    dimensions = fields.Integer(strict=True, validate=validate.Range(min=1))
    encoding_format = fields.String(validate=validate.OneOf(["float", "base64"]))

    @validates("input")
    def _input(self, value: Any, **_: Any) -> None:
        if isinstance(value, str) and value:
            return
        if isinstance(value, list) and value and (
                all(isinstance(p, str) and p for p in value) or _is_token_list(value)
                or all(_is_token_list(p) and p for p in value)):
            return
        raise ValidationError(
            "must be a non-empty string, a list of non-empty strings, or token arrays")


class ModerationSchema(_Body):
    model = fields.String(load_default=DEFAULT_MODERATION_MODEL,
                          validate=validate.Length(min=1, max=1024))
    input = fields.Raw(required=True)

    @validates("input")
    def _input(self, value: Any, **_: Any) -> None:
        if isinstance(value, str):
            return
        if isinstance(value, list) and value and all(isinstance(p, str | dict) for p in value):
            return
        raise ValidationError("must be a string or a list of strings or content parts")


SCHEMAS: dict[str, Schema] = {
    "chat/completions": ChatCompletionSchema(),
    "completions": CompletionSchema(),
    "embeddings": EmbeddingSchema(),
    "moderations": ModerationSchema(),
}
"""One schema instance per endpoint (marshmallow schemas are reusable and thread-safe)."""


def first_field_error(messages: Any, prefix: str = "") -> tuple[str, str]:
    """The first (param path, message) in marshmallow's nested error dict."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = "" if key == "_schema" else str(key)
            path = ".".join(part for part in (prefix, name) if part)
            if isinstance(value, dict | list):
                return first_field_error(value, path)
            return path, str(value)
    if isinstance(messages, list) and messages:
        if all(isinstance(m, str) for m in messages):
            return prefix, " ".join(messages)
        return first_field_error(messages[0], prefix)
    return prefix, str(messages)
