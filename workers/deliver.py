"""Driving one webhook delivery attempt for a job: sign, send, record, reschedule or stop.

Deliveries are scheduled in the store's ``webhooks:due`` set; a beat scan (and the worker
that ends a job, at once) claims what is due and sends this task. Retries follow the
Standard Webhooks schedule, honour ``Retry-After``, stop on 410, and the secret is dropped
from the job when deliveries end.
"""

from __future__ import annotations

import json
import logging
import random
import time

from batchgate.errors import BatchgateError
from workers import metrics
from workers.dispatch import Dispatcher
from workers.webhooks.delivery import deliver_once, event_payload, message_id
from workers.webhooks.policy import Outcome, decide, describe

log = logging.getLogger(__name__)
_rng = random.Random()


def deliver(dispatcher: Dispatcher, job_id: str) -> None:
    """One attempt at delivering the job's end event to its webhook."""
    runtime = dispatcher.runtime
    store, queue = runtime.store, runtime.settings.queue
    job = store.get(job_id)
    if job is None or job.get("webhook") != "1" or \
            job.get("webhook_state") in ("delivered", "failed", "skipped"):
        store.update_webhook(job_id, {}, done=True) if job else None
        return
    # /v1/batches jobs fire OpenAI's event types (batch.completed, ...), others job.*
    event = f"{'batch' if job.get('files') == '1' else 'job'}.{job.status.value}"
    wanted = json.loads(job.get("webhook_events") or "[]")
    if wanted and event not in wanted:
        store.update_webhook(job_id, {"webhook_state": "skipped"}, done=True)
        return
    sealed = job.get("webhook_secret")
    if not sealed or runtime.secretbox is None:
        store.update_webhook(job_id, {"webhook_state": "failed",
                                      "webhook_last_error": "no usable secret"}, done=True)
        return
    try:
        secret = runtime.secretbox.decrypt(sealed)
    except BatchgateError as exc:
        store.update_webhook(job_id, {"webhook_state": "failed",
                                      "webhook_last_error": exc.message}, done=True)
        return
    now = time.time()
    payload = event_payload(event, job.id, job.status.value, job.request_counts(), now)
    outcome = deliver_once(job["webhook_url"], secret, payload,
                           msg_id=message_id(job.id, event), timeout=queue.webhook_timeout,
                           allowed=queue.webhook_allowed_hosts)
    attempts = job.number("webhook_attempts") + 1
    decision = decide(attempts, outcome, queue.webhook_schedule, _rng, now=time.time())
    metrics.webhook_delivery(decision.kind)
    fields: dict[str, str | int] = {"webhook_attempts": attempts,
                                    "webhook_last_status": outcome.status or 0,
                                    "webhook_last_error": _error(outcome)}
    if decision.kind == "delivered":
        fields.update(webhook_state="delivered", webhook_delivered_at=int(time.time()))
        store.update_webhook(job_id, fields, done=True)
    elif decision.kind == "give_up":
        fields.update(webhook_state="failed", webhook_last_error=decision.reason)
        store.update_webhook(job_id, fields, done=True)
        log.warning("webhook of %s given up after %d attempts: %s", job_id, attempts,
                    decision.reason)
    else:
        fields.update(webhook_state="retrying")
        store.update_webhook(job_id, fields)
        store.schedule_webhook(job_id, time.time() + decision.delay)


def _error(outcome: Outcome) -> str:
    return "" if outcome.status is not None and 200 <= outcome.status < 300 \
        else describe(outcome)
