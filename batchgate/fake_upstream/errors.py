"""The errors the fake upstream answers with, worded and coded the way OpenAI words them.

Gateways classify upstream errors by status, ``type``, ``code`` and sometimes by message text
(LiteLLM looks for "maximum context length" and "content management policy"), so the messages
follow OpenAI's closely. Every one is sent as the envelope
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from batchgate.errors import BatchgateError
from batchgate.fake_upstream.behaviour import Fault
from batchgate.fake_upstream.ratelimit import Admission, format_duration, retry_headers


class FakeUpstreamError(BatchgateError):
    """A simulated upstream failure: status, OpenAI error object and extra headers."""

    def __init__(
        self, status: int, message: str, *, type: str, code: str | None = None,
        param: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, status=status)
        self.type = type
        self._headers = headers or {}

    def headers(self) -> dict[str, str]:
        """Headers to send with the error (Retry-After, x-ratelimit-*)."""
        return self._headers


def invalid_request(message: str, *, param: str | None = None,
                    code: str | None = None) -> FakeUpstreamError:
    """400 invalid_request_error."""
    return FakeUpstreamError(400, message, type="invalid_request_error", param=param, code=code)


def missing_api_key() -> FakeUpstreamError:
    """401 when no credential was sent."""
    return FakeUpstreamError(
        401, "You didn't provide an API key. You need to provide your API key in an "
        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        type="invalid_request_error", code="invalid_api_key")


def wrong_api_key() -> FakeUpstreamError:
    """401 for a wrong credential. The key is never echoed back."""
    return FakeUpstreamError(401, "Incorrect API key provided.",
                             type="invalid_request_error", code="invalid_api_key")


def context_length_exceeded(limit: int, requested: int, param: str) -> FakeUpstreamError:
    """400 context_length_exceeded, in OpenAI's words."""
    return invalid_request(
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{requested} tokens. Please reduce the length of the {param}.",
        param=param, code="context_length_exceeded")


def content_policy_violation() -> FakeUpstreamError:
    """400 content_policy_violation (worded like Azure's content filter as well)."""
    return invalid_request(
        "Your request was rejected as a result of our safety system: the prompt triggered "
        "the content management policy.",
        param="prompt", code="content_policy_violation")


def rate_limited(model: str, admission: Admission, headers: dict[str, str]) -> FakeUpstreamError:
    """429 for a request over the model's rpm or tpm."""
    kind = admission.exceeded or "requests"
    state = admission.requests if kind == "requests" else admission.tokens
    limit = state.limit if state is not None else 0
    short = "RPM" if kind == "requests" else "TPM"
    return FakeUpstreamError(
        429, f"Rate limit reached for {model} in organization org-fake-upstream on {kind} per "
        f"min ({short}): Limit {limit}, Used {admission.used}. Please try again in "
        f"{format_duration(admission.retry_after_s)}.",
        type=kind, code="rate_limit_exceeded", headers=headers)


def injected(fault: Fault, retry_after_s: float, headers: dict[str, str]) -> FakeUpstreamError:
    """The error for an injected fault (random, or triggered in the input)."""
    if fault is Fault.RATE_LIMITED:
        return FakeUpstreamError(
            429, "Rate limit reached: the server is receiving too many requests "
            f"(injected). Please try again in {format_duration(retry_after_s)}.",
            type="requests", code="rate_limit_exceeded",
            headers={**headers, **retry_headers(retry_after_s)})
    if fault is Fault.OVERLOADED:
        return FakeUpstreamError(503, "The engine is currently overloaded, please try again "
                                 "later.", type="server_error", headers=headers)
    if fault is Fault.HANG:
        return FakeUpstreamError(504, "The server did not answer in time (injected hang).",
                                 type="server_error", code="timeout", headers=headers)
    return FakeUpstreamError(500, "The server had an error while processing your request. "
                             "Sorry about that!", type="server_error", headers=headers)


def not_found(path: str) -> FakeUpstreamError:
    """404 for an unknown path."""
    return FakeUpstreamError(404, f"Invalid URL (unknown path {path!r}).",
                             type="invalid_request_error", code="unknown_url")


def method_not_allowed(method: str, path: str) -> FakeUpstreamError:
    """405 for a known path with the wrong method."""
    return FakeUpstreamError(405, f"Method {method} is not allowed on {path!r}.",
                             type="invalid_request_error", code="method_not_allowed")
