"""What an upstream's response headers say about its limits, parsed into :class:`Signals`.

Pure parsing, no clock of its own: the caller passes ``now`` (``time.time()``-style wall
clock) for the one header that is an absolute date. Header names are matched in any case,
since HTTP/2 lowercases them and some servers capitalise them. Nothing here raises on a bad
header: an upstream's malformed hint is ignored, never an error for the caller.

Headers read (OpenAI's, also sent by Azure OpenAI, vLLM behind a gateway, LiteLLM, ...):

- ``retry-after-ms`` (milliseconds), else ``Retry-After`` (seconds, or an HTTP date);
- ``x-ratelimit-remaining-requests`` / ``x-ratelimit-remaining-tokens`` (counts);
- ``x-ratelimit-reset-requests`` / ``x-ratelimit-reset-tokens`` (durations like ``6m0s``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

from schedulers.state import Signals

RETRY_AFTER_MS = "retry-after-ms"
RETRY_AFTER = "retry-after"
REMAINING_REQUESTS = "x-ratelimit-remaining-requests"
REMAINING_TOKENS = "x-ratelimit-remaining-tokens"
RESET_REQUESTS = "x-ratelimit-reset-requests"
RESET_TOKENS = "x-ratelimit-reset-tokens"

UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6,
                "ns": 1e-9}
"""Go's ``time.Duration`` units, the format OpenAI's reset headers are written in."""
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# "ms" before "m": the alternation is tried left to right.
_PART = re.compile(rf"({_NUMBER})(ms|us|µs|ns|h|m|s)")
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|us|µs|ns|h|m|s))+")
_COUNT = re.compile(r"\d+")


def parse_duration(text: str) -> float | None:
    """Seconds in ``"20ms"``, ``"1.5s"``, ``"1m3s"``, ``"2h1m"`` or a bare number of seconds;
    None when ``text`` is none of these."""
    text = text.strip()
    bare = _seconds(text)
    if bare is not None:
        return bare
    if not _DURATION.fullmatch(text):
        return None
    total = sum(float(number) * UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    return total if math.isfinite(total) else None


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the upstream asked us to wait: ``retry-after-ms`` when valid, else
    ``Retry-After`` as seconds or as an HTTP date (relative to ``now``, never below 0)."""
    lowered = _lowered(headers)
    millis = _seconds(lowered.get(RETRY_AFTER_MS))
    if millis is not None:
        return millis / 1000.0
    value = lowered.get(RETRY_AFTER)
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    return _date_delay(value, now)


def parse_signals(headers: Mapping[str, str], now: float) -> Signals:
    """Every limit hint in ``headers``; a missing or malformed one is None."""
    lowered = _lowered(headers)
    return Signals(
        retry_after=parse_retry_after(lowered, now),
        remaining_requests=_count(lowered.get(REMAINING_REQUESTS)),
        remaining_tokens=_count(lowered.get(REMAINING_TOKENS)),
        reset_requests=_duration(lowered.get(RESET_REQUESTS)),
        reset_tokens=_duration(lowered.get(RESET_TOKENS)),
    )


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` keyed by lowercase name; of repeated names (any case) the last wins."""
    return {str(name).lower(): value for name, value in headers.items()}


def _seconds(value: object) -> float | None:
    """A plain finite, non-negative number (``"2"``, ``"1.5"``), else None."""
    if not isinstance(value, str):
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    # float() also takes "inf", "nan" and "1e3"; only the first two are nonsense here.
    return number if math.isfinite(number) and number >= 0 else None


def _date_delay(value: str, now: float) -> float | None:
    """Seconds from ``now`` until the HTTP date ``value`` (0 when it is past)."""
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000" means UTC with no stated zone (RFC 5322)
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None


def _count(value: object) -> int | None:
    """A non-negative integer header value, else None."""
    if not isinstance(value, str) or not _COUNT.fullmatch(value.strip()):
        return None
    return int(value.strip())


def _duration(value: object) -> float | None:
    return parse_duration(value) if isinstance(value, str) else None
