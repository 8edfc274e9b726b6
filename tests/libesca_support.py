"""Helpers for the libesca tests and every test that builds a C program
(imported by name; fixtures are in conftest.py)."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
LIBESCA = TOP / "libesca" / "build" / "libesca.so.0"
BUILD = TOP / "tests" / "_build"
BACKENDS = ["off", "uring", "module"]


class CompileError(Exception):
    """A test program that gcc refuses."""


#: where the test programs find esca.h (libesca), esca_abi.h (the module's
#: uapi) and esca_test.h (the one helper header of every test program)
INCLUDES = (TOP / "libesca" / "include", TOP / "dkms" / "include" / "uapi", TOP / "tests" / "c")


def compile_c(src: Path, out: Path, *extra: str, includes: Sequence[Path] = INCLUDES) -> Path:
    """The one gcc command line of the tests: every C program a test builds
    (tests/c, the guest's case programs, programs written by a test) gets the
    flags of the project's C (-Wall -Wextra -Werror), -D_GNU_SOURCE, -pthread
    and includes.  extra goes after the source (libraries, -static, -m32, ...);
    includes=() builds against the system's headers only (an installed
    libesca-dev).  A program that does not compile raises with gcc's output."""
    argv = [
        "gcc",
        "-O2",
        "-g",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-D_GNU_SOURCE",
        "-pthread",
        *(f"-I{d}" for d in includes),
        "-o",
        str(out),
        str(src),
        *extra,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CompileError(f"{src} does not compile:\n$ {shlex.join(argv)}\n{proc.stderr}")
    return out


def module_usable() -> str | None:
    """None when /dev/esca can be used, else the reason it cannot."""
    dev = Path("/dev/esca")
    if not dev.exists():
        return "/dev/esca is missing: the esca module is not loaded (it runs in the QEMU suite)"
    if not os.access(dev, os.R_OK | os.W_OK):
        return "/dev/esca is not readable and writable by this user"
    return None


def esca_env(libesca: Path, backend: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # ESCA_ADAPT=0: every segment records, whatever it measures (deterministic)
    env.update(
        {"LD_PRELOAD": str(libesca), "ESCA_BACKEND": backend, "ESCA_STATS": "1", "ESCA_ADAPT": "0"}
    )
    env.update(extra)
    return env


def run_prog(
    prog: Path, args: list[str], env: dict[str, str], timeout: float = 120, **kw
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(prog), *args], env=env, capture_output=True, text=True, timeout=timeout, **kw
    )
    if proc.returncode == 77:
        pytest.skip(proc.stdout + proc.stderr)
    return proc


def parse_stats(stderr: str) -> dict[str, int]:
    """The ESCA_STATS=1 summary line as a dict of counters."""
    for line in stderr.splitlines():
        if line.startswith("esca: pid="):
            fields = {}
            for tok in line.replace("(", " ").replace(")", " ").split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    fields[k] = v
            return {k: int(float(v)) if k != "backend" else v for k, v in fields.items()}
    raise AssertionError(f"no ESCA_STATS line in:\n{stderr}")
