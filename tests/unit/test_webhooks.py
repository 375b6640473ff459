"""Webhook signing, secrets at rest and the retry policy: pure, no network."""

from __future__ import annotations

import json
import random
import time
from email.utils import formatdate

import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from batchgate.errors import BatchgateError, ConfigError, RequestError
from workers.webhooks import (
    DEFAULT_SCHEDULE,
    Decision,
    Outcome,
    SecretBox,
    check_secret,
    decide,
    new_secret,
    sign,
    webhook_headers,
)
from workers.webhooks.delivery import encode_payload, event_payload, message_id

NOW = 1_800_000_000.0


def signed(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    return webhook_headers(secret, "msg_1", int(time.time()) if timestamp is None else timestamp,
                           body)


# -- signing ---------------------------------------------------------------------------------

def test_signature_matches_the_published_standard_webhooks_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signed_headers_verify_with_the_official_library() -> None:
    secret = new_secret()
    payload = event_payload("batch.completed", "batch_1", "completed",
                            {"total": 2, "completed": 2, "failed": 0}, time.time())
    body = encode_payload(payload)
    assert Webhook(secret).verify(body, signed(secret, body)) == payload


def test_headers_carry_id_timestamp_type_and_agent() -> None:
    headers = webhook_headers(new_secret(), "msg_x", 1700000000, b"{}")
    assert headers["webhook-id"] == "msg_x"
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "batchgate-webhooks/1"


def test_tampered_body_fails_verification() -> None:
    secret = new_secret()
    headers = signed(secret, b'{"status":"failed"}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"status":"completed"}', headers)


def test_tampered_timestamp_fails_verification() -> None:
    secret = new_secret()
    headers = signed(secret, b"{}")
    headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{}", headers)


def test_other_secret_fails_verification() -> None:
    body = b"{}"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, signed(new_secret(), body))


def test_new_secrets_are_valid_and_distinct() -> None:
    first, second = new_secret(), new_secret()
    check_secret(first)
    assert first.startswith("whsec_")
    assert first != second


def test_unpadded_base64_secret_is_accepted_like_receivers_do() -> None:
    check_secret("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo")  # 26 bytes, padding dropped


@pytest.mark.parametrize("junk", [
    "", "whsec_", "not-a-secret", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whsec_!!!!not*base64!!!!!!!!!!!!", "whsec_" + "QUJD" * 5,  # 15 bytes: too short
    "whsec_" + "QUJD" * 22,  # 66 bytes: too long
    "whsec_MfKQ9r8GKYqrTwjU PD8ILPZIo2LaLaSw",
])
def test_check_secret_rejects_junk_without_echoing_it(junk: str) -> None:
    with pytest.raises(RequestError) as caught:
        check_secret(junk)
    assert caught.value.param == "webhook.secret"
    assert caught.value.code == "invalid_webhook_secret"
    if junk.removeprefix("whsec_"):
        assert junk.removeprefix("whsec_") not in caught.value.message


# -- payload and id --------------------------------------------------------------------------

def test_event_payload_is_the_standard_envelope_with_utc_z_timestamp() -> None:
    payload = event_payload("batch.completed", "batch_1", "completed",
                            {"total": 3, "completed": 2, "failed": 1}, 0.25)
    assert payload == {"type": "batch.completed", "timestamp": "1970-01-01T00:00:00.250000Z",
                       "data": {"id": "batch_1", "status": "completed",
                                "request_counts": {"total": 3, "completed": 2, "failed": 1}}}


def test_encoded_payload_is_compact_and_refuses_nan() -> None:
    assert encode_payload({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'.encode()
    with pytest.raises(ValueError, match="JSON"):
        encode_payload({"x": float("nan")})
    assert json.loads(encode_payload({"a": 1})) == {"a": 1}


def test_message_id_is_stable_per_job_and_event() -> None:
    assert message_id("job_1", "batch.completed") == message_id("job_1", "batch.completed")
    assert message_id("job_1", "batch.completed") != message_id("job_1", "batch.failed")
    assert message_id("job_1", "batch.completed") != message_id("job_2", "batch.completed")
    assert message_id("ab", "c") != message_id("a", "bc")
    assert message_id("job_1", "x").startswith("msg_")


# -- retry policy ----------------------------------------------------------------------------

def outcome(status: int | None = None, retry_after: str | None = None,
            error: str | None = None) -> Outcome:
    return Outcome(status, retry_after, error)


def run(attempt: int, result: Outcome, seed: int = 0) -> Decision:
    return decide(attempt, result, DEFAULT_SCHEDULE, random.Random(seed), now=NOW)


def test_schedule_is_the_spec_suggestion() -> None:
    assert DEFAULT_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert run(1, outcome(status)).kind == "delivered"


def test_410_gives_up_at_once() -> None:
    assert run(1, outcome(410)) == Decision("give_up", reason="endpoint answered 410")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_a_failure_and_retried(status: int) -> None:
    decision = run(1, outcome(status))
    assert decision.kind == "retry"
    assert "redirect" in decision.reason


@pytest.mark.parametrize("attempt", range(1, len(DEFAULT_SCHEDULE)))
def test_500_retries_on_schedule_with_bounded_jitter(attempt: int) -> None:
    base = DEFAULT_SCHEDULE[attempt]
    delays = {run(attempt, outcome(500), seed).delay for seed in range(200)}
    assert all(base * 0.9 <= delay <= base * 1.1 for delay in delays)
    assert len(delays) > 1  # jittered, so receivers are not hit by synchronised retries


def test_transport_error_is_retried_with_its_name() -> None:
    decision = run(2, outcome(error="ReadTimeoutError"))
    assert (decision.kind, decision.reason) == ("retry", "ReadTimeoutError")


def test_jitter_never_makes_a_delay_negative() -> None:
    for seed in range(50):
        assert decide(1, outcome(500), (0, 0, 0), random.Random(seed), now=NOW).delay == 0


def test_retry_after_seconds_is_honoured() -> None:
    assert run(1, outcome(503, retry_after="600")).delay >= 600


def test_retry_after_http_date_is_honoured() -> None:
    when = formatdate(NOW + 3600, usegmt=True)
    assert run(1, outcome(429, retry_after=when)).delay >= 3599


def test_retry_after_shorter_than_the_schedule_does_not_hurry_us() -> None:
    assert run(2, outcome(503, retry_after="1")).delay >= 300 * 0.9


def test_retry_after_is_capped_at_a_day() -> None:
    assert run(1, outcome(503, retry_after="9999999")).delay == 24 * 3600


@pytest.mark.parametrize("junk", ["soon", "", "-5", "nan", "Mon, 99 Foo 2026"])
def test_unusable_retry_after_falls_back_to_the_schedule(junk: str) -> None:
    assert 4.5 <= run(1, outcome(503, retry_after=junk)).delay <= 5.5


def test_exhausted_attempts_give_up_naming_the_last_status() -> None:
    decision = run(len(DEFAULT_SCHEDULE), outcome(503))
    assert decision.kind == "give_up"
    assert "HTTP 503" in decision.reason
    assert str(len(DEFAULT_SCHEDULE)) in decision.reason


def test_exhausted_attempts_give_up_naming_the_last_error() -> None:
    decision = run(len(DEFAULT_SCHEDULE), outcome(error="NewConnectionError"))
    assert decision.kind == "give_up"
    assert "NewConnectionError" in decision.reason


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        run(0, outcome(500))


# -- secrets at rest -------------------------------------------------------------------------

def test_secretbox_round_trips() -> None:
    box = SecretBox(SecretBox.generate_key())
    secret = new_secret()
    token = box.encrypt(secret)
    assert secret not in token
    assert box.decrypt(token) == secret


def test_secretbox_rotation_keeps_old_tokens_readable() -> None:
    old_key, new_key = SecretBox.generate_key(), SecretBox.generate_key()
    old_token = SecretBox(old_key).encrypt("whsec_old")
    rotated = SecretBox(f"{new_key}, {old_key}")
    assert rotated.decrypt(old_token) == "whsec_old"
    new_token = rotated.rotate(old_token)
    assert SecretBox(new_key).decrypt(new_token) == "whsec_old"
    with pytest.raises(BatchgateError):
        SecretBox(old_key).decrypt(rotated.encrypt("whsec_new"))


@pytest.mark.parametrize("token", ["garbage", "gAAAAAB-not-a-token", "tökén", ""])
def test_secretbox_refuses_tokens_it_cannot_open(token: str) -> None:
    with pytest.raises(BatchgateError) as caught:
        SecretBox(SecretBox.generate_key()).decrypt(token)
    assert type(caught.value) is BatchgateError


def test_secretbox_wrong_key_is_a_plain_batchgate_error() -> None:
    token = SecretBox(SecretBox.generate_key()).encrypt("whsec_x")
    with pytest.raises(BatchgateError) as caught:
        SecretBox(SecretBox.generate_key()).decrypt(token)
    assert type(caught.value) is BatchgateError
    assert caught.value.message == "stored secret cannot be decrypted with the server key"


def test_secretbox_repr_hides_keys() -> None:
    keys = [SecretBox.generate_key(), SecretBox.generate_key()]
    box = SecretBox(",".join(keys))
    assert repr(box) == str(box) == "SecretBox(<2 keys>)"
    assert not any(key in repr(box) for key in keys)


@pytest.mark.parametrize("keys", [
    "", " , ", "qqq-short-key", f"{Fernet.generate_key().decode()},qqq-not-a-key"])
def test_secretbox_rejects_bad_keys_without_echoing_them(keys: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SecretBox(keys)
    assert "qqq" not in caught.value.message
