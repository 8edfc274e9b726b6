"""The result document as JSON and as Markdown tables, and the target checks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from esca_pkg.bench import interval, summary
from esca_pkg.log import die

#: the reference's best throughput gains (paper: 2-vCPU Graviton2; lwan: prototype README)
REFERENCE_BEST = {"nginx": 12.0, "lighttpd": 23.0, "lwan": 30.0}
#: syscalls per request may exceed the minimum by this much
GAP_TARGET = 0.1
INTERVAL_TARGET_PCT = summary.TARGET_PCT
SMALL_KB = (1, 5)


def write_json(doc: dict[str, Any], path: Path) -> None:
    bad = summary.nan_paths(doc)
    if bad:
        die(
            f"the result holds numbers that were not measured (NaN) at {', '.join(bad[:5])}",
            hint="report this with the output of esca-bench --debug",
        )
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")


def _table(head: list[str], rows: Iterable[list[str]]) -> str:
    rows = [head, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _k(v: float) -> str:
    return f"{v / 1000:.1f}k"


def _groups(doc: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in doc["cells"]:
        out.setdefault((c["server"], c["backend"]), []).append(c)
    return out


def _us(v: float) -> str:
    return f"{v:.2f}"


def _loop(q: dict[str, Any]) -> str:
    v = q.get("entries_per_iteration")
    return "-" if v is None else f"{v:.2f}"


def _interval(f: dict[str, Any]) -> str:
    """'-3.1% [-4.0, -2.2]'"""
    return f"{f['change_pct']:+.1f}% [{f['low_pct']:+.1f}, {f['high_pct']:+.1f}]"


def _verdict(f: dict[str, Any]) -> str:
    v = str(f["verdict"])
    if v == interval.NO_CHANGE:
        return f"{v} (±{f['resolution_pct']:.1f}%)"
    if v == interval.UNRESOLVED:
        r = f["ratio"]
        return f"{v} ({r['n']} pairs: {r['confidence'] * 100:.0f}% interval)"
    return v


def cells_table(cells: list[dict[str, Any]]) -> str:
    head = [
        "size",
        "conns",
        "CPU µs/req A→B",
        "CPU change [95% interval]",
        "verdict (CPU/request)",
        "req/s A→B",
        "req/s change [95%]",
        "sc/req A→B",
        "minimum",
        "entries/iteration A→B",
        "other load",
    ]
    rows = []
    for c in cells:
        s = c["summary"]
        cpu, rps, m = s["cpu"], s["rps"], s["esca_syscalls"]
        rows.append(
            [
                f"{c['size_kb']} KB",
                str(c["connections"]),
                f"{_us(cpu['vanilla']['median'])}→{_us(cpu['esca']['median'])}",
                _interval(cpu),
                _verdict(cpu) + (" ⚠ errors" if s["errors"] else ""),
                f"{_k(rps['vanilla']['median'])}→{_k(rps['esca']['median'])}",
                _interval(rps),
                f"{s['vanilla_syscalls_per_request']:.2f}→{m['measured']:.2f}",
                f"{m['minimum']:.2f}",
                f"{_loop(s['vanilla_loop'])}→{_loop(s['esca_loop'])}",
                f"{s['foreign_cpu_pct']:.0f}%",
            ]
        )
    return _table(head, rows)


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per server and backend: the verdicts on CPU per request, the widest
    interval against the ±2 % target, the gap to the minimum, the best
    requests/s change at 1-5 KB against the reference's best."""
    out = []
    for (server, backend), cells in _groups(doc).items():
        cpu = [c["summary"]["cpu"] for c in cells]
        small = [c["summary"]["rps"]["change_pct"] for c in cells if c["size_kb"] in SMALL_KB]
        gaps = [c["summary"]["esca_syscalls"]["gap"] for c in cells]

        def named(verdict: str, cells: list[dict[str, Any]] = cells) -> list[str]:
            return [
                f"{c['size_kb']} KB -c {c['connections']}"
                for c in cells
                if c["summary"]["cpu"]["verdict"] == verdict
            ]

        # the interval's half width: "-3.0 % ± 1.0"
        widest = max((f["high_pct"] - f["low_pct"]) / 2 for f in cpu)
        needed = [f.get("pairs_within_target") for f in cpu]
        ref = REFERENCE_BEST.get(server)
        out.append(
            {
                "server": server,
                "backend": backend,
                "cells": len(cells),
                "cpu_improvement": named(interval.IMPROVEMENT),
                "cpu_regression": named(interval.REGRESSION),
                "cpu_no_change": len(named(interval.NO_CHANGE)),
                "cpu_unresolved": len(named(interval.UNRESOLVED)),
                "cpu_best_change_pct": min(f["change_pct"] for f in cpu),
                "cpu_widest_pct": widest,
                "cpu_pairs_needed": None if None in needed else max(n for n in needed if n),
                "cpu_interval_met": widest <= INTERVAL_TARGET_PCT
                and not named(interval.UNRESOLVED),
                "max_gap": max(gaps),
                "gap_met": max(gaps) <= GAP_TARGET,
                "small_best_change_pct": max(small) if small else None,
                "reference_best_pct": ref,
                "small_met": (max(small) >= ref) if (small and ref is not None) else None,
            }
        )
    return out


def targets_table(rows: list[dict[str, Any]]) -> str:
    head = [
        "server",
        "backend",
        "CPU/request: improvement / no change / regression / unresolved",
        "best CPU change",
        f"widest CPU interval, half width (target ±{INTERVAL_TARGET_PCT:g}%)",
        f"pairs needed for ±{INTERVAL_TARGET_PCT:g}% (this run)",
        f"max gap to minimum (target ≤ {GAP_TARGET})",
        "best req/s at 1-5 KB vs reference best",
    ]
    out = []
    for t in rows:
        small = (
            "not measured"
            if t["small_best_change_pct"] is None
            else f"{t['small_best_change_pct']:+.1f}% vs +{t['reference_best_pct']:.0f}%"
        )
        changed = t["cpu_improvement"] + t["cpu_regression"]
        out.append(
            [
                t["server"],
                t["backend"],
                f"{len(t['cpu_improvement'])} / {t['cpu_no_change']} / "
                f"{len(t['cpu_regression'])} / {t['cpu_unresolved']}"
                + (f" ({', '.join(changed)})" if changed else ""),
                f"{t['cpu_best_change_pct']:+.1f}%",
                f"±{t['cpu_widest_pct']:.1f}% "
                + ("(met)" if t["cpu_interval_met"] else "(missed)"),
                "not reached" if t["cpu_pairs_needed"] is None else str(t["cpu_pairs_needed"]),
                f"{t['max_gap']:.2f} " + ("(met)" if t["gap_met"] else "(missed)"),
                small,
            ]
        )
    return _table(head, out)


def _contention(doc: dict[str, Any]) -> str:
    c = doc.get("contention")
    if not c:
        return ""
    return (
        f"Other processes on the benchmark's CPUs: each pair waited for them to fall under "
        f"{c['quiet_busy_pct']:.0f}% busy (up to {c['quiet_wait_seconds']:.0f} s; waited "
        f"{c['waited_seconds']:.0f} s in all, {c['pairs_not_quiet']} pairs ran without a "
        "quiet moment); *other load* is the median share of the server CPU that others "
        "took during the runs."
    )


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """A result of any schema esca-bench wrote, with the current summaries and
    targets: each cell's summary is recomputed from its raw samples (schema
    1 kept every sample the current one needs)."""
    for cell in doc["cells"]:
        cell["summary"] = summary.summarize(cell, cell["backend"])
    doc["targets"] = targets(doc)
    return doc


def markdown(doc: dict[str, Any]) -> str:
    m, s = doc["machine"], doc["settings"]
    parts = [
        "# esca-bench servers",
        "",
        f"`{' '.join(doc['command'])}` — {doc['started']} to {doc['finished']}",
        "",
        f"{m['cpu']}, {m['cpus_usable']} CPUs, {m['memory']}, {m['os']}, kernel {m['kernel']} "
        f"({m['virtualization']}); load average {m['load_average'][0]:.2f} at start, "
        f"{m['load_average_end'][0]:.2f} at end. {s['placement_text']}. "
        f"Each cell: {s['repeats']} A/B pairs of {s['duration']} s wrk runs, one per round, "
        f"each round with a fresh pair of servers, A and B back to back (A first in odd "
        f"rounds, B first in even ones); plus one run of {s['count_duration']} s of each "
        f"counted by perf.",
        "",
        _contention(doc),
        "",
        "A = vanilla (same binary, libesca preloaded with `--backend off`), "
        "B = ESCA. The verdict rests on the server's CPU time per request (schedstat of "
        "the serving processes ÷ requests): change = median of the per-pair ratios B/A, "
        "with its 95% interval (distribution-free, from order statistics; fewer than "
        f"{interval.pairs_needed()} pairs give none: *unresolved*); an interval wholly "
        "below 0 is an *improvement*, wholly above a *regression*, else *no change* "
        "to within the ±x% it reaches. req/s: the same, a secondary figure. sc/req: "
        "syscalls per request of the serving processes (perf raw_syscalls:sys_enter); "
        "minimum: calls that cannot be deferred + one kernel entry per flush; "
        "entries/iteration: syscalls ÷ epoll waits (docs/bench.md).",
    ]
    for (server, backend), cells in _groups(doc).items():
        v = doc["versions"]["packages"].get(server, "")
        parts += ["", f"## {server} {v}, backend {backend}", "", cells_table(cells)]
    skipped: dict[tuple[str, str, int, str], list[str]] = {}
    for sk in doc["skipped"]:
        key = (sk["server"], sk["backend"], sk["size_kb"], sk["reason"])
        skipped.setdefault(key, []).append(str(sk.get("connections", "")))
    for (server, backend, size, reason), conns in skipped.items():
        parts += ["", f"Skipped: {server} ({backend}) {size} KB -c {','.join(conns)}: {reason}"]
    if doc["cells"]:
        parts += ["", "## Targets", "", targets_table(targets(doc))]
    micro = doc.get("micro")
    if micro:
        parts += [
            "",
            f"## Micro-benchmark (esca-bench micro, {micro['rounds']} segments x "
            f"{micro['repeats']} repeats)",
            "",
            micro["table"],
        ]
    return "\n".join(parts) + "\n"
