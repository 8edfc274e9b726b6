"""Argument handling of the commands: what esca-run runs, how it refuses, and
esca-bench's and esca-pkg's option checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from libesca_support import compile_c

from esca_pkg.bench import cli as bench
from esca_pkg.log import EscaError
from esca_pkg.run import cli as run

ROOT = Path(__file__).resolve().parents[2]


def command(module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hooked")
    src = d / "h.c"
    src.write_text(
        '#include "esca.h"\nint main(void) { ESCA_INIT(); return 0; }\n'
        "void f(void) { ESCA_BATCH_START(); ESCA_BATCH_FLUSH(); }\n"
    )
    return compile_c(src, d / "h")


def test_a_server_name_gets_its_foreground_arguments() -> None:
    p = run.resolve(("nginx", "-t"), Path("/bin/true"))
    assert p.server is not None and p.server.name == "nginx"
    assert p.argv(["LD_PRELOAD", "ESCA_BACKEND"]) == [
        "/bin/true",
        "-g",
        "daemon off; env ESCA_BACKEND;",
        "-t",
    ]


def test_anything_else_is_a_program() -> None:
    p = run.resolve(("true", "x"), None)
    assert (p.server, p.path.name, p.argv(["ESCA_BACKEND"])[1:]) == (None, "true", ["x"])
    with pytest.raises(EscaError, match="nothing to run"):
        run.resolve((), None)
    with pytest.raises(EscaError, match=r"ngnix: program not found \(and not a server: .*nginx"):
        run.resolve(("ngnix",), None)
    with pytest.raises(EscaError, match="--binary needs a server name"):
        run.resolve(("true",), Path("/bin/true"))


def test_esca_run_arguments_after_dashes_reach_the_program(libesca: Path, hooked: Path) -> None:
    res = command(
        "esca_pkg.run", "--library", libesca, "--print-env", "--backend", "off", "--", hooked, "-x"
    )
    assert res.returncode == 0, res.stderr
    assert f"{hooked} -x would run with backend off" in res.stderr
    res = command("esca_pkg.run", "--systemd", "--", hooked)
    assert res.returncode == 1 and "--systemd only applies to --print-env" in res.stderr


def test_esca_run_refuses_an_unsafe_stats_dir(libesca: Path, hooked: Path, tmp_path: Path) -> None:
    unsafe = tmp_path / "open"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    res = command(
        "esca_pkg.run",
        "--library",
        libesca,
        "--backend",
        "off",
        "--stats-dir",
        unsafe,
        "--",
        hooked,
    )
    assert res.returncode == 1
    assert f"--stats-dir {unsafe} is not safe for live counters" in res.stderr
    assert "fix: give --stats-dir a directory that does not exist yet" in res.stderr
    assert not list(unsafe.iterdir())
    res = command(
        "esca_pkg.run", "--library", libesca, "--stats-dir", unsafe, "--no-stats-dir", "--", hooked
    )
    assert res.returncode == 1 and "contradict" in res.stderr


def test_esca_run_creates_the_stats_dir_and_the_program_writes_there(
    libesca: Path, hooked: Path, tmp_path: Path
) -> None:
    stats = tmp_path / "stats"
    res = command(
        "esca_pkg.run", "--library", libesca, "--backend", "off", "--stats-dir", stats, "--", hooked
    )
    assert res.returncode == 0, res.stderr
    assert f"live counters in {stats}" in res.stderr
    assert stats.is_dir() and not list(stats.iterdir())  # the file goes at exit


def test_esca_bench_option_parsing() -> None:
    assert bench.parse_ints("1, 5,20", "--sizes") == (1, 5, 20)
    for bad in ("1,x", "0", ""):
        with pytest.raises(click.BadParameter):
            bench.parse_ints(bad, "--sizes")
    assert bench.parse_esca_env(("ESCA_ADAPT=0",)) == (("ESCA_ADAPT", "0"),)
    for bad in ("ESCA_BACKEND=uring", "PATH=/x", "ESCA_ADAPT"):
        with pytest.raises(click.BadParameter):
            bench.parse_esca_env((bad,))
    res = command("esca_pkg.bench", "--quick", "micro")
    assert res.returncode == 2 and "esca-bench servers --quick" in res.stderr


def test_esca_pkg_names_unknown_targets() -> None:
    res = command("esca_pkg.packaging", "build", "nosuch")
    assert res.returncode == 1
    assert "unknown target 'nosuch'" in res.stderr and "nginx" in res.stderr
