"""Upstream rate-limit headers -> Signals: every format OpenAI uses, and garbage ignored."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedulers.signals import parse_duration, parse_retry_after, parse_signals
from schedulers.state import Signals

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("text", "seconds"), [
    ("20ms", 0.02),
    ("1s", 1.0),
    ("1.5s", 1.5),
    ("1m3s", 63.0),
    ("6m0s", 360.0),
    ("2h1m", 7260.0),
    ("1h0m0.5s", 3600.5),
    ("250us", 0.00025),
    ("0s", 0.0),
    ("7", 7.0),
    ("0.25", 0.25),
    (" 3s ", 3.0),
])
def test_parse_duration_reads_openai_reset_formats(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "abc", "-1s", "-3", "1m-3s", "1 m", "inf",
                                  "nan", "1s2", "ms", "1.2.3s"])
def test_parse_duration_returns_none_for_anything_else(text: str) -> None:
    assert parse_duration(text) is None


@given(st.text(max_size=20))
def test_parse_duration_never_raises_and_is_never_negative(text: str) -> None:
    result = parse_duration(text)
    assert result is None or result >= 0


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = {"retry-after-ms": "1500", "Retry-After": "10"}
    assert parse_retry_after(headers, NOW) == 1.5


def test_invalid_retry_after_ms_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "4"}, NOW) == 4.0


@pytest.mark.parametrize(("value", "seconds"), [("30", 30.0), ("0.5", 0.5), ("0", 0.0)])
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after({"Retry-After": value}, NOW) == seconds


def test_retry_after_as_http_date_is_relative_to_now() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 120, UTC), usegmt=True)
    assert parse_retry_after({"retry-after": when}, NOW) == pytest.approx(120.0)


def test_retry_after_date_in_the_past_means_no_wait() -> None:
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, NOW) == 0.0


def test_retry_after_date_without_zone_is_read_as_utc() -> None:
    when = datetime.fromtimestamp(NOW + 60, UTC).strftime("%a, %d %b %Y %H:%M:%S -0000")
    assert parse_retry_after({"Retry-After": when}, NOW) == pytest.approx(60.0)


@pytest.mark.parametrize("headers", [
    {},
    {"Retry-After": "soon"},
    {"Retry-After": "-5"},
    {"Retry-After": "inf"},
    {"Retry-After": ""},
    {"retry-after-ms": "-1"},
    {"Retry-After": "Wed, 99 Foo 2015 07:28:00 GMT"},
])
def test_invalid_retry_after_is_none(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, NOW) is None


def test_parse_signals_reads_every_header_in_any_case() -> None:
    headers = {
        "Retry-After": "2",
        "X-RateLimit-Remaining-Requests": "59",
        "x-ratelimit-remaining-tokens": "149984",
        "X-RATELIMIT-RESET-REQUESTS": "1s",
        "x-ratelimit-reset-tokens": "6m0s",
        "content-type": "application/json",
    }
    assert parse_signals(headers, NOW) == Signals(
        retry_after=2.0, remaining_requests=59, remaining_tokens=149984,
        reset_requests=1.0, reset_tokens=360.0)


def test_parse_signals_of_no_headers_is_empty() -> None:
    assert parse_signals({}, NOW) == Signals()


@pytest.mark.parametrize(("count", "duration"), [
    ("-1", "-1s"), ("1.5", "1.5 s"), ("many", "soon"), ("", ""), (" ", "1d")])
def test_malformed_limit_headers_are_none_and_do_not_spoil_the_rest(
        count: str, duration: str) -> None:
    headers = {"x-ratelimit-remaining-requests": count, "x-ratelimit-remaining-tokens": "10",
               "x-ratelimit-reset-requests": duration, "x-ratelimit-reset-tokens": "20ms"}
    signals = parse_signals(headers, NOW)
    assert signals.remaining_requests is None
    assert signals.reset_requests is None
    assert signals.remaining_tokens == 10
    assert signals.reset_tokens == pytest.approx(0.02)


@given(st.dictionaries(st.sampled_from(["retry-after", "Retry-After-Ms",
                                        "x-ratelimit-remaining-tokens",
                                        "x-ratelimit-reset-requests"]),
                       st.text(max_size=40)))
def test_parse_signals_never_raises_on_any_header_values(headers: dict[str, str]) -> None:
    signals = parse_signals(headers, NOW)
    assert signals.retry_after is None or signals.retry_after >= 0
