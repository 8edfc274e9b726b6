"""From raw samples to what a cell reports: the server's CPU time per request
as the primary figure (the median of the per-pair ESCA/vanilla ratios, its
95 % interval and the verdict drawn from it), requests/s the same way as a
secondary figure, syscalls and kernel entries per loop iteration, and the
theoretical minimum (see docs/bench.md for the definitions)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from esca_pkg.bench import interval
from esca_pkg.servers.measure import DEFERRABLE

#: the CPU-per-request interval should reach no further than this from its median
TARGET_PCT = 2.0
#: the calls that end an event-loop iteration (the server waits for events)
WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")
#: libesca counters of waits that entered the kernel inside a flush (flush +
#: wait in one entry, libesca's waits_carried): those are iterations too
LIBESCA_WAITS = ("waits_carried",)


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


def loop_entries(counted: Mapping[str, Any]) -> dict[str, float | None]:
    """Kernel entries per event-loop iteration: every system call of the serving
    processes divided by the waits for events (epoll_wait and its variants,
    plus the waits libesca made inside a flush when it counts them).  None
    when the run counted no wait (a server that does not use epoll)."""
    sc = counted["syscalls"]
    lib = counted.get("libesca", {})
    waits = sum(sc.get(k, 0) for k in WAITS) + sum(lib.get(k, 0) for k in LIBESCA_WAITS)
    n = counted["requests"]
    return {
        "entries_per_iteration": sc["total"] / waits if waits else None,
        "iterations_per_request": waits / n,
    }


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


def ratio_figure(
    esca: Sequence[float], vanilla: Sequence[float], lower_is_better: bool
) -> dict[str, Any]:
    """Median and spread of A and B, and the interval and verdict of the pairs' B/A."""
    ratios = paired_ratios(esca, vanilla)
    iv = interval.median_interval(ratios)
    return {
        "vanilla": spread(vanilla),
        "esca": spread(esca),
        "ratios": ratios,
        "ratio": iv.as_dict(),
        "change_pct": (iv.median - 1.0) * 100.0,
        "low_pct": (iv.low - 1.0) * 100.0,
        "high_pct": (iv.high - 1.0) * 100.0,
        "resolution_pct": interval.resolution_pct(iv),
        "half_width_pct": interval.half_width_pct(iv),
        "verdict": interval.verdict(iv, lower_is_better),
        # how many pairs this run needed for an interval within ±TARGET_PCT
        "pairs_within_target": interval.pairs_within(ratios, TARGET_PCT),
    }


def summarize(cell: Mapping[str, Any], esca_backend: str) -> dict[str, Any]:
    """What a cell reports.  Works on the raw samples of every schema (the
    report recomputes it when it reads an older results.json)."""
    runs = cell["runs"]
    off, on = runs["off"], runs[esca_backend]
    out: dict[str, Any] = {
        "cpu": ratio_figure(
            [s["server_cpu_us_per_request"] for s in on],
            [s["server_cpu_us_per_request"] for s in off],
            lower_is_better=True,
        ),
        "rps": ratio_figure([s["rps"] for s in on], [s["rps"] for s in off], False),
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
    out["vanilla_loop"] = loop_entries(counted["off"])
    out["esca_loop"] = loop_entries(counted[esca_backend])
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
