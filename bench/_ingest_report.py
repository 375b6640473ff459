"""ingest.py's records (timeline, memory, output-file checks) and its report."""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from _packing_report import DIM, MAX_INPUTS, Phase
from _run import machine_settings
from _stats import fmt, format_table, ratio

MB = 2**20
TARGET_RATIO = 0.8
TARGET_API_GROWTH_MB = 100.0
STEPS = ("upload", "validate", "queued", "run", "finalize", "download")
"""The end-to-end time split: each step runs from the previous mark to its own (below)."""
MARKS = ("uploaded", "validated", "in_progress", "finalizing", "completed", "downloaded")
CPU_ROLES = {"api": "api", "celery worker": "worker", "celery beat": "beat", "redis": "redis",
             "upstream": "upstream", "client": "client"}
"""Roles of ingest.py's CPU probe -> their column in the table."""


@dataclass
class OutputCheck:
    """What the downloaded output file held, line by line."""

    lines: int = 0
    duplicates: int = 0
    out_of_order: int = 0  # line k whose custom_id is not c<k>
    unknown_ids: int = 0
    first_id: str | None = None
    last_id: str | None = None
    error_file_lines: int = 0
    missing: int = 0

    def check(self, line: dict[str, Any], phase: Phase, texts: list[str],
              seen: bytearray) -> None:
        """Count one output line (the k-th read); its vector goes to `phase.check`."""
        custom_id = str(line.get("custom_id"))
        index = int(custom_id[1:]) if custom_id[1:].isdigit() else -1
        self.first_id = self.first_id or custom_id
        self.last_id = custom_id
        self.out_of_order += index != self.lines
        self.lines += 1
        if not 0 <= index < len(seen):
            self.unknown_ids += 1
            return
        self.duplicates += seen[index]
        seen[index] = 1
        response = line.get("response") or {}
        data = (response.get("body") or {}).get("data") or []
        if response.get("status_code") == 200 and len(data) == 1:
            phase.check(index, texts[index], data[0].get("embedding"))
        else:
            phase.bad[f"status {response.get('status_code')}"] += 1


@dataclass
class Ingest:
    """The gateway path: one file uploaded, one batch run, its output read back."""

    lines: int
    file_bytes: int = 0
    generate_s: float = 0.0  # writing the input file (not part of any figure below)
    marks: dict[str, float] = field(default_factory=dict)  # MARKS -> s since upload start
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # mark -> CPU s by role
    batch: dict[str, Any] = field(default_factory=dict)  # the last batch object read
    finished_at_validated: int | None = None  # items already done when `validated` was seen
    memory: dict[str, Any] = field(default_factory=dict)  # ingest.py's gauges, MB / bytes
    server_log: dict[str, float] = field(default_factory=dict)  # the worker's own timings
    output: OutputCheck = field(default_factory=OutputCheck)
    errors: list[str] = field(default_factory=list)


LOG_TIMINGS = {
    "worker_validate_s": re.compile(r"batch (\S+): \d+ requests, \d+ items read in ([\d.]+) s"),
    "worker_finalize_s": re.compile(r"batch (\S+) \w+: files written in ([\d.]+) s"),
}


def server_timings(log: str, batch_id: str) -> dict[str, float]:
    """The worker's own timings of the batch from `batchgate up`'s log, and how many log
    lines look like errors."""
    found: dict[str, float] = {"error_lines": 0}
    for line in log.splitlines():
        found["error_lines"] += any(w in line for w in ("ERROR", "CRITICAL", "Traceback"))
        for name, pattern in LOG_TIMINGS.items():
            if (match := pattern.search(line)) and match.group(1) == batch_id:
                found[name] = float(match.group(2))
    return found


def time_split(marks: dict[str, float]) -> dict[str, float | None]:
    """Seconds per step of STEPS (None where a mark was never seen)."""
    split: dict[str, float | None] = {}
    previous: float | None = 0.0
    for step, mark in zip(STEPS, MARKS, strict=True):
        now = marks.get(mark)
        split[step] = now - previous if now is not None and previous is not None else None
        previous = now
    return split


def cpu_split(cpu: dict[str, dict[str, float]]) -> dict[str, dict[str, float] | None]:
    """CPU seconds per role used during each step of STEPS (None where a mark is missing)."""
    split: dict[str, dict[str, float] | None] = {}
    previous = cpu.get("start")
    for step, mark in zip(STEPS, MARKS, strict=True):
        now = cpu.get(mark)
        split[step] = ({role: now[role] - previous.get(role, 0.0) for role in now}
                       if now is not None and previous is not None else None)
        previous = now
    return split


def batch_clock(batch: dict[str, Any]) -> dict[str, int | None]:
    """The batch object's own timestamps (whole seconds) as offsets from its created_at."""
    created = batch.get("created_at") or 0
    names = ("in_progress_at", "finalizing_at", "completed_at")
    return {name: batch[name] - created if batch.get(name) else None for name in names}


def _upload_validate(run: Ingest) -> dict[str, float | None]:
    upload, validated = run.marks.get("uploaded"), run.marks.get("validated")
    create_to_valid = validated - upload if validated and upload else None
    return {"upload_s": upload, "validate_s": create_to_valid,
            "upload_lines_per_s": ratio(run.lines, upload),
            "validate_lines_per_s": ratio(run.lines, create_to_valid),
            "upload_validate_lines_per_s": ratio(run.lines, validated),
            "upload_mb_per_s": ratio(run.file_bytes / MB, upload)}


def _checks_ok(run: Ingest, gateway: Phase) -> bool:
    out = run.output
    return (not run.errors and out.lines == run.lines and not out.duplicates
            and not out.out_of_order and not out.missing and not out.error_file_lines
            and not +gateway.bad and not gateway.sample_mismatches)


def build_report(run: Ingest, phases: list[Phase], args: argparse.Namespace,
                 load: float) -> dict[str, Any]:
    """JSON-ready figures: ingest rates, memory, the time split and gateway / direct."""
    rows = [{**asdict(p), "bad": dict(+p.bad), "items_per_s": ratio(p.items, p.seconds)}
            for p in phases]
    direct = [r["items_per_s"] for r in rows if r["name"].startswith("direct")]
    direct_mean = sum(direct) / len(direct) if direct else None
    gateway = next(p for p in phases if p.name == "gateway")
    end_to_end = ratio(run.lines, run.marks.get("downloaded"))
    gain = ratio(end_to_end, direct_mean)
    growth = run.memory.get("api_growth_mb")
    return {
        "settings": {"lines": args.lines, "queue_workers": args.queue_workers,
                     "in_flight": args.in_flight, "dim": DIM, "max_inputs": MAX_INPUTS,
                     **machine_settings(load)},
        "input": {"lines": run.lines, "bytes": run.file_bytes, "generate_s": run.generate_s},
        "ingest": _upload_validate(run),
        "finished_at_validated": run.finished_at_validated,
        "memory": run.memory,
        "marks_s": run.marks,
        "time_split_s": time_split(run.marks),
        "cpu_split_s": cpu_split(run.cpu),
        "batch_clock_s": batch_clock(run.batch),
        "batch_progress": run.batch.get("progress"),
        "server_log_s": run.server_log,
        "output": asdict(run.output),
        "phases": rows,
        "end_to_end_items_per_s": end_to_end,
        "direct_items_per_s_mean": direct_mean,
        "direct_ab_spread": ratio(max(direct) - min(direct), direct_mean) if direct else None,
        "ratio_gateway_direct": gain,
        "target_ratio": TARGET_RATIO,
        "target_ratio_met": gain is not None and gain >= TARGET_RATIO,
        "target_api_growth_mb": TARGET_API_GROWTH_MB,
        "target_api_growth_met": growth is not None and growth < TARGET_API_GROWTH_MB,
        "errors": run.errors,
        "all_checked_ok": _checks_ok(run, gateway),
    }


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def _ingest_table(report: dict[str, Any]) -> str:
    ing, mem = report["ingest"], report["memory"]
    rows = [
        ["upload", fmt(ing["upload_s"]), fmt(ing["upload_lines_per_s"], 0),
         f"{fmt(ing['upload_mb_per_s'], 1)} MB/s"],
        ["validate (create -> total set)", fmt(ing["validate_s"]),
         fmt(ing["validate_lines_per_s"], 0), ""],
        ["upload + validate", fmt(report["marks_s"].get("validated")),
         fmt(ing["upload_validate_lines_per_s"], 0), ""],
    ]
    memory = [
        ["API workers RSS growth (sampled peak)", f"{fmt(mem.get('api_growth_mb'), 1)} MB"],
        ["API workers peak RSS (VmHWM) growth", f"{fmt(mem.get('api_hwm_growth_mb'), 1)} MB"],
        ["Celery worker RSS growth, upload+validate", f"{fmt(mem.get('worker_growth_mb'), 1)} MB"],
        ["Celery worker RSS growth, whole run", f"{fmt(mem.get('worker_run_growth_mb'), 1)} MB"],
        ["Redis used_memory growth / line (validated)",
         f"{fmt(mem.get('redis_bytes_per_item'), 0)} B"],
        ["Redis used_memory peak during validation / line",
         f"{fmt(mem.get('redis_peak_bytes_per_item'), 0)} B"],
        ["MEMORY USAGE items hash / line", f"{fmt(mem.get('items_hash_bytes_per_item'), 0)} B"],
        ["MEMORY USAGE results hash / line (at the end)",
         f"{fmt(mem.get('results_hash_bytes_per_item'), 0)} B"],
    ]
    return "\n\n".join([format_table(["step", "s", "lines/s", ""], rows),
                        format_table(["memory", ""], memory)])


def _split_table(report: dict[str, Any]) -> str:
    split, marks, cpu = report["time_split_s"], report["marks_s"], report["cpu_split_s"]
    total = marks.get("downloaded")
    rows = []
    for step in [*STEPS, "total"]:
        wall = total if step == "total" else split[step]
        used = _cpu_total(cpu) if step == "total" else cpu.get(step)
        rows.append([step, fmt(wall), fmt(ratio(wall, total), 3),
                     "" if step == "queued" else fmt(ratio(report["input"]["lines"], wall), 0),
                     *(fmt(used.get(role)) if used else "-" for role in CPU_ROLES)])
    headers = ["step (client clock, 0.25 s polls)", "wall s", "share", "lines/s",
               *(f"{label} cpu s" for label in CPU_ROLES.values())]
    return format_table(headers, rows)


def _cpu_total(cpu: dict[str, dict[str, float] | None]) -> dict[str, float] | None:
    steps = [used for used in cpu.values() if used is not None]
    if len(steps) < len(cpu):
        return None
    return {role: sum(used.get(role, 0.0) for used in steps) for role in CPU_ROLES}


def _phase_table(report: dict[str, Any]) -> str:
    headers = ["path", "items/s", "total s", "upstream reqs", "inputs/req", "429s",
               "vectors ok", "bad", "sample bad"]
    rows = []
    for r in report["phases"]:
        bad = sum(r["bad"].values())
        rows.append([r["name"], fmt(r["items_per_s"], 0), fmt(r["seconds"]),
                     f"{r['upstream_requests']:,}", fmt(r["inputs_per_request"], 1),
                     str(r["upstream_status"].get("429", 0)), f"{r['vectors_ok']:,}",
                     f"{bad}{' !' if bad else ''}", f"{r['sample_mismatches']}/{r['sampled']}"])
    return format_table(headers, rows)


def render_report(report: dict[str, Any]) -> str:
    """The plain-text report."""
    st, out = report["settings"], report["output"]
    size = report["input"]["bytes"] / MB
    mem = report["memory"]
    lines = [
        f"ingest: {st['lines']:,} /v1/embeddings lines ({size:,.0f} MiB) uploaded to"
        f" /v1/files, run as one /v1/batches batch, output downloaded; upstream zero-latency,"
        f" unlimited, dim {st['dim']}; {st['queue_workers']} Celery worker(s); {st['cpus']}"
        f" CPUs, load {st['loadavg_1min_before_after']}",
        "", _ingest_table(report), "", _split_table(report), "",
        f"batch object clock (s after created_at): {report['batch_clock_s']};"
        f" worker log: {report['server_log_s']}",
        f"items finished when validation was seen over: {report['finished_at_validated']}",
        f"batch progress at the end: {report['batch_progress']}", "",
        _phase_table(report), "",
        f"output file: {out['lines']:,} lines, first {out['first_id']}, last {out['last_id']},"
        f" duplicates {out['duplicates']}, missing {out['missing']}, out of input order"
        f" {out['out_of_order']}, error-file lines {out['error_file_lines']}",
        f"direct A/B spread {fmt(report['direct_ab_spread'], 3)} of their mean",
        f"end to end {fmt(report['end_to_end_items_per_s'], 0)} items/s vs direct"
        f" {fmt(report['direct_items_per_s_mean'], 0)}: ratio"
        f" {fmt(report['ratio_gateway_direct'], 3)} (target >= {report['target_ratio']},"
        f" printed, not asserted): {_verdict(report['target_ratio_met'])}",
        f"API RSS growth {fmt(mem.get('api_growth_mb'), 1)} MB (target <"
        f" {report['target_api_growth_mb']:.0f} MB): {_verdict(report['target_api_growth_met'])}",
        f"every line checked (N lines, each custom_id once in input order, {st['dim']}-dim"
        f" vectors, sample equal to the upstream's): {'yes' if report['all_checked_ok'] else 'NO'}",
    ]
    lines += [f"  ERROR: {e}" for e in report["errors"][:5]]
    for r in report["phases"]:
        lines += [f"  {r['name']} {kind}: {n}" for kind, n in r["bad"].items()]
        lines += [f"  ERROR {r['name']}: {e}" for e in r["errors"][:3]]
    return "\n".join(lines)
