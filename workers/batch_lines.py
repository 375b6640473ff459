"""One request of a batch, checked: the rules an inline batch (``POST /queue/requests``) and a
batch input file (``POST /v1/batches``) share. Pure apart from the model lookup passed in.

A request names one model or several (``"model": "a,b"``); several become one item per model,
their ``custom_id`` suffixed ``::<model>`` so each answer can be told apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from batchgate.errors import RequestError
from workers.client_credentials import CALLER_FIELDS, carries
from workers.schemas import SCHEMAS, first_field_error

ENDPOINT_ALIASES = {f"{prefix}/{name}": name
                    for name in ("chat/completions", "completions", "embeddings", "moderations")
                    for prefix in ("/v1", "")}
"""What a request's ``url`` (or a job's ``endpoint``) may say -> the endpoint's short name."""
MAX_CUSTOM_ID = 64
MAX_MODEL_NAME = 1024
COMPARE_SEPARATOR = "::"


class BatchRequestSchema(Schema):
    custom_id = fields.String(required=True, validate=validate.Length(min=1, max=MAX_CUSTOM_ID))
    body = fields.Dict(required=True)
    method = fields.String(validate=validate.Equal("POST"))
    url = fields.String()


BATCH_REQUEST = BatchRequestSchema()


@dataclass(frozen=True)
class BatchRequest:
    """A checked request: its id, its body and the model groups it runs on."""

    custom_id: str
    body: dict[str, Any]
    groups: list[str]

    def items(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(item custom_id, model group, body)`` per model, in the request's order."""
        if len(self.groups) == 1:
            group = self.groups[0]
            return [(self.custom_id, group, {**self.body, "model": group})]
        return [(f"{self.custom_id}{COMPARE_SEPARATOR}{group}", group,
                 {**self.body, "model": group}) for group in self.groups]


_REQUEST_KEYS = frozenset({"custom_id", "method", "url", "body"})
_PLAIN_EMBEDDING_KEYS = frozenset({"model", "input"})


def _plainly_valid_request(raw: dict[str, Any]) -> bool:
    """A shortcut for the common, well-formed request: True only where the schema would
    accept it too (anything unusual goes through the schema and its error messages).
    marshmallow costs ~20 us per load, a third of reading a line of a big file."""
    custom_id, method, url = raw.get("custom_id"), raw.get("method", "POST"), raw.get("url", "")
    return (raw.keys() <= _REQUEST_KEYS and type(custom_id) is str
            and 0 < len(custom_id) <= MAX_CUSTOM_ID and method == "POST"
            and type(url) is str and type(raw.get("body")) is dict)


def _plain_embedding_model(body: dict[str, Any]) -> str | None:
    """The model of a ``{model, input: "text"}`` embeddings body, which the schema accepts
    as it is; None for any other body."""
    model, text = body.get("model"), body.get("input")
    if (body.keys() == _PLAIN_EMBEDDING_KEYS and type(model) is str
            and 0 < len(model) <= MAX_MODEL_NAME and type(text) is str and text):
        return model
    return None


def check_body(endpoint: str, body: dict[str, Any]) -> str:
    """Validate a request body for ``endpoint``; returns its ``model`` as written."""
    if endpoint == "embeddings" and (model := _plain_embedding_model(body)) is not None:
        return model
    if carries(body):
        # A batch input file is kept on disk as uploaded: no place for a credential. (Inline
        # batches and single requests had theirs taken out before this check.)
        name = next(n for n in CALLER_FIELDS if body.get(n) is not None)
        raise RequestError(f"{name} (client-side credentials) is not accepted in a batch "
                           "input file; send the requests to /queue/requests instead",
                           param=name, code="client_side_credentials_unsupported")
    try:
        loaded = SCHEMAS[endpoint].load(body)
    except ValidationError as exc:
        param, message = first_field_error(exc.messages)
        raise RequestError(f"{param}: {message}" if param else message, param=param or None,
                           code="invalid_request_body") from None
    if body.get("stream") is True:
        raise RequestError("Queued requests cannot be streamed: drop 'stream'.",
                           param="stream", code="invalid_request_body")
    return str(loaded["model"])


def _prefixed(exc: RequestError, prefix: str) -> RequestError:
    exc.param = f"{prefix}.{exc.param}" if exc.param else prefix
    return exc


def check_request(raw: Any, endpoint: str,
                  resolve: Callable[[str], list[str]]) -> BatchRequest:
    """One batch request ``{custom_id, method?, url?, body}`` for ``endpoint``; ``resolve``
    maps a ``model`` to its groups (raising for an unknown one). Errors name the field in
    ``param`` (``custom_id``, ``url``, ``body.model``, ...)."""
    if not isinstance(raw, dict):
        raise RequestError("Each request must be a JSON object with 'custom_id', 'method', "
                           "'url' and 'body'.", code="invalid_batch_request")
    try:
        request = raw if _plainly_valid_request(raw) else BATCH_REQUEST.load(raw)
    except ValidationError as exc:
        param, message = first_field_error(exc.messages)
        code = "invalid_method" if param == "method" else "invalid_batch_request"
        raise RequestError(f"{param}: {message}" if param else message, param=param or None,
                           code=code) from None
    url = request.get("url")
    if url is not None and ENDPOINT_ALIASES.get(url) != endpoint:
        raise RequestError(f"url {url!r} does not match the batch's endpoint "
                           f"'/v1/{endpoint}'", param="url", code="invalid_url")
    body = request["body"]
    try:
        groups = resolve(check_body(endpoint, body))
    except RequestError as exc:
        raise _prefixed(exc, "body") from None
    return BatchRequest(request["custom_id"], body, groups)
