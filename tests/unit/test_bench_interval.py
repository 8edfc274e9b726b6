"""esca-bench's verdict figure: the 95 % interval of the median of the per-pair
ratios (order statistics) and the verdict drawn from it; a cell's summary,
entries per loop iteration, and the report of an older results.json."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest

from esca_pkg.bench import interval, report, runner, summary
from esca_pkg.bench.interval import Interval

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("n", "k", "coverage"),
    # the textbook table of the median's order-statistic interval
    [
        (6, 1, 0.96875),
        (8, 1, 0.9921875),
        (9, 2, 0.9609375),
        (12, 3, 0.9614),
        (20, 6, 0.9586),
        (30, 10, 0.9572),
    ],
)
def test_order_ranks_are_the_textbook_ones(n, k, coverage):
    got_k, got_cov = interval.order_ranks(n)
    assert got_k == k
    assert got_cov == pytest.approx(coverage, abs=1e-4)


def test_below_six_values_there_is_no_95_percent_interval():
    assert interval.pairs_needed() == 6
    iv = interval.median_interval([0.97, 0.98, 0.96, 0.99, 0.95])
    assert (iv.low, iv.high) == (0.95, 0.99)  # the full range ...
    assert iv.confidence == pytest.approx(0.9375) and not iv.resolved  # ... at 94 %
    assert interval.verdict(iv) == interval.UNRESOLVED
    with pytest.raises(ValueError):
        interval.median_interval([])


def test_interval_holds_the_true_median_95_percent_of_the_time():
    # a skewed distribution with a known median (lognormal: e^mu), 3000 draws of
    # 12 pairs: the interval must cover at least its stated confidence
    rng = random.Random(14)
    mu = 0.02
    covered = 0
    trials = 3000
    for _ in range(trials):
        vals = [rng.lognormvariate(mu, 0.05) for _ in range(12)]
        iv = interval.median_interval(vals)
        covered += iv.low <= 2.718281828459045**mu <= iv.high
    assert covered / trials >= 0.95


def test_interval_is_order_statistics_of_the_values():
    vals = [1.05, 0.98, 1.01, 1.00, 0.99, 1.02, 1.03, 0.97, 1.04, 1.06]
    iv = interval.median_interval(vals)
    srt = sorted(vals)
    assert (iv.low, iv.high) == (srt[1], srt[8])  # n = 10: ranks 2 and 9
    assert iv.median == statistics.median(vals) and iv.n == 10


def _iv(low: float, high: float, resolved: bool = True) -> Interval:
    return Interval((low + high) / 2, low, high, 10, 0.98 if resolved else 0.5, resolved)


@pytest.mark.parametrize(
    ("iv", "lower_is_better", "expected"),
    [
        (_iv(0.95, 0.99), True, interval.IMPROVEMENT),  # cheaper in CPU
        (_iv(1.01, 1.04), True, interval.REGRESSION),
        (_iv(0.99, 1.01), True, interval.NO_CHANGE),
        (_iv(1.01, 1.04), False, interval.IMPROVEMENT),  # more requests/s
        (_iv(0.95, 0.99), False, interval.REGRESSION),
        (_iv(0.95, 0.99, resolved=False), True, interval.UNRESOLVED),
    ],
)
def test_verdict_from_the_interval(iv, lower_is_better, expected):
    assert interval.verdict(iv, lower_is_better) == expected


def test_no_change_says_how_finely_it_was_resolved():
    iv = _iv(0.988, 1.015)
    assert interval.resolution_pct(iv) == pytest.approx(1.5)
    assert interval.describe(iv).endswith("no change (±1.5 %)")
    assert interval.describe(_iv(0.95, 0.99)).startswith("-3.0 % [-5.0, -1.0] improvement")


def _sample(cpu: float, rps: float) -> dict:
    return {
        "requests": 1000,
        "seconds": 1.0,
        "rps": rps,
        "socket_errors": 0,
        "non2xx": 0,
        "server_cpu_us_per_request": cpu,
        "foreign_cpu_pct": 5.0,
    }


def _counted(total: int, epoll_wait: int, **lib: int) -> dict:
    libesca = {"flushes": 10, "kernel_entries": 10, "flushed_calls": 40, "segments": 10, **lib}
    return {
        "requests": 1000,
        "syscalls": {"total": total, "epoll_wait": epoll_wait, "recvfrom": 1000},
        "libesca": libesca,
    }


def _cell(esca_cpu: list[float], off_cpu: list[float], esca_rps: list[float]) -> dict:
    return {
        "server": "nginx",
        "backend": "uring",
        "size_kb": 1,
        "connections": 50,
        "runs": {
            "off": [_sample(c, 50000.0) for c in off_cpu],
            "uring": [_sample(c, r) for c, r in zip(esca_cpu, esca_rps, strict=True)],
        },
        "counted": {"off": _counted(8000, 500), "uring": _counted(4000, 500)},
    }


def test_cpu_per_request_decides_while_requests_per_second_swing():
    # CPU per request 3 % lower in every pair, within ±0.5 %; req/s ±30 %
    rng = random.Random(1)
    off = [10.0 + rng.uniform(-1, 1) for _ in range(10)]
    esca = [c * (0.97 + rng.uniform(-0.005, 0.005)) for c in off]
    rps = [50000.0 * (1 + rng.uniform(-0.3, 0.3)) for _ in range(10)]
    s = summary.summarize(_cell(esca, off, rps), "uring")
    assert s["cpu"]["verdict"] == interval.IMPROVEMENT
    assert -3.6 < s["cpu"]["low_pct"] <= s["cpu"]["change_pct"] <= s["cpu"]["high_pct"] < -2.4
    assert s["rps"]["verdict"] == interval.NO_CHANGE
    assert s["rps"]["resolution_pct"] > 10
    assert len(s["cpu"]["ratios"]) == 10


def test_entries_per_loop_iteration():
    s = summary.summarize(_cell([10.0] * 6, [10.0] * 6, [1.0] * 6), "uring")
    assert s["vanilla_loop"]["entries_per_iteration"] == pytest.approx(16.0)
    assert s["esca_loop"]["entries_per_iteration"] == pytest.approx(8.0)
    assert s["esca_loop"]["iterations_per_request"] == pytest.approx(0.5)
    # waits libesca made inside a flush count as iterations too
    loop = summary.loop_entries(_counted(4000, 0, waits_carried=500))
    assert loop["entries_per_iteration"] == pytest.approx(8.0)
    assert summary.loop_entries(_counted(4000, 0))["entries_per_iteration"] is None


def test_report_reads_the_older_schema():
    # the checked-in result of schema 1 (5 pairs a cell, no intervals in it)
    old = json.loads((ROOT / "docs" / "bench" / "results.json").read_text())
    assert old["schema"] == "esca-bench/servers/1" and old["schema"] in runner.SCHEMAS_READ
    doc = report.upgrade(old)
    cell = doc["cells"][0]
    assert cell["summary"]["cpu"]["ratio"]["n"] == 5
    assert cell["summary"]["cpu"]["verdict"] == interval.UNRESOLVED
    text = report.markdown(doc)
    assert "CPU change [95% interval]" in text and "unresolved (5 pairs: 94% interval)" in text
    assert all(not t["cpu_interval_met"] for t in doc["targets"])


def test_pairs_within_the_target_is_where_the_interval_stays_narrow():
    # ratios within ±1 % from the start: 6 pairs (the fewest for 95 %) suffice
    tight = [1.0 + 0.01 * ((i % 5) - 2) / 2 for i in range(12)]
    assert interval.pairs_within(tight, 2.0) == 6
    # an outlier among the first pairs widens the interval until enough pairs
    # put it outside the order-statistic ranks
    late = [0.90, 1.0, 1.01, 0.99, 1.0, 1.005, 0.995, 1.0, 1.01, 0.99, 1.0, 1.0]
    n = interval.pairs_within(late, 2.0)
    assert n is not None and n > 6
    assert interval.half_width_pct(interval.median_interval(late[:n])) <= 2.0
    assert interval.half_width_pct(interval.median_interval(late[: n - 1])) > 2.0
    # never narrow enough
    assert interval.pairs_within([0.9, 1.1] * 6, 2.0) is None
