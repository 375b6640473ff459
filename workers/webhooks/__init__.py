"""Webhook delivery building blocks (Standard Webhooks, https://www.standardwebhooks.com).

Pure pieces (signing, URL checks, retry policy, secret encryption) plus one I/O function,
:func:`deliver_once`. The Celery task that drives delivery and the job storage live elsewhere.
"""

from workers.webhooks.delivery import deliver_once, encode_payload, event_payload, message_id
from workers.webhooks.policy import DEFAULT_SCHEDULE, Decision, Outcome, decide
from workers.webhooks.secretbox import SecretBox
from workers.webhooks.signing import check_secret, new_secret, sign, webhook_headers
from workers.webhooks.urls import Resolver, Target, check_url, resolve_target

__all__ = [
    "DEFAULT_SCHEDULE",
    "Decision",
    "Outcome",
    "Resolver",
    "SecretBox",
    "Target",
    "check_secret",
    "check_url",
    "decide",
    "deliver_once",
    "encode_payload",
    "event_payload",
    "message_id",
    "new_secret",
    "resolve_target",
    "sign",
    "webhook_headers",
]
