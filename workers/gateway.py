"""The synchronous call path: model group -> deployment -> upstream answer or a clear error.

What an upstream answer means for the caller is decided by :func:`interpret`, a pure
function: 2xx and the caller's own 4xx mistakes pass through untouched (so the ``openai`` SDK
raises the same ``BadRequestError`` with the same ``code``), 429 passes through with a
``Retry-After``, and failures the caller cannot fix (our credentials rejected, upstream 5xx,
unreachable, too slow) become a 502/503/504 in the OpenAI envelope.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from batchgate.errors import BatchgateError, ModelNotFoundError, RequestError, UpstreamError
from config.settings import Deployment, Settings
from schedulers.picker import Picker, WeightedShuffle
from workers.upstream import UpstreamClient, UpstreamReply, UpstreamStream

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


class Gateway:
    """Routes one request body to a model group's deployment and interprets the answer."""

    def __init__(self, settings: Settings, client: UpstreamClient,
                 picker: Picker | None = None, *, max_parallel: int = 32) -> None:
        self.settings = settings
        self._client = client
        self._picker = picker or WeightedShuffle()
        self._groups = settings.groups()
        self._pool = ThreadPoolExecutor(max_workers=max_parallel,
                                        thread_name_prefix="batchgate-compare")

    def resolve(self, model: str) -> list[str]:
        """The model groups named by ``model`` (comma-separated), in request order."""
        groups = []
        for name in split_models(model):
            group = self.settings.resolve_group(name)
            if group is None:
                raise ModelNotFoundError(f"The model {name!r} does not exist",
                                         param="model")
            groups.append(group)
        return groups

    def payload(self, deployment: Deployment, body: dict[str, Any]) -> bytes:
        """The JSON sent upstream: the caller's body, its ``model`` set to the deployment's."""
        out = {**deployment.default_params, **body, "model": deployment.model}
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()

    def _pick(self, group: str) -> Deployment:
        return self._picker.pick(self._groups[group])

    def call(self, deployment: Deployment, endpoint: str, body: dict[str, Any]) -> Answer:
        """One non-streaming call to ``deployment``; raises for gateway-level failures."""
        return interpret(self._client.send(deployment, endpoint, self.payload(deployment, body)))

    def complete(self, group: str, endpoint: str, body: dict[str, Any]) -> Answer:
        """One non-streaming call to a deployment of ``group``."""
        return self.call(self._pick(group), endpoint, body)

    def complete_many(self, groups: Sequence[str], endpoint: str,
                      body: dict[str, Any]) -> list[Answer]:
        """The same call to every group in parallel; each failure stays in its own slot."""
        def one(group: str) -> Answer:
            try:
                return self.complete(group, endpoint, body)
            except BatchgateError as exc:
                return error_answer(group, exc)

        return list(self._pool.map(one, groups))

    def open_stream(self, group: str, endpoint: str,
                    body: dict[str, Any]) -> UpstreamStream | Answer:
        """A streaming call: the open stream on 2xx, else the interpreted error answer."""
        deployment = self._pick(group)
        stream = self._client.open_stream(deployment, endpoint, self.payload(deployment, body))
        if 200 <= stream.status < 300:
            return stream
        body_bytes = stream.read()
        return interpret(UpstreamReply(deployment, stream.status, stream.headers, body_bytes,
                                       stream.elapsed))

    def close(self) -> None:
        """Release the upstream connections and the compare threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
