"""What an upstream answer means for the caller: a pure decision.

:func:`interpret`: 2xx and the caller's own 4xx mistakes pass through untouched (so the
``openai`` SDK raises the same ``BadRequestError`` with the same ``code``), 429 passes through
with a ``Retry-After``, and failures the caller cannot fix (our credentials rejected, upstream
5xx, unreachable, too slow) become a 502/503/504 in the OpenAI envelope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from batchgate.errors import BatchgateError, RequestError, UpstreamError
from config.settings import Deployment
from workers.upstream import UpstreamReply

MAX_COMPARE_MODELS = 16
DEFAULT_RETRY_AFTER = 1
_ERROR_DETAIL_LIMIT = 500


@dataclass
class Answer:
    """What the caller gets for one model group: a status, headers and a JSON body."""

    group: str
    status: int
    body: bytes
    headers: dict[str, str]
    deployment: Deployment | None = None
    upstream_elapsed: float = 0.0
    attempts: int = 1
    """Upstream calls it took, retries and fallbacks included."""
    fallback: str | None = None
    """The fallback group that answered, when it is not the requested one."""
    routing_headers: dict[str, str] = field(default_factory=dict)
    """``x-batchgate-*`` and the group's ``x-ratelimit-*`` headers for a sync caller."""

    @property
    def ok(self) -> bool:
        """True when the upstream produced a result (2xx)."""
        return 200 <= self.status < 300


def split_models(model: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; empty names are a caller error."""
    names = [part.strip() for part in model.split(",")]
    if any(not name for name in names):
        raise RequestError(f"model {model!r} has an empty name in its comma-separated list",
                           param="model", code="invalid_model")
    if len(names) > MAX_COMPARE_MODELS:
        raise RequestError(f"at most {MAX_COMPARE_MODELS} models may be compared at once",
                           param="model", code="too_many_models")
    return names


def redact(body: bytes, deployment: Deployment) -> bytes:
    """``body`` with the deployment's key removed, should an upstream ever echo it."""
    if deployment.api_key is None:
        return body
    secret = deployment.api_key.reveal().encode()
    return body.replace(secret, b"***") if secret and secret in body else body


def _upstream_message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
        message = parsed["error"]["message"] if isinstance(parsed.get("error"), dict) else None
    except (ValueError, TypeError, KeyError, AttributeError):
        message = None
    text = str(message) if message else body.decode("utf-8", "replace")
    return text[:_ERROR_DETAIL_LIMIT]


def _is_json_error(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and isinstance(parsed.get("error"), dict)


def interpret(reply: UpstreamReply) -> Answer:
    """Turn an upstream reply into the caller's answer, or raise the gateway error it means."""
    d, status = reply.deployment, reply.status
    body = reply.body if 200 <= status < 300 else redact(reply.body, d)
    where = f"deployment {d.id!r} of model group {d.model_name!r}"
    if 200 <= status < 300:
        return Answer(d.model_name, status, body, reply.headers, d, reply.elapsed)
    if status in (401, 403, 404):
        # The caller's request was fine: batchgate's own credentials or config are wrong.
        raise UpstreamError(f"{where} rejected the request with {status}: "
                            f"{_upstream_message(body)}", code=f"upstream_{status}")
    if status >= 500:
        mapped = status if status in (503, 504) else 502
        raise UpstreamError(f"{where} failed with {status}: {_upstream_message(body)}",
                            code=f"upstream_{status}", status=mapped)
    headers = dict(reply.headers)
    if status == 429:
        headers.setdefault("retry-after", str(DEFAULT_RETRY_AFTER))
    if not _is_json_error(body):
        body = json.dumps(RequestError(_upstream_message(body), code=f"upstream_{status}")
                          .envelope()).encode()
        headers["content-type"] = "application/json"
    return Answer(d.model_name, status, body, headers, d, reply.elapsed)


def error_answer(group: str, error: BatchgateError) -> Answer:
    """The answer for a gateway-level failure of one model group."""
    return Answer(group, error.status, json.dumps(error.envelope()).encode(),
                  {"content-type": "application/json", **error.headers()})
