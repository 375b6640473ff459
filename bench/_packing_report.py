"""packing.py's per-path record, its checks of every vector, and the report."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from _run import machine_settings
from _stats import fmt, format_table, ratio

from batchgate.fake_upstream.vectors import embedding_vector, from_base64

DIM = 16
MAX_INPUTS = 2048
SAMPLES = 500  # items per path compared with the upstream's own vector
TARGET_RATIO = 0.8


@dataclass
class Phase:
    """What one path did with the chunks."""

    name: str
    items: int
    seconds: float = 0.0  # first byte sent -> every vector read
    submit_s: float | None = None  # gateway: until every job was accepted
    job_end_s: float | None = None  # gateway: until every job had ended
    vectors_ok: int = 0
    bad: Counter[str] = field(default_factory=Counter)  # failed, wrong dim, missing, ...
    sampled: int = 0
    sample_mismatches: int = 0
    upstream_requests: int = 0
    upstream_status: dict[str, int] = field(default_factory=dict)
    inputs_per_request: float | None = None
    errors: list[str] = field(default_factory=list)

    def check(self, index: int, text: str, embedding: Any) -> None:
        """Count one item's vector; compare it with the upstream's own on sampled items."""
        vector = from_base64(embedding) if isinstance(embedding, str) else embedding
        if not isinstance(vector, list) or len(vector) != DIM:
            self.bad["wrong dimension"] += 1
            return
        self.vectors_ok += 1
        if index % max(1, self.items // SAMPLES) == 0:
            self.sampled += 1
            expected = embedding_vector(text, DIM)
            if any(abs(a - b) > 1e-6 for a, b in zip(vector, expected, strict=True)):
                self.sample_mismatches += 1


def build_report(phases: list[Phase], args: argparse.Namespace, load: float) -> dict[str, Any]:
    """JSON-ready figures per phase and the gateway / direct ratio."""
    rows = [{**asdict(p), "bad": dict(+p.bad), "items_per_s": ratio(p.items, p.seconds)}
            for p in phases]
    direct = [r["items_per_s"] for r in rows if r["name"].startswith("direct")]
    gateway = next(r["items_per_s"] for r in rows if r["name"] == "gateway")
    direct_mean = sum(direct) / len(direct)
    gain = ratio(gateway, direct_mean)
    ok = all(not r["bad"] and not r["sample_mismatches"] and not r["errors"] for r in rows)
    return {
        "settings": {"chunks": args.chunks, "jobs": args.jobs, "in_flight": args.in_flight,
                     "queue_workers": args.queue_workers, "dim": DIM, "max_inputs": MAX_INPUTS,
                     **machine_settings(load)},
        "phases": rows,
        "direct_items_per_s_mean": direct_mean,
        "direct_ab_spread": ratio(max(direct) - min(direct), direct_mean),
        "ratio_gateway_direct": gain,
        "target_ratio": TARGET_RATIO,
        "target_met": gain is not None and gain >= TARGET_RATIO,
        "all_checked_ok": ok,
    }


def render_report(report: dict[str, Any]) -> str:
    """The plain-text report."""
    st = report["settings"]
    headers = ["path", "items/s", "total s", "submit s", "job end s", "upstream reqs",
               "inputs/req", "429s", "vectors ok", "bad", "sample bad"]
    rows = []
    for r in report["phases"]:
        bad = sum(r["bad"].values())
        rows.append([r["name"], fmt(r["items_per_s"], 0), fmt(r["seconds"]), fmt(r["submit_s"]),
                     fmt(r["job_end_s"]), f"{r['upstream_requests']:,}",
                     fmt(r["inputs_per_request"], 1), str(r["upstream_status"].get("429", 0)),
                     f"{r['vectors_ok']:,}", f"{bad}{' !' if bad else ''}",
                     f"{r['sample_mismatches']}/{r['sampled']}"])
    verdict = "met" if report["target_met"] else "NOT met"
    lines = [
        f"packing: {st['chunks']:,} chunks in {st['jobs']} batch job(s); direct client"
        f" {st['max_inputs']} inputs/request x {st['in_flight']} in flight; upstream zero-latency,"
        f" dim {st['dim']}; {st['queue_workers']} Celery worker(s); {st['cpus']} CPUs,"
        f" load {st['loadavg_1min_before_after']}",
        "",
        format_table(headers, rows),
        "",
        f"direct A/B spread {fmt(report['direct_ab_spread'], 3)} of their mean",
        f"ratio gateway / direct items/s = {fmt(report['ratio_gateway_direct'], 3)}"
        f" (target >= {report['target_ratio']}, printed, not asserted): {verdict}",
        f"every item checked (completed, {st['dim']}-dim vector; sample equal to the upstream's):"
        f" {'yes' if report['all_checked_ok'] else 'NO'}",
    ]
    for r in report["phases"]:
        lines += [f"  {r['name']} {kind}: {n}" for kind, n in r["bad"].items()]
        lines += [f"  ERROR {r['name']}: {e}" for e in r["errors"][:3]]
    return "\n".join(lines)

