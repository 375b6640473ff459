"""The ``/metrics`` text: recorded counters (from every process) plus gauges read at scrape.

Gauges of shared state are computed here, when Prometheus asks, from what Redis already
indexes: nothing extra is written on the hot path, and nothing is ever scanned (no ``KEYS``):

- budgets: the scheduler's own view (``budgets.inspect``, one Lua snapshot);
- queue depth: ``LLEN`` of the Celery queue lists (messages waiting on the broker);
- jobs: ``ZCARD`` of the ``jobs:active`` index (queued, validating, in progress or
  cancelling: every job that has not ended) and of ``jobs:finalizing`` (batches whose output
  files are being written), plus leased chunks and webhook deliveries waiting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from batchgate.errors import BatchgateError
from workers.jobs import BULK_QUEUE, INTERACTIVE_QUEUE
from workers.runtime import Runtime

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
QUEUES = (INTERACTIVE_QUEUE, BULK_QUEUE)
_LIMITS = ("rpm", "tpm", "max_parallel")


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class RuntimeCollector(Collector):
    """Scrape-time gauges of one runtime's budgets, queues and jobs."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """Budget gauges always; queue gauges when a queue (Redis) is configured."""
        yield from self._budgets()
        if self.runtime.settings.server.redis_url:
            yield from self._queue()

    def _budgets(self) -> Iterator[Metric]:
        deployments = self.runtime.settings.deployments
        try:
            view = self.runtime.budgets.inspect(deployments)
        except (redis.RedisError, BatchgateError) as exc:
            log.warning("budgets unavailable for /metrics: %s", type(exc).__name__)
            return
        labels = ["model_group", "deployment"]
        requests = _gauge("batchgate_deployment_requests_in_window",
                          "Requests granted to the deployment in its 60 s sliding window "
                          "(kept when it declares rpm or tpm).",
                          labels)
        tokens = _gauge("batchgate_deployment_tokens_in_window",
                        "Tokens granted to the deployment in its 60 s sliding window "
                        "(kept when it declares rpm or tpm).", labels)
        in_flight = _gauge("batchgate_deployment_in_flight",
                           "Requests to the deployment in flight now.", labels)
        cooling = _gauge("batchgate_deployment_cooling_down",
                         "1 while the deployment is in cooldown or blocked by a Retry-After.",
                         labels)
        limits = _gauge("batchgate_deployment_limit",
                        "The deployment's declared limits (rpm, tpm, max_parallel).",
                        [*labels, "limit"])
        for d in deployments:
            state: dict[str, Any] = view.get(d.id, {})
            ids = [d.model_name, d.id]
            requests.add_metric(ids, float(state.get("requests") or 0))
            tokens.add_metric(ids, float(state.get("tokens") or 0))
            in_flight.add_metric(ids, float(state.get("in_flight") or 0))
            cooling.add_metric(ids, 1.0 if state.get("blocked_until") else 0.0)
            for name in _LIMITS:
                value = (state.get("limits") or {}).get(name)
                if value is not None:
                    limits.add_metric([*ids, name], float(value))
        yield from (requests, tokens, in_flight, cooling, limits)

    def _queue(self) -> Iterator[Metric]:
        up = _gauge("batchgate_redis_up", "1 when Redis answered this scrape.", [])
        try:
            counts = self._queue_counts()
        except (redis.RedisError, BatchgateError) as exc:
            log.warning("queue gauges unavailable for /metrics: %s", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        depth = _gauge("batchgate_queue_depth",
                       "Task messages waiting on the broker, by queue (interactive or bulk).",
                       ["queue"])
        for queue in QUEUES:
            depth.add_metric([queue], float(counts[queue]))
        jobs = _gauge("batchgate_jobs",
                      "Jobs by state: active (not ended: queued, validating, in progress, "
                      "cancelling) and finalizing (batch output files being written).",
                      ["state"])
        jobs.add_metric(["active"], float(counts["active"]))
        jobs.add_metric(["finalizing"], float(counts["finalizing"]))
        leased = _gauge("batchgate_chunks_leased",
                        "Chunks of job items handed to workers and not yet done.", [])
        leased.add_metric([], float(counts["leases"]))
        webhooks = _gauge("batchgate_webhooks_pending",
                          "Jobs with a webhook delivery scheduled (due now or later).", [])
        webhooks.add_metric([], float(counts["webhooks"]))
        yield from (depth, jobs, leased, webhooks)

    def _queue_counts(self) -> dict[str, int]:
        keys = self.runtime.keys
        pipe = self.runtime.redis.pipeline(transaction=False)
        for queue in QUEUES:
            for key in keys.broker_queues(queue):
                pipe.llen(key)
        for key in (keys.active, keys.finalizing, keys.leases, keys.webhooks_due):
            pipe.zcard(key)
        replies = [int(n) for n in pipe.execute()]
        per_queue = len(keys.broker_queues(INTERACTIVE_QUEUE))
        counts = {queue: sum(replies[i * per_queue:(i + 1) * per_queue])
                  for i, queue in enumerate(QUEUES)}
        active, finalizing, leases, webhooks = replies[len(QUEUES) * per_queue:]
        counts.update(active=active, finalizing=finalizing, leases=leases, webhooks=webhooks)
        return counts


class _Recorded(Collector):
    """This process's default registry (single-process mode)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(runtime: Runtime) -> bytes:
    """The Prometheus text for one scrape: a fresh registry each time (prometheus_client's
    rule in multiprocess mode), so the runtime collector is never shared between threads."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Recorded())
    registry.register(RuntimeCollector(runtime))
    return generate_latest(registry)
