"""The one place errors become HTTP responses: the OpenAI envelope, never a stack trace.

``{"error": {"message", "type", "param", "code"}}`` with the status the error carries. Ours
(:class:`BatchgateError`), marshmallow's ``ValidationError`` and werkzeug's HTTP exceptions
are mapped here; anything else is a real fault of ours: logged with its traceback on the
server, answered with a bare 500 envelope.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, jsonify
from kombu.exceptions import OperationalError
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from batchgate.errors import (
    AuthenticationError,
    BatchgateError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestError,
)
from workers.runtime import QueueUnavailableError
from workers.schemas import first_field_error

log = logging.getLogger(__name__)

STORE_RETRY_AFTER = 2
"""Seconds a caller is asked to wait when Redis (store and broker) cannot be reached."""

_WERKZEUG: dict[int, type[RequestError]] = {
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
}


def error_response(error: BatchgateError) -> Response:
    """The OpenAI-shaped response for ``error``."""
    response = jsonify(error.envelope())
    response.status_code = error.status
    response.headers.update(error.headers())
    return response


def validation_error(exc: ValidationError) -> RequestError:
    """Our 400 for a marshmallow error, naming the first offending field."""
    param, message = first_field_error(exc.messages)
    text = f"{param}: {message}" if param else message
    return RequestError(f"Invalid request body: {text}", param=param or None,
                        code="invalid_request_body")


def _from_http(exc: HTTPException) -> BatchgateError:
    status = exc.code or 500
    kind = _WERKZEUG.get(status)
    if kind is not None:
        return kind(exc.description or exc.name)
    if status == 405:
        return RequestError(f"Method not allowed: {exc.description}", code="method_not_allowed",
                            status=405)
    if status == 429:
        return RateLimitedError(exc.description or exc.name, retry_after=1)
    if status < 500:
        return RequestError(exc.description or exc.name, status=status)
    return BatchgateError("The server had an error while processing your request.",
                          status=status)


def register_error_handlers(app: Flask) -> None:
    """Route every error raised in a request to the OpenAI envelope."""

    @app.errorhandler(BatchgateError)
    def _ours(exc: BatchgateError) -> Response:
        if exc.status >= 500:
            log.warning("request failed: %s", exc.message)
        return error_response(exc)

    @app.errorhandler(ValidationError)
    def _marshmallow(exc: ValidationError) -> Response:
        return error_response(validation_error(exc))

    @app.errorhandler(HTTPException)
    def _werkzeug(exc: HTTPException) -> Response:
        return error_response(_from_http(exc))

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    @app.errorhandler(OperationalError)
    def _store_down(exc: Exception) -> Response:
        # Redis restarting, still loading its data, or failing over: a moment's wait for the
        # caller (a 503 it can retry), not a fault of ours to trace.
        log.warning("redis unavailable: %s", type(exc).__name__)
        response = error_response(QueueUnavailableError(
            "The queue's store cannot be reached right now; try again shortly."))
        response.headers["Retry-After"] = str(STORE_RETRY_AFTER)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(BatchgateError(
            "The server had an error while processing your request."))
