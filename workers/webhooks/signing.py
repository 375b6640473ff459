"""Standard Webhooks signatures (https://www.standardwebhooks.com): secrets, HMAC, headers.

A secret is ``whsec_`` + base64 of 24..64 random bytes, the format receivers' libraries
(``standardwebhooks``, Svix) already parse. The signature covers ``{id}.{timestamp}.{body}``,
so a receiver can reject both tampered bodies and replays of old messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from batchgate.errors import RequestError

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
USER_AGENT = "batchgate-webhooks/1"
_NEW_SECRET_BYTES = 24


def new_secret() -> str:
    """A fresh random signing secret, ``whsec_`` + base64 of 24 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_NEW_SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    """The HMAC key inside ``secret``; raises :class:`RequestError` when it is malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise _invalid(f"a webhook secret starts with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX):]
    # Receivers' libraries accept unpadded base64, so we do too (24 bytes never need padding).
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # Never echo the secret: the message only says what shape is expected.
        raise _invalid(f"a webhook secret is {SECRET_PREFIX!r} followed by base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise _invalid(f"a webhook secret decodes to {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} "
                       f"bytes, this one to {len(key)}")
    return key


def _invalid(message: str) -> RequestError:
    return RequestError(message, param="webhook.secret", code="invalid_webhook_secret")


def check_secret(secret: str) -> None:
    """Raise :class:`RequestError` unless ``secret`` is a usable ``whsec_`` secret."""
    _key(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header one delivery carries, signature included."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
