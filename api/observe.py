"""Every request gets an ``x-request-id``, is counted, and logs under its id; ``/metrics``.

The caller's ``x-request-id`` is kept when it is 1 to 128 visible ASCII characters (what
request ids are: UUIDs, hex, ``req_...``); anything else, CR/LF included, is replaced by a
new id rather than refused, since a tracing header must never fail a request. The id is on
every response (errors too), in every log line the request writes, and in the Celery messages
it sends (``workers.task_context``).

``/metrics`` needs the master key when one is set, like every route but liveliness: it names
every deployment and model group, and Prometheus scrapes with a bearer token as easily as
without (``authorization: {credentials: ...}`` in its scrape config).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import Token

from flask import Blueprint, Flask, Response, current_app, g, request

from api.auth import caller
from batchgate.errors import PermissionDeniedError
from workers import logcontext, metrics
from workers.metrics_export import exposition

log = logging.getLogger(__name__)

HEADER = "x-request-id"
MAX_REQUEST_ID = 128
_VALID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID}}}")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

bp = Blueprint("metrics", __name__)


def request_id_from(header: str | None) -> str:
    """The caller's request id when it is safe to keep and echo, else a new one."""
    if header is not None and _VALID.fullmatch(header):
        return header
    return f"req_{uuid.uuid4().hex}"


def _begin() -> None:
    g.batchgate_started = time.perf_counter()
    g.batchgate_request_id = request_id_from(request.headers.get(HEADER))
    g.batchgate_context = logcontext.REQUEST_ID.set(g.batchgate_request_id)


def _finish(response: Response) -> Response:
    request_id = g.get("batchgate_request_id")
    if request_id is None:  # a before_request hook ahead of ours answered
        return response
    response.headers[HEADER] = request_id
    seconds = time.perf_counter() - g.batchgate_started
    rule = request.url_rule.rule if request.url_rule is not None else None
    metrics.http_request(rule, request.method, response.status_code, seconds)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s -> %d", request.method, rule or metrics.UNMATCHED_ROUTE,
                  response.status_code,
                  extra={"route": rule, "method": request.method,
                         "status": response.status_code,
                         "duration_ms": round(seconds * 1000, 2)})
    return response


def _end(_exc: BaseException | None) -> None:
    token: Token[str | None] | None = g.pop("batchgate_context", None)
    if token is not None:
        logcontext.REQUEST_ID.reset(token)


def install_observability(app: Flask) -> None:
    """Request ids, request metrics and the request log line; call before any other
    ``before_request`` hook (auth), so a refused request is counted and carries its id."""
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_end)
    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics_route() -> Response:
    """Prometheus text: counters of every process, gauges read from Redis now. A virtual
    key may not read it: it names every deployment and counts every key's traffic."""
    if caller().key is not None:
        raise PermissionDeniedError("Only the master key may read /metrics.")
    return Response(exposition(current_app.extensions["batchgate.runtime"]),
                    content_type=PROMETHEUS_TEXT)
