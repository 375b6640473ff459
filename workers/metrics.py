"""Every Prometheus metric batchgate records, defined here and nowhere else.

Counters and histograms are recorded where things happen (API requests, upstream calls,
webhook attempts) in whichever process does them. Under ``PROMETHEUS_MULTIPROC_DIR`` (set by
``batchgate up`` before any child imports prometheus_client) each process writes its own
files and ``/metrics`` adds them up, so gunicorn workers and Celery workers land in one
scrape; without it they live in this process's default registry. Gauges of shared state
(budgets, queue depth, jobs) are not recorded here: ``workers.metrics_export`` computes them
from Redis at scrape time, so they are right however many processes there are.

Labels are bounded on purpose: a route is its URL rule (``/queue/response/<job_id>``, never
the path), a deployment is its id and model group (never its ``api_base``, which may carry
credentials), a status is an HTTP code or one of a few words.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from config.settings import Deployment

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"
"""The route label of a request no URL rule matched (a 404 or 405): one label for them all."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 120.0)
"""From the ~1 ms batchgate adds to a zero-latency call up to a slow completion."""

HTTP_REQUESTS = Counter(
    "batchgate_http_requests", "API requests answered, by URL rule, method and status.",
    ["route", "method", "status"])
HTTP_DURATION = Histogram(
    "batchgate_http_request_duration_seconds",
    "Time from the request reaching the app to its response headers (streams: first byte).",
    ["route", "method"], buckets=LATENCY_BUCKETS)
UPSTREAM_REQUESTS = Counter(
    "batchgate_upstream_requests",
    "Calls to upstream deployments, by model group, deployment id and HTTP status "
    "(or 'timeout' / 'error' when no answer came).",
    ["model_group", "deployment", "status"])
UPSTREAM_DURATION = Histogram(
    "batchgate_upstream_request_duration_seconds",
    "Upstream call time until the whole answer (streams: the response headers).",
    ["model_group", "deployment"], buckets=LATENCY_BUCKETS)
UPSTREAM_RATE_LIMITED = Counter(
    "batchgate_upstream_rate_limited",
    "429 answers received from upstream deployments.", ["model_group", "deployment"])
WEBHOOK_DELIVERIES = Counter(
    "batchgate_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, retry (will be tried again) or "
    "give_up.", ["outcome"])


def http_request(route: str | None, method: str, status: int, seconds: float) -> None:
    """Count one API request; ``route`` is the matched URL rule, None when none matched."""
    label = route or UNMATCHED_ROUTE
    verb = method if method in HTTP_METHODS else "OTHER"
    HTTP_REQUESTS.labels(label, verb, str(status)).inc()
    HTTP_DURATION.labels(label, verb).observe(seconds)


def upstream_call(deployment: Deployment, status: int | str, seconds: float | None) -> None:
    """Count one upstream call; ``status`` is its HTTP status, or why there was none."""
    group, ident = deployment.model_name, deployment.id
    UPSTREAM_REQUESTS.labels(group, ident, str(status)).inc()
    if status == 429:
        UPSTREAM_RATE_LIMITED.labels(group, ident).inc()
    if seconds is not None:
        UPSTREAM_DURATION.labels(group, ident).observe(seconds)


def webhook_delivery(outcome: str) -> None:
    """Count one webhook delivery attempt by what was decided after it."""
    WEBHOOK_DELIVERIES.labels(outcome).inc()
