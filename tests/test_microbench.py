"""The micro-benchmark command prints its table (numbers, not a timed test)."""

from __future__ import annotations

import re
import subprocess
import sys

from libesca_support import TOP


def test_micro_table_for_off_and_uring(libesca):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from esca_pkg.bench_cli import main; main()",
            "micro",
            "--repeats",
            "1",
            "--rounds",
            "50",
            "--backend",
            "uring",
        ],
        cwd=TOP,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if re.match(r"^\|\s+(write|close) ", line)]
    assert len(rows) == 8, proc.stdout
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        direct, uring, reduction = float(cells[2]), float(cells[3]), cells[4]
        assert direct > 0 and uring > 0
        assert re.fullmatch(r"[+-]\d+%", reduction)
