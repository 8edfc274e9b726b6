"""The live-counter reader and esca-stat, on stats files written here with the
layout of esca.h (checked against the compiler in test_stats_layout.py)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from esca_pkg.runtime import stats
from esca_pkg.stat import cli


def stats_bytes(pid: int, backend: int = 2, magic: int = stats.MAGIC, **counters: int) -> bytes:
    s = stats.EscaStats()
    s.magic, s.version, s.backend, s.pid = magic, stats.VERSION, backend, pid
    for i, k in enumerate(stats.KINDS):
        s.deferred[i] = counters.pop(k, 0)
    for name, value in counters.items():
        setattr(s, name, value)
    return bytes(s)


def write(d: Path, pid: int, **kw: int) -> Path:
    p = d / f"esca-{pid}.stats"
    p.write_bytes(stats_bytes(pid, **kw))
    return p


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_parse_reads_every_counter_and_the_saved_entries() -> None:
    data = stats_bytes(
        1234,
        close=10,
        writev=30,
        segments=50,
        flushes=20,
        flushed_calls=40,
        direct_calls=6,
        kernel_entries=20,
        bytes_lost=3,
    )
    s = stats.parse(data)
    assert s is not None
    assert (s.pid, s.backend, s.segments, s.deferred_total) == (1234, "uring", 50, 40)
    assert s.deferred["close"] == 10 and s.deferred["writev"] == 30
    assert s.counters["bytes_lost"] == 3
    # 40 calls flushed, 6 of them one by one, 20 entries made: 14 saved
    assert s.entries_saved == 14


def test_incomplete_or_foreign_files_are_skipped() -> None:
    assert stats.parse(stats_bytes(1, magic=0)) is None  # libesca writes the magic last
    assert stats.parse(stats_bytes(1)[:-8]) is None
    other = stats.EscaStats.from_buffer_copy(stats_bytes(1))
    other.version = stats.VERSION + 1
    assert stats.parse(bytes(other)) is None


def test_scan_separates_live_stale_and_links(tmp_path: Path) -> None:
    write(tmp_path, os.getpid(), close=1)
    stale = write(tmp_path, dead_pid(), close=2)
    target = tmp_path / "elsewhere"
    target.write_bytes(stats_bytes(os.getppid(), close=3))
    (tmp_path / f"esca-{os.getppid()}.stats").symlink_to(target)
    found = stats.scan([tmp_path])
    assert [s.pid for s in found.processes] == [os.getpid()]  # the link is not followed
    assert found.stale == [stale]


def test_esca_stat_lists_processes_and_json(tmp_path: Path) -> None:
    write(tmp_path, os.getpid(), close=5, sendfile=7, flushes=3, flushed_calls=12, kernel_entries=3)
    runner = CliRunner()
    res = runner.invoke(cli.cli, ["--dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    head, line = res.output.splitlines()[:2]
    assert head.split()[:5] == ["PID", "COMMAND", "BACKEND", "SEGMENTS", "DEFERRED"]
    assert "SAVED" in head and "LOST" in head
    assert line.split()[0] == str(os.getpid()) and " uring " in line
    res = runner.invoke(cli.cli, ["--dir", str(tmp_path), "--json"])
    doc = json.loads(res.output)
    (p,) = doc["processes"]
    assert p["pid"] == os.getpid() and p["deferred_total"] == 12
    assert p["deferred"]["sendfile"] == 7 and p["kernel_entries_saved"] == 9
    assert p["counters"]["flushes"] == 3


def esca_stat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esca_pkg.stat", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_esca_stat_fails_clearly_when_nothing_runs(tmp_path: Path) -> None:
    write(tmp_path, dead_pid(), close=1)
    res = esca_stat("--dir", str(tmp_path))
    assert res.returncode == 1 and not res.stdout
    assert "error: no process runs under ESCA" in res.stderr and "1 stale files" in res.stderr
    assert "fix: start the server with esca-run" in res.stderr


def test_rates_per_second() -> None:
    old = stats.parse(stats_bytes(7, close=10, segments=100, flushes=10))
    new = stats.parse(stats_bytes(7, close=30, segments=300, flushes=50))
    assert old and new
    r = cli.rate(new, old, 2.0, "x")
    assert (r.deferred["close"], r.segments, r.flushes) == (10.0, 100.0, 20.0)
    first = cli.rate(new, None, 2.0, "x")
    assert first.segments == 150.0


def test_watch_prints_json_lines(tmp_path: Path) -> None:
    write(tmp_path, os.getpid(), close=1)
    res = CliRunner().invoke(
        cli.cli, ["--dir", str(tmp_path), "--watch", "0.1", "--count", "2", "--json"]
    )
    assert res.exit_code == 0, res.output
    docs = [json.loads(line) for line in res.output.splitlines()]
    assert len(docs) == 2 and docs[0]["rates"][0]["pid"] == os.getpid()
    assert docs[0]["rates"][0]["deferred"]["close"] == 0.0  # no change: rate 0


def test_count_needs_watch(tmp_path: Path) -> None:
    res = esca_stat("--dir", str(tmp_path), "--count", "2")
    assert res.returncode == 1 and "--count only applies to --watch" in res.stderr


def test_struct_size_is_what_the_reader_reads() -> None:
    assert len(stats_bytes(1)) == ctypes.sizeof(stats.EscaStats)
