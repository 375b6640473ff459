"""When to try a webhook again: pure decisions from one attempt's outcome.

The schedule is the one the Standard Webhooks spec suggests. The decision carries its delay
(the Celery task turns it into a countdown) instead of sleeping anywhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal

# Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about 27 hours.
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.10
# A receiver may slow us down, but not park a delivery for days.
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt got: an HTTP status, or a transport error (never a URL)."""

    status: int | None
    retry_after: str | None
    error: str | None


@dataclass(frozen=True)
class Decision:
    """What to do next, and after how many seconds."""

    kind: Literal["delivered", "retry", "give_up"]
    delay: float = 0.0
    reason: str = ""


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` value (seconds or HTTP-date) as seconds from ``now``, capped at 24 h."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" means UTC with unknown local zone
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN: not a usable value
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def describe(outcome: Outcome) -> str:
    """The outcome in a few words, for job records and logs."""
    if outcome.status is None:
        return outcome.error or "no answer"
    if 300 <= outcome.status < 400:
        return f"HTTP {outcome.status} (redirects are not followed)"
    return f"HTTP {outcome.status}"


def decide(attempt: int, outcome: Outcome, schedule: Sequence[float], rng: random.Random,
           *, now: float | None = None) -> Decision:
    """Decide after attempt number ``attempt`` (1-based, this one included).

    ``now`` (epoch seconds) only matters for a ``Retry-After`` HTTP-date; it defaults to
    the clock so callers that never see dates need not pass it.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    status = outcome.status
    if status is not None and 200 <= status < 300:
        return Decision("delivered", reason=f"HTTP {status}")
    if status == 410:
        # 410 Gone is the spec's way for a receiver to say "stop sending".
        return Decision("give_up", reason="endpoint answered 410")
    what = describe(outcome)
    if attempt >= len(schedule):
        return Decision("give_up", reason=f"gave up after {attempt} attempts; last: {what}")
    delay = max(0.0, schedule[attempt] * (1 + rng.uniform(-JITTER, JITTER)))
    waited = retry_after_seconds(outcome.retry_after, time.time() if now is None else now)
    if waited is not None and waited > delay:
        delay = waited
    return Decision("retry", delay=delay, reason=what)
