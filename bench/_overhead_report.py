"""Pooling, comparison and rendering for bench/overhead.py.

Kept apart from the runner so the arithmetic (added latency, CPU per request, ratios,
targets) can be read and checked without starting any server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from _load import LoadResult
from _stats import fmt, format_table, percentile, ratio, summarize

DIRECT_KEYS = ("direct-A", "direct-B")
GATEWAY_KEY = "batchgate"

# Targets printed beside the figures; informative, never asserted.
TARGET_ADDED_P50_MS = 3.0
TARGET_ADDED_P50_VS_PEER = 1 / 8
TARGET_THROUGHPUT_VS_PEER = 5.0
TARGET_CPU_MS_PER_REQUEST = 3.0


@dataclass
class PathResult:
    """Phases of one path at one concurrency, pooled across rounds."""

    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    elapsed_s: float = 0.0
    errors: int = 0
    unsent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    header_values: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    upstream_cpu_s: float = 0.0
    proxy_cpu_by_role: Counter[str] = field(default_factory=Counter)
    round_req_per_s: list[float] = field(default_factory=list)

    def add(self, phase: LoadResult) -> None:
        """Pool one phase; its probes are [upstream tree, proxy tree (if any)]."""
        self._pool(phase)
        self.error_samples = self.error_samples[:3]
        self.header_values += phase.header_values
        self.upstream_cpu_s += sum(phase.probe_deltas[0].values())
        if len(phase.probe_deltas) > 1:
            self.proxy_cpu_by_role.update(phase.probe_deltas[1])
        self.round_req_per_s.append(phase.sent / phase.elapsed_s if phase.elapsed_s else 0.0)

    def _pool(self, part: LoadResult | PathResult) -> None:
        """Add the figures a load phase and a pooled result both carry."""
        self.latencies_ms += part.latencies_ms
        self.sent += part.sent
        self.elapsed_s += part.elapsed_s
        self.errors += part.errors
        self.unsent += part.unsent
        self.outcomes.update(part.outcomes)
        self.error_samples += part.error_samples
        self.client_cpu_s += part.client_cpu_s

    def merged(self, other: PathResult) -> PathResult:
        """Return the pool of two results (direct A + B make the direct baseline)."""
        out = PathResult()
        for part in (self, other):
            out._pool(part)
            out.upstream_cpu_s += part.upstream_cpu_s
            out.round_req_per_s += part.round_req_per_s
        return out


def _per_request_ms(seconds: float, requests: int) -> float | None:
    return seconds * 1000.0 / requests if requests else None


def _row(
    key: str, concurrency: int, res: PathResult, base: dict[str, Any] | None
) -> dict[str, Any]:
    summary = summarize(res.latencies_ms, res.elapsed_s, res.sent, res.errors).as_dict()
    proxy_cpu = sum(res.proxy_cpu_by_role.values())
    headers = sorted(res.header_values)
    return {
        "path": key,
        "concurrency": concurrency,
        **summary,
        "unsent": res.unsent,
        "added_p50_ms": summary["p50_ms"] - base["p50_ms"] if base else None,
        "added_p95_ms": summary["p95_ms"] - base["p95_ms"] if base else None,
        "proxy_cpu_ms_per_req": (
            _per_request_ms(proxy_cpu, res.sent) if res.proxy_cpu_by_role else None
        ),
        "proxy_cpu_ms_per_req_by_role": {
            role: _per_request_ms(cpu, res.sent)
            for role, cpu in res.proxy_cpu_by_role.most_common()
        },
        "upstream_cpu_ms_per_req": _per_request_ms(res.upstream_cpu_s, res.sent),
        "client_cpu_ms_per_req": _per_request_ms(res.client_cpu_s, res.sent),
        "reported_overhead_p50_ms": percentile(headers, 50) if headers else None,
        "reported_overhead_p95_ms": percentile(headers, 95) if headers else None,
        "round_req_per_s": res.round_req_per_s,
        "outcomes": dict(res.outcomes),
        "error_samples": res.error_samples,
    }


def build_report(
    results: Mapping[str, Mapping[int, PathResult]], settings: Mapping[str, object]
) -> dict[str, Any]:
    """Turn pooled results into a JSON-ready report: rows, A/A check, ratios and targets."""
    rows: list[dict[str, Any]] = []
    aa: list[dict[str, Any]] = []
    for concurrency in sorted(results[DIRECT_KEYS[0]]):
        a, b = (results[k][concurrency] for k in DIRECT_KEYS)
        base = _row("direct", concurrency, a.merged(b), None)
        rows.append(base)
        aa += [_row(k, concurrency, results[k][concurrency], None) for k in DIRECT_KEYS]
        for key, by_conc in results.items():
            if key not in DIRECT_KEYS:
                rows.append(_row(key, concurrency, by_conc[concurrency], base))
    peer = next((k for k in results if k not in (*DIRECT_KEYS, GATEWAY_KEY)), None)
    return {
        "settings": dict(settings),
        "rows": rows,
        "aa_check": aa,
        "ratios": _ratios(rows, peer),
        "targets": _targets(rows, peer),
        "errors_total": sum(r["errors"] + r["unsent"] for r in rows),
    }


def _find(rows: list[dict[str, Any]], path: str | None, concurrency: int) -> dict[str, Any]:
    return next((r for r in rows if r["path"] == path and r["concurrency"] == concurrency), {})


def _ratios(rows: list[dict[str, Any]], peer: str | None) -> list[dict[str, Any]]:
    if peer is None:
        return []
    out = []
    for c in sorted({r["concurrency"] for r in rows}):
        gw, pr = _find(rows, GATEWAY_KEY, c), _find(rows, peer, c)
        out.append(
            {
                "name": f"added p50, {GATEWAY_KEY} / {peer}",
                "concurrency": c,
                "value": ratio(gw.get("added_p50_ms"), pr.get("added_p50_ms")),
            }
        )
        out.append(
            {
                "name": f"req/s, {GATEWAY_KEY} / {peer}",
                "concurrency": c,
                "value": ratio(gw.get("req_per_s"), pr.get("req_per_s")),
            }
        )
        out.append(
            {
                "name": f"CPU per request, {GATEWAY_KEY} / {peer}",
                "concurrency": c,
                "value": ratio(gw.get("proxy_cpu_ms_per_req"), pr.get("proxy_cpu_ms_per_req")),
            }
        )
    return out


def _targets(rows: list[dict[str, Any]], peer: str | None) -> list[dict[str, Any]]:
    conc = sorted({r["concurrency"] for r in rows})
    low, high = conc[0], conc[-1]
    gw_low, gw_high = _find(rows, GATEWAY_KEY, low), _find(rows, GATEWAY_KEY, high)
    targets = [
        _target(
            f"added p50 at c={low} <= {TARGET_ADDED_P50_MS:g} ms",
            gw_low.get("added_p50_ms"),
            TARGET_ADDED_P50_MS,
            "ms",
            lower_is_better=True,
        ),
        _target(
            f"CPU per request at c={high} <= {TARGET_CPU_MS_PER_REQUEST:g} ms",
            gw_high.get("proxy_cpu_ms_per_req"),
            TARGET_CPU_MS_PER_REQUEST,
            "ms",
            lower_is_better=True,
        ),
    ]
    if peer is not None:
        pr_low, pr_high = _find(rows, peer, low), _find(rows, peer, high)
        targets += [
            _target(
                f"added p50 at c={low} <= 1/8 of {peer}'s",
                ratio(gw_low.get("added_p50_ms"), pr_low.get("added_p50_ms")),
                TARGET_ADDED_P50_VS_PEER,
                "x",
                lower_is_better=True,
            ),
            _target(
                f"req/s at c={high} >= {TARGET_THROUGHPUT_VS_PEER:g}x {peer}'s",
                ratio(gw_high.get("req_per_s"), pr_high.get("req_per_s")),
                TARGET_THROUGHPUT_VS_PEER,
                "x",
                lower_is_better=False,
            ),
        ]
    return targets


def _target(
    name: str, value: float | None, limit: float, unit: str, lower_is_better: bool
) -> dict[str, Any]:
    met = None if value is None else (value <= limit if lower_is_better else value >= limit)
    return {
        "name": f"{GATEWAY_KEY} {name}",
        "value": value,
        "limit": limit,
        "unit": unit,
        "met": met,
    }


# --- rendering -----------------------------------------------------------------------------


def render_report(report: Mapping[str, Any]) -> str:
    """Render the report as plain-text tables."""
    s = report["settings"]
    load_before, load_after = s["loadavg_1min_before_after"]
    head = (
        f"batchgate overhead: {s['requests_per_phase']} requests/phase x {s['rounds']} rounds,"
        f" warm-up {s['warmup_per_phase']}/phase, {s['workers']} worker process(es) per proxy,"
        f" {s['cpus']} CPUs, python {s['python']}"
        + (f", peer {s['peer']} {s['peer_version']}" if s["peer"] else "")
        + f"\nload average (1 min) before/after: {load_before:.2f}/{load_after:.2f}"
    )
    parts = [
        head,
        "",
        "Latency and throughput (p50/p95 over all rounds; + = added vs direct)",
        _main_table(report["rows"]),
        "",
        "A/A check: the load generator straight to the upstream, twice per round",
        _aa_table(report["aa_check"]),
        *_headroom_lines(report),
        "",
        "Proxy CPU by process (ms per request)",
        _cpu_table(report["rows"]),
    ]
    if report["ratios"]:
        parts += ["", "Ratios", *_ratio_lines(report["ratios"])]
    parts += ["", "Targets (informative, not asserted)", *_target_lines(report["targets"])]
    parts += _error_lines(report["rows"])
    return "\n".join(parts)


def _headroom_lines(report: Mapping[str, Any]) -> list[str]:
    # The A/A verdict in words: both direct runs should agree, and the slower of them should
    # still be far faster than any proxy, or the proxies' figures measure the client instead.
    lines = []
    for c in sorted({r["concurrency"] for r in report["rows"]}):
        a, b = (_find(report["aa_check"], key, c)["req_per_s"] for key in DIRECT_KEYS)
        proxies = [
            r["req_per_s"]
            for r in report["rows"]
            if r["concurrency"] == c and r["path"] != "direct"
        ]
        spread = ratio(abs(a - b), max(a, b))
        headroom = ratio(min(a, b), max(proxies, default=None))
        lines.append(
            f"  c={c}: direct A and B req/s differ by {fmt((spread or 0.0) * 100, 0)}%;"
            f" the slower one is {fmt(headroom, 1)}x the fastest proxy's req/s"
        )
    return lines


def _main_table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "path",
        "conc",
        "p50 ms",
        "p95 ms",
        "req/s",
        "errors",
        "+p50 ms",
        "+p95 ms",
        "proxy CPU ms/req",
        "self-reported p50/p95 ms",
    ]
    body = []
    for r in rows:
        reported = (
            f"{fmt(r['reported_overhead_p50_ms'])}/{fmt(r['reported_overhead_p95_ms'])}"
            if r["reported_overhead_p50_ms"] is not None
            else "-"
        )
        errors = r["errors"] + r["unsent"]
        body.append(
            [
                r["path"],
                str(r["concurrency"]),
                fmt(r["p50_ms"]),
                fmt(r["p95_ms"]),
                fmt(r["req_per_s"], 0),
                f"{errors}{' !' if errors else ''}",
                fmt(r["added_p50_ms"]),
                fmt(r["added_p95_ms"]),
                fmt(r["proxy_cpu_ms_per_req"]),
                reported,
            ]
        )
    return format_table(headers, body)


def _aa_table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "run",
        "conc",
        "p50 ms",
        "p95 ms",
        "req/s",
        "req/s by round",
        "errors",
        "client CPU ms/req",
        "upstream CPU ms/req",
    ]
    body = [
        [
            r["path"],
            str(r["concurrency"]),
            fmt(r["p50_ms"]),
            fmt(r["p95_ms"]),
            fmt(r["req_per_s"], 0),
            " ".join(fmt(x, 0) for x in r["round_req_per_s"]),
            str(r["errors"]),
            fmt(r["client_cpu_ms_per_req"]),
            fmt(r["upstream_cpu_ms_per_req"]),
        ]
        for r in rows
    ]
    return format_table(headers, body)


def _cpu_table(rows: list[dict[str, Any]]) -> str:
    headers = ["path", "conc", "total", "by process (root, then children)"]
    body = []
    for r in rows:
        if r["proxy_cpu_ms_per_req"] is None:
            continue
        roles = ", ".join(
            f"{name}: {fmt(v)}"
            for name, v in r["proxy_cpu_ms_per_req_by_role"].items()
            if v and v >= 0.005
        )
        body.append([r["path"], str(r["concurrency"]), fmt(r["proxy_cpu_ms_per_req"]), roles])
    return format_table(headers, body)


def _ratio_lines(ratios: list[dict[str, Any]]) -> list[str]:
    return [f"  {r['name']} at c={r['concurrency']}: {fmt(r['value'], 3)}" for r in ratios]


def _target_lines(targets: list[dict[str, Any]]) -> list[str]:
    mark = {True: "met   ", False: "MISSED", None: "n/a   "}
    return [f"  [{mark[t['met']]}] {t['name']}: {fmt(t['value'], 3)} {t['unit']}" for t in targets]


def _error_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        if r["errors"] or r["unsent"]:
            lines.append(
                f"  {r['path']} c={r['concurrency']}: {r['errors']} errors,"
                f" {r['unsent']} unsent; outcomes {r['outcomes']}"
            )
            lines += [f"    e.g. {sample}" for sample in r["error_samples"]]
    return ["", "ERRORS (non-200 answers or failed requests)", *lines] if lines else []
