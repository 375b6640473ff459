"""The best any client could do under a sliding 60 s rate limit: the ideal finish time.

A limit of `limit` per sliding window (requests per minute, or tokens per minute) admits, in
any window (t - 60 s, t], at most `limit`. The fake upstream counts exactly so: an amount
admitted at s stops counting at s + 60 (`batchgate.fake_upstream.ratelimit`). Starting with
an empty window, `limit` goes through at once and then `limit` more each time the window has
slid past what was admitted, so the finish time is a step function of the demand: up to
`limit` finishes at 0 s, up to 2 x `limit` at 60 s, and so on.

`ideal_finish` treats the demand as fluid (divisible at will: a packed request's tokens may
be split across windows) and released all at once at time 0, after `prior` admissions at
their own times (negative: earlier in the run). Greedy admission (everything that fits, as
soon as it fits) is optimal for one such limit, so the answer is a lower bound on the finish
of any real schedule: one dimension at a time, for one pooled group of deployments.
"""

from __future__ import annotations

from collections.abc import Iterable

WINDOW_S = 60.0
_EPSILON = 1e-9


def ideal_finish(
    limit: float, demand: float, prior: Iterable[tuple[float, float]] = (), window: float = WINDOW_S
) -> float:
    """Seconds from 0 until all of `demand` can have been admitted under `limit` per window.

    `prior` holds (time, amount) admissions made before the demand (times <= 0); they use up
    the window until they slide out of it. 0.0 when the demand fits at once.
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    admitted = sorted(prior)
    backlog, t, finish = float(demand), 0.0, 0.0
    while backlog > _EPSILON:
        used = sum(amount for at, amount in admitted if at > t - window)
        room = limit - used
        if room > _EPSILON:
            take = min(room, backlog)
            admitted.append((t, take))
            backlog -= take
            finish = t
            if backlog <= _EPSILON:
                break
        # Next moment the window frees room: the oldest admission still counted slides out.
        t = min(at + window for at, _ in admitted if at + window > t)
    return finish
