"""The one exception root of batchgate, and its few categories.

    BatchgateError                      500 server_error          (a real fault of ours)
    ├── ConfigError                     bad config.yaml; the CLI exits 2 on it
    ├── RequestError                    400 invalid_request_error (the caller can fix it)
    │   ├── AuthenticationError         401 invalid_api_key
    │   ├── PermissionDeniedError       403 (a key may not do this)
    │   ├── NotFoundError               404 (unknown route, id or model)
    │   ├── ConflictError               409
    │   ├── PayloadTooLargeError        413
    │   └── RateLimitedError            429, carries retry_after (seconds)
    └── UpstreamError                   502 an upstream failed in a way the caller cannot fix
        ├── UpstreamUnavailableError    502 connection reset, protocol garbage
        │   └── UpstreamDownError       503 no connection could be made; carries retry_after
        └── UpstreamTimeoutError        504 no answer within the deployment's timeout

Third-party errors (httpx, redis, marshmallow, werkzeug) are translated into these once, at
the edge that meets them; a single Flask handler turns any of them into the OpenAI envelope
``{"error": {"message", "type", "param", "code"}}``. Messages never carry secrets: they are
built from names and ids, never from credentials or request headers.
"""

from __future__ import annotations

from typing import Any


class BatchgateError(Exception):
    """Root of every error batchgate raises on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def envelope(self) -> dict[str, Any]:
        """The OpenAI error object for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """Extra response headers this error asks for (e.g. Retry-After)."""
        return {}


class ConfigError(BatchgateError):
    """A configuration file or environment override cannot be used.

    The message names the file, the entry and the field, so one line is enough to fix it.
    """

    type = "config_error"

    def __init__(self, message: str, *, source: str, entry: str | None = None,
                 field: str | None = None) -> None:
        where = source
        if entry:
            where += f": {entry}"
        if field:
            where += f": {field}"
        super().__init__(f"{where}: {message}", param=field)
        self.source = source
        self.entry = entry
        self.field = field


class RequestError(BatchgateError):
    """The request is wrong; the caller can fix it."""

    status = 400
    type = "invalid_request_error"


class AuthenticationError(RequestError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(RequestError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFoundError(RequestError):
    status = 404
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class ConflictError(RequestError):
    status = 409
    code = "conflict"


class PayloadTooLargeError(RequestError):
    status = 413
    code = "request_too_large"


class RateLimitedError(RequestError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        # Retry-After is whole seconds; never tell a client to come back sooner than we know.
        return {"Retry-After": str(max(1, int(-(-self.retry_after // 1))))}


class UpstreamError(BatchgateError):
    """An upstream deployment failed in a way the caller cannot fix."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnavailableError(UpstreamError):
    code = "upstream_unavailable"


class UpstreamDownError(UpstreamUnavailableError):
    """No connection could be made (refused, unresolvable, connect timeout): the request never
    reached the upstream, which is down or not there. A 503 with ``Retry-After``, so a caller
    comes back later, and queued work waits for it instead of failing."""

    status = 503

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, int(-(-self.retry_after // 1))))}


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"
