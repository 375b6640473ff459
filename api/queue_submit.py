"""Turning a ``POST /queue/requests`` body into a validated job, or a 4xx that names the fault.

Everything is checked before anything is written, so a rejected submission leaves no job, no
item and no queued task.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from api.queue_schemas import SUBMISSION, WRAPPER_FIELDS
from batchgate.errors import PayloadTooLargeError, RequestError
from config.durations import parse_duration
from workers.batch_lines import ENDPOINT_ALIASES, check_body, check_request
from workers.client_credentials import JobCredentials, take_job
from workers.credentialed_client import verify
from workers.credentials_store import seal
from workers.gateway import Gateway
from workers.jobs import DEFAULT_PRIORITY, Item, JobKind, NewJob, new_job_id
from workers.runtime import QueueUnavailableError, Runtime
from workers.webhooks.signing import check_secret, new_secret
from workers.webhooks.urls import check_url

MAX_COMPLETION_WINDOW = 30 * 24 * 3600.0


def _infer_endpoint(body: dict[str, Any]) -> str:
    if "messages" in body:
        return "chat/completions"
    if "prompt" in body:
        return "completions"
    if "input" in body:
        return "embeddings"
    raise RequestError("Cannot tell which endpoint this request is for: give 'endpoint' "
                       "(e.g. '/v1/chat/completions'), or a 'messages', 'prompt' or 'input'.",
                       param="endpoint")


def _at(exc: RequestError, where: str) -> RequestError:
    """``exc`` as an error of the request at ``where`` (e.g. ``requests[3]``)."""
    if where:
        exc.message = f"{where}: {exc.message}"
        exc.param = f"{where}.{exc.param}" if exc.param else where
    return exc


def _single(gateway: Gateway, endpoint: str, body: dict[str, Any]) -> tuple[JobKind, list[Item]]:
    request = {k: v for k, v in body.items() if k not in WRAPPER_FIELDS}
    groups = gateway.resolve(check_body(endpoint, request))
    if len(groups) == 1:
        return JobKind.SINGLE, [Item(0, "request", groups[0], {**request, "model": groups[0]})]
    return JobKind.COMPARE, [Item(i, group, group, {**request, "model": group})
                             for i, group in enumerate(groups)]


def _batch(gateway: Gateway, endpoint: str, lines: list[Any],
           limit: int) -> tuple[list[Item], list[int | None]]:
    """The items of an inline batch, and the request line each came from."""
    if len(lines) > limit:
        raise PayloadTooLargeError(f"A batch may hold at most {limit} requests; this one has "
                                   f"{len(lines)}.", param="requests")
    items: list[Item] = []
    origins: list[int | None] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(lines):
        where = f"requests[{line}]"
        try:
            request = check_request(raw, endpoint, gateway.resolve)
        except RequestError as exc:
            raise _at(exc, where) from None
        if request.custom_id in seen:
            raise RequestError(f"{where}: custom_id {request.custom_id!r} is already used by "
                               f"requests[{seen[request.custom_id]}]",
                               param=f"{where}.custom_id", code="duplicate_custom_id")
        seen[request.custom_id] = line
        made = request.items()
        items += [Item(len(items) + i, item_id, group, body)
                  for i, (item_id, group, body) in enumerate(made)]
        origins += [line] * len(made)
    return items, origins


def _completion_window(value: Any, default: float) -> float:
    if value is None:
        return default
    if not isinstance(value, str | int | float):
        raise RequestError("completion_window must be a duration such as '24h' or a number "
                           "of seconds", param="completion_window")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise RequestError(f"completion_window: {exc}", param="completion_window") from None
    if seconds > MAX_COMPLETION_WINDOW:
        raise RequestError("completion_window may be at most 30 days",
                           param="completion_window")
    return seconds


def digest(body: dict[str, Any]) -> str:
    """A stable digest of a request body (for Idempotency-Key checks)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def seal_webhook(runtime: Runtime, webhook: dict[str, Any]) -> tuple[str, str | None]:
    """A checked webhook's secret, encrypted for the job record, and the secret to show once
    (when the caller gave none and we made it)."""
    check_url(webhook["url"], runtime.settings.queue.webhook_allowed_hosts)
    secret = webhook.get("secret")
    shown_secret = None
    if secret is None:
        secret = shown_secret = new_secret()
    check_secret(secret)
    if runtime.secretbox is None:
        raise QueueUnavailableError("Webhooks need a server key to keep their secret "
                                    "encrypted: set BATCHGATE_SECRET_KEY.")
    return runtime.secretbox.encrypt(secret), shown_secret


def seal_credentials(runtime: Runtime, credentials: JobCredentials,
                     origins: list[int | None]) -> dict[str, str]:
    """Callers' own credentials, checked now (allow-list and DNS) and encrypted for the
    job's credentials record."""
    if not credentials:
        return {}
    policy = runtime.settings.general.client_side_credentials
    for one in credentials.all():
        verify(one, policy)
    if runtime.secretbox is None:
        raise QueueUnavailableError("Client-side credentials need a server key to be kept "
                                    "encrypted: set BATCHGATE_SECRET_KEY.")
    return seal(runtime.secretbox, credentials, origins)


def build_job(runtime: Runtime, body: dict[str, Any], owner: str) -> tuple[NewJob, str | None]:
    """The job a submission describes, and the webhook secret to show once (when we made it)."""
    # First of all: a caller's own api_key/api_base leave the body (and its digest) here.
    credentials = take_job(body, runtime.settings.general.client_side_credentials)
    spec = SUBMISSION.load(body)
    settings = runtime.settings
    gateway = runtime.gateway
    if "requests" in spec:
        endpoint = ENDPOINT_ALIASES[spec.get("endpoint", "/v1/chat/completions")]
        items, origins = _batch(gateway, endpoint, spec["requests"],
                                settings.queue.max_batch_requests)
        kind = JobKind.BATCH
    else:
        endpoint = ENDPOINT_ALIASES[spec["endpoint"]] if "endpoint" in spec \
            else _infer_endpoint(body)
        kind, items = _single(gateway, endpoint, body)
        origins = [None] * len(items)
    credentials_sealed = seal_credentials(runtime, credentials, origins)
    webhook = spec.get("webhook")
    sealed, shown_secret = seal_webhook(runtime, webhook) if webhook else (None, None)
    job = NewJob(
        id=new_job_id(), kind=kind, endpoint=endpoint, items=items, owner=owner,
        created_at=int(time.time()),
        completion_window=_completion_window(spec.get("completion_window"),
                                             settings.queue.completion_window),
        priority=spec.get("priority", DEFAULT_PRIORITY[kind]),
        metadata=spec.get("metadata") or {},
        models=tuple(item.model for item in items) if kind is JobKind.COMPARE else (),
        webhook_url=webhook["url"] if webhook else None, webhook_secret_sealed=sealed,
        webhook_events=tuple(webhook.get("events", ())) if webhook else (),
        digest=digest(body), credentials_sealed=credentials_sealed)
    return job, shown_secret
