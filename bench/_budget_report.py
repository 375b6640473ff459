"""budget.py's workload and its accounting: the items it sends, the tokens the fake upstream
charges for them (its own rules: ceil(chars / 4) per text, the echoed reply capped by
max_tokens), the ideal finish time under the declared limits, and the report.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from _run import machine_settings
from _stats import fmt, format_table, ratio, summarize
from _window import ideal_finish

from batchgate.fake_upstream.behaviour import estimate_tokens, reply_words

FILLER = "the survey of river bridges and the maintenance records kept over several decades"
MAX_INPUTS = 2048
TARGET_IDEAL_RATIO = 0.97


@dataclass(frozen=True)
class Call:
    """One interactive request: when it was sent (perf_counter), its outcome, its token charge."""

    sent: float
    latency_ms: float
    status: str
    tokens: int

    @property
    def done(self) -> float:
        """When its answer arrived (perf_counter)."""
        return self.sent + self.latency_ms / 1000


def embed_text(i: int) -> str:
    """Bulk embedding input `i`: 40-80 characters, i.e. 10-20 tokens."""
    return f"passage {i:05d}: {FILLER}"[: 40 + (i * 37) % 41]


def chat_body(text: str, max_tokens: int) -> dict[str, Any]:
    """A chat request to group `chat`."""
    return {"model": "chat", "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens}


def chat_tokens(text: str, max_tokens: int) -> int:
    """Tokens the fake upstream charges a chat request: prompt + (capped) echoed reply."""
    words, _ = reply_words("chat-1", text, max_tokens)
    return estimate_tokens(text) + len(words)


def bulk_chat_text(i: int) -> str:
    """Bulk chat item `i`'s question."""
    return f"Bulk question {i}: summarise the passage in one line."


def _budget_rows(out: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per group and dimension: summed limit, demand, ideal finish (see budget.py's docstring)."""
    t0, actual = out["t0"], out["actual_s"]
    base = [c for c in out["baseline"] if c.status == "200"]
    during = [c for c in out["during"] if c.status == "200" and c.done - t0 <= actual]
    embed_tokens = sum(estimate_tokens(embed_text(i)) for i in range(args.embed_items))
    chat_bulk_tokens = sum(chat_tokens(bulk_chat_text(i), args.max_tokens)
                           for i in range(args.chat_items))
    packed = max(math.ceil(args.embed_items / MAX_INPUTS), math.ceil(embed_tokens / args.embed_tpm))
    n = args.deployments
    specs = [
        ("embed", "tokens", n * args.embed_tpm, embed_tokens, []),
        ("embed", "requests (packed min)", n * args.embed_rpm, packed, []),
        ("chat", "requests", n * args.chat_rpm, args.chat_items + len(during),
         [(c.sent - t0, 1.0) for c in base]),
        ("chat", "tokens", n * args.chat_tpm, chat_bulk_tokens + sum(c.tokens for c in during),
         [(c.sent - t0, float(c.tokens)) for c in base]),
    ]
    return [{"group": g, "dimension": d, "limit_per_min": limit, "demand": demand,
             "ideal_s": ideal_finish(limit, demand, prior),
             "achieved_per_min": demand * _done_share(out["jobs"][g]) / (actual / 60)}
            for g, d, limit, demand, prior in specs]


def _done_share(job: dict[str, Any]) -> float:
    counts = job.get("request_counts") or {}
    return counts.get("completed", 0) / counts["total"] if counts.get("total") else 0.0


def _interactive_summary(calls: list[Call]) -> dict[str, Any]:
    ok = [c.latency_ms for c in calls if c.status == "200"]
    summary = summarize(ok, 1.0, len(calls), len(calls) - len(ok)).as_dict()
    summary.pop("req_per_s")
    return {**summary, "outcomes": dict(Counter(c.status for c in calls))}


def _upstream_by_group(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    groups: dict[str, Counter[str]] = {"embed": Counter(), "chat": Counter()}
    for entry in stats["log"]:
        group = str(entry["model"]).split("-")[0]
        if group in groups:
            groups[group][str(entry["status"])] += 1
            groups[group]["inputs"] += int(entry["inputs"])
    return {g: dict(c) for g, c in groups.items()}


def build_report(out: dict[str, Any], args: argparse.Namespace, load: float) -> dict[str, Any]:
    """JSON-ready figures: budget use, 429s, interactive latency, job outcomes."""
    rows = _budget_rows(out, args)
    ideal = max(r["ideal_s"] for r in rows) + args.latency_ms / 1000
    jobs = {g: {"status": j.get("status"), "request_counts": j.get("request_counts"),
                "error": j.get("error")} for g, j in out["jobs"].items()}
    complete = all(j.get("status") == "completed" and _done_share(j) == 1.0
                   for j in out["jobs"].values())
    baseline, during = (_interactive_summary(out[k]) for k in ("baseline", "during"))
    ideal_ratio = ratio(ideal, out["actual_s"])
    upstream_429 = out["stats"]["by_status"].get("429", 0)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "log_dir")}
    return {
        "settings": {**settings, "max_inputs": MAX_INPUTS, **machine_settings(load)},
        "budget": rows, "ideal_s": ideal, "actual_s": out["actual_s"],
        "ideal_over_actual": ideal_ratio, "all_items_completed": complete,
        "target_ideal_met": complete and ideal_ratio is not None
        and ideal_ratio >= TARGET_IDEAL_RATIO,
        "upstream_429": upstream_429, "upstream_by_status": out["stats"]["by_status"],
        "upstream_by_group": _upstream_by_group(out["stats"]),
        "interactive": {"baseline": baseline, "during_bulk": during,
                        "p95_during_over_baseline": ratio(during["p95_ms"], baseline["p95_ms"])},
        "jobs": jobs,
        "all_ok": complete and not baseline["errors"] and not during["errors"],
    }


def render_report(report: dict[str, Any]) -> str:
    """The plain-text report."""
    st, inter = report["settings"], report["interactive"]
    budget = [[r["group"], r["dimension"], f"{r['limit_per_min']:,}", f"{r['demand']:,.0f}",
               fmt(r["ideal_s"], 1), f"{r['achieved_per_min']:,.0f}"] for r in report["budget"]]
    jobs = []
    for group, job in report["jobs"].items():
        counts, up = job["request_counts"] or {}, report["upstream_by_group"][group]
        jobs.append([group, str(job["status"]), str(counts.get("total", "-")),
                     str(counts.get("completed", "-")), str(counts.get("failed", "-")),
                     str(sum(v for k, v in up.items() if k != "inputs")), str(up.get("429", 0))])
    lat = [[name, str(s["requests"]), fmt(s["p50_ms"], 1), fmt(s["p95_ms"], 1),
            fmt(s["max_ms"], 1), f"{s['errors']}{' !' if s['errors'] else ''}"]
           for name, s in (("baseline (no bulk)", inter["baseline"]),
                           ("during bulk", inter["during_bulk"]))]
    ideal_ratio = fmt(report["ideal_over_actual"], 3)
    verdict = "met" if report["target_ideal_met"] else "NOT met"
    if not report["all_items_completed"]:
        ideal_ratio, verdict = "n/a", "not every bulk item completed, so there is no finish time"
    lines = [
        f"budget: {st['deployments']} deployments per group; embed {st['embed_items']:,} items,"
        f" rpm {st['embed_rpm']:,} tpm {st['embed_tpm']:,} each; chat {st['chat_items']:,} items,"
        f" rpm {st['chat_rpm']:,} tpm {st['chat_tpm']:,} each; upstream {st['latency_ms']:.0f} ms;"
        f" interactive every {st['interval']} s; {st['cpus']} CPUs,"
        f" load {st['loadavg_1min_before_after']}",
        "",
        format_table(["group", "dimension", "sum limit/min", "demand", "ideal s",
                      "achieved/min"], budget),
        "",
        format_table(["bulk job", "status", "items", "completed", "failed", "upstream reqs",
                      "upstream 429"], jobs),
        "",
        format_table(["interactive", "sent", "p50 ms", "p95 ms", "max ms", "errors"], lat),
        "",
        "targets (printed, not asserted):",
        f"  ideal / actual = {fmt(report['ideal_s'], 1)} s / {fmt(report['actual_s'], 1)} s"
        f" = {ideal_ratio} (target >= {TARGET_IDEAL_RATIO}): {verdict}",
        f"  upstream 429s = {report['upstream_429']} (target 0):"
        f" {'met' if report['upstream_429'] == 0 else 'NOT met'}",
        f"  interactive p95 during bulk / baseline = {fmt(inter['p95_during_over_baseline'], 2)}"
        f" ({fmt(inter['during_bulk']['p95_ms'], 1)} / {fmt(inter['baseline']['p95_ms'], 1)} ms)",
    ]
    for name, s in (("baseline", inter["baseline"]), ("during", inter["during_bulk"])):
        if s["errors"]:
            lines.append(f"  interactive {name} outcomes: {s['outcomes']}")
    lines += [f"  {g} job: {j['error']}" for g, j in report["jobs"].items() if j["error"]]
    return "\n".join(lines)

