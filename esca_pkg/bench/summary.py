"""From raw samples to what a cell reports: medians and spreads, the paired
ESCA/vanilla ratio with its verdict, syscalls per request and the theoretical
minimum (see docs/bench.md for the definitions)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from esca_pkg.servers.measure import DEFERRABLE

NO_CHANGE = "no change"
FASTER = "faster"
SLOWER = "slower"


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the quartiles (inclusive method) of values."""
    vals = sorted(values)
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "q1": q1, "q3": q3}


def paired_ratios(esca: Sequence[float], vanilla: Sequence[float]) -> list[float]:
    """ESCA / vanilla for each interleaved pair (run i of B against run i of A)."""
    return [b / a for a, b in zip(vanilla, esca, strict=True)]


def verdict(ratios: Sequence[float]) -> str:
    """'faster' or 'slower' only when every pair agrees: a change whose range of
    pair ratios contains 1 is inside the spread, i.e. no change."""
    if min(ratios) > 1.0:
        return FASTER
    if max(ratios) < 1.0:
        return SLOWER
    return NO_CHANGE


def minimum(counted: Mapping[str, Any]) -> dict[str, float]:
    """The theoretical minimum of an ESCA run and how far the run is from it.

    measured   = every syscall the serving processes made, per request;
    deferrable = calls of the kinds libesca defers that still entered the
                 kernel directly (too large, batch too small, completion ...);
    entries    = kernel entries made by flushes (libesca's counter);
    needed     = flushes a segment cannot do without: one per segment that
                 deferred something, at most min(segments, flushes) (a flush
                 forced in the middle of a segment is not needed in theory);
    minimum    = (measured - deferrable - entries) + needed
               = the calls that cannot be deferred + one entry per segment.
    """
    n = counted["requests"]
    sc = counted["syscalls"]
    lib = counted["libesca"]
    measured = sc["total"] / n
    deferrable = sum(sc.get(k, 0) for k in DEFERRABLE) / n
    entries = lib["kernel_entries"] / n
    flushes = min(lib["flushes"], lib["segments"]) / n
    floor = measured - deferrable - entries + flushes
    return {
        "measured": measured,
        "non_deferrable": measured - deferrable - entries,
        "flush_share": flushes,
        "minimum": floor,
        "gap": measured - floor,
        "direct_deferrable": deferrable,
        "flush_entries": entries,
        "flushes_per_request": lib["flushes"] / n,
        "mean_batch": lib["flushed_calls"] / lib["flushes"] if lib["flushes"] else 0.0,
    }


def summarize(cell: Mapping[str, Any], esca_backend: str) -> dict[str, Any]:
    runs = cell["runs"]
    van = [s["rps"] for s in runs["off"]]
    esc = [s["rps"] for s in runs[esca_backend]]
    ratios = paired_ratios(esc, van)
    r = spread(ratios)
    out: dict[str, Any] = {
        "vanilla_rps": spread(van),
        "esca_rps": spread(esc),
        "ratio": r,
        "change_pct": (r["median"] - 1.0) * 100.0,
        "verdict": verdict(ratios),
        "vanilla_cpu_us_per_request": statistics.median(
            s["server_cpu_us_per_request"] for s in runs["off"]
        ),
        "esca_cpu_us_per_request": statistics.median(
            s["server_cpu_us_per_request"] for s in runs[esca_backend]
        ),
        "foreign_cpu_pct": statistics.median(
            s.get("foreign_cpu_pct", 0.0) for v in runs.values() for s in v
        ),
        "errors": sum(s["socket_errors"] + s["non2xx"] for v in runs.values() for s in v),
    }
    counted = cell["counted"]
    out["vanilla_syscalls_per_request"] = (
        counted["off"]["syscalls"]["total"] / counted["off"]["requests"]
    )
    out["esca_syscalls"] = minimum(counted[esca_backend])
    return out


def nan_paths(obj: Any, path: str = "") -> list[str]:
    """Where obj holds a NaN or an infinity (a number that was not measured)."""
    if isinstance(obj, float):
        return [path or "."] if not math.isfinite(obj) else []
    if isinstance(obj, Mapping):
        return [p for k, v in obj.items() for p in nan_paths(v, f"{path}.{k}")]
    if isinstance(obj, list | tuple):
        return [p for i, v in enumerate(obj) for p in nan_paths(v, f"{path}[{i}]")]
    return []
