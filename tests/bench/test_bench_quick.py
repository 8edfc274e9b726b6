"""esca-bench servers --quick against the installed patched servers: the command
runs, and every number in its JSON was measured."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from esca_pkg.bench.cli import hooked
from esca_pkg.servers import recipe

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.servers


def esca_bench(
    *args: str | os.PathLike[str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from esca_pkg.bench.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def installed() -> list[str]:
    """The installed patched servers, the one --quick measures first."""
    found = [name for name, r in recipe.registry().items() if hooked(r)]
    return sorted(found, key=lambda n: n != "nginx")


@pytest.fixture
def needs_server() -> None:
    """Decided when the test runs, not at collection: in one session the servers
    suite (run first, tests/bench/conftest.py) installs them."""
    if not installed():
        pytest.skip(
            "no patched server is installed (nginx, lighttpd or lwan with the ESCA hooks: "
            "esca-pkg build nginx && apt install ./dist/<codename>/nginx*_+esca1_*.deb; "
            "the servers suite does it)"
        )


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="esca-bench servers runs as root")


def no_constant(name: str) -> float:
    raise AssertionError(f"{name} in the JSON: a number that was not measured")


def numbers(obj: Any, path: str = "") -> list[tuple[str, float]]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [(path, float(obj))]
    if isinstance(obj, dict):
        return [n for k, v in obj.items() for n in numbers(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [n for i, v in enumerate(obj) for n in numbers(v, f"{path}[{i}]")]
    return []


@pytest.fixture(scope="module")
def quick(
    libesca: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    if not installed():
        pytest.skip("no patched server is installed (see needs_server)")
    out = tmp_path_factory.mktemp("bench")
    res = esca_bench("servers", "--quick", "--out", out, "--library", libesca)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res, out


@needs_root
@pytest.mark.usefixtures("needs_server")
def test_quick_writes_json_markdown_and_plots(quick):
    res, out = quick
    for name in ("results.json", "results.md", "cpu.png", "throughput.png", "syscalls.png"):
        assert (out / name).is_file(), name
    for name in ("cpu.png", "throughput.png", "syscalls.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    md = (out / "results.md").read_text()
    assert md in res.stdout  # the table is printed too
    assert (
        "| size | conns | CPU µs/req A→B | CPU change [95% interval] |" in md
        and "## Targets" in md
        and "## Micro-benchmark" in md
    )


@needs_root
@pytest.mark.usefixtures("needs_server")
def test_quick_json_shape_and_every_number_measured(quick):
    _, out = quick
    doc = json.loads((out / "results.json").read_text(), parse_constant=no_constant)
    assert doc["schema"] == "esca-bench/servers/2"
    assert doc["command"][:3] == ["esca-bench", "servers", "--quick"]
    assert doc["machine"]["kernel"] == os.uname().release
    assert doc["machine"]["cpus_usable"] >= 1
    assert doc["versions"]["packages"]["wrk"]
    assert doc["versions"]["libesca"]["sha256"]
    first = installed()[0]
    assert (
        doc["versions"]["packages"][first].endswith(("+esca1", "+esca2", "+esca3"))
        or first == "lwan"
    )

    cells = doc["cells"]
    assert len(cells) == 1 and not doc["skipped"]
    cell = cells[0]
    assert cell["server"] == first
    assert (cell["size_kb"], cell["connections"]) == (1, 50)
    backend = cell["backend"]
    assert backend in ("uring", "module")
    assert set(cell["runs"]) == {"off", backend}
    for variant, samples in cell["runs"].items():
        assert len(samples) == doc["settings"]["repeats"] == 2, variant
        for s in samples:
            assert s["requests"] > 0 and s["seconds"] > 0 and s["rps"] > 0
            assert s["server_cpu_us_per_request"] > 0
            assert s["socket_errors"] == 0 and s["non2xx"] == 0, s
    for variant, counted in cell["counted"].items():
        assert counted["requests"] > 0
        # a served request takes at least a receive and a send
        assert counted["syscalls"]["total"] >= 2 * counted["requests"], variant
        assert counted["pids"]
    # B really ran ESCA and A really did not
    assert cell["counted"]["off"]["libesca"]["deferred"] == 0
    assert cell["counted"][backend]["libesca"]["deferred"] > 0
    assert cell["counted"][backend]["libesca"]["bytes_lost"] == 0

    s = cell["summary"]
    # two pairs (--quick): a median and a range, but no 95 % interval
    for figure in ("cpu", "rps"):
        f = s[figure]
        assert f["verdict"] == "unresolved", f
        assert f["ratio"]["n"] == 2 and f["ratio"]["confidence"] == 0.5
        assert f["low_pct"] <= f["change_pct"] <= f["high_pct"]
        assert len(f["ratios"]) == 2
    assert s["cpu"]["vanilla"]["median"] > 0 and s["cpu"]["esca"]["median"] > 0
    # nginx and lighttpd wait in epoll: entries per loop iteration are measured
    for loop in (s["vanilla_loop"], s["esca_loop"]):
        assert loop["iterations_per_request"] > 0
        assert loop["entries_per_iteration"] >= 1
    m = s["esca_syscalls"]
    assert 0 < m["minimum"] <= m["measured"] + 1e-9
    assert m["gap"] == pytest.approx(m["measured"] - m["minimum"])

    assert doc["targets"][0]["server"] == first
    micro = doc["micro"]
    assert "skipped" not in micro, micro
    assert {r["op"] for r in micro["samples"]} == {"write", "close"}
    assert all(v > 0 for r in micro["samples"] for v in r["ns_per_call"])

    nums = numbers(doc)
    assert nums
    bad = [p for p, v in nums if not math.isfinite(v)]
    assert not bad, bad


@needs_root
def test_bad_arguments_are_refused_with_the_fix(tmp_path):
    res = esca_bench("servers", "--sizes", "1,x", "--out", tmp_path)
    assert res.returncode == 2 and "comma-separated list of integers" in res.stderr
    res = esca_bench("--quick", "micro")
    assert res.returncode == 2 and "esca-bench servers --quick" in res.stderr


@needs_root
@pytest.mark.usefixtures("needs_server")
def test_unusable_backend_is_refused_with_the_fix(tmp_path):
    if Path("/dev/esca").exists():
        pytest.skip("the esca module is loaded here")
    res = esca_bench("servers", "--quick", "--backend", "module", "--out", tmp_path)
    assert res.returncode == 1
    assert "error: the module backend cannot run here" in res.stderr
    assert "fix:" in res.stderr


@needs_root
@pytest.mark.usefixtures("needs_server")
def test_report_draws_again_from_the_json(quick, tmp_path):
    _, out = quick
    res = esca_bench("report", out / "results.json", "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "results.md").read_text() == (out / "results.md").read_text()
    assert (tmp_path / "throughput.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "cpu.png").read_bytes()[:8] == PNG_MAGIC


def test_report_refuses_what_is_not_a_result(tmp_path):
    bogus = tmp_path / "results.json"
    bogus.write_text('{"schema": "something else"}')
    res = esca_bench("report", bogus)
    assert res.returncode == 1
    assert "is not a result of esca-bench servers" in res.stderr and "fix:" in res.stderr
