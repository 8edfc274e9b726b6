"""The micro-benchmark command prints its table (numbers, not a timed test)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from libesca_support import TOP


def micro(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esca_pkg.bench", "micro", *map(str, args)],
        cwd=TOP,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_micro_table_for_off_and_uring(libesca):
    proc = micro("--repeats", "1", "--rounds", "50", "--backend", "uring")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if re.match(r"^\|\s+(write|close) ", line)]
    assert len(rows) == 8, proc.stdout
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        direct, uring, reduction = float(cells[2]), float(cells[3]), cells[4]
        assert direct > 0 and uring > 0
        assert re.fullmatch(r"[+-]\d+% \(\d+\.\d\d\)", reduction), row


def test_micro_preloads_the_library_it_is_given(libesca, tmp_path):
    """--library is honoured: a file that is not libesca is refused by name, a copy
    of libesca is the one preloaded."""
    bogus = tmp_path / "libesca.so.0"
    bogus.write_bytes(b"not a library")
    proc = micro("--library", bogus)
    assert proc.returncode == 1
    assert str(bogus) in proc.stderr and "fix:" in proc.stderr
    copy = tmp_path / "copy" / "libesca.so.0"
    copy.parent.mkdir()
    copy.write_bytes(libesca.read_bytes())
    proc = micro("--library", copy, "--repeats", "1", "--rounds", "20", "--backend", "uring")
    assert proc.returncode == 0, proc.stderr
    assert f"esca-bench micro: {copy.resolve()}" in proc.stderr
