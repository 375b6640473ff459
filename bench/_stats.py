"""Summary statistics and plain-text tables for benchmark reports.

Kept dependency-free on purpose: benchmarks must run from the project venv as it is,
and `rich` is not one of batchgate's dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0-100) of already sorted values, linearly interpolated.

    Interpolation (numpy's default "linear" method) keeps small samples honest: with 20 values
    p95 sits between the 19th and 20th rather than snapping to either.
    """
    if not sorted_values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles (ms) and throughput of one measured series of requests."""

    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    req_per_s: float

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def summarize(
    latencies_ms: Sequence[float], elapsed_s: float, sent: int, errors: int
) -> LatencySummary:
    """Summarize successful requests' latencies and the throughput of `sent` over `elapsed_s`.

    Percentiles cover successes only (a fast error would flatter them); throughput counts
    every request sent, because a failure still occupied the path for its duration.
    """
    ordered = sorted(latencies_ms)
    total = len(ordered)
    return LatencySummary(
        requests=sent,
        errors=errors,
        p50_ms=percentile(ordered, 50),
        p95_ms=percentile(ordered, 95),
        p99_ms=percentile(ordered, 99),
        mean_ms=sum(ordered) / total if total else math.nan,
        max_ms=ordered[-1] if ordered else math.nan,
        req_per_s=sent / elapsed_s if elapsed_s > 0 else math.nan,
    )


def fmt(value: float | None, digits: int = 2) -> str:
    """Format a number for a table cell; missing or NaN values show as '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return numerator / denominator, or None when either is missing or the divisor is ~0."""
    if numerator is None or denominator is None:
        return None
    if math.isnan(numerator) or math.isnan(denominator) or abs(denominator) < 1e-9:
        return None
    return numerator / denominator


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render rows as an aligned plain-text table: first column left, the others right."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


@dataclass(frozen=True)
class SampleSummary:
    """Distribution of a sampled gauge (e.g. requests in flight, read every 100 ms)."""

    samples: int
    median: float
    p90: float
    mean: float
    max: float

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def summarize_samples(values: Sequence[float]) -> SampleSummary:
    """Median, p90, mean and max of gauge samples (NaN when there are none)."""
    ordered = sorted(values)
    return SampleSummary(
        samples=len(ordered),
        median=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        mean=sum(ordered) / len(ordered) if ordered else math.nan,
        max=ordered[-1] if ordered else math.nan,
    )
