"""The result document as JSON and as Markdown tables, and the target checks."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from esca_pkg.bench import summary
from esca_pkg.log import die

#: the reference's best throughput gains (paper: 2-vCPU Graviton2; lwan: prototype README)
REFERENCE_BEST = {"nginx": 12.0, "lighttpd": 23.0, "lwan": 30.0}
#: syscalls per request may exceed the minimum by this much
GAP_TARGET = 0.1
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


def cells_table(cells: list[dict[str, Any]]) -> str:
    head = [
        "size",
        "conns",
        "vanilla req/s (min-max)",
        "ESCA req/s (min-max)",
        "change (pairs)",
        "verdict",
        "CPU µs/req A→B",
        "sc/req vanilla",
        "sc/req ESCA",
        "minimum",
        "gap",
        "other load",
    ]
    rows = []
    for c in cells:
        s = c["summary"]
        v, e, r, m = s["vanilla_rps"], s["esca_rps"], s["ratio"], s["esca_syscalls"]
        rows.append(
            [
                f"{c['size_kb']} KB",
                str(c["connections"]),
                f"{_k(v['median'])} ({_k(v['min'])}-{_k(v['max'])})",
                f"{_k(e['median'])} ({_k(e['min'])}-{_k(e['max'])})",
                f"{s['change_pct']:+.1f}% "
                f"({(r['min'] - 1) * 100:+.0f}…{(r['max'] - 1) * 100:+.0f})",
                s["verdict"] + (" ⚠ errors" if s["errors"] else ""),
                f"{s['vanilla_cpu_us_per_request']:.1f}→{s['esca_cpu_us_per_request']:.1f}",
                f"{s['vanilla_syscalls_per_request']:.2f}",
                f"{m['measured']:.2f}",
                f"{m['minimum']:.2f}",
                f"{m['gap']:.2f}",
                f"{s['foreign_cpu_pct']:.0f}%" if "foreign_cpu_pct" in s else "?",
            ]
        )
    return _table(head, rows)


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per server and backend: the issue's three targets, measured."""
    out = []
    for (server, backend), cells in _groups(doc).items():
        changes = [c["summary"]["change_pct"] for c in cells]
        small = [c["summary"]["change_pct"] for c in cells if c["size_kb"] in SMALL_KB]
        gaps = [c["summary"]["esca_syscalls"]["gap"] for c in cells]
        slower = [
            f"{c['size_kb']} KB -c {c['connections']}"
            for c in cells
            if c["summary"]["verdict"] == summary.SLOWER
        ]
        faster = sum(c["summary"]["verdict"] == summary.FASTER for c in cells)
        ref = REFERENCE_BEST.get(server)
        out.append(
            {
                "server": server,
                "backend": backend,
                "cells": len(cells),
                "best_change_pct": max(changes),
                "mean_change_pct": statistics.mean(changes),
                "faster": faster,
                "slower": slower,
                "no_change": len(cells) - faster - len(slower),
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
        "best / mean change",
        "faster / no change / slower",
        f"max gap to minimum (target ≤ {GAP_TARGET})",
        "best at 1-5 KB vs reference best",
    ]
    out = []
    for t in rows:
        small = (
            "not measured"
            if t["small_best_change_pct"] is None
            else f"{t['small_best_change_pct']:+.1f}% vs +{t['reference_best_pct']:.0f}% "
            + ("(met)" if t["small_met"] else "(missed)")
        )
        out.append(
            [
                t["server"],
                t["backend"],
                f"{t['best_change_pct']:+.1f}% / {t['mean_change_pct']:+.1f}%",
                f"{t['faster']} / {t['no_change']} / {len(t['slower'])}"
                + (f" ({', '.join(t['slower'])})" if t["slower"] else ""),
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
        "B = ESCA. req/s: median (min-max); change: median of the per-pair ratios B/A "
        "(their range); a range that contains 0 is *no change*. sc/req: syscalls per "
        "request of the serving processes (perf raw_syscalls:sys_enter); minimum: calls that "
        "cannot be deferred + one kernel entry per flush (docs/bench.md).",
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
