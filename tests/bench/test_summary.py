"""What a cell reports, from samples: wrk's output, the spread, the minimum
(the interval and verdict: tests/unit/test_bench_interval.py)."""

from __future__ import annotations

import math

import pytest

from esca_pkg.bench import summary
from esca_pkg.log import EscaError
from esca_pkg.servers import measure

pytestmark = pytest.mark.fast

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:40123/f1k.bin
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.41ms  213.12us   5.60ms   91.02%
    Req/Sec    35.43k     1.02k   36.88k    80.00%
  70512 requests in 2.00s, 89.20MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  35246.61
Transfer/sec:     44.59MB
"""


def test_wrk_output_is_read():
    w = measure.parse_wrk(WRK_OUTPUT)
    assert (w.requests, w.seconds, w.socket_errors, w.non2xx) == (70512, 2.0, 4, 7)
    assert w.rps == pytest.approx(35256.0)
    assert measure.parse_wrk(WRK_OUTPUT.replace("2.00s", "999.50ms")).seconds == 0.9995


def test_unreadable_wrk_output_is_an_error():
    with pytest.raises(EscaError, match="cannot read wrk's output"):
        measure.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_spread():
    s = summary.spread([4.0, 1.0, 3.0, 2.0])
    assert (s["median"], s["min"], s["max"]) == (2.5, 1.0, 4.0)
    assert s["q1"] == 1.75 and s["q3"] == 3.25
    assert summary.spread([7.0]) == {"median": 7.0, "min": 7.0, "max": 7.0, "q1": 7.0, "q3": 7.0}


def test_minimum_is_non_deferrable_calls_plus_one_entry_per_flush():
    # 1000 requests: recvfrom+openat+newfstatat (3 each) cannot be deferred; 100
    # flushes made 100 io_uring_enter; 200 closes still ran directly.
    counted = {
        "requests": 1000,
        "syscalls": {
            "total": 3000 + 100 + 200,
            "recvfrom": 1000,
            "openat": 1000,
            "newfstatat": 1000,
            "io_uring_enter": 100,
            "close": 200,
        },
        "libesca": {"flushes": 100, "kernel_entries": 100, "flushed_calls": 4000, "segments": 150},
    }
    m = summary.minimum(counted)
    assert m["measured"] == pytest.approx(3.3)
    assert m["minimum"] == pytest.approx(3.1)
    assert m["gap"] == pytest.approx(0.2)
    assert m["direct_deferrable"] == pytest.approx(0.2)
    assert m["mean_batch"] == 40


def test_nan_is_found_anywhere():
    doc = {"a": [1.0, {"b": math.nan}], "c": {"d": math.inf}, "e": 2}
    assert summary.nan_paths(doc) == [".a[1].b", ".c.d"]


def test_flushes_forced_inside_a_segment_are_not_in_the_minimum():
    # 1000 requests in 50 segments; a read after each deferred write forced a
    # flush of one entry (run directly: 1000 writes), no ring entry at all.
    counted = {
        "requests": 1000,
        "syscalls": {
            "total": 3000 + 1000,
            "read": 2000,
            "epoll_wait": 50,
            "accept4": 950,
            "write": 1000,
        },
        "libesca": {"flushes": 1000, "kernel_entries": 0, "flushed_calls": 1000, "segments": 50},
    }
    m = summary.minimum(counted)
    assert m["minimum"] == pytest.approx(3.05)
    assert m["gap"] == pytest.approx(0.95)
    assert m["flushes_per_request"] == 1.0 and m["mean_batch"] == 1.0
